"""Several people in one model, on real faces through the real detector and model: the owner (NUAA
0001, enrolled from office webcam frames with a colleague in the background), alice (LFW's Tony
Blair, role owner) and bob (ORL s1, trusted), enrolled and trained once for the module with the real
`enroll` and `train`. Then who each face is, strangers as nobody, roles, onlookers that matter, and
the people commands' CLI contract. Needs ../shared (skips with a reason without it), except the
pure geometry at the end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facewarden import paths
from facewarden.cli.demo import compose
from facewarden.config import parse
from facewarden.core.observation import Face
from facewarden.core.onlooker import Reach, can_read_screen, yaw
from facewarden.core.presence import Sample
from facewarden.errors import UserError
from facewarden.model import enroll
from facewarden.model import train as training
from facewarden.model.evaluate import STILL_DETECT_WIDTH
from facewarden.recognition import ownerfile, runtime, vision
from facewarden.recognition.verifier import Verifier
from support import cli
from test_cli_owner import one_clear_line

ROLES = '[people]\nroles = { alice = "owner", bob = "trusted" }\n'
CONFIG = parse({"people": {"roles": {"alice": "owner", "bob": "trusted"}}})
BLAIR = "Tony_Blair"


@pytest.fixture(scope="module")
def household(nuaa, lfw, orl, tmp_path_factory):
    """(paths, {person: enroll result}, meta): three people enrolled and trained for real."""
    home = tmp_path_factory.mktemp("household")
    (home / "config.toml").write_text(ROLES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEWARDEN_HOME", str(home))
        p = paths.paths()
        detector = vision.Detector(STILL_DETECT_WIDTH)
        sources = {
            "owner": [nuaa / "sequences" / "0001_live" / f"{i:03d}.jpg" for i in range(0, 10, 2)] +
                     [nuaa / "sequences" / "0001_live" / "001.jpg"],
            "alice": [lfw / BLAIR / f"{BLAIR}_{i:04d}.jpg" for i in range(1, 6)],
            "bob": [orl / "s1" / f"{i}.pgm" for i in range(1, 6)],
        }
        results = {person: enroll.enroll_files(files, p, detector, person) for person, files in sources.items()}
        meta = training.train(p, say=lambda _: None, verbose=0)
    return p, results, meta


def crop_of(image: np.ndarray) -> np.ndarray:
    detector = vision.Detector(STILL_DETECT_WIDTH)
    return vision.align(image, vision.nearest_centre(detector(image), image.shape))


def test_enrollment_layout_and_the_bystander_frame(household, nuaa):
    p, results, meta = household
    # The owner keeps enroll/ itself (where a one-person install has its faces); others get a folder.
    assert {f.parent for f in results["owner"].added} == {p.enroll_dir}
    assert {f.parent for f in results["bob"].added} == {p.enroll_dir / "bob"}
    assert list(enroll.people(p)) == ["owner", "alice", "bob"] == meta["people"]
    # 0001_live/001.jpg has a colleague far behind the subject: enrolled, the small face ignored.
    assert (str(nuaa / "sequences" / "0001_live" / "001.jpg"), 1) in results["owner"].ignored
    assert meta["enrolled_per_person"] == {person: len(r.added) for person, r in results.items()}


def test_one_score_per_person_in_h5_and_tflite(household, nuaa, lfw, orl, tmp_path):
    p, _, _ = household
    crops = np.stack([crop_of(vision.read_image(f)) for f in (
        nuaa / "sequences" / "0001_live" / "035.jpg", lfw / BLAIR / f"{BLAIR}_0020.jpg", orl / "s1" / "9.pgm",
        orl / "s2" / "1.pgm")]).astype(np.float32)
    np.save(tmp_path / "crops.npy", crops)
    # owner.h5 is plain Keras: another process loads it without facewarden and gets (N, people).
    code = (
        "import sys, numpy, keras\n"
        f"m = keras.models.load_model({str(ownerfile.model_dir(p) / 'owner.h5')!r}, compile=False)\n"
        f"numpy.save({str(tmp_path / 'out.npy')!r}, m.predict(numpy.load({str(tmp_path / 'crops.npy')!r}), verbose=0))\n"
        "assert not any(k.startswith('facewarden') for k in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    h5 = np.load(tmp_path / "out.npy")
    lite = runtime.load(ownerfile.model_dir(p) / "owner.tflite", threads=1)
    tfl = np.stack([lite(c[None])[0].reshape(-1) for c in crops])
    assert h5.shape == tfl.shape == (4, 3)
    np.testing.assert_allclose(h5, tfl, atol=0.02)  # owner.tflite's int8 weights (test_owner.INT8_WEIGHTS)
    # Each of the first three is its own person's best score by far; the stranger nobody's.
    assert list(h5[:3].argmax(1)) == [0, 1, 2]
    assert (h5[:3].max(1) > 0.6).all() and h5[3].max() < 0.3
    # The per-person maximum the layers compute is the max cosine over that person's templates.
    import keras

    model = keras.models.load_model(ownerfile.model_dir(p) / "owner.h5", compile=False)
    templates = training.person_templates(model)
    embedder = training.unit_embedding_model()
    emb = training.embed_batches(embedder, crops)
    np.testing.assert_allclose(np.einsum("nd,pgd->npg", emb, templates).max(2), h5, atol=1e-4)


def test_each_person_is_named_and_strangers_are_nobody(household, nuaa, lfw, orl):
    p, _, _ = household
    verifier = Verifier.from_config(CONFIG, p)
    assert verifier.people == ("owner", "alice", "bob") and verifier.owners == {"owner", "alice"}
    held_out = {
        "owner": [nuaa / "sequences" / "0001_live" / f"{i:03d}.jpg" for i in range(20, 40, 4)],
        "alice": [lfw / BLAIR / f"{BLAIR}_{i:04d}.jpg" for i in range(10, 16)],
        "bob": [orl / "s1" / f"{i}.pgm" for i in range(6, 11)],
    }
    for person, files in held_out.items():
        verdicts = [verifier.score_image(vision.read_image(f)) for f in files]
        assert [v.person for v in verdicts] == [person] * len(files), [v.score for v in verdicts]
        assert all(v.owner == (person != "bob") for v in verdicts)  # bob is trusted: never the owner
    strangers = [f for d in sorted(orl.iterdir()) if d.is_dir() and d.name != "s1" for f in sorted(d.glob("*.pgm"))]
    strangers += sorted(lfw.glob("*/*_0001.jpg"))[:300]
    named = [(f.name, v.person, v.score) for f in strangers
             if (v := verifier.score_image(vision.read_image(f))) is not None and v.person is not None]
    assert named == []


def test_trusted_faces_and_second_owners_are_never_onlookers(household, nuaa, lfw, orl):
    p, _, _ = household
    verifier = Verifier.from_config(CONFIG, p)
    reach = Reach(CONFIG.onlooker.min_relative_size, CONFIG.onlooker.max_yaw)
    owner = vision.read_image(nuaa / "live" / "0001_00_00_02_250.jpg")[60:440, 190:480]  # without the colleague
    background = np.full((480, 640, 3), 128, np.uint8)

    def colour(path: Path) -> np.ndarray:
        image = vision.read_image(path)
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image

    def beside(other: Path) -> Sample:
        return Sample.of(verifier.observe(compose([owner, colour(other)], background)), True, reach)

    bob = beside(orl / "s1" / "8.pgm")
    assert (bob.owner, bob.person, bob.known, bob.others, bob.onlookers) == (True, "owner", 1, 0, 0)
    alice = beside(lfw / BLAIR / f"{BLAIR}_0030.jpg")
    assert (alice.owner, alice.known, alice.onlookers) == (True, 1, 0)
    # A stranger as close and as frontal as the owner is still an onlooker.
    stranger = beside(orl / "s7" / "1.pgm")
    assert (stranger.owner, stranger.known, stranger.others, stranger.onlookers) == (True, 0, 1, 1)
    # bob alone at the keyboard: named, not a stranger, not the owner.
    alone = Sample.of(verifier.observe(compose([colour(orl / "s1" / "8.pgm")], background)), None, reach)
    assert (alone.owner, alone.person, alone.others, alone.known) == (False, "bob", 0, 1)


def test_a_colleague_in_the_office_background_is_not_an_onlooker(household, nuaa):
    """NUAA's office frame: a colleague at the next desk, at 0.38 of the owner's width, half turned."""
    p, _, _ = household
    verifier = Verifier.from_config(CONFIG, p)  # the daemon's detector, at 320 px
    seen = verifier.observe(vision.read_image(nuaa / "live" / "0001_00_00_02_250.jpg"))
    assert len(seen.faces) == 2 and seen.owner_face is not None and seen.owner_face.person == "owner"
    reach = Reach(CONFIG.onlooker.min_relative_size, CONFIG.onlooker.max_yaw)
    assert Sample.of(seen, True).onlookers == 1  # any second face: how it was before
    assert Sample.of(seen, True, reach).onlookers == 0
    assert Sample.of(seen, True, reach).others == 1  # still a stranger's face, were the owner gone


def test_people_forget_and_score_commands(household, nuaa, tmp_path):
    p, results, _ = household
    counts = {person: len(r.added) for person, r in results.items()}
    home = tmp_path / "home"
    shutil.copytree(p.data_dir, home, symlinks=True, ignore=shutil.ignore_patterns("cache", ".train-*"))
    listed = cli(home, "people")
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = [line.split()[:3] for line in listed.stdout.splitlines()[1:]]
    assert rows == [[n, role, str(counts[n])] for n, role in (("owner", "owner"), ("alice", "owner"), ("bob", "trusted"))]
    scored = cli(home, "score", str(nuaa / "sequences" / "0001_live" / "030.jpg"))
    line = json.loads(scored.stdout)
    assert scored.returncode == 0 and line["person"] == "owner" and line["owner"] is True
    one_clear_line(cli(home, "forget", "../etc"), "not a usable person name")
    one_clear_line(cli(home, "forget", "carol"), "nobody called 'carol' is enrolled")
    one_clear_line(cli(home, "enroll", "--person", "bad name", "--from", str(tmp_path)), "not a usable person name")
    forgot = cli(home, "forget", "bob")
    assert forgot.returncode == 0 and f"{counts['bob']} enrolled face(s) deleted" in forgot.stdout
    assert "facewarden train" in forgot.stdout
    assert not (home / "enroll" / "bob").exists() and len(list((home / "enroll").glob("*.png"))) == counts["owner"]
    after = cli(home, "people")
    assert [line.split()[0] for line in after.stdout.splitlines()[1:]] == ["owner", "alice"]
    # Forgetting the owner leaves the other people's folders alone.
    assert cli(home, "forget", "owner").returncode == 0
    assert list((home / "enroll").glob("*.png")) == []
    assert len(list((home / "enroll" / "alice").glob("*.png"))) == counts["alice"]


def test_model_history_and_rollback(household, tmp_path, monkeypatch):
    p, _, meta = household
    home = tmp_path / "home"
    shutil.copytree(p.models_dir, home / "models", symlinks=True)
    first = meta["version"]
    listed = cli(home, "model", "history")
    assert listed.returncode == 0 and listed.stdout.split()[:2] == ["*", first], listed.stdout
    assert "owner, alice, bob" in listed.stdout
    one_clear_line(cli(home, "model", "rollback"), "no earlier model version")
    # A second version (the same files republished), then back to the first.
    monkeypatch.setenv("FACEWARDEN_HOME", str(home))
    staged = home / "models" / ".staged"
    shutil.copytree(home / "models" / "versions" / first, staged)
    second = ownerfile.publish(paths.paths(), staged)
    assert ownerfile.current_version(paths.paths()) == second
    back = cli(home, "model", "rollback")
    assert back.returncode == 0 and f"model {first} is current (was {second})" in back.stdout, back.stderr
    assert ownerfile.current_version(paths.paths()) == first
    assert [line.split()[0] for line in cli(home, "model", "history").stdout.splitlines()] == ["*", second]  # first current, starred
    one_clear_line(cli(home, "model", "rollback", "0099-20260101T000000Z"), "no model version")
    assert cli(home, "model", "rollback", second).returncode == 0
    assert ownerfile.current_version(paths.paths()) == second


def test_training_names_the_person_with_too_few_faces(household, tmp_path, monkeypatch):
    p, _, _ = household
    home = tmp_path / "home"
    shutil.copytree(p.enroll_dir, home / "enroll")
    for f in sorted((home / "enroll" / "bob").glob("*.png"))[2:]:
        f.unlink()
    monkeypatch.setenv("FACEWARDEN_HOME", str(home))
    with pytest.raises(UserError, match="2 enrolled face.*of bob.*forget bob"):
        training.train(paths.paths(), say=lambda _: None, verbose=0)
    assert not (home / "models").exists() or not any((home / "models").iterdir())


# --- pure: no ../shared ------------------------------------------------------------------------


def face(x: float, w: float, landmarks=None, y: float = 100) -> Face:
    lm = np.array(landmarks if landmarks is not None else
                  [[x + 0.3 * w, y + 0.4 * w], [x + 0.7 * w, y + 0.4 * w], [x + 0.5 * w, y + 0.6 * w],
                   [x + 0.35 * w, y + 0.8 * w], [x + 0.65 * w, y + 0.8 * w]], np.float32)
    return Face((x, y, w, 1.2 * w), lm, 0.9)


def test_yaw_from_the_landmarks_ignores_size_and_head_tilt():
    frontal, far = face(200, 150), face(10, 30)
    assert yaw(frontal) == pytest.approx(0) and yaw(far) == pytest.approx(0)
    turned = face(200, 150)
    turned.landmarks[2, 0] += 0.2 * 60  # the nose 0.2 eye distances (60 px) towards one eye
    assert yaw(turned) == pytest.approx(0.2, abs=1e-3)
    angle = np.deg2rad(25)  # the same head, tilted: yaw unchanged
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    tilted = Face(turned.box, (turned.landmarks - 250) @ rot.T + 250, 0.9)
    assert yaw(tilted) == pytest.approx(0.2, abs=1e-3)


def test_onlooker_needs_to_be_close_and_turned_to_the_screen():
    owner, reach = face(250, 150), Reach(0.6, 0.3)
    assert can_read_screen(face(20, 120), owner, reach)
    assert not can_read_screen(face(20, 60), owner, reach)  # far behind
    aside = face(20, 120)
    aside.landmarks[2, 0] += 0.5 * 48  # half profile
    assert not can_read_screen(aside, owner, reach)


def test_dominant_face_only_when_clearly_larger_and_more_central():
    shape = (480, 640, 3)
    subject, small_corner = face(245, 150, y=150), face(560, 40, y=20)
    assert enroll.dominant_face([small_corner, subject], shape) is subject
    assert enroll.dominant_face([subject, face(40, 110, y=150)], shape) is None  # two at one desk
    assert enroll.dominant_face([face(0, 150, y=0), face(300, 60, y=200)], shape) is None  # big one off centre


def test_person_names_are_checked():
    assert enroll.check_name("alice") == "alice" and enroll.check_name("Bob-2_x") == "Bob-2_x"
    for bad in ("", "../x", ".hidden", "a b", "x" * 33, "-a"):
        with pytest.raises(UserError, match="not a usable person name"):
            enroll.check_name(bad)


def test_roles_in_the_config():
    from facewarden.config import ConfigError

    assert CONFIG.people.role("alice") == "owner" and CONFIG.people.role("bob") == "trusted"
    assert CONFIG.people.role("owner") == "owner" and CONFIG.people.role("carol") == "trusted"  # the defaults
    assert parse({"people": {"roles": {"owner": "trusted"}}}).people.role("owner") == "trusted"
    with pytest.raises(ConfigError, match="people.roles.bob"):
        parse({"people": {"roles": {"bob": "admin"}}})
    with pytest.raises(ConfigError, match="people.roles"):
        parse({"people": {"roles": {"../x": "owner"}}})
