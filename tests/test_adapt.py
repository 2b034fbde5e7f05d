"""Templates that keep up: which frames a track yields (pure), which of them become templates, and
for real (LFW through the real detector, model and `train`): an owner enrolled from his earliest photos
learns his later looks from his own track, while a stranger who sits down after the owner left,
or in the owner's place, teaches it nothing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from facewarden import paths
from facewarden.cli.demo import compose
from facewarden.config import Config
from facewarden.core.adapt_track import FLOOR, FLOOR_GREY, MAX_ADDED, MAX_UNVERIFIED, NOVELTY, SAME_LOOK, Track, look
from facewarden.core.observation import Face, FaceVerdict, Observation
from facewarden.model import adapt, enroll
from facewarden.model import train as training
from facewarden.recognition import vision
from facewarden.recognition.verifier import Verifier



def pattern(a: float, b: float, tint: tuple[float, float, float]) -> np.ndarray:
    """A face's look, for the pure tests: stripes of one direction (what `look` tells apart)."""
    y, x = np.mgrid[0:112, 0:112]
    wave = 128 + 100 * np.sin(a * x + b * y) * np.cos(0.05 * (x + y))
    return np.clip(wave[..., None] * np.array(tint), 0, 255).astype(np.uint8)


OWNER_LOOK, OTHER_LOOK, GREY_LOOK = 0, 1, 2
LOOKS = np.stack([pattern(0.3, 0.1, (1.0, 0.8, 0.6)), pattern(0.1, -0.3, (1.0, 0.8, 0.6)),
                  pattern(0.3, 0.1, (0.9, 0.9, 0.9))])  # the owner, a look-alike, the owner in grey (IR)


def verdict(x: float, score: float, owner: bool = False, person: str | None = None, looks: int = OWNER_LOOK,
            width: float = 120.0) -> FaceVerdict:
    landmarks = np.full((5, 2), looks, np.float32)  # which look its crop has
    face = Face((x, 100.0, width, 150.0), landmarks, 0.9)
    return FaceVerdict(face, score, owner, person if person or not owner else "owner")


def seen(*faces: FaceVerdict) -> Observation:
    return Observation(tuple(faces))


def crop(face: Face) -> np.ndarray:
    image = LOOKS[int(face.landmarks[0, 0])].copy()
    image[0, 0] = int(face.box[0]) % 256  # which frame it was, by its x: a pixel does not change the look
    return image


def feed(track: Track, frames: list[tuple[Observation, bool | None]]) -> list[tuple[str, int]]:
    out = []
    for observation, live in frames:
        out += [(person, int(c[0, 0, 0])) for person, c in track.update(observation, live, crop)]
    return out


def test_frames_between_two_verified_frames_of_one_track_are_taken():
    hard = 0.42  # below the threshold, above the floor: the side light the model does not know yet
    frames = [(seen(verdict(100, 0.8, True)), True), (seen(verdict(104, hard)), None),
              (seen(verdict(108, hard)), None), (seen(verdict(112, 0.9)), None),  # 0.9: nothing new
              (seen(verdict(110, 0.6, True)), True)]
    assert feed(Track(), frames) == [("owner", 104), ("owner", 108), ("owner", 110)]
    assert FLOOR < hard < NOVELTY


def test_a_stranger_sitting_down_after_the_owner_left_teaches_nothing():
    track = Track()
    frames = [(seen(verdict(100, 0.8, True)), True), (seen(), None)]  # the owner leaves
    frames += [(seen(verdict(100, 0.38)), None)] * 20  # a stranger, in the same place
    frames += [(seen(verdict(100, 0.8, True)), True)]  # the owner is back later
    assert feed(track, frames) == []


def test_a_stranger_taking_the_owners_place_between_two_samples_teaches_nothing():
    frames = [(seen(verdict(100, 0.8, True)), True)]
    frames += [(seen(verdict(102, 0.38)), None)] * (MAX_UNVERIFIED + 1)  # never verified again
    frames += [(seen(verdict(100, 0.6, True)), True)]
    assert feed(Track(), frames) == [("owner", 100)]  # only the owner's own verified frame


def test_a_verdict_the_tracker_carried_verifies_nothing_and_offers_nothing():
    """A tracked sample's verdict is the model's word on an earlier frame: it continues the track,
    but its face is neither a verification nor a candidate (its score is not this face's)."""
    carried = replace(verdict(104, 0.6, True), tracked=True)  # a wanted score, were it this face's
    frames = [(seen(verdict(100, 0.8, True)), True), (seen(carried), True), (seen(verdict(108, 0.6, True)), True)]
    assert feed(Track(), frames) == [("owner", 108)]


