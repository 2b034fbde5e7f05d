"""The published owner model (issue 17, items 6 and 7): versioned directories switched by one link,
the layout before versions still read and migrated without loss, a running daemon that follows
`train`, and owner.json checked like the config in `score`, `run` and `doctor`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from facewarden import paths
from facewarden.errors import UserError
from facewarden.recognition import assets, ownerfile
from facewarden.service.control import request
from support import cli
from test_service import WAIT_S, start_daemon, wait_for, write_config


META = {"threshold": 0.45, "threshold_grey": 0.48, "encoder_sha256": assets.SFACE.sha256, "enrolled": 5}


def staged(where: Path, tag: str, meta: dict | None = None) -> Path:
    """A directory holding the three model files (the model bytes are labels: nothing runs them here)."""
    where.mkdir(parents=True)
    (where / "owner.h5").write_bytes(f"h5 {tag}".encode())
    (where / "owner.tflite").write_bytes(f"tflite {tag}".encode())
    (where / "owner.json").write_text(json.dumps({**META, **(meta or {}), "tag": tag}))
    return where


def tag(directory: Path) -> str:
    return json.loads((directory / "owner.json").read_text())["tag"]


def test_publish_makes_one_versioned_directory_each_and_keeps_the_old(home):
    p = paths.paths()
    first = ownerfile.publish(p, staged(p.models_dir / ".s1", "one"))
    second = ownerfile.publish(p, staged(p.models_dir / ".s2", "two"))
    assert first != second and ownerfile.current_version(p) == second
    assert os.readlink(p.models_dir / "current") == f"versions/{second}"
    assert tag(ownerfile.model_dir(p)) == "two" and (ownerfile.model_dir(p) / "owner.tflite").read_bytes() == b"tflite two"
    listed = ownerfile.versions(p)
    assert [(v.name, v.current) for v in listed] == [(first, False), (second, True)]
    assert tag(listed[0].path) == "one" and (listed[0].path / "owner.h5").read_bytes() == b"h5 one"
    assert ownerfile.read_meta(p).threshold == 0.45
    ownerfile.activate(p, first)  # what a rollback does
    assert tag(ownerfile.model_dir(p)) == "one"
    assert sorted(os.listdir(p.models_dir)) == ["current", "versions"]  # no temporary link left


def test_the_daemons_watch_on_the_link_sees_each_publication_at_once(home):
    """models/current watched by inotify (the daemon's `LinkWatch`): each publish and activate is
    seen as it happens, a removed link too, and the watch resumes on a link made again."""
    from facewarden.service.sampler import LinkWatch

    p = paths.paths()
    first = ownerfile.publish(p, staged(p.models_dir / ".s1", "one"))
    seen: list[str | None] = []
    watch = LinkWatch(p.models_dir / ownerfile.CURRENT, lambda: seen.append(ownerfile.current_version(p)))
    try:
        assert watch.watching
        second = ownerfile.publish(p, staged(p.models_dir / ".s2", "two"))
        wait_for(lambda: seen and seen[-1] == second, "the publication seen")
        ownerfile.activate(p, first)  # `facewarden model rollback`
        wait_for(lambda: seen and seen[-1] == first, "the rollback seen")
        (p.models_dir / ownerfile.CURRENT).unlink()
        wait_for(lambda: not watch.watching and seen[-1] is None, "the removed link seen")
        ownerfile.activate(p, second)
        assert watch.rewatch()  # (the daemon's backstop does this)
        ownerfile.activate(p, first)
        wait_for(lambda: seen[-1] == first, "a publication after the watch resumed")
    finally:
        watch.close()


def test_publish_refuses_an_incomplete_or_out_of_range_model(home):
    p = paths.paths()
    broken = staged(p.models_dir / ".s", "x")
    (broken / "owner.tflite").unlink()
    with pytest.raises(UserError, match="lacks owner.tflite"):
        ownerfile.publish(p, broken)
    bad = staged(p.models_dir / ".t", "y", {"threshold": -5})
    with pytest.raises(UserError, match="threshold"):
        ownerfile.publish(p, bad)
    assert ownerfile.versions(p) == []


def test_the_layout_before_versions_is_read_then_migrated_without_loss(home):
    p = paths.paths()
    old = staged(p.models_dir, "legacy")
    assert ownerfile.model_dir(p) == old and ownerfile.read_meta(p).threshold == 0.45
    new = ownerfile.publish(p, staged(p.models_dir / ".s", "new"))
    legacy, latest = ownerfile.versions(p)
    assert latest.name == new and latest.current
    assert tag(legacy.path) == "legacy" and (legacy.path / "owner.tflite").read_bytes() == b"tflite legacy"
    assert not (p.models_dir / "owner.json").exists()  # moved, not copied beside


def test_a_current_that_is_not_our_link_is_refused(home, tmp_path):
    p = paths.paths()
    elsewhere = staged(tmp_path / "someone-elses", "planted")
    p.models_dir.mkdir(parents=True)
    (p.models_dir / "current").symlink_to(elsewhere)
    with pytest.raises(UserError, match="not the link"):
        ownerfile.model_dir(p)
    (p.models_dir / "current").unlink()
    (p.models_dir / "versions").mkdir()
    (p.models_dir / "versions" / "0001-20260101T000000Z").symlink_to(elsewhere)
    (p.models_dir / "current").symlink_to("versions/0001-20260101T000000Z")
    with pytest.raises(UserError, match="not a model directory of yours"):
        ownerfile.model_dir(p)
    (p.models_dir / "current").unlink()
    (p.models_dir / "current").mkdir()
    with pytest.raises(UserError, match="not the link"):
        ownerfile.model_dir(p)


@pytest.mark.parametrize("change,key", [
    ({"threshold": -5}, "threshold"), ({"threshold": float("nan")}, "threshold"),
    ({"threshold_grey": 1.5}, "threshold_grey"), ({"threshold": "0.5"}, "threshold"),
    ({"threshold": 0}, "threshold"), ({"threshold_grey": None}, "threshold_grey"),
])
def test_out_of_range_metadata_is_refused_naming_its_key(tmp_path, change, key):
    folder = staged(tmp_path / "m", "x", change)
    with pytest.raises(UserError) as e:
        ownerfile.meta_of(folder)
    assert f"owner.json: {key}:" in str(e.value) and "\n" not in str(e.value)


def at(home: Path) -> paths.Paths:
    """The paths of FACEWARDEN_HOME=home, without setting it in this process."""
    return paths.Paths(home, home, home / "state", home / "cache", home / "run")


def test_score_run_and_doctor_refuse_a_threshold_of_minus_5(astronaut_home, tmp_path, astronaut_bgr):
    import cv2

    home = tmp_path / "fw"
    shutil.copytree(astronaut_home / "models", home / "models", symlinks=True)
    meta_file = ownerfile.model_dir(at(home)) / "owner.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "threshold": -5}))
    photo = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(photo), astronaut_bgr)
    for args in (["score", str(photo)], ["run"]):
        r = cli(home, *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stdout == "" and r.stderr.count("\n") == 1 and "owner.json: threshold:" in r.stderr, r.stderr
    r = cli(home, "doctor")
    model = [line for line in r.stdout.splitlines() if " model: " in line]
    assert model and model[0].startswith("FAIL model:") and "owner.json: threshold:" in model[0], r.stdout


def test_a_running_daemon_follows_train(astronaut_home, tmp_path, astronaut_bgr):
    from facewarden.cli.demo import write_replay

    home = tmp_path / "fw"
    shutil.copytree(astronaut_home / "models", home / "models", symlinks=True)
    shutil.copytree(astronaut_home / "enroll", home / "enroll")
    frames = tmp_path / "owner"
    write_replay(frames, [("owner", 2, [[astronaut_bgr]])])
    write_config(home, f'[camera]\nsource = "{frames}"\nreplay_loop = true\n[liveness]\nenabled = false\n'
                       '[lock]\nmethods = []\n[actions]\nowner_left = []\nstranger_detected = []\n')
    log = tmp_path / "daemon.log"
    proc = start_daemon(home, log)
    sock = home / "run" / "control.sock"
    p = at(home)
    try:
        wait_for(lambda: request({"cmd": "status"}, sock)["state"] == "owner_present", "the owner")
        first = request({"cmd": "status"}, sock)["model"]
        assert first == ownerfile.current_version(p)

        trained = cli(home, "train")  # the real command, with the daemon running
        assert trained.returncode == 0, trained.stderr[-2000:]
        second = ownerfile.current_version(p)
        assert second != first and f"the running daemon switched to model {second}" in trained.stdout
        assert request({"cmd": "status"}, sock)["model"] == second

        # A model that no longer takes this face for the owner (as one trained on someone else):
        # published as train does, while the daemon runs; it must stop seeing the owner by itself.
        strict = tmp_path / "strict"
        shutil.copytree(ownerfile.model_dir(p), strict)
        meta = json.loads((strict / "owner.json").read_text())
        (strict / "owner.json").write_text(json.dumps({**meta, "threshold": 0.999, "threshold_grey": 0.999}))
        moved = home / "models" / ".strict"
        shutil.move(strict, moved)
        third = ownerfile.publish(p, moved)
        # At once: the daemon watches models/current (its backstop looks only once a minute).
        wait_for(lambda: request({"cmd": "status"}, sock)["state"] == "stranger", "the stricter model's verdict",
                 timeout=10)
        assert request({"cmd": "status"}, sock)["model"] == third
        assert f"owner model {third} loaded" in log.read_text()

        ownerfile.activate(p, second)
        r = cli(home, "reload")
        assert r.returncode == 0 and f"owner model {second}" in r.stdout, r.stderr
        wait_for(lambda: request({"cmd": "status"}, sock)["state"] == "owner_present", "the owner again")
    finally:
        proc.terminate()
        proc.wait(WAIT_S)
