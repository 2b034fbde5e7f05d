"""Tracking: a verified face keeps its verdict without the encoder while it stays and looks the same;
a stranger cut in for it, a new face, a dark frame or the re-verify period make the model judge again;
a still scene is not scanned again for nothing; a face that proved life is searched coarser.
Real faces through the real detector, the real owner model (the astronaut) and real strangers (LFW, NUAA)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facewarden.cli.demo import compose, in_place_of
from facewarden.config import Config, LivenessConfig
from facewarden.core.adapt_track import overlap
from facewarden.core.observation import Face, FaceVerdict
from facewarden.paths import paths
from facewarden.recognition import tracking, vision
from facewarden.recognition.liveness import LivenessTracker
from facewarden.recognition.verifier import Verifier
from facewarden.service.sampler import Observer
from facewarden.core.onlooker import Reach, yaw

GREY = np.full((480, 640, 3), 120, np.uint8)


@pytest.fixture
def verifier(owner_home) -> Verifier:
    return Verifier.from_config(Config(), paths())


def counted(verifier: Verifier) -> list[Face]:
    """The faces the model judges from now on (the tracker's calls of the encoder)."""
    judged: list[Face] = []

    def judge(frame: np.ndarray, face: Face) -> FaceVerdict:
        judged.append(face)
        return verifier.judge(frame, face)

    verifier.tracker.judge = judge
    return judged


def scans(verifier: Verifier) -> list[float]:
    """The frames the detector scans whole from now on (their mean level, to tell them apart)."""
    scanned: list[float] = []
    detector = verifier.tracker.detector

    class Counting(type(detector)):  # the same detector, its full scans counted
        def __call__(self, frame):
            scanned.append(float(frame.mean()))
            return super().__call__(frame)

    detector.__class__ = Counting
    return scanned


def shifted(frame: np.ndarray, dx: int, dy: int = 0) -> np.ndarray:
    """The frame moved by a few pixels: a person at the desk between two samples."""
    return cv2.warpAffine(frame, np.float32([[1, 0, dx], [0, 1, dy]]), (frame.shape[1], frame.shape[0]),
                          borderMode=cv2.BORDER_REPLICATE)


def owner_frame(astronaut_bgr: np.ndarray) -> np.ndarray:
    return compose([astronaut_bgr], GREY)


def test_the_owner_keeps_the_verdict_without_the_model_until_the_reverify_period(verifier, astronaut_bgr):
    frame = owner_frame(astronaut_bgr)
    judged = counted(verifier)
    regions: list[float] = []
    around = verifier.detector.around
    verifier.detector.around = lambda frame, box: regions.append(now) or around(frame, box)
    seen = []
    for t in range(12):
        now = float(t)
        seen.append(verifier.observe(shifted(frame, dx=2 * (t % 2)), now))
    assert all(s.owner_face is not None for s in seen)
    # Judged at 0 s, then followed: at 5 s and 10 s (reverify_s) the model looks again.
    assert [t for t, s in enumerate(seen) if not s.owner_face.tracked] == [0, 5, 10]
    assert len(judged) == 3
    # Found by its look where it was in between; as the scene around it is looked at (every
    # full_scan_s, 2 s) and as the model judges it again it is still where the detector put it (2 px
    # of jitter): the detector never searches its region.
    assert regions == []
    # A dark frame breaks the track: the next sample is judged in full.
    assert verifier.observe(np.full_like(frame, 5), 12.0).skipped == "dark"
    assert not verifier.observe(frame, 13.0).owner_face.tracked
    # So does a clock that went back (a replay restarted), and a jump across the frame.
    assert not verifier.observe(frame, 1.0).owner_face.tracked
    assert verifier.observe(frame, 2.0).owner_face.tracked
    assert not verifier.observe(shifted(frame, dx=150), 3.0).owner_face.tracked


def test_a_face_that_drifts_is_searched_for_as_the_scene_is_looked_at(owner_home, astronaut_bgr):
    """A face that has not moved from where the detector last put it is not searched for as the scene
    is looked at; one that drifts, however slowly (each look matches the one a second before), is: its
    box keeps up with the face, as the lock's absence timer and the look-away dim need."""
    config = Config.model_validate({"sampling": {"reverify_s": 100.0}})  # no re-verification to move the box
    verifier = Verifier.from_config(config, paths())
    frame = owner_frame(astronaut_bgr)
    x, y, w, h = (int(v) for v in verifier.detector(frame)[0].box)
    head = slice(y - h // 4, y + 3 * h // 2), slice(x - 2 * w // 5, x + 7 * w // 5)  # the room stays still
    regions: list[float] = []
    around = verifier.detector.around
    verifier.detector.around = lambda frame, box: regions.append(now) or around(frame, box)
    for t in range(25):
        now = float(t)
        drift = 3 * max(0, t - 8)  # still for 8 s, then 3 px a second to the right
        moved = frame.copy()
        moved[head] = shifted(frame, dx=drift)[head]
        seen = verifier.observe(moved, now).owner_face
        assert seen is not None and (t == 0 or seen.tracked)
        where = verifier.detector(moved)[0].box  # where a full scan puts it now
        # Off by at most the drift since the last look at the scene (full_scan_s) and STILL.
        assert abs(seen.face.box[0] - where[0]) <= 3 * 2 + 6, f"{t} s: the box {seen.face.box[0] - where[0]:.0f} px off"
    assert [t for t in regions if t <= 8] == []
    assert len([t for t in regions if t > 8]) >= 6


def test_a_face_due_to_be_judged_again_is_searched_for_only_once_it_moved(owner_home, astronaut_bgr):
    """Re-verification of a face still where the detector last put it judges it there (its box and
    landmarks hold); once it moved, its region is searched first and it is judged where it is now."""
    config = Config.model_validate({"sampling": {"reverify_s": 2.5}})  # due at 3, 6, 9: 3 and 9 between looks
    verifier = Verifier.from_config(config, paths())
    frame = owner_frame(astronaut_bgr)
    first = verifier.detector(frame)[0]
    x, y, w, h = (int(v) for v in first.box)
    moved = frame.copy()
    head = slice(y - h // 4, y + 3 * h // 2), slice(x - 2 * w // 5, x + 7 * w // 5)
    moved[head] = shifted(frame, dx=w // 10)[head]  # a tenth of its width: no longer still
    judged: list[tuple[float, Face]] = []
    verifier.tracker.judge = lambda f, face: judged.append((now, face)) or verifier.judge(f, face)
    regions: list[float] = []
    around = verifier.detector.around
    verifier.detector.around = lambda f, box: regions.append(now) or around(f, box)
    for t in range(10):
        now = float(t)
        seen = verifier.observe(frame if t < 9 else moved, now).owner_face
        assert seen is not None and seen.owner
    assert [t for t, _ in judged] == [0.0, 3.0, 6.0, 9.0]
    assert [face.box for t, face in judged if t in (3.0, 6.0)] == [first.box, first.box]  # no search
    assert regions == [9.0]
    where = verifier.detector(moved)[0]
    assert abs(judged[-1][1].box[0] - where.box[0]) <= 3 and abs(judged[-1][1].box[0] - first.box[0]) >= w // 20


def test_the_dark_and_blur_check_reads_a_followed_face_and_else_the_whole_frame(verifier, astronaut_bgr):
    """While a face is followed, the frame's quality is read in its box: a face its screen still lights
    in a room gone dark keeps its track, and a face blurred in a sharp room breaks it. With no face
    followed, the whole frame is read."""
    frame = owner_frame(astronaut_bgr)
    x, y, w, h = (int(v) for v in verifier.detector(frame)[0].box)
    top, left, side = max(0, y - h // 4), max(0, x - w // 4), 3 * w // 2
    lit = np.zeros_like(frame)  # the room gone dark around the face (and its look's margin)
    lit[top:y + h + h // 4, left:left + side] = frame[top:y + h + h // 4, left:left + side]
    blurred = frame.copy()  # the face alone blurred (its box and a few pixels), the room as sharp as before
    blurred[y - 4:y + h + 4, x - 4:x + w + 4] = cv2.GaussianBlur(frame, (41, 41), 0)[y - 4:y + h + 4, x - 4:x + w + 4]
    thresholds = (verifier.quality.dark_threshold, verifier.quality.blur_threshold)
    assert vision.quality_issue(lit, *thresholds) == "dark"  # as a whole frame: too dark...
    assert vision.quality_issue(blurred, *thresholds) is None  # ...and sharp enough
    assert not verifier.observe(frame, 0.0).owner_face.tracked
    seen = verifier.observe(lit, 1.0)
    assert seen.skipped is None and seen.owner_face.tracked
    assert verifier.observe(blurred, 2.0).skipped == "blurry"
    assert verifier.observe(lit, 3.0).skipped == "dark"  # no face followed since: the frame is read
    assert not verifier.observe(frame, 4.0).owner_face.tracked


def test_a_stranger_cut_in_for_the_owner_in_the_same_place_is_judged_at_once(verifier, astronaut_bgr, lfw, nuaa):
    """LFW people and NUAA webcam subjects put where the owner sat, between two samples: every one is
    judged by the model at the first sample after the cut, and not taken for the owner."""
    frame = owner_frame(astronaut_bgr)
    owner = verifier.detector(frame)[0]
    images = [vision.read_image(p) for p in sorted(lfw.glob("*/*_0001.jpg"))[:40]]
    images += [vision.read_image(p) for p in sorted((nuaa / "sequences").glob("*_live/010.jpg"))]
    cuts = [cut for image in images if (cut := in_place_of(frame, owner, image, verifier.detector)) is not None]
    assert len(cuts) >= 40
    for i, cut in enumerate(cuts):
        t = 100.0 * i  # each cut on a fresh track: judged, then followed one sample, then the cut
        assert not verifier.observe(frame, t).owner_face.tracked
        assert verifier.observe(frame, t + 1).owner_face.tracked
        seen = verifier.observe(cut, t + 1.5)  # (found by its look alone at t + 1: no detector)
        assert seen.owner_face is None, f"cut {i} taken for the owner"
        # Judged by the model (an LFW photo may bring a bystander's face along): nobody enrolled.
        assert seen.faces and all(not f.tracked and f.person is None for f in seen.faces)


def test_a_new_face_elsewhere_is_seen_within_the_full_scan_period(verifier, astronaut_bgr, lfw):
    alone = compose([astronaut_bgr], GREY)
    together = alone.copy()  # a stranger comes in at the right, the owner stays where they were
    together[290:470, 450:630] = cv2.resize(vision.read_image(sorted(lfw.glob("*/*_0001.jpg"))[0]), (180, 180))
    owner = verifier.detector(alone)[0]
    assert verifier.detector.around(together, owner.box) == [owner] or len(verifier.detector.around(together, owner.box)) == 1
    assert len(verifier.detector(together)) == 2
    judged = counted(verifier)
    verifier.observe(alone, 0.0)
    verifier.observe(alone, 1.0)  # tracked: the region only
    # The stranger sits down; the owner is followed with the region until the full scan at 2 s.
    seen = {t: verifier.observe(together, t) for t in (1.5, 2.0, 2.5)}
    assert len(seen[1.5].faces) == 1
    assert len(seen[2.0].faces) == 2  # full_scan_s after the last full scan
    assert len(seen[2.5].faces) == 2  # and while another face is there every sample looks at all
    # The owner kept the track's verdict; only the stranger went through the model (once a sample).
    assert seen[2.0].owner_face.tracked and seen[2.5].owner_face.tracked
    assert len(judged) == 1 + 2
    assert all(f.person is None for s in (seen[2.0], seen[2.5]) for f in s.faces if not f.owner)


def test_the_track_follows_a_live_webcam_face_and_breaks_on_another_subject(nuaa):
    """The tracker alone on NUAA's live clips sampled once a second: a real face that moves is
    mostly followed, and each other subject cut in for it is judged at once."""
    detector = vision.Detector()
    judged: list[Face] = []

    def judge(frame: np.ndarray, face: Face) -> FaceVerdict:
        judged.append(face)
        return FaceVerdict(face, 0.9, True, "owner")  # everyone is "someone enrolled": only the track decides

    clips = sorted((nuaa / "sequences").glob("*_live"))
    others = [cv2.imread(str(c / "020.jpg")) for c in clips]
    followed = samples = 0
    for i, clip in enumerate(clips):
        frames = [cv2.imread(str(p)) for p in sorted(clip.glob("*.jpg"))][::5]  # 5 fps: one a second
        tracker = tracking.Tracker(detector, judge, reverify_s=60.0, full_scan_s=2.0, min_score=0.6)
        for t, frame in enumerate(frames):
            before = len(judged)
            tracker.faces(frame, float(t))
            followed += len(judged) == before
            samples += 1
        face = detector(frames[-1])[0]
        for j, other in enumerate(others):
            if j != i and (cut := in_place_of(frames[-1], face, other, detector)) is not None:
                tracker.faces(frames[-1], 100.0 + 10 * j)
                tracker.faces(frames[-1], 101.0 + 10 * j)
                before = len(judged)
                tracker.faces(cut, 102.0 + 10 * j)
                assert len(judged) > before, f"{clips[j].name} cut in for {clip.name} kept the track"
    assert followed >= samples / 3


def test_region_detection_finds_the_face_the_full_scan_finds(astronaut_bgr, nuaa):
    detector = vision.Detector()
    for frame in (compose([astronaut_bgr], GREY), cv2.imread(str(nuaa / "sequences" / "0001_live" / "000.jpg")),
                  cv2.cvtColor(compose([astronaut_bgr], GREY), cv2.COLOR_BGR2GRAY)):
        full = detector(frame)[0]
        (near,) = detector.around(frame, full.box)
        # At another scale YuNet places the box and the points a little differently.
        assert np.abs(np.subtract(full.box, near.box)).max() < full.box[2] / 4
        assert np.abs(full.landmarks - near.landmarks).max() < full.box[2] / 8
        assert detector.around(frame, (0.0, 0.0, 60.0, 60.0)) == []  # a corner with no face


def test_a_look_change_is_judged_on_the_spot_without_a_full_scan(verifier, astronaut_bgr):
    frame = owner_frame(astronaut_bgr)
    owner = verifier.detector(frame)[0]
    verifier.observe(frame, 0.0)
    judged, scanned = counted(verifier), scans(verifier)
    # A shadow falls across the face (a lamp switched on at one side): the same face, another look.
    x, y, w, h = (int(v) for v in owner.box)
    darker = frame.copy()
    ramp = np.linspace(0.35, 1.0, w, dtype=np.float32)[None, :, None]
    darker[y:y + h, x:x + w] = (frame[y:y + h, x:x + w] * ramp).astype(np.uint8)
    seen = verifier.observe(darker, 1.0)
    assert seen.owner_face is not None and not seen.owner_face.tracked  # the model judged it...
    assert len(judged) == 1 and scanned == []  # ...where it was, and the frame was not scanned for it
    assert verifier.observe(darker, 2.0).owner_face.tracked  # its new look is followed from there
    # The shadow goes (the lamp off again): a look of a few samples ago, the model's own, still holds.
    assert verifier.observe(frame, 3.0).owner_face.tracked and len(judged) == 1
    # Back after the re-verification (5 s on) too: the same person judged in place keeps their looks.
    assert not verifier.observe(darker, 6.5).owner_face.tracked and len(judged) == 2
    assert verifier.observe(frame, 7.0).owner_face.tracked and len(judged) == 2


def test_a_still_scene_is_not_scanned_again_but_a_face_coming_into_view_is(verifier, astronaut_bgr, lfw):
    frame = owner_frame(astronaut_bgr)
    verifier.observe(frame, 0.0)
    scanned = scans(verifier)
    searched: list[tuple[int, int, int, int]] = []
    within = verifier.detector.within
    verifier.detector.within = lambda frame, region: searched.append(region) or within(frame, region)
    for t in range(1, 12):  # a still scene: past full_scan_s (2 s), nothing new to find
        assert verifier.observe(frame, float(t)).owner_face is not None
    assert scanned == [] and searched == []  # (the re-verifications at 5 and 10 s judged the face where it was)
    verifier.observe(frame, tracking.FULL_SCAN_MAX_S + 0.5)  # all the same, now and then
    assert len(scanned) == 1
    # The light changes as a whole (auto-exposure): nothing new either.
    brighter = cv2.convertScaleAbs(frame, alpha=1.0, beta=20)
    verifier.observe(brighter, tracking.FULL_SCAN_MAX_S + 3.0)
    assert len(scanned) == 1 and searched == []
    # Something with no face comes into view at the edge, far from the face: its part is searched, not the frame.
    edge = brighter.copy()
    edge[100:180, 10:70] = 240
    assert verifier.observe(edge, tracking.FULL_SCAN_MAX_S + 4.0).owner_face.tracked  # followed by its look...
    assert searched == []  # ...the scene looked at full_scan_s after the last look
    verifier.observe(edge, tracking.FULL_SCAN_MAX_S + 5.0)
    assert len(scanned) == 1 and len(searched) == 1
    x0, y0, x1, y1 = searched[0]
    assert x0 <= 10 and y0 <= 100 and x1 >= 70 and y1 >= 180 and (x1 - x0) * (y1 - y0) < 0.2 * 640 * 480
    # Someone comes into view there: the part is searched, they are found and the whole frame is scanned.
    face = edge.copy()
    face[60:180, 10:130] = cv2.resize(vision.read_image(sorted(lfw.glob("*/*_0001.jpg"))[0])[60:190, 60:190], (120, 120))
    seen = verifier.observe(face, tracking.FULL_SCAN_MAX_S + 7.0)
    assert len(scanned) == 2 and len(searched) == 2 and len(seen.faces) == 2


def test_the_scene_sees_a_small_face_come_in_beside_the_owner(astronaut_bgr, lfw):
    """Someone coming into view beside the followed face, down to 40 px (an onlooker a few metres
    back), changes the scene; the followed face's own head and shoulders do not."""
    frame = owner_frame(astronaut_bgr)
    detector = vision.Detector()
    owner = detector(frame)[0]
    stranger = vision.read_image(sorted(lfw.glob("*/*_0001.jpg"))[3])
    x, y, w, h = (int(v) for v in owner.box)
    for side in (40, 80, 120):
        scene = tracking.Scene()
        scene.scanned(frame, [owner])
        moved = frame.copy()  # the owner's own head turns and shoulders move
        moved[y:, max(0, x - w // 4):x + w + w // 4] = np.roll(frame[y:, max(0, x - w // 4):x + w + w // 4], 9, axis=1)
        assert not scene.changed(moved, owner)
        beside = moved.copy()
        left = max(0, x - w // 2 - side - 10)
        beside[y:y + side, left:left + side] = cv2.resize(stranger[60:190, 60:190], (side, side))
        region = scene.changed(beside, owner)
        assert region, f"a {side} px face beside the owner"
        x0, y0, x1, y1 = region
        assert x0 <= left and y0 <= y and x1 >= left + side and y1 >= y + side, "the changed part holds the face"
        # Searched there, it is seen as the whole frame's scan sees it.
        newcomers = [f for f in detector(beside) if not overlap(f.box, owner.box)]
        found = detector.within(beside, region)
        assert len(found) == len(newcomers) and all(overlap(a.box, b.box) > 0.8 for a, b in zip(found, newcomers))


def test_a_face_proving_life_is_scanned_for_and_followed_in_its_region_after(owner_home, nuaa):
    """Observer + verifier + the real liveness tracker on a live webcam clip: while the face proves
    life (its landmarks' motion is evidence) every sample scans the whole frame, so its landmarks are
    where a full scan puts them; once it has, it is followed in its region."""
    clip = [cv2.imread(str(p)) for p in sorted((nuaa / "sequences" / "0008_live").glob("*.jpg"))]
    verifier = Verifier.from_config(Config(), paths())
    verifier.judge = lambda frame, face: FaceVerdict(face, 0.9, True, "owner")  # the clip's subject is the owner
    verifier.tracker.judge = verifier.judge
    regions: list[bool | None] = []  # liveness as each region search came
    around = verifier.detector.around

    def recording(frame, box):
        regions.append(live)
        return around(frame, box)

    verifier.detector.around = recording
    observer = Observer(verifier.observe, LivenessTracker(LivenessConfig()), Reach(0.3, 0.6))
    live, lives = None, []
    for i, frame in enumerate(clip * 2):
        live = observer.observe(frame, i / 5.0).sample.live
        lives.append(live)
    assert lives[0] is None and live is True
    assert regions and set(regions) == {True}  # no region while proving; regions after


def test_an_empty_scene_is_scanned_again_only_when_it_changes(verifier, astronaut_bgr):
    empty = GREY.copy()
    empty[300:400, 50:200] = 60  # a desk in the room
    verifier.observe(empty, 0.0)
    scanned = scans(verifier)
    noise = np.random.default_rng(1)
    for t in range(1, 6):  # nobody, and a camera's noise: nothing to scan for
        frame = np.clip(empty + noise.normal(0, 3, empty.shape), 0, 255).astype(np.uint8)
        assert verifier.observe(frame, float(t)).faces == ()
    assert scanned == []
    arrived = compose([astronaut_bgr], empty)  # the owner sits down: seen at this very sample
    assert verifier.observe(arrived, 6.0).owner_face is not None and len(scanned) == 1


def test_a_turning_owner_is_measured_by_full_scans(verifier, astronaut_bgr):
    """Past `core.attention.turning`, the owner's next sample scans the whole frame: a region's
    landmarks read the yaw a few hundredths off, enough to miss attention.max_yaw."""
    frame = owner_frame(astronaut_bgr)
    owner = verifier.detector(frame)[0]
    asked: list[bool] = []

    def recording(frame, now, precise):
        asked.append(precise)
        return verifier.observe(frame, now, precise)

    for limit, expected in ((yaw(owner) + 0.1, [False] * 4), (yaw(owner) - 0.1, [False, True, True, True])):
        asked.clear()
        observer = Observer(recording, None, Reach(0.3, 0.6), limit)
        for t in range(4):
            assert observer.observe(frame, 100.0 * limit + t).sample.owner
        assert asked == expected
