"""Sharing the camera, for real: the real `facewarden run` process over a replayed camera (a looping
video of the astronaut, the owner), another real process opening that source as a video-call app
opens /dev/video0, Xvfb with xdotool for the session's input (the X11 idle back-end), and the test
logind on a private system bus for the lid. Events come from real hook scripts; locks from a lock
command that records each call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import pytest

from desktop_helpers.buses import drive_logind, logind, system_bus
from desktop_helpers.holder import holding
from desktop_helpers.procs import need, xvfb
from facewarden.cli.demo import write_replay
from facewarden.service.control import request
from test_service import start_daemon, wait_for

EVENTS = ("owner_arrived", "owner_left", "locked", "camera_lost", "camera_restored", "camera_busy", "camera_free")


def to_video(frames: Path, path: Path, fps: float = 5.0) -> Path:
    images = sorted(frames.glob("*.jpg"))
    first = cv2.imread(str(images[0]))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (first.shape[1], first.shape[0]))
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    for image in images:
        writer.write(cv2.imread(str(image)))
    writer.release()
    return path


@pytest.fixture(scope="module")
def owner_video(tmp_path_factory, astronaut_bgr) -> Path:
    folder = tmp_path_factory.mktemp("owner-video")
    write_replay(folder / "frames", [("owner", 4, [[astronaut_bgr]])])
    return to_video(folder / "frames", folder / "owner.avi")


def holds(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open (its /proc/PID/fd links)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            pass
    return False


class Input:
    """The owner at the keyboard: xdotool moves the pointer on the Xvfb display every half second."""

    def __init__(self, display: str):
        self.display, self.xdotool = display, need("xdotool", "xdotool")
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _move(self) -> None:
        x = 10
        while not self._stop.wait(0.5):
            x = 30 - x
            subprocess.run([self.xdotool, "mousemove", str(x), "20"], env={"DISPLAY": self.display}, check=True)
            self.last = time.monotonic()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._move, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        """Stop typing; when the last input was."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.last


@pytest.fixture
def desk(tmp_path, monkeypatch):
    """An X display with input, no session bus, and the system bus pointed at a private one (or at
    nothing), so the daemon never talks to this machine's real desktop."""
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-session-bus'}")
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-system-bus'}")
    with xvfb() as display:
        monkeypatch.setenv("DISPLAY", display)
        typing = Input(display)
        typing.start()
        yield typing
        typing.stop()


def configure(home: Path, source, **extra: str) -> tuple[Path, Path]:
    """Hooks that log every event, a lock command that logs each call, and config.toml."""
    events, locks = home / "events.log", home / "locks.log"
    hooks = home / "hooks"
    hooks.mkdir(exist_ok=True)
    for event in EVENTS:
        (hooks / event).write_text(f'#!/bin/sh\necho "$FACEWARDEN_EVENT $(date +%s.%N) $FACEWARDEN_CAMERA_BUSY_BY" '
                                   f'>> "{events}"\n')
        (hooks / event).chmod(0o755)
    (home / "lock").write_text(f'#!/bin/sh\ndate +%s.%N >> "{locks}"\n')
    (home / "lock").chmod(0o755)
    sections = {
        "camera": f"source = {json.dumps(source)}\nreplay_loop = true\nretry_max_s = 1.0\n" + extra.get("camera", ""),
        "lock": f'after_absent_s = 3.0\nidle_s = 8.0\ncommand = ["{home / "lock"}"]\nmethods = ["command"]\n',
        "liveness": "enabled = false\n",
        "actions": "owner_left = [\"lock\"]\n",
    }
    (home / "config.toml").write_text("".join(f"[{k}]\n{v}" for k, v in sections.items()))
    return events, locks


def fired(events: Path) -> list[str]:
    return [line.split()[0] for line in events.read_text().splitlines()] if events.exists() else []


def lock_times(locks: Path) -> list[float]:
    return [float(t) for t in locks.read_text().split()] if locks.exists() else []


@contextmanager
def daemon(home: Path, tmp_path: Path):
    log = tmp_path / "daemon.log"
    proc = start_daemon(home, log)
    try:
        yield proc, home / "run" / "control.sock", log
    finally:
        proc.terminate()
        proc.wait(60)


