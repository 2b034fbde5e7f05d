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
    """The owner's templates inside owner.tflite turned into NaNs: their int8 weights' scales (or, for
    a model with few templates, their float32 weights), found by their bytes."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    version = ownerfile.model_dir(paths.paths())
    tflite = version / "owner.tflite"
    interpreter = Interpreter(model_path=str(tflite))
    (templates,) = [t for t in interpreter.get_tensor_details()
                    if "templates" in t["name"] and len(t["shape"]) == 2 and t["shape"][1] == 128]  # (n, 128)
    scales = templates["quantization_parameters"]["scales"]
    stored = (scales.astype(np.float32) if scales.size else interpreter.get_tensor(templates["index"])).tobytes()
    data = bytearray(tflite.read_bytes())
    at = data.find(stored)
    assert at > 0, "the templates are not stored as they were read"
    data[at : at + len(stored)] = np.full(len(stored) // 4, np.nan, np.float32).tobytes()
    tflite.write_bytes(bytes(data))
    r = cli(env, "score", str(photo))
    # LiteRT's own start-up note ("INFO: Created TensorFlow Lite XNNPACK delegate") may come first.
    said = [line for line in r.stderr.splitlines() if not line.startswith("INFO: ")]
    assert r.returncode == 2 and r.stdout == "" and len(said) == 1 and said[0].startswith("facewarden: "), r.stderr
    # NaN weights give a NaN score; NaN scales of int8 weights are refused by XNNPACK as the model runs.
    assert ("non-finite score" in said[0] and "re-create the model with facewarden train" in said[0]
            or "owner.tflite does not run (unsupported scale value (nan)" in said[0] and "re-create it" in said[0])


def test_doctor_says_how_the_model_runs(owner_home):
    """The model check names the weights `train` exported (int8) and the threads the daemon gives it."""
    check = doctor.check_model(config.Config())
    assert check.ok and "(int8 weights, 1 inference thread(s))" in check.text, check.text
    check = doctor.check_model(config.parse({"model": {"threads": 2}}))
    assert check.ok and "(int8 weights, 2 inference thread(s))" in check.text, check.text
