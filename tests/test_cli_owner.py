"""The owner commands' CLI contract, run as a user runs them (`python -m facewarden ...` in a
subprocess): enroll, train, score, embed, evaluate, and their bad input (one clear line, exit 2).

The owner is scikit-image's public-domain astronaut, so this runs without ../shared (but `evaluate`
on LFW pairs, which skips without it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
from facewarden.cli.demo import augmented
from support import cli
import pytest






def one_clear_line(result: subprocess.CompletedProcess, match: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("facewarden: ")]
    assert len(errors) == 1 and match in errors[0], result.stderr


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut_bgr) -> Path:
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(folder / "astronaut.jpg"), astronaut_bgr)
    cv2.imwrite(str(folder / "astronaut-grey.png"), cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "coffee.jpg"), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def test_score_prints_one_json_line_per_image_and_exit_2_on_unreadable(astronaut_home, photos):
    images = [photos / n for n in ("astronaut.jpg", "coffee.jpg", "missing.jpg", "notes.txt", "astronaut-grey.png")]
    result = cli(astronaut_home, "score", *map(str, images))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["path"] for line in lines] == list(map(str, images))
    astronaut, coffee, missing, notes, grey = lines
    assert set(astronaut) == {"path", "face", "score", "owner", "person"} and astronaut["person"] == "owner"
    assert astronaut["face"] is True and astronaut["owner"] is True and astronaut["score"] > 0.6
    assert coffee == {"path": str(photos / "coffee.jpg"), "face": False, "score": None, "owner": False, "person": None}
    assert missing == {"path": str(photos / "missing.jpg"), "error": "no such file"}
    assert notes == {"path": str(photos / "notes.txt"), "error": "not a readable image"}
    assert grey["owner"] is True  # grey frames are judged at the stricter grey threshold, and pass
    ok = cli(astronaut_home, "score", str(photos / "coffee.jpg"))
    assert ok.returncode == 0 and json.loads(ok.stdout)["face"] is False


def test_embed_prints_unit_embeddings(astronaut_home, photos):
    result = cli(astronaut_home, "embed", str(photos / "astronaut.jpg"), str(photos / "coffee.jpg"))
    assert result.returncode == 0, result.stderr[-2000:]
    face, empty = (json.loads(line) for line in result.stdout.splitlines())
    assert set(face) == {"path", "face", "embedding"} and face["face"] is True
    assert len(face["embedding"]) == 128 and abs(np.linalg.norm(face["embedding"]) - 1) < 1e-3
    assert empty == {"path": str(photos / "coffee.jpg"), "face": False, "embedding": None}
    bad = cli(astronaut_home, "embed", str(photos / "notes.txt"))
    assert bad.returncode == 2 and json.loads(bad.stdout) == {"path": str(photos / "notes.txt"), "error": "not a readable image"}


def test_no_enrollment_and_no_model_are_one_clear_line(tmp_path, photos):
    one_clear_line(cli(tmp_path, "train"), "0 enrolled face(s)")
    one_clear_line(cli(tmp_path, "score", str(photos / "astronaut.jpg")), "no owner model")


def test_corrupt_model_files_are_one_clear_line(astronaut_home, tmp_path, photos):
    home = tmp_path / "home"
    shutil.copytree(astronaut_home / "models", home / "models", symlinks=True)
    current = home / "models" / "current"
    (current / "owner.tflite").write_bytes(b"\0garbage" * 100)
    one_clear_line(cli(home, "score", str(photos / "astronaut.jpg")), "owner.tflite is not a usable TFLite model")
    (home / "config.toml").write_text('[model]\nruntime = "h5"\n')
    (current / "owner.h5").write_bytes(b"\0garbage" * 100)
    one_clear_line(cli(home, "score", str(photos / "astronaut.jpg")), "owner.h5 is not a usable Keras model")
    (current / "owner.json").write_text("{")
    one_clear_line(cli(home, "score", str(photos / "astronaut.jpg")), "owner.json is damaged")


def test_enroll_bad_input(tmp_path, photos):
    one_clear_line(cli(tmp_path, "enroll", "--from", str(tmp_path / "nowhere")), "not a directory")
    empty = tmp_path / "no-faces"
    empty.mkdir()
    shutil.copy(photos / "coffee.jpg", empty)
    shutil.copy(photos / "notes.txt", empty)
    result = cli(tmp_path, "enroll", "--from", str(empty))
    one_clear_line(result, "no image with one clear, usable face")
    assert f"skipped {empty / 'coffee.jpg'}: no face found" in result.stdout
    assert f"skipped {empty / 'notes.txt'}: not a readable image" in result.stdout


def test_enroll_from_the_camera_with_a_progress_bar(tmp_path, astronaut_bgr):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, image in enumerate(augmented(astronaut_bgr, 5, seed=11)):
        cv2.imwrite(str(frames / f"{i:03d}.png"), cv2.copyMakeBorder(image, 0, 0, 64, 64, cv2.BORDER_CONSTANT))
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'[camera]\nsource = "{frames}"\nreplay_fps = 2.0\n')
    result = cli(home, "enroll", "--camera", "--count", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3/3 faces" in result.stderr and "enrolled 3 new face(s); 3 in" in result.stdout
    assert len(list((home / "enroll").glob("*.png"))) == 3


def test_evaluate_on_lfw_pairs(lfw, tmp_path, seed_encoder):
    seed_encoder(tmp_path)
    lines = (lfw / "pairs.txt").read_text().splitlines()
    subset = lines[1:16] + lines[501:516]  # 15 matched, 15 mismatched
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("15\n" + "\n".join(subset) + "\n")
    roc = tmp_path / "roc.png"
    result = cli(tmp_path, "evaluate", "--pairs", str(pairs), "--images", str(lfw), "--roc", str(roc))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert {"accuracy", "tar_at_far_1e-2", "tar_at_far_1e-3", "eer"} <= set(report)
    assert report["pairs"] == 30 and report["missed_faces"] == 0 and report["accuracy"] >= 0.9
    assert roc.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one_clear_line(cli(tmp_path, "evaluate", "--pairs", str(tmp_path / "none.txt"), "--images", str(lfw)), "no such file")
    bad = tmp_path / "bad.txt"
    bad.write_text("1\nNobody\t1\t2\n")
    one_clear_line(cli(tmp_path, "evaluate", "--pairs", str(bad), "--images", str(lfw)), "Nobody_0001.jpg: no such file")
