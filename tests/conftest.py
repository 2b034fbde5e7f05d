"""Shared fixtures: the real face data in ../shared (skipped with a reason when absent), an isolated
FACEWARDEN_HOME, a face that ships with a dependency for tests that must run anywhere, and that face
enrolled and trained as the owner (for the daemon tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FACES = Path(os.environ.get("FACEWARDEN_FACES", REPO.parent / "shared" / "data" / "faces"))


def _data(name: str) -> Path:
    path = FACES / name
    if not path.is_dir():
        pytest.skip(f"shared face data {path} is absent (a plain clone has no ../shared)")
    return path


@pytest.fixture(scope="session")
def lfw() -> Path:
    return _data("lfw-dev")


@pytest.fixture(scope="session")
def orl() -> Path:
    return _data("orl")


@pytest.fixture(scope="session")
def nuaa() -> Path:
    return _data("nuaa-dev")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An isolated FACEWARDEN_HOME for one test."""
    root = tmp_path / "fwhome"
    monkeypatch.setenv("FACEWARDEN_HOME", str(root))
    return root


@pytest.fixture(scope="session")
def astronaut_bgr():
    """scikit-image's public-domain astronaut photo (Eileen Collins), as an OpenCV BGR frame."""
    import cv2
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="session")
def encoder_model(tmp_path_factory):
    """The ported SFace encoder (Keras), built once per session into its own FACEWARDEN_HOME's cache
    (that .h5 is `encoder_model.cache_path`). Later `encoder.load_encoder()` calls in the session
    (any home) return this same model."""
    from facewarden.model import encoder

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEWARDEN_HOME", str(tmp_path_factory.mktemp("encoder_home")))
        encoder.load_encoder.cache_clear()  # so the build really goes through this session's cache dir
        model = encoder.load_encoder()
        model.cache_path = encoder.cache_file()
    return model


@pytest.fixture(scope="session")
def encoder_tflite(encoder_model, tmp_path_factory) -> Path:
    """The encoder exported to .tflite, as the daemon runs it."""
    from facewarden.model import encoder

    return encoder.export_tflite(encoder_model, tmp_path_factory.mktemp("tflite") / "encoder.tflite")


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory, astronaut_bgr) -> Path:
    """A FACEWARDEN_HOME with the astronaut enrolled and the owner model trained."""
    import cv2

    from facewarden.cli.demo import augmented

    home = tmp_path_factory.mktemp("astronaut-owner")
    src = home / "src"
    src.mkdir()
    for i, img in enumerate(augmented(astronaut_bgr, 12)):
        cv2.imwrite(str(src / f"{i:02d}.jpg"), img)
    env = {**os.environ, "FACEWARDEN_HOME": str(home)}
    for cmd in (["enroll", "--from", str(src)], ["train"]):
        result = subprocess.run([sys.executable, "-m", "facewarden", *cmd], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
    return home


@pytest.fixture
def owner_home(trained_home, home) -> Path:
    """An isolated FACEWARDEN_HOME holding a copy of the trained owner model."""
    shutil.copytree(trained_home / "models", home / "models")
    return home