def test_never_a_second_face_nor_an_unclear_frame():
    beside = verdict(400, 0.4)  # someone else, in the frame the whole time
    frames = [(seen(verdict(100, 0.8, True), beside), True), (seen(verdict(102, 0.4), beside), None),
              (seen(verdict(104, 0.6, True), beside), True)]
    assert feed(Track(), frames) == [("owner", 102), ("owner", 104)]
    # A frame not judged (dark) or two faces on the track end it: what was pending is dropped.
    for gap in (Observation(skipped="dark"), seen(verdict(100, 0.4), verdict(110, 0.4))):
        frames = [(seen(verdict(100, 0.8, True)), True), (seen(verdict(102, 0.4)), None), (gap, None),
                  (seen(verdict(104, 0.8, True)), True)]
        assert feed(Track(), frames) == []
    # Another enrolled person on the track: not this person's face.
    frames = [(seen(verdict(100, 0.8, True, "alice")), True), (seen(verdict(102, 0.5, person="bob")), None),
              (seen(verdict(104, 0.8, True, "alice")), True)]
    assert feed(Track(), frames) == []


def test_look_tells_a_cut_from_a_dimmer_light():
    owner = look(LOOKS[OWNER_LOOK])
    assert float(owner @ look((LOOKS[OWNER_LOOK] * 0.4).astype(np.uint8))) > 0.99  # the same face, dimmer
    assert float(owner @ look(LOOKS[OTHER_LOOK])) < SAME_LOOK


def test_a_look_alike_cut_into_the_owners_place_teaches_nothing():
    """Issue 23: the owner, a look-alike in his place for a few samples (above even the new floor),
    the owner again: the cut in the look ends the track, and nothing of the look-alike is kept."""
    frames = [(seen(verdict(100, 0.8, True)), True)]
    frames += [(seen(verdict(102, 0.43, looks=OTHER_LOOK)), None)] * 3
    frames += [(seen(verdict(100, 0.8, True)), True)]
    assert feed(Track(), frames) == []
    # The same frames from the owner himself are kept: it is the cut that stops them.
    frames = [(seen(verdict(100, 0.8, True)), True), *[(seen(verdict(102, 0.43)), None)] * 3,
              (seen(verdict(100, 0.8, True)), True)]
    assert feed(Track(), frames) == [("owner", 102)] * 3


def test_never_from_the_band_where_strangers_are_common():
    def between(score: float, looks: int = OWNER_LOOK) -> list[tuple[str, int]]:
        return feed(Track(), [(seen(verdict(100, 0.8, True)), True), (seen(verdict(102, score, looks=looks)), None),
                              (seen(verdict(100, 0.8, True)), True)])

    assert FLOOR >= 0.40 and FLOOR_GREY >= 0.43  # the 99.9th percentile of strangers' scores
    assert between(0.38) == [] and between(FLOOR - 0.01) == [] and between(FLOOR) == [("owner", 102)]
    assert between(FLOOR_GREY - 0.01, GREY_LOOK) == [] and between(FLOOR_GREY, GREY_LOOK) == [("owner", 102)]


def test_a_jump_a_resize_or_a_missed_detection_ends_the_track():
    for gap in (verdict(100 + 70, 0.42),  # moved most of a face's width in one sample
                verdict(102, 0.42, width=160.0)):  # a third larger in one sample
        frames = [(seen(verdict(100, 0.8, True)), True), (seen(verdict(102, 0.42)), None), (seen(gap), None),
                  (seen(verdict(102, 0.8, True)), True)]
        assert feed(Track(), frames) == []
    frames = [(seen(verdict(100, 0.8, True)), True), (seen(verdict(102, 0.42)), None), (seen(), None),
              (seen(verdict(102, 0.42)), None), (seen(verdict(102, 0.8, True)), True)]
    assert feed(Track(), frames) == []


def unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def test_select_takes_new_faces_of_the_person_and_keeps_the_newest():
    enrolled = np.stack([unit([1, 0, 0])])
    same = unit([1, 0.2, 0])  # cosine 0.98: nothing new
    new = unit([1, 1.5, 0])  # cosine 0.55: new, and theirs
    other = unit([0, 0, 1])  # cosine 0: someone else
    assert adapt.select(enrolled, np.stack([same, new, other])) == [1]
    assert adapt.select(enrolled, np.stack([new, new])) == [0]  # once added, a copy of it is nothing new
    # 30 new faces, each new to the others too: the bank keeps the newest MAX_ADDED.
    basis = np.eye(40)
    offered = np.stack([unit(basis[0] + 1.2 * basis[k]) for k in range(1, 31)])
    assert adapt.select(np.stack([basis[0]]), offered) == list(range(30 - MAX_ADDED, 30))


# --- real faces ----------------------------------------------------------------------------------

BLAIR = "Tony_Blair"


@pytest.fixture(scope="module")
def owner_home(lfw, tmp_path_factory):
    """LFW's Tony Blair enrolled from his 5 earliest photos and trained, adaptation on."""
    home = tmp_path_factory.mktemp("adapt")
    (home / "config.toml").write_text("[adapt]\nenabled = true\n[liveness]\nenabled = false\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEWARDEN_HOME", str(home))
        p = paths.paths()
        files = [lfw / BLAIR / f"{BLAIR}_{i:04d}.jpg" for i in range(1, 6)]
        assert enroll.enroll_files(files, p, vision.Detector(640)).added
        before = training.train(p, say=lambda _: None, verbose=0)
    return p, before


