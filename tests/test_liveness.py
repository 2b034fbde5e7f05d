"""Liveness: cue extraction on real frames through the real landmark models, the pure combiner on
scripted cue sequences, the tracker on real NUAA clips, the optional MiniFASNet's crop protocol on a
small real ONNX file, and the real daemon process refusing a person's photo but not the person."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from support import PYTHON
from facewarden.core import liveness as core_liveness
from facewarden.config import Liveness
from facewarden.errors import UserError
from facewarden.core.liveness import Cues, LivenessThresholds as Thresholds, judge, mesh_shift
from facewarden.recognition import landmarks
from facewarden.recognition.landmarks import Landmarker, MiniFASNet, homography_residual
from facewarden.recognition.liveness import LivenessTracker
from facewarden.recognition.vision import Detector


@pytest.fixture(scope="session")
def detector() -> Detector:
    return Detector()


@pytest.fixture(scope="session")
def landmarker() -> Landmarker:
    return Landmarker()


def _frame(nuaa: Path, clip: str, index: int) -> np.ndarray:
    frame = cv2.imread(str(nuaa / "sequences" / clip / f"{index:03d}.jpg"))
    assert frame is not None
    return frame


def _marks(frame, detector, landmarker):
    faces = detector(frame)
    assert faces, "the detector found no face"
    marks = landmarker(frame, faces[0])
    assert marks is not None, "the mesh model saw no face in the detector's box"
    return marks


# -- cue extraction on real frames -----------------------------------------------------------------


def test_mesh_and_eyes_on_the_astronaut(astronaut_bgr, detector, landmarker):
    marks = _marks(astronaut_bgr, detector, landmarker)
    assert marks.mesh.shape == (468, 2)
    x, y, w, h = detector(astronaut_bgr)[0].box
    inside = (marks.mesh[:, 0] > x - w * 0.2) & (marks.mesh[:, 0] < x + w * 1.2)
    inside &= (marks.mesh[:, 1] > y - h * 0.2) & (marks.mesh[:, 1] < y + h * 1.2)
    assert inside.mean() > 0.95, "the mesh is not on the detected face"
    assert 0.3 * w < marks.iod < 0.7 * w
    assert 0.15 < marks.ear < 0.45, "open eyes have an aspect ratio of about a quarter"
    along = marks.gaze[0::2]
    assert np.all((along > 0.2) & (along < 0.8)), "the irises sit between the eye corners"
    assert marks.crop.shape == (landmarks.MESH_SIZE, landmarks.MESH_SIZE, 3)
    assert landmarks.texture(marks.crop) > 0


def test_closed_eyes_have_a_lower_aspect_ratio(nuaa, detector, landmarker):
    # 0008_live frame 21 catches a blink; frame 20, a fifth of a second earlier, does not.
    open_ = _marks(_frame(nuaa, "0008_live", 20), detector, landmarker).ear
    closed = _marks(_frame(nuaa, "0008_live", 21), detector, landmarker).ear
    assert closed < 0.5 * open_, (closed, open_)
    assert closed < 0.14


def test_mesh_motion_of_a_frame_with_itself_is_zero(nuaa, detector, landmarker):
    marks = _marks(_frame(nuaa, "0014_live", 0), detector, landmarker)
    assert mesh_shift(marks.mesh, marks.mesh, marks.iod) == pytest.approx(0, abs=1e-9)
    assert homography_residual(marks.mesh, marks.mesh, marks.iod) == pytest.approx(0, abs=1e-6)


def test_a_flat_picture_moves_by_a_homography_and_a_head_does_not(nuaa, detector, landmarker):
    frame = _frame(nuaa, "0014_live", 0)
    first = _marks(frame, detector, landmarker)
    # The same picture tilted and shifted, as a photo held up and turned would be.
    h, w = frame.shape[:2]
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    moved = np.float32([[6, 4], [w - 4, 12], [w + 2, h - 6], [-3, h + 2]])
    tilted = cv2.warpPerspective(frame, cv2.getPerspectiveTransform(corners, moved), (w, h))
    flat = _marks(tilted, detector, landmarker).mesh
    motion = mesh_shift(first.mesh, flat, first.iod)
    assert core_liveness.MOTION_MIN <= motion <= core_liveness.MOTION_MAX
    flat_excess = homography_residual(first.mesh, flat, first.iod) - core_liveness.RESIDUAL_SLOPE * motion
    # 0014_live frames 0 -> 1: the person's head turns a little (a motion in the band).
    head = _marks(_frame(nuaa, "0014_live", 1), detector, landmarker).mesh
    head_motion = mesh_shift(first.mesh, head, first.iod)
    assert core_liveness.MOTION_MIN <= head_motion <= core_liveness.MOTION_MAX
    head_excess = homography_residual(first.mesh, head, first.iod) - core_liveness.RESIDUAL_SLOPE * head_motion
    assert flat_excess < core_liveness.THRESHOLDS.nonrigid_excess < head_excess, (flat_excess, head_excess)


# -- the pure combiner -----------------------------------------------------------------------------


def _cues(n: int, **overrides) -> list[Cues]:
    """A still, steady face that shows nothing: same eye opening, gaze, texture of a print."""
    base = dict(ear=0.25, gaze=(0.5, 0.0, 0.5, 0.0), texture=0.1, motion=0.01, nonrigid=None)
    base.update(overrides)
    return [Cues(**base) for _ in range(n)]


def test_a_steady_face_shows_no_life():
    assert judge(_cues(40)) is None
    assert judge([]) is None


def test_a_blink_is_a_dip_below_the_window_median():
    cues = _cues(10)
    cues[6] = Cues(ear=0.08, gaze=cues[6].gaze, texture=0.1, motion=0.01)
    assert judge(cues) == "blink"
    # The same dip in a sample that moved too fast for its landmarks to count says nothing.
    cues[6] = Cues(ear=0.08, gaze=cues[6].gaze, texture=0.1, motion=core_liveness.MOTION_MAX * 2)
    assert judge(cues) is None
    # A shallow dip is landmark noise, not a blink.
    cues[6] = Cues(ear=0.25 * 0.7, gaze=cues[6].gaze, texture=0.1, motion=0.01)
    assert judge(cues) is None
    # Too few samples to know the person's usual opening.
    short = _cues(3) + [Cues(ear=0.05, gaze=(0.5, 0.0, 0.5, 0.0), texture=0.1, motion=0.01)]
    assert judge(short) is None


def test_gaze_shifts_need_several_samples_away_from_the_usual_position():
    t = Thresholds()
    away = (0.5 + 2 * t.gaze_shift, 0.0, 0.5, 0.0)
    cues = _cues(12)
    for i in range(t.gaze_count - 1):
        cues[i + 4] = Cues(ear=0.25, gaze=away, texture=0.1, motion=0.01)
    assert judge(cues) is None
    cues[9] = Cues(ear=0.25, gaze=away, texture=0.1, motion=0.01)
    assert judge(cues) == "gaze"


def test_nonrigid_needs_several_pairs_over_the_motion_matched_bar():
    t = Thresholds()
    over = _cues(t.nonrigid_count, nonrigid=t.nonrigid_excess * 1.5, motion=0.2)
    below = _cues(10, nonrigid=t.nonrigid_excess * 0.9, motion=0.2)
    assert judge(below + over[:-1]) is None
    assert judge(below + over) == "nonrigid"


def test_texture_is_read_from_still_samples_only():
    t = Thresholds()
    sharp_moving = _cues(10, texture=t.texture * 2, motion=core_liveness.STILL * 2)
    assert judge(sharp_moving) is None
    assert judge(_cues(t.texture_min_samples, texture=t.texture * 1.1)) == "texture"
    assert judge(_cues(t.texture_min_samples - 1, texture=t.texture * 1.1)) is None
    # The first sample has no motion to compare: not known to be still.
    assert judge(_cues(t.texture_min_samples, texture=t.texture * 1.1, motion=None)) is None


def test_the_optional_model_must_agree_with_a_landmark_cue():
    showing_life = _cues(6, nonrigid=0.05, motion=0.1)
    assert judge([replace(c, model=0.9) for c in showing_life]) == "nonrigid+model"
    # The model alone proves nothing; the model disagreeing vetoes the cue.
    assert judge(_cues(6, model=0.99)) is None
    assert judge([replace(c, model=0.2) for c in showing_life]) is None
    # Too few model opinions yet: pending.
    assert judge([replace(c, model=0.9 if i >= 4 else None) for i, c in enumerate(showing_life)]) is None


def test_judge_keeps_nothing_between_windows():
    alive, still = _cues(8, nonrigid=0.05, motion=0.1), _cues(8)
    assert judge(alive) == "nonrigid" and judge(still) is None
    # A live window judged just before does not make a still one live, nor the other way round.
    assert judge(alive) == "nonrigid" and judge(still) is None


# -- the tracker on real clips ---------------------------------------------------------------------


def _replay(tracker: LivenessTracker, nuaa: Path, clip: str, detector: Detector, fps: float = 5.0):
    results = []
    for i in range(40):
        frame = _frame(nuaa, clip, i)
        faces = detector(frame)
        results.append(tracker.update(frame, faces[0], i / fps) if faces else None)
    return results


def test_the_tracker_finds_life_in_a_live_clip_and_latches(nuaa, detector, landmarker):
    tracker = LivenessTracker(Liveness(), landmarker)
    results = _replay(tracker, nuaa, "0008_live", detector)
    assert True in results
    first = results.index(True)
    assert all(r is True for r in results[first:]), "live stays live until reset"
    assert all(r is None for r in results[:first])
    assert tracker.reason in {"blink", "gaze", "nonrigid", "texture"}
    tracker.reset()
    assert tracker.reason is None and tracker.last is None


def test_the_tracker_never_finds_life_in_a_photo_clip(nuaa, detector, landmarker):
    tracker = LivenessTracker(Liveness(), landmarker)
    for clip in ("0008_photo1", "0004_photo2"):
        tracker.reset()
        assert set(_replay(tracker, nuaa, clip, detector)) == {None}, clip


def test_reset_forgets_the_previous_face(nuaa, detector, landmarker):
    tracker = LivenessTracker(Liveness(), landmarker)
    _replay(tracker, nuaa, "0008_live", detector)
    assert tracker.reason is not None
    tracker.reset()
    frame = _frame(nuaa, "0008_photo1", 0)
    assert tracker.update(frame, detector(frame)[0], 100.0) is None


def test_switched_off_every_face_counts_as_live(astronaut_bgr, detector):
    tracker = LivenessTracker(Liveness(enabled=False))
    assert tracker.update(astronaut_bgr, detector(astronaut_bgr)[0], 0.0) is True


def test_a_face_too_small_to_judge_gives_no_evidence(astronaut_bgr, detector, landmarker):
    small = cv2.resize(astronaut_bgr, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    faces = detector(small)
    assert faces
    tracker = LivenessTracker(Liveness(), landmarker)
    assert tracker.update(small, faces[0], 0.0) is None
    assert tracker.last is None


# -- the optional MiniFASNet -------------------------------------------------------------------------


def _minifasnet(path: Path) -> Path:
    """A real (tiny) ONNX model with MiniFASNet's interface: 1x3x80x80 in, 3 logits out. Its logit
    for class 1 is the mean of input channel 1 (green, in BGR order) scaled, so a green crop reads
    as live and a red one does not."""
    import onnx
    from onnx import TensorProto, helper

    scale = helper.make_tensor("scale", TensorProto.FLOAT, [1, 3], [0.0, 0.1, 0.0])
    bias = helper.make_tensor("bias", TensorProto.FLOAT, [1, 3], [0.0, -5.0, 0.0])
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Mul", ["flat", "scale"], ["scaled"]),
            helper.make_node("Add", ["scaled", "bias"], ["logits"]),
        ],
        "minifasnet_interface",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 80, 80])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
        [scale, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_minifasnet_crop_protocol_and_live_class(tmp_path, astronaut_bgr, detector):
    model = MiniFASNet(_minifasnet(tmp_path / "4.0_0_0_80x80_MiniFASNetV1SE.onnx"))
    assert model.scale == 4.0
    face = detector(astronaut_bgr)[0]
    assert model.crop(astronaut_bgr, face).shape == (80, 80, 3)
    green = np.zeros_like(astronaut_bgr)
    green[..., 1] = 255
    red = np.zeros_like(astronaut_bgr)
    red[..., 2] = 255
    assert model(green, face) > 0.9
    assert model(red, face) < 0.1
    # A name without a scale prefix gets the common 2.7 crop.
    assert MiniFASNet(_minifasnet(tmp_path / "antispoof.onnx")).scale == 2.7


def test_minifasnet_feeds_the_tracker(tmp_path, astronaut_bgr, detector, landmarker):
    path = _minifasnet(tmp_path / "2.7_80x80_MiniFASNetV2.onnx")
    tracker = LivenessTracker(Liveness(model_path=path), landmarker)
    face = detector(astronaut_bgr)[0]
    tracker.update(astronaut_bgr, face, 0.0)
    assert tracker.last is not None and tracker.last.model is not None


def test_minifasnet_bad_paths_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        MiniFASNet(tmp_path / "missing.onnx")
    junk = tmp_path / "2.7_junk.onnx"
    junk.write_bytes(b"not an onnx file")
    with pytest.raises(UserError, match="not a readable ONNX model"):
        MiniFASNet(junk)


def test_a_face_that_jumps_elsewhere_must_prove_life_again(nuaa, detector, landmarker):
    tracker = LivenessTracker(Liveness(), landmarker)
    results = _replay(tracker, nuaa, "0008_live", detector)
    assert results[-1] is True
    frame = _frame(nuaa, "0008_live", 39)
    face = detector(frame)[0]
    # The same picture, the face moved by more than its width: another face, as far as we know.
    shifted = np.roll(frame, -int(face.box[2] * 1.5), axis=1)
    moved = detector(shifted)[0]
    assert not core_liveness.same_place(face, moved)
    assert tracker.update(shifted, moved, 8.2) is None
    # Small moves keep the decision.
    tracker = LivenessTracker(Liveness(), landmarker)
    _replay(tracker, nuaa, "0008_live", detector)
    nudged = np.roll(frame, 10, axis=1)
    assert tracker.update(nudged, detector(nudged)[0], 8.2) is True


def test_grey_frames_from_an_ir_camera_are_measured(astronaut_bgr, detector, landmarker):
    grey = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    marks = landmarker(grey, detector(grey)[0])
    assert marks is not None and 0.15 < marks.ear < 0.45


# -- the daemon path ---------------------------------------------------------------------------------

EVENTS = ("owner_arrived", "owner_left", "stranger_detected", "spoof_suspected", "locked")


@pytest.fixture(scope="module")
def daemon_run(nuaa, tmp_path_factory, seed_encoder):
    """The real `facewarden run` over a replay of NUAA person 0008: their printed photo waved at the
    camera (8 s), nobody (2 s), then the person themself (8 s). They are enrolled, with the real
    commands, from three frames of their live clip. The events are read from a hook's log."""
    home = seed_encoder(tmp_path_factory.mktemp("liveness-daemon"))
    env = {**os.environ, "FACEWARDEN_HOME": str(home)}
    src = home / "enroll-src"
    src.mkdir()
    for i in (0, 13, 26):
        shutil.copy(nuaa / "sequences" / "0008_live" / f"{i:03d}.jpg", src / f"{i:03d}.jpg")
    for cmd in (["enroll", "--from", str(src)], ["train"]):
        result = subprocess.run(PYTHON + cmd, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
    frames = home / "frames"
    frames.mkdir()
    for i in range(40):
        shutil.copy(nuaa / "sequences" / "0008_photo1" / f"{i:03d}.jpg", frames / f"a_photo_{i:03d}.jpg")
        shutil.copy(nuaa / "sequences" / "0008_live" / f"{i:03d}.jpg", frames / f"c_live_{i:03d}.jpg")
    empty = np.full((480, 640, 3), 120, np.uint8)
    for i in range(10):
        cv2.imwrite(str(frames / f"b_empty_{i:03d}.jpg"), empty)
    log = home / "hooks.log"
    hooks = home / "hooks"
    hooks.mkdir()
    for event in EVENTS:
        (hooks / event).write_text(f'#!/bin/sh\necho "$FACEWARDEN_EVENT $FACEWARDEN_TIME" >> "{log}"\n')
        (hooks / event).chmod(0o755)
    (home / "lock").write_text("#!/bin/sh\nexit 0\n")
    (home / "lock").chmod(0o755)
    (home / "config.toml").write_text(
        f"""
[camera]
source = "{frames}"
[lock]
command = ["{home / 'lock'}"]
methods = ["command"]
[liveness]
window_s = 4.0
[actions]
spoof_suspected = ["lock"]
"""
    )
    result = subprocess.run(PYTHON + ["run"], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def test_daemon_refuses_the_photo_and_accepts_the_person(daemon_run):
    events = daemon_run
    assert "spoof_suspected" in events, events
    assert "owner_arrived" in events, events
    # The photo came first: it was held as pending, then called a spoof, and never let in.
    assert events.index("spoof_suspected") < events.index("owner_arrived"), events
    assert events.count("owner_arrived") == 1, events


def test_a_missing_model_file_stops_the_tracker_with_a_clear_error(tmp_path, landmarker):
    with pytest.raises(UserError, match="liveness.model_path"):
        LivenessTracker(Liveness(model_path=tmp_path / "2.7_80x80_MiniFASNetV2.onnx"), landmarker)