def test_a_video_call_gets_the_camera_and_the_session_stays_open_while_typed_in(owner_home, owner_video, desk,
                                                                                 tmp_path):
    events, locks = configure(owner_home, str(owner_video))
    with daemon(owner_home, tmp_path) as (proc, sock, log):
        status = lambda: request({"cmd": "status"}, sock)  # noqa: E731
        wait_for(lambda: status()["state"] == "owner_present", "the owner")
        assert holds(proc.pid, owner_video) and status()["camera_in_use"] == str(owner_video)
        with holding(owner_video) as (call, _opened_at):  # how soon it lets go: bench/bench_call.py
            wait_for(lambda: not holds(proc.pid, owner_video), "the daemon to let go")
            assert status()["camera"] == "busy" and status()["camera_busy_by"] == f"holder (pid {call.pid})"
            said = subprocess.run([sys.executable, "-m", "facewarden", "status"], capture_output=True, text=True,
                                  env={**os.environ, "FACEWARDEN_HOME": str(owner_home)}).stdout
            assert f"camera:  busy (held by holder (pid {call.pid}))" in said.splitlines()
            wait_for(lambda: "camera_busy" in fired(events), "camera_busy")
            busy_line = next(line for line in events.read_text().splitlines() if line.startswith("camera_busy"))
            assert busy_line.endswith(f" holder (pid {call.pid})")  # FACEWARDEN_CAMERA_BUSY_BY
            # A call while the owner types, over three times after_absent_s (3 s): no lock.
            call_started = time.monotonic()
            while time.monotonic() - call_started < 10:
                assert not holds(proc.pid, owner_video), "the daemon took the camera back during the call"
                time.sleep(1.0)
            assert lock_times(locks) == [] and status()["state"] == "owner_present", log.read_text()[-2000:]
            # The owner walks away from the running call: locked lock.idle_s after the last input.
            last_input = desk.stop() - time.monotonic() + time.time()
            wait_for(lambda: lock_times(locks), "the lock")
            assert lock_times(locks)[0] > last_input  # not before input stopped; how long after: bench_call
        # The call ends: the camera is taken back and sampling resumes (the owner is seen again).
        wait_for(lambda: holds(proc.pid, owner_video), "the daemon to reopen the camera")
        wait_for(lambda: fired(events)[-1:] == ["owner_arrived"], "owner_arrived after the call")
        assert status()["camera"] == "ok"
    assert fired(events) == ["owner_arrived", "camera_busy", "owner_left", "locked", "camera_free", "owner_arrived"]


def test_a_short_probe_costs_a_moment_of_watching(owner_home, owner_video, desk, tmp_path):
    events, locks = configure(owner_home, str(owner_video))
    with daemon(owner_home, tmp_path) as (proc, sock, log):
        wait_for(lambda: request({"cmd": "status"}, sock)["state"] == "owner_present", "the owner")
        with holding(owner_video, for_s=1.0) as (probe, _opened_at):
            wait_for(lambda: not holds(proc.pid, owner_video), "the daemon to let go")
            assert probe.stdout.readline().startswith("closed")
            wait_for(lambda: holds(proc.pid, owner_video), "the camera back")
        assert lock_times(locks) == []


def test_a_list_of_cameras_falls_to_the_next_and_takes_the_first_back(owner_home, owner_video, desk, tmp_path,
                                                                      astronaut_bgr):
    first = tmp_path / "ir-camera"
    write_replay(first, [("owner", 4, [[astronaut_bgr]])])
    events, locks = configure(owner_home, [str(first), str(owner_video)])
    with daemon(owner_home, tmp_path) as (proc, sock, log):
        status = lambda: request({"cmd": "status"}, sock)  # noqa: E731
        wait_for(lambda: status()["state"] == "owner_present", "the owner")
        assert status()["camera_in_use"] == str(first) and not holds(proc.pid, owner_video)
        first.rename(tmp_path / "unplugged")
        wait_for(lambda: status()["camera_in_use"] == str(owner_video), "the second camera")
        time.sleep(5)  # longer than lock.after_absent_s
        (tmp_path / "unplugged").rename(first)
        wait_for(lambda: status()["camera_in_use"] == str(first), "the first camera back")
        wait_for(lambda: not holds(proc.pid, owner_video), "the second camera released")
        assert status()["state"] == "owner_present" and status()["camera"] == "ok"
    assert fired(events) == ["owner_arrived"] and lock_times(locks) == []


def test_a_closed_lid_counts_as_busy_for_the_builtin_camera(owner_home, desk, tmp_path, monkeypatch):
    dark = tmp_path / "builtin"
    write_replay(dark, [("lid shut", 4, [[]])])
    for image in dark.glob("*.jpg"):
        cv2.imwrite(str(image), cv2.imread(str(image)) // 16)  # a blinded camera: every frame dark
    events, locks = configure(owner_home, str(dark), camera=f"builtin = [{json.dumps(str(dark))}]\n")
    with system_bus(tmp_path) as address, logind(address, tmp_path / "logind.jsonl"):
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        drive_logind(address, "SetLid", "b", True)
        with daemon(owner_home, tmp_path) as (proc, sock, log):
            status = lambda: request({"cmd": "status"}, sock)  # noqa: E731
            wait_for(lambda: status()["camera"] == "busy", "the lid to make the camera busy")
            assert status()["camera_busy_by"] == "the closed lid"
            time.sleep(15)  # five times lock.after_absent_s, the owner typing on the docked keyboard
            assert lock_times(locks) == [], log.read_text()[-2000:]
            drive_logind(address, "SetLid", "b", False)  # lid open, yet the camera sees only darkness
            wait_for(lambda: lock_times(locks), "the lock")
    assert fired(events)[:2] == ["camera_busy", "camera_free"]
