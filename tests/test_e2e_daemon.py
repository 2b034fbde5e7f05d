"""End to end: the real `facewarden run` process over a replayed camera of real LFW faces.

The owner (the LFW person with most photos) is enrolled and trained with the real commands; the
replay shows other photos of them, nobody, a stranger, the owner with an onlooker beside them, and a
camera that breaks mid-run. The events and their order are read from a hook's log; the lock command
is a script that records each call. Liveness is off: LFW photos are stills, which it would refuse.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import cv2
import pytest

from support import PYTHON
from facewarden.cli.demo import write_replay



def people(lfw: Path, n: int) -> list[list[Path]]:
    folders = sorted((p for p in lfw.iterdir() if p.is_dir()), key=lambda p: (-len(list(p.glob("*.jpg"))), p.name))
    return [sorted(p.glob("*.jpg")) for p in folders[:n]]


@pytest.fixture(scope="module")
def run(lfw, tmp_path_factory, seed_encoder):
    home = seed_encoder(tmp_path_factory.mktemp("e2e"))
    env = {**os.environ, "FACEWARDEN_HOME": str(home)}
    owner, stranger, onlooker = people(lfw, 3)
    src = home / "enroll-src"
    src.mkdir()
    for p in owner[:8]:
        (src / p.name).write_bytes(p.read_bytes())
    for cmd in (["enroll", "--from", str(src)], ["train"]):
        result = subprocess.run(PYTHON + cmd, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]

    def load(paths):
        return [cv2.imread(str(p)) for p in paths]

    me, them, other = load(owner[8:20]), load(stranger[:10]), load(onlooker[:10])
    starts = write_replay(home / "frames", [
        ("owner", 3, [[f] for f in me]),
        ("empty", 6, [[]]),
        ("stranger", 4, [[f] for f in them]),
        ("owner back", 3, [[f] for f in me]),
        # A new face is seen within sampling.full_scan_s (2 s), and then decided 3 of 5 samples.
        ("onlooker", 6, [[f, o] for f, o in zip(me, other)]),
        ("owner alone", 1, [[f] for f in me]),
        ("camera broken", 5, [None]),
        ("camera back", 3, [[f] for f in me]),
    ])
    log = home / "hooks.log"
    locks = home / "locks.log"
    hooks = home / "hooks"
    hooks.mkdir()
    hook = f'#!/bin/sh\necho "$FACEWARDEN_EVENT faces=$FACEWARDEN_FACES person=$FACEWARDEN_PERSON frame=$FACEWARDEN_FRAME" >> "{log}"\n'
    for event in ("owner_arrived", "owner_leaving", "owner_stayed", "owner_left", "stranger_detected",
                  "onlooker_detected", "onlooker_gone", "spoof_suspected", "locked", "paused", "resumed", "camera_lost",
                  "camera_restored"):
        (hooks / event).write_text(hook)
        (hooks / event).chmod(0o755)
    (home / "lock").write_text(f'#!/bin/sh\necho lock >> "{locks}"\n')
    (home / "lock").chmod(0o755)
    (home / "config.toml").write_text(f"""
[camera]
source = "{home / 'frames'}"
retry_max_s = 1.0
[lock]
after_absent_s = 3.0
after_stranger_s = 1.0
command = ["{home / 'lock'}"]
methods = ["command"]
[liveness]
enabled = false
[snapshot]
enabled = true
[actions]
owner_left = ["lock"]
stranger_detected = ["snapshot", "lock"]
onlooker_detected = ["snapshot"]
""")
    result = subprocess.run(PYTHON + ["run"], env=env, capture_output=True, text=True, timeout=300)
    return home, result, starts


def test_daemon_exits_cleanly_at_the_end_of_the_replay(run):
    home, result, _ = run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_events_and_their_order(run):
    home, result, _ = run
    events = [line.split()[0] for line in (home / "hooks.log").read_text().splitlines()]
    assert events == [
        "owner_arrived",
        "owner_leaving", "owner_left", "locked",  # nobody at the desk: the warning, then the lock
        "stranger_detected",  # locks again (already locked: no second `locked`)
        "owner_arrived",
        "onlooker_detected",
        "camera_lost", "onlooker_gone",  # fail closed: no camera, no owner...
        "owner_leaving", "owner_left", "locked",  # ...warned, locked
        "camera_restored", "owner_arrived",
    ], result.stderr[-3000:]
    assert (home / "locks.log").read_text().split() == ["lock"] * 3
    # The event log holds the same story.
    logged = [json.loads(line)["event"] for line in (home / "state" / "events.jsonl").read_text().splitlines()]
    assert logged == events


def test_snapshots_reach_the_hooks(run):
    home, _, _ = run
    lines = {line.split()[0]: line for line in (home / "hooks.log").read_text().splitlines()}
    for event in ("stranger_detected", "onlooker_detected"):
        frame = Path(lines[event].split("frame=")[1])
        assert frame.parent == home / "state" / "snapshots"
        assert stat.S_IMODE(frame.stat().st_mode) == 0o600
        assert cv2.imread(str(frame)).shape == (480, 640, 3)
    # The owner and at least the onlooker. Not exactly 2: some LFW photos carry bystanders at their
    # edges, and which composed frame a real-time sample lands on varies from run to run.
    assert int(lines["onlooker_detected"].split("faces=")[1].split()[0]) >= 2
    assert lines["owner_left"].endswith("frame=")  # frames are only written for strangers and onlookers
    assert "person=owner " in lines["owner_arrived"] and "person= " in lines["stranger_detected"]