def scene(image: np.ndarray) -> np.ndarray:
    return compose([image], np.full((480, 640, 3), 120, np.uint8))


def test_the_owners_track_teaches_their_later_looks_and_a_stranger_after_them_nothing(owner_home, lfw, monkeypatch):
    p, before = owner_home
    monkeypatch.setenv("FACEWARDEN_HOME", str(p.data_dir))
    verifier = Verifier.from_config(Config(), p)
    later = [vision.read_image(lfw / BLAIR / f"{BLAIR}_{i:04d}.jpg") for i in range(6, 26)]
    strangers = [vision.read_image(f) for f in sorted(lfw.glob("*/*_0001.jpg"))[:20]]
    track = Track()
    # The owner's session (his later photos, one per sample, where he sits), an empty desk, then
    # strangers in his place: everything through the daemon's own verifier.
    for image in later + [np.full((250, 250, 3), 120, np.uint8)] + strangers:
        frame = scene(image)
        observation = verifier.observe(frame)
        live = True if observation.owner_face is not None else None  # liveness off in this test
        for person, c in track.update(observation, live, lambda f, frame=frame: vision.align(frame, f)):
            adapt.store(p, person, c)
    offered = adapt.candidates(p, "owner")
    assert offered, "the owner's own track offered nothing"
    # Only the owner's frames were offered: each stored crop is one of his.
    own = [vision.align(scene(i), f) for i in later for f in verifier.detector(scene(i))]
    assert all(min(np.abs(s.astype(int) - o.astype(int)).mean() for o in own) < 1
               for s in enroll.load_crops(offered))

    after = training.train(p, say=lambda _: None, verbose=0)
    assert (after["threshold"], after["threshold_grey"]) == (before["threshold"], before["threshold_grey"])
    assert 0 < after["adapted_per_person"]["owner"] <= len(offered)
    assert len(adapt.candidates(p, "owner")) == after["adapted_per_person"]["owner"]  # the bank, no more
    adapted = Verifier.from_config(Config(), p)
    probes = [vision.read_image(lfw / BLAIR / f"{BLAIR}_{i:04d}.jpg") for i in range(26, 41)]
    old = [verifier.score_image(i).score for i in probes]
    new = [adapted.score_image(i).score for i in probes]
    # No probe loses more than noise: the short fit's path moves with the crops' last bits (a detector
    # 1e-5 px apart moved this probe's change from -0.0005 to -0.0013), the owner's threshold is 0.45.
    assert min(n - o for n, o in zip(new, old)) > -5e-3 and sum(new) > sum(old)
    assert sum(adapted.score_image(i).owner for i in probes) >= sum(verifier.score_image(i).owner for i in probes)
    world = [vision.read_image(f) for f in sorted(lfw.glob("*/*_0001.jpg"))[20:420]]
    assert [i for i, image in enumerate(world) if (v := adapted.score_image(image)) and v.owner] == []


def test_a_look_alike_swapped_into_the_owners_track_is_never_kept(owner_home, lfw, monkeypatch):
    """Issue 23 for real: the owner's track cut to each of the strangers who score highest against
    his model (yet under the threshold) for three samples, and back to him: none of them is kept."""
    p, _ = owner_home
    monkeypatch.setenv("FACEWARDEN_HOME", str(p.data_dir))
    verifier = Verifier.from_config(Config(), p)
    owner = [scene(vision.read_image(lfw / BLAIR / f"{BLAIR}_{i:04d}.jpg")) for i in range(6, 14)]
    world = [scene(vision.read_image(f)) for f in sorted(lfw.glob("*/*_0001.jpg"))[20:420]]
    scored = [(v.score, i) for i, frame in enumerate(world) if (v := verifier.observe(frame).owner_face or
                                                               _only(verifier.observe(frame))) and not v.owner]
    alike = [world[i] for s, i in sorted(scored, reverse=True)[:5]]
    assert sorted(scored, reverse=True)[0][0] >= 0.30, "no look-alike in the old floor's band to try"
    for stranger in alike:
        adapt.forget(p, "owner")
        track = Track()
        for frame in owner[:4] + [stranger] * 3 + owner[4:]:
            observation = verifier.observe(frame)
            live = True if observation.owner_face is not None else None
            for person, c in track.update(observation, live, lambda f, frame=frame: vision.align(frame, f)):
                adapt.store(p, person, c)
        theirs = [vision.align(stranger, f) for f in verifier.detector(stranger)]
        kept = enroll.load_crops(adapt.candidates(p, "owner"))
        assert not any(np.abs(k.astype(int) - t.astype(int)).mean() < 1 for k in kept for t in theirs)
    adapt.forget(p, "owner")


def _only(observation: Observation) -> FaceVerdict | None:
    return observation.faces[0] if len(observation.faces) == 1 and observation.faces[0].score is not None else None
