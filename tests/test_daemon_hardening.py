"""Hardening (issue 17) of the real daemon (`facewarden run` over replayed frames): a full state
disk, hooks' children, hooks' output and the hooks dropped at shutdown, the refusal of another
user under load, a runtime directory someone else made, and a decompression bomb given to `score`.

The owner is the astronaut, trained once a session (conftest's astronaut_home)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import cv2
import pytest

import test_hardening
from facewarden.cli.demo import write_replay
from facewarden.service.control import request
from support import PYTHON, alive, as_nobody
from test_hardening import as_nobody_server, one_line, png_claiming, root_only
from test_service import WAIT_S, start_daemon, wait_for, write_config

no_runtime_dir = test_hardening.no_runtime_dir

HOOK_EVENTS = ("owner_arrived", "owner_left", "stranger_detected", "locked", "paused", "resumed", "camera_lost",
               "camera_restored")


@pytest.fixture(scope="module")
def owner_frames(tmp_path_factory, astronaut_bgr) -> Path:
    folder = tmp_path_factory.mktemp("owner-frames")
    write_replay(folder, [("owner", 2, [[astronaut_bgr]])])
    return folder


def base_config(frames: Path, hooks_timeout_s: float = 10) -> str:
    return (f'[camera]\nsource = "{frames}"\nreplay_loop = true\n[liveness]\nenabled = false\n'
            f'[lock]\nmethods = []\n[hooks]\ntimeout_s = {hooks_timeout_s}\n'
            '[actions]\nowner_left = []\nstranger_detected = []\ncamera_lost = []\n')


def hook(home: Path, name: str, body: str) -> Path:
    path = home / "hooks" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


# -- 4. a full state disk silences nothing --------------------------------------------------------


@pytest.fixture
def full_state(owner_home):
    """owner_home/state on a 64 KiB tmpfs filled to the last byte."""
    state = owner_home / "state"
    state.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(state)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        fd = os.open(state / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def test_a_full_state_disk_still_runs_every_hook(owner_home, full_state, owner_frames, tmp_path):
    ran = tmp_path / "hooks.log"
    for event in HOOK_EVENTS:
        hook(owner_home, event, f'echo "$FACEWARDEN_EVENT" >> "{ran}"\n')
    write_config(owner_home, base_config(owner_frames))
    log = tmp_path / "daemon.log"
    proc = start_daemon(owner_home, log)
    sock = owner_home / "run" / "control.sock"
    try:
        wait_for(lambda: ran.exists() and "owner_arrived" in ran.read_text(), "the owner_arrived hook")
        request({"cmd": "pause", "seconds": 60}, sock)
        request({"cmd": "resume"}, sock)
        wait_for(lambda: "resumed" in ran.read_text(), "the resumed hook")
    finally:
        assert stop(proc) == 0
    text = log.read_text()
    assert ran.read_text().split() == ["owner_arrived", "paused", "resumed"], text[-3000:]
    assert all(f"event {e}" in text for e in ("owner_arrived", "paused", "resumed"))
    assert text.count("cannot write the event log") == 1 and "No space left on device" in text, text[-3000:]
    assert "Traceback" not in text


# -- 8, 9, 10. hooks: their children, their output, the ones dropped at shutdown ------------------


@pytest.mark.parametrize("starts", [
    'sleep 300 &\necho $! > "{pid_file}"\n',
    # issue 23: a double fork into a session of its own leaves the hook's process group
    '( setsid sleep 300 >/dev/null 2>&1 & echo $! > "{pid_file}" ) &\nwait\n',
], ids=["background", "double-fork-setsid"])
def test_a_hooks_background_child_ends_with_the_hook(owner_home, owner_frames, tmp_path, starts):
    pid_file = tmp_path / "child.pid"
    hook(owner_home, "owner_arrived", starts.format(pid_file=pid_file) + "exit 0\n")
    write_config(owner_home, base_config(owner_frames))
    proc = start_daemon(owner_home, tmp_path / "daemon.log")
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the hook's child")
        child = int(pid_file.read_text())
        wait_for(lambda: not alive(child), "the hook's child to be ended with the hook")
        assert proc.poll() is None  # while the daemon goes on
    finally:
        assert stop(proc) == 0
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_hook_output_is_captured_with_a_bounded_tail(owner_home, owner_frames, tmp_path):
    hook(owner_home, "owner_arrived.d/10-flood", "head -c 20000000 /dev/zero | tr '\\0' y >&2\n"
                                                 "echo last-line-marker\nexit 3\n")
    hook(owner_home, "owner_arrived.d/20-yes", "exec yes\n")
    write_config(owner_home, base_config(owner_frames, hooks_timeout_s=2))
    log = tmp_path / "daemon.log"
    proc = start_daemon(owner_home, log)
    try:
        wait_for(lambda: "20-yes still running after 2 s" in log.read_text(), "the `yes` hook's timeout")
    finally:
        assert stop(proc) == 0
    assert log.stat().st_size < 100_000, f"{log.stat().st_size} bytes of daemon output"
    lines = log.read_text().splitlines()
    flood = next(line for line in lines if "10-flood failed with exit status 3" in line)
    assert "bytes dropped" in flood and flood.endswith("yyyylast-line-marker") and len(flood) < 4000, flood[:300]
    yes = next(line for line in lines if "20-yes still running" in line)
    assert "bytes dropped" in yes and yes.endswith("y | y") and len(yes) < 4000, yes[:300]


def test_hooks_dropped_at_shutdown_are_counted(owner_home, tmp_path):
    nobody_frames = tmp_path / "empty"
    write_replay(nobody_frames, [("empty", 2, [[]])])
    ran = tmp_path / "hooks.log"
    for event in HOOK_EVENTS:
        hook(owner_home, event, f'echo "$FACEWARDEN_EVENT" >> "{ran}"\nsleep 1\n')
    write_config(owner_home, base_config(nobody_frames, hooks_timeout_s=1).replace(
        "[lock]\n", "[lock]\nafter_absent_s = 3600\n"))
    log = tmp_path / "daemon.log"
    proc = start_daemon(owner_home, log)
    sock = owner_home / "run" / "control.sock"
    try:
        for _ in range(20):
            request({"cmd": "pause", "seconds": 60}, sock)
            request({"cmd": "resume"}, sock)
    finally:
        assert stop(proc) == 0
    text = log.read_text()
    found = re.search(r"the hooks of (\d+) more queued event\(s\) dropped", text)
    assert found, text[-3000:]
    started = len(ran.read_text().split())
    events = len((owner_home / "state" / "events.jsonl").read_text().splitlines())
    assert events >= 40 and int(found.group(1)) > 0
    assert started + int(found.group(1)) == events, (started, found.group(1), events)


# -- 11. the refusal of another user, under load --------------------------------------------------


@pytest.fixture
def public_home(astronaut_home):
    """A FACEWARDEN_HOME that `nobody` can traverse (pytest's own tmp dirs are 0700)."""
    home = Path(tempfile.mkdtemp(prefix="fw-public-"))
    home.chmod(0o755)
    shutil.copytree(astronaut_home / "models", home / "models", symlinks=True)
    yield home
    shutil.rmtree(home)


def strict_client(path: Path, delay_s: float) -> str:
    """An ordinary client: connect, (think), send, read the answer; a broken pipe is an error to it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        time.sleep(delay_s)
        s.sendall(b'{"cmd": "pause", "seconds": null}\n')
        return s.makefile("rb").readline().decode()


@root_only
def test_other_users_get_the_refusal_under_load(public_home, owner_frames, tmp_path):
    write_config(public_home, base_config(owner_frames))
    log = tmp_path / "daemon.log"
    proc = start_daemon(public_home, log)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    sock = public_home / "run" / "control.sock"
    try:
        sock.parent.chmod(0o755)  # loosened, so that only SO_PEERCRED stands in the way
        sock.chmod(0o666)
        answers = [as_nobody(partial(strict_client, sock, 0.3 if i % 3 == 0 else 0.0)) for i in range(30)]
        refusal = json.dumps({"ok": False, "error": "permission denied: not the daemon's user"}) + "\n"
        assert [a for a in answers if a != refusal] == []
        assert request({"cmd": "status"}, sock)["state"] != "paused"  # none of them paused it
    finally:
        busy.kill()
        busy.wait()
        assert stop(proc) == 0
    assert log.read_text().count("refused a connection from uid") == 30


# -- 1. a runtime directory someone else made, for the real `run` ---------------------------------


@root_only
def test_run_refuses_a_runtime_dir_another_user_made(no_runtime_dir, astronaut_home, owner_frames, tmp_path):
    victim = Path(os.environ["HOME"])
    shutil.copytree(astronaut_home / "models", victim / ".local/share/facewarden/models", symlinks=True)
    write_config(victim / ".config/facewarden", base_config(owner_frames))
    pid, got = as_nobody_server(no_runtime_dir, {"ok": True, "state": "owner_present"})
    try:
        r = subprocess.run(PYTHON + ["run"], env=dict(os.environ), capture_output=True, text=True, timeout=120)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.splitlines()[-1].startswith("facewarden: ") and "belongs to uid" in r.stderr.splitlines()[-1]
    assert no_runtime_dir.stat().st_mode & 0o777 == 0o777  # never chmodded


# -- 12. `score` on a decompression bomb ----------------------------------------------------------


def test_score_reports_a_png_bomb_as_unreadable_and_goes_on(owner_home, tmp_path, astronaut_bgr):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(100_000, 100_000))
    photo = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(photo), astronaut_bgr)
    env = {**os.environ, "FACEWARDEN_HOME": str(owner_home)}
    r = subprocess.run(PYTHON + ["score", str(bomb), str(photo)], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    first, second = (json.loads(line) for line in r.stdout.splitlines())
    assert first["path"] == str(bomb) and first["error"].startswith("not a readable image")
    assert second["path"] == str(photo) and second["owner"] is True


def test_pause_overflow_never_reaches_the_real_daemon(owner_home, owner_frames, tmp_path):
    write_config(owner_home, base_config(owner_frames))
    proc = start_daemon(owner_home, tmp_path / "daemon.log")
    env = {**os.environ, "FACEWARDEN_HOME": str(owner_home)}
    try:
        r = subprocess.run(PYTHON + ["pause", "--", "99999999999999999999d"], env=env, capture_output=True,
                           text=True, timeout=120)
        one_line(r, "too long a duration")
        sock = owner_home / "run" / "control.sock"
        assert request({"cmd": "pause", "seconds": 1e300}, sock)["ok"] is False
        assert request({"cmd": "status"}, sock)["state"] != "paused"
    finally:
        assert stop(proc) == 0
    events = owner_home / "state" / "events.jsonl"
    assert not events.exists() or "paused" not in events.read_text()
