"""Liveness: cue extraction on real frames through the real landmark models (local motion against a
bent photo, the surround of a real print), the shipped texture classifier and its digest, the pure
combiner on scripted cue sequences, the tracker on real NUAA clips, the optional MiniFASNet's crop
protocol on a small real ONNX file, and the real daemon process refusing a person's photo but not the
person, saying why in its event log and to hooks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from support import PYTHON
from facewarden.core import liveness_rules as core_liveness
from facewarden.config import LivenessConfig as Liveness
from facewarden.errors import UserError
from facewarden.core.liveness_rules import Cues, LivenessThresholds as Thresholds, judge, mesh_shift, smooth_residual, verdict
from facewarden.recognition import landmarks, texture
from facewarden.recognition.landmarks import Landmarker, MiniFASNet
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
    assert 0.0 <= texture.shipped()(marks.crop) <= 1.0


def test_closed_eyes_have_a_lower_aspect_ratio(nuaa, detector, landmarker):
    # 0008_live frame 21 catches a blink; frame 20, a fifth of a second earlier, does not.
    open_ = _marks(_frame(nuaa, "0008_live", 20), detector, landmarker).ear
    closed = _marks(_frame(nuaa, "0008_live", 21), detector, landmarker).ear
    assert closed < 0.5 * open_, (closed, open_)
    assert closed < 0.14


def test_mesh_motion_of_a_frame_with_itself_is_zero(nuaa, detector, landmarker):
    marks = _marks(_frame(nuaa, "0014_live", 0), detector, landmarker)
    assert mesh_shift(marks.mesh, marks.mesh, marks.iod) == pytest.approx(0, abs=1e-9)
    assert smooth_residual(marks.mesh, marks.mesh, marks.iod) == pytest.approx(0, abs=1e-6)


def _homography_residual(a: np.ndarray, b: np.ndarray, iod: float) -> float:
    """What the old non-rigid cue judged: the residual after the best homography."""
    origin = a.mean(axis=0)
    src, dst = (a - origin) / iod, (b - origin) / iod
    homography, _ = cv2.findHomography(src, dst, 0)
    fitted = cv2.perspectiveTransform(src.reshape(-1, 1, 2), homography).reshape(-1, 2)
    return float(np.sqrt(((fitted - dst) ** 2).sum(axis=1).mean()))


def _bent(mesh: np.ndarray, iod: float, radius: float, curl: float | None, tilt: float) -> np.ndarray:
    """The mesh of a flat photo bent round a vertical cylinder of `radius`, curled round a horizontal
    one of `curl` (both in IOD units), turned by `tilt` radians and seen in perspective."""
    centre = mesh.mean(axis=0)
    x, y = ((mesh - centre) / iod).T
    theta = x / radius
    x, z = radius * np.sin(theta), radius * (1 - np.cos(theta))
    if curl is not None:
        phi = y / curl
        y, z = curl * np.sin(phi), z + curl * (1 - np.cos(phi))
    x, z = x * np.cos(tilt) + z * np.sin(tilt), z * np.cos(tilt) - x * np.sin(tilt)
    focal = 8.0  # a face a hand's length from a laptop camera
    return centre + np.column_stack([x, y]) * (focal / (focal + z))[:, None] * iod


def _excess(a: np.ndarray, b: np.ndarray, iod: float) -> tuple[float, float]:
    motion = mesh_shift(a, b, iod)
    return smooth_residual(a, b, iod) - core_liveness.RESIDUAL_SLOPE * motion, motion


def test_a_bent_or_curled_photo_is_no_local_motion_and_an_expression_is(nuaa, detector, landmarker):
    photo = _marks(_frame(nuaa, "0008_photo1", 0), detector, landmarker)
    bar = core_liveness.THRESHOLDS.nonrigid_excess
    for radius, curl, tilt in ((1.5, None, 0.2), (1.2, 2.0, 0.1), (1.2, None, 0.0), (1.5, 2.0, 0.3)):
        bent = _bent(photo.mesh, photo.iod, radius, curl, tilt)
        excess, motion = _excess(photo.mesh, bent, photo.iod)
        assert core_liveness.MOTION_MIN <= motion <= core_liveness.MOTION_MAX, motion
        assert excess < bar, (radius, curl, tilt, excess)
        # What the homography residual, the cue before, made of the same bend: life.
        assert _homography_residual(photo.mesh, bent, photo.iod) - core_liveness.RESIDUAL_SLOPE * motion > bar
    # 0014_live frames 0 -> 1: the person's face moves (an expression and a turn, in the band).
    first = _marks(_frame(nuaa, "0014_live", 0), detector, landmarker)
    face = _marks(_frame(nuaa, "0014_live", 1), detector, landmarker)
    excess, motion = _excess(first.mesh, face.mesh, first.iod)
    assert core_liveness.MOTION_MIN <= motion <= core_liveness.MOTION_MAX
    assert excess > bar, excess
    # 0008_live frames 19 -> 21: a blink, with the head still. The eyelids leave a residual that
    # no smooth warp explains, and the blink cue sees it.
    before = _marks(_frame(nuaa, "0008_live", 19), detector, landmarker)
    blink = _marks(_frame(nuaa, "0008_live", 21), detector, landmarker)
    assert smooth_residual(before.mesh, blink.mesh, before.iod) > smooth_residual(photo.mesh, photo.mesh, photo.iod) + 1e-3
    assert blink.ear < core_liveness.THRESHOLDS.blink_ratio * before.ear


def _surround(tracker: LivenessTracker, nuaa: Path, clip: str, detector: Detector) -> list[float]:
    tracker.reset()
    values = []
    for i in range(40):
        frame = _frame(nuaa, clip, i)
        faces = detector(frame)
        if faces:
            tracker.update(frame, max(faces, key=lambda f: f.box[2] * f.box[3]), i / 5.0)
            if tracker.last is not None and tracker.last.surround is not None:
                values.append(tracker.last.surround)
    return values


def test_a_prints_surround_moves_with_the_face_and_a_rooms_does_not(nuaa, detector, landmarker):
    t = Thresholds()
    # Recording only: thresholds nothing can meet, so that the tracker never stops measuring.
    never = replace(t, blink_min_samples=10**6, gaze_min_samples=10**6, nonrigid_count=10**6,
                    texture_min_samples=10**6, surround_count=10**6)
    tracker = LivenessTracker(Liveness(), landmarker, never)
    # 0001_photo1: a print held in both hands; 0001_live: the person, in front of an office.
    print_ = _surround(tracker, nuaa, "0001_photo1", detector)
    live = _surround(tracker, nuaa, "0001_live", detector)
    assert print_ and live
    assert sum(v > t.surround for v in print_) >= t.surround_count, print_
    assert sum(v > t.surround for v in live) < t.surround_count, live
    assert np.median(print_) > 0 > np.median(live), (np.median(print_), np.median(live))


# -- the shipped texture classifier ------------------------------------------------------------------


def test_the_shipped_texture_weights_are_checked_and_tell_a_print(nuaa, detector, landmarker):
    data = (Path(texture.__file__).parent.parent / "data" / texture.WEIGHTS).read_bytes()
    assert hashlib.sha256(data).hexdigest() == texture.WEIGHTS_SHA256
    classifier = texture.TextureClassifier.from_bytes(data)
    # The single frames are of people in no clip (the weights were trained on the clips' people).
    lives = [classifier(_marks(cv2.imread(str(p)), detector, landmarker).crop) for p in sorted((nuaa / "live").glob("0002_*"))]
    prints = [classifier(_marks(cv2.imread(str(p)), detector, landmarker).crop) for p in sorted((nuaa / "spoof").glob("0002_*"))]
    assert lives and prints
    assert min(lives) > max(prints), (lives, prints)


def test_corrupt_texture_weights_are_a_user_error():
    data = bytearray((Path(texture.__file__).parent.parent / "data" / texture.WEIGHTS).read_bytes())
    data[-1] ^= 1
    with pytest.raises(UserError, match="liveness texture weights .* sha256"):
        texture.TextureClassifier.from_bytes(bytes(data))


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


def test_local_motion_needs_several_pairs_over_the_bar_and_the_texture_to_agree():
    t = Thresholds()
    over = _cues(t.nonrigid_count, nonrigid=t.nonrigid_excess * 1.5, motion=0.2)
    below = _cues(10, nonrigid=t.nonrigid_excess * 0.9, motion=0.2)
    assert "local motion" not in verdict(below + over[:-1]).cues
    # Shown, but a bent print can fake it: alone it is not enough.
    alone = verdict(below + over)
    assert alone.cues == ("local motion",) and not alone.live
    sharp = _cues(t.texture_min_samples, texture=t.texture + 0.2)
    assert judge(below + over + sharp) == "local motion + texture"


def test_texture_is_read_from_still_samples_only_and_is_not_enough_alone():
    t = Thresholds()
    sharp_moving = _cues(10, texture=t.texture * 2, motion=core_liveness.STILL * 2)
    assert "texture" not in verdict(sharp_moving).cues
    assert verdict(_cues(t.texture_min_samples, texture=t.texture * 1.1)).cues == ("texture",)
    assert judge(_cues(t.texture_min_samples, texture=t.texture * 1.1)) is None
    assert verdict(_cues(t.texture_min_samples - 1, texture=t.texture * 1.1)).cues == ()
    # The first sample has no motion to compare: not known to be still.
    assert verdict(_cues(t.texture_min_samples, texture=t.texture * 1.1, motion=None)).cues == ()


def test_a_surround_that_moves_with_the_face_counts_against_life():
    t = Thresholds()
    cues = _cues(10)
    cues[6] = replace(cues[6], ear=0.08)
    assert judge(cues) == "blink"
    framed = [replace(c, surround=t.surround + 0.1) if i < t.surround_count else c for i, c in enumerate(cues)]
    v = verdict(framed)
    assert not v.live and v.cues == ("blink", "surround")
    assert v.reason(20.0) == "spoof: surround moves with the face, shown: blink"
    # Once too few samples show it, it is noise.
    assert judge(framed[1:]) == "blink"
    # Eyes and the other cues together outweigh it.
    both = [replace(c, gaze=(0.5 + 3 * t.gaze_shift, 0.0, 0.5, 0.0)) if i in (1, 3, 5) else c for i, c in enumerate(framed)]
    assert judge(both) == "blink + gaze"


def test_the_reasons_say_what_counted():
    assert verdict(_cues(40)).reason(20.0) == "spoof: no eye movement in 20 s"
    assert verdict(_cues(1)).reason(0.0) == "spoof: no eye movement yet"
    cues = _cues(10)
    cues[6] = replace(cues[6], ear=0.08)
    assert verdict(cues).reason(2.5) == "live: blink"


def test_the_optional_model_must_agree():
    showing_life = _cues(6)
    showing_life[4] = replace(showing_life[4], ear=0.05)
    assert judge([replace(c, model=0.9) for c in showing_life]) == "blink + model"
    # The model alone proves nothing; the model disagreeing vetoes the cue.
    assert judge(_cues(6, model=0.99)) is None
    vetoed = verdict([replace(c, model=0.2) for c in showing_life])
    assert not vetoed.live and vetoed.reason(20.0) == "spoof: the anti-spoofing model disagreed, shown: blink"
    # Too few model opinions yet: pending.
    assert judge([replace(c, model=0.9 if i >= 4 else None) for i, c in enumerate(showing_life)]) is None


def test_judge_keeps_nothing_between_windows():
    alive, still = _cues(8), _cues(8)
    alive[6] = replace(alive[6], ear=0.08)
    assert judge(alive) == "blink" and judge(still) is None
    # A live window judged just before does not make a still one live, nor the other way round.
    assert judge(alive) == "blink" and judge(still) is None


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
    assert tracker.reason is not None and tracker.reason.startswith("live: "), tracker.reason
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
    commands, from three frames of their live clip. The events, and the liveness reasons hooks were
    given, are read from a hook's log; the event log's records beside them."""
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
        (hooks / event).write_text(f'#!/bin/sh\necho "$FACEWARDEN_EVENT $FACEWARDEN_TIME $FACEWARDEN_LIVENESS" >> "{log}"\n')
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
    hooked = [line.split(" ", 2) for line in log.read_text().splitlines()] if log.exists() else []
    records = [json.loads(line) for line in (home / "state" / "events.jsonl").read_text().splitlines()]
    return hooked, records


