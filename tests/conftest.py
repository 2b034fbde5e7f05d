"""Shared fixtures: the real face data in ../shared (skipped with a reason when absent), an isolated
FACEWARDEN_HOME, a face that ships with a dependency for tests that must run anywhere, and that face
enrolled and trained as the owner (for the daemon tests)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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
def seed_encoder(encoder_model):
    """`seed_encoder(home)`: put the session's built encoder in `home`'s cache, so the commands run in
    that FACEWARDEN_HOME load it instead of building the port again (~10 s each; the build and the
    cache are tested in test_encoder)."""

    def seed(home: Path) -> Path:
        built = encoder_model.cache_path  # <cache>/encoder/sface-<digest>.h5
        target = home / "cache" / built.parent.name / built.name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy2(built, target)
        return home

    return seed


@pytest.fixture(scope="session")
def astronaut_home(tmp_path_factory, astronaut_bgr, seed_encoder) -> Path:
    """A FACEWARDEN_HOME with the astronaut enrolled from 12 augmented photos and the owner model
    trained, by the real commands: the one training the daemon and CLI tests share (copy its
    `models/` into a test's own home before changing anything)."""

    import cv2

    from facewarden.cli.demo import augmented
    from support import PYTHON

    home = seed_encoder(tmp_path_factory.mktemp("astronaut-owner"))
    src = tmp_path_factory.mktemp("astronaut-photos")
    for i, img in enumerate(augmented(astronaut_bgr, 12)):
        cv2.imwrite(str(src / f"{i:02d}.jpg"), img)
    env = {**os.environ, "FACEWARDEN_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    enrolled = subprocess.run(PYTHON + ["enroll", "--from", str(src)], env=env, capture_output=True, text=True)
    assert enrolled.returncode == 0, enrolled.stderr[-2000:]
    # A reflected border can mirror a second face into a photo: that one is skipped, with its reason.
    added = re.search(r"^enrolled (\d+) new face\(s\); \1 in ", enrolled.stdout, re.M)
    skipped = re.findall(r"^skipped .*: (.+)$", enrolled.stdout, re.M)
    assert added and int(added.group(1)) >= 10 and int(added.group(1)) + len(skipped) == 12, enrolled.stdout
    trained = subprocess.run(PYTHON + ["train"], env=env, capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "owner model written" in trained.stdout
    assert "fitting the templates" in trained.stderr  # our own progress lines, on stderr
    return home


@pytest.fixture
def owner_home(astronaut_home, home) -> Path:
    """An isolated FACEWARDEN_HOME holding a copy of the trained astronaut owner model."""

    shutil.copytree(astronaut_home / "models", home / "models", symlinks=True)
    return home


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
