"""Hardening, round two (issue 23) with the trained astronaut model: a model another user can write
is refused by score, run and doctor; a model with flipped bytes is an error, not a NaN score; score
says what a FIFO or a directory is."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from facewarden import config, paths
from facewarden.desktop import doctor
from facewarden.recognition import ownerfile
from test_hardening import cli, one_line

root_only = pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user (nobody)")


@pytest.fixture
def env(owner_home) -> dict:
    return {**os.environ, "FACEWARDEN_HOME": str(owner_home)}


@pytest.fixture
def photo(tmp_path, astronaut_bgr) -> Path:
    import cv2

    file = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(file), astronaut_bgr)
    return file


def refused_everywhere(env: dict, photo: Path, *needles: str) -> None:
    """score and run say it in one line (exit 2); doctor's model check fails with the same line."""
    one_line(cli(env, "score", str(photo)), *needles)
    one_line(cli(env, "run"), *needles)
    check = doctor.check_model(config.Config())
    assert not check.ok and all(n in check.text for n in needles), check.text


@pytest.mark.parametrize("where", ["version", "versions", "models", "home"])
def test_a_model_others_can_write_is_refused(owner_home, env, photo, where):
    version = ownerfile.model_dir(paths.paths())
    folder = {"version": version, "versions": version.parent, "models": version.parent.parent,
              "home": owner_home}[where]
    assert json.loads(cli(env, "score", str(photo)).stdout)["owner"] is True
    folder.chmod(0o777)
    refused_everywhere(env, photo, str(folder), "writable by group or others", f"chmod go-w {folder}")
    folder.chmod(0o700)
    assert json.loads(cli(env, "score", str(photo)).stdout)["owner"] is True


def test_a_model_file_others_can_write_is_refused(owner_home, env, photo):
    meta = ownerfile.model_dir(paths.paths()) / "owner.json"
    meta.chmod(0o666)
    refused_everywhere(env, photo, str(meta), "chmod go-w")


@root_only
def test_an_owner_json_another_user_owns_is_refused(owner_home, env, photo):
    meta = ownerfile.model_dir(paths.paths()) / "owner.json"
    data = json.loads(meta.read_text())
    meta.write_text(json.dumps({**data, "threshold": 0.01}))  # what the other user wrote
    os.chown(meta, pwd.getpwnam("nobody").pw_uid, -1)
    refused_everywhere(env, photo, str(meta), f"belongs to uid {pwd.getpwnam('nobody').pw_uid}")



def test_score_says_what_a_fifo_or_a_directory_is(env, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = cli(env, "score", str(fifo), str(tmp_path))
    errors = [json.loads(line)["error"] for line in r.stdout.splitlines()]
    assert r.returncode == 2 and errors == ["a FIFO (named pipe), not an image file", "a directory, not an image file"]


def test_a_model_with_flipped_bytes_is_an_error_not_a_nan_score(env, photo):
    """The owner's templates inside owner.tflite turned into NaNs (found by their bytes in owner.h5)."""
    import h5py
    import numpy as np

    version = ownerfile.model_dir(paths.paths())
    with h5py.File(version / "owner.h5") as f:
        templates = np.asarray(f["model_weights/templates/templates/kernel"], np.float32).T.tobytes()
    tflite = version / "owner.tflite"
    data = bytearray(tflite.read_bytes())
    at = data.find(templates)
    assert at > 0, "the templates are not stored as they were in owner.tflite"
    data[at : at + len(templates)] = np.full(len(templates) // 4, np.nan, np.float32).tobytes()
    tflite.write_bytes(bytes(data))
    r = cli(env, "score", str(photo))
    # LiteRT's own start-up note ("INFO: Created TensorFlow Lite XNNPACK delegate") may come first.
    said = [line for line in r.stderr.splitlines() if not line.startswith("INFO: ")]
    assert r.returncode == 2 and r.stdout == "" and len(said) == 1 and said[0].startswith("facewarden: "), r.stderr
    assert "non-finite score" in said[0] and "re-create the model with facewarden train" in said[0]
