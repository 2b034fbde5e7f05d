"""Hardening, round two (issue 23) without a model: links where facewarden keeps faces, what forget
and purge delete, a hard-linked event log, a linked snapshots/, person names, count bounds, and
what `score` says of a FIFO or a directory. Each was seen losing data or saying something untrue."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from facewarden import config, paths
from facewarden.config import LogConfig
from facewarden.events import Action, Event
from facewarden.model import adapt, enroll
from facewarden.service.actions import Actions, Context
from facewarden.service.eventlog import EventLog
from test_hardening import cli, one_line


@pytest.fixture
def home_env(home) -> dict:
    return {**os.environ, "FACEWARDEN_HOME": str(home)}


def face(shade: int) -> np.ndarray:
    return np.full((112, 112, 3), shade, np.uint8)


def victim(tmp_path: Path) -> Path:
    """The user's own folder: three photos and a thesis, none of them facewarden's."""
    pics = tmp_path / "pics"
    pics.mkdir()
    for name in ("0123456789abcdef.png", "fedcba9876543210.png", "beach.png"):
        (pics / name).write_bytes(b"my photo")
    (pics / "thesis.tex").write_text("four years")
    return pics


def untouched(pics: Path) -> None:
    assert sorted(f.name for f in pics.iterdir()) == ["0123456789abcdef.png", "beach.png", "fedcba9876543210.png",
                                                     "thesis.tex"]


# -- 1. links where facewarden keeps faces -----------------------------------------------------------


@pytest.mark.parametrize("where", ["enroll", "enroll/alice", "adapt", "adapt/owner", "adapt/alice"])
def test_every_command_refuses_a_link_where_faces_are_kept(home, home_env, tmp_path, where):
    pics = victim(tmp_path)
    p = paths.paths()
    if where != "enroll":
        enroll.store_crop(face(10), p.enroll_dir)  # the owner, so that there is something to list
    link = home / where
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(pics)
    person = where.split("/")[1] if "/" in where else "owner"
    for args in (["forget", person], ["forget", person, "--adapted"], ["people"], ["train"]):
        one_line(cli(home_env, *args), str(link), "symbolic link", "move the link away")
    untouched(pics)


def test_forget_deletes_only_the_crops_it_wrote(home, home_env):
    p = paths.paths()
    folder = p.enroll_dir / "alice"
    for shade in (1, 2, 3):
        enroll.store_crop(face(shade), folder)
    (folder / "thesis.tex").write_text("four years")
    (folder / "notes.png").write_bytes(b"mine")  # a PNG, but not a name facewarden gives
    r = cli(home_env, "forget", "alice")
    assert r.returncode == 0, r.stderr
    assert "3 enrolled face(s) deleted" in r.stdout and "thesis.tex" in r.stdout and f"kept {folder}" in r.stdout
    assert sorted(f.name for f in folder.iterdir()) == ["notes.png", "thesis.tex"]
    enroll.store_crop(face(4), p.enroll_dir / "bob")
    assert cli(home_env, "forget", "bob").returncode == 0
    assert not (p.enroll_dir / "bob").exists()  # nothing else in it: the folder goes too


# -- 3. an adapted-only person ----------------------------------------------------------------------


def test_an_adapted_only_person_is_listed_and_forgotten(home, home_env):
    p = paths.paths()
    for shade in (1, 2):
        adapt.store(p, "alice", face(shade))
    for shade in (3, 4, 5):
        enroll.store_crop(face(shade), p.enroll_dir)
        adapt.store(p, "owner", face(shade + 10))
    listed = cli(home_env, "people")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1:4] for line in listed.stdout.splitlines()[1:] if line.split()}
    assert rows["owner"] == ["owner", "3", "3"] and rows["alice"] == ["trusted", "0", "2"], listed.stdout
    dropped = cli(home_env, "forget", "owner", "--adapted")  # one command drops a person's adapted faces
    assert dropped.returncode == 0 and "0 enrolled face(s) deleted, 3 adapted" in dropped.stdout, dropped.stdout
    assert len(enroll.enrolled(p)) == 3 and adapt.candidates(p, "owner") == []
    one_line(cli(home_env, "forget", "owner", "--adapted"), "no adapted faces of 'owner'")
    forgot = cli(home_env, "forget", "alice")
    assert forgot.returncode == 0 and "0 enrolled face(s) deleted, 2 adapted" in forgot.stdout, forgot.stdout
    assert not adapt.adapt_dir(p, "alice").exists()
    one_line(cli(home_env, "forget", "alice"), "nobody called 'alice'")


# -- 2. purge: the user's hooks stay, every face goes ------------------------------------------------


def test_purge_keeps_the_users_hooks_and_removes_every_face(home, home_env, tmp_path):
    from facewarden.cli.demo import install_hooks

    p = paths.paths()
    install_hooks(home)  # facewarden's own (the demo's): these go
    mine = p.hooks_dir / "owner_left.d" / "my-script"
    mine.write_text("#!/bin/sh\nlogger left\n")
    mine.chmod(0o700)
    (p.hooks_dir / "locked").write_text("#!/bin/sh\necho mine\n")
    enroll.store_crop(face(1), p.enroll_dir)
    enroll.store_crop(face(2), p.enroll_dir / "alice")
    adapt.store(p, "owner", face(3))
    adapt.store(p, "bob", face(4))
    r = cli({**home_env, "HOME": str(tmp_path / "user")}, "uninstall", "--purge")
    assert r.returncode == 0, r.stderr
    left = sorted(str(f.relative_to(home)) for f in home.rglob("*"))
    assert left == ["hooks", "hooks/locked", "hooks/owner_left.d", "hooks/owner_left.d/my-script"], left
    assert "owner_left.d/my-script" in r.stdout and "hooks/locked" in r.stdout


# -- 8. a hard-linked state file ------------------------------------------------------------------------


def test_a_hard_linked_event_log_is_refused_like_a_symlink(home, tmp_path, caplog):
    p = paths.paths()
    paths.private_dir(p.state_dir)
    target = tmp_path / "victim.txt"
    target.write_text("my notes\n")
    target.chmod(0o644)
    os.link(target, p.events_file)
    with caplog.at_level(logging.ERROR):
        assert not EventLog(p.events_file, LogConfig()).append({"time": 1.0, "event": "paused"})
    assert target.read_text() == "my notes\n" and oct(target.stat().st_mode & 0o777) == "0o644"
    assert "2 hard links" in caplog.text


# -- 13. a linked snapshots/ ----------------------------------------------------------------------------


def test_a_linked_snapshots_dir_is_one_log_line(home, tmp_path, caplog):
    p = paths.paths()
    paths.private_dir(p.state_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p.snapshots_dir.symlink_to(elsewhere)
    actions = Actions(config.parse({"snapshot": {"enabled": True}}), p, lambda: False)
    context = Context(Event.STRANGER_DETECTED, 1_700_000_000.0, "locked", 1, frame=np.zeros((48, 64, 3), np.uint8))
    with caplog.at_level(logging.ERROR):
        assert actions.run(Action.SNAPSHOT, context) is False
    assert list(elsewhere.iterdir()) == []
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None and "symbolic link" in caplog.text


# -- 9. names -----------------------------------------------------------------------------------------


def test_a_name_with_a_trailing_newline_is_refused(home, home_env, tmp_path):
    one_line(cli(home_env, "enroll", "--person", "bob\n", "--from", str(tmp_path)), "not a usable person name")
    assert not config.is_person_name("bob\n") and config.is_person_name("bob")


# -- 10. bounds on every count ----------------------------------------------------------------------


@pytest.mark.parametrize("section,key,value", [("presence", "window", "1000000000"),
                                               ("presence", "required", "1000000000"),
                                               ("snapshot", "keep", "100000000000000000000"),
                                               ("log", "keep", "1000000"), ("log", "max_bytes", "1e15"),
                                               ("onlooker", "min_relative_size", "1e9")])
def test_every_count_has_an_upper_bound(home, home_env, section, key, value):
    home.mkdir()
    (home / "config.toml").write_text(f"[{section}]\n{key} = {value}\n")
    one_line(cli(home_env, "people"), f"{section}.{key}", "less than or equal")