def test_daemon_refuses_the_photo_and_accepts_the_person(daemon_run):
    events = [event for event, *_ in daemon_run[0]]
    assert "spoof_suspected" in events, events
    assert "owner_arrived" in events, events
    # The photo came first: it was held as pending, then called a spoof, and never let in.
    assert events.index("spoof_suspected") < events.index("owner_arrived"), events
    assert events.count("owner_arrived") == 1, events


def test_the_daemon_says_why_in_its_event_log_and_to_hooks(daemon_run):
    hooked, records = daemon_run
    why = {event: reason for event, _, reason in hooked}
    assert why["spoof_suspected"].startswith("spoof: "), why
    assert why["owner_arrived"].startswith("live: "), why
    assert why.get("locked", "") == "", "only owner_arrived and spoof_suspected carry a reason"
    logged = {r["event"]: r.get("liveness") for r in records}
    assert logged["spoof_suspected"] == why["spoof_suspected"]
    assert logged["owner_arrived"] == why["owner_arrived"]


def test_status_says_why():
    from facewarden.cli.daemon_commands import format_status

    status = {"state": "pending", "since": 0.0, "paused_until": None, "locked": False, "camera": "ok",
              "faces": 1, "score": 0.7, "liveness": "spoof: no eye movement in 6 s"}
    assert "liveness: spoof: no eye movement in 6 s" in format_status(status).splitlines()


def test_a_missing_model_file_stops_the_tracker_with_a_clear_error(tmp_path, landmarker):
    with pytest.raises(UserError, match="liveness.model_path"):
        LivenessTracker(Liveness(model_path=tmp_path / "2.7_80x80_MiniFASNetV2.onnx"), landmarker)
