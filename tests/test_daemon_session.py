"""The real `facewarden run` process living with a desktop session: a private system bus with the
test logind, a private session bus with a test screensaver, a replayed camera (a video file, so that
its descriptor shows in /proc/PID/fd while the camera is open), hooks and a lock command that record.

Lock from logind -> the camera is let go within one sampling interval and nothing is sampled while
locked; unlock -> sampling again at once; PrepareForSleep -> locked, camera closed, inhibitor let go;
wake -> fresh evidence; a camera that blocks on open (a FIFO without a writer) -> the watchdog locks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from desktop_helpers.buses import desktop, drive, drive_logind, logind, system_bus
from desktop_helpers.procs import session_bus, wait_for
from facewarden.cli.demo import write_replay
from facewarden.service.control import request
from facewarden.service.daemon import WATCH_MAX_S
from support import recording_hooks, terminate

PYTHON = [sys.executable, "-m", "facewarden"]
INTERVAL_S = 1.0
EVENTS = ("locked", "unlocked", "sleep", "wake", "camera_lost", "camera_restored", "owner_left")


@pytest.fixture(scope="module")
def video(tmp_path_factory, astronaut_bgr) -> Path:
    """The owner at the desk, 6 s at 5 fps, as an MJPEG video (looped by the daemon)."""
    folder = tmp_path_factory.mktemp("video")
    write_replay(folder / "frames", [("owner", 6, [[astronaut_bgr]])])
    path = folder / "owner.avi"
    frames = sorted((folder / "frames").glob("*.jpg"))
    first = cv2.imread(str(frames[0]))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (first.shape[1], first.shape[0]))
    for f in frames:
        out.write(cv2.imread(str(f)))
    out.release()
    return path


class Desk:
    """The buses, the test services and the daemon process, with what they recorded."""

    def __init__(self, home: Path, tmp: Path):
        self.home, self.tmp = home, tmp
        self.hook_log, self.lock_log, self.logind_log = tmp / "hooks.log", tmp / "locks.log", tmp / "logind.jsonl"
        self.proc: subprocess.Popen | None = None
        self.notified: socket.socket | None = None

    def configure(self, source: Path | str, extra: str = "", methods: str = '["command"]') -> None:
        lock = recording_hooks(self.home, EVENTS, "$FACEWARDEN_LOCKED_BY", self.hook_log, self.lock_log)
        (self.home / "config.toml").write_text(f"""
[camera]
source = "{source}"
replay_loop = true
[sampling]
interval_s = {INTERVAL_S}
[liveness]
enabled = false
[lock]
after_absent_s = 60
command = ["{lock}"]
methods = {methods}
{extra}
[actions]
camera_lost = []
""")

    def start(self, system: str, session: str) -> None:
        self.notified = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notified.bind(str(self.tmp / "notify.sock"))
        self.notified.settimeout(0.1)
        self.env = {**os.environ, "FACEWARDEN_HOME": str(self.home), "DBUS_SYSTEM_BUS_ADDRESS": system,
                    "DBUS_SESSION_BUS_ADDRESS": session, "NOTIFY_SOCKET": str(self.tmp / "notify.sock")}
        self.env.pop("DISPLAY", None)
        self.log = self.tmp / "daemon.log"
        self.proc = subprocess.Popen(PYTHON + ["run"], env=self.env, stderr=open(self.log, "w"),
                                     stdout=subprocess.DEVNULL)
        wait_for(lambda: self._up(), "the daemon's control socket", timeout=60)

    def _up(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            self.status()
            return True
        except Exception:
            return False

    def status(self) -> dict:
        return request({"cmd": "status"}, self.home / "run" / "control.sock")

    def open_files(self) -> set[str]:
        assert self.proc is not None
        found = set()
        for fd in Path(f"/proc/{self.proc.pid}/fd").iterdir():
            try:
                found.add(os.readlink(fd))
            except OSError:
                pass  # closed meanwhile
        return found

    def hooks(self) -> list[list[str]]:
        return [line.split() for line in self.hook_log.read_text().splitlines()] if self.hook_log.exists() else []

    def notifications(self) -> list[str]:
        got = []
        assert self.notified is not None
        while True:
            try:
                got.append(self.notified.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                return got

    def stop(self) -> int | None:
        terminate(self.proc)
        if self.notified is not None:
            self.notified.close()
        return None if self.proc is None else self.proc.returncode


@pytest.fixture
def desk(owner_home, tmp_path, request):
    """The desk with a test screensaver: org.freedesktop.ScreenSaver, or what the test names
    (`@pytest.mark.parametrize("desk", [[...names]], indirect=True)`)."""
    names = getattr(request, "param", ["org.freedesktop.ScreenSaver"])
    with system_bus(tmp_path) as system, logind(system, tmp_path / "logind.jsonl"):
        bus_dir = tmp_path / "session"
        bus_dir.mkdir()
        with session_bus(bus_dir) as session, desktop(session, *names) as saver:
            d = Desk(owner_home, tmp_path)
            d.system, d.session, d.saver = system, session, saver
            try:
                yield d
            finally:
                d.stop()
                assert "Traceback" not in d.log.read_text(), d.log.read_text()[-3000:]


def camera_open(desk: Desk, video: Path) -> bool:
    return str(video) in desk.open_files()


def test_lock_releases_the_camera_and_unlock_samples_at_once(desk, video):
    desk.configure(video)
    desk.start(desk.system, desk.session)
    wait_for(lambda: desk.status()["state"] == "owner_present", "the owner", timeout=60)
    assert camera_open(desk, video)
    status = desk.status()
    assert status["session_locked"] is False and status["logind"] is True and status["sampling"] == "on"
    assert "READY=1" in desk.notifications()
    # Fed while samples complete in time: when its watchdog would be due, at least every WATCH_MAX_S.
    wait_for(lambda: "WATCHDOG=1" in desk.notifications(), "systemd's watchdog fed", timeout=3 * WATCH_MAX_S)

    # Locked by the session (Super+L): the camera goes within one sampling interval, nothing is sampled.
    drive_logind(desk.system, "SetLocked", "b", True)
    wait_for(lambda: not camera_open(desk, video), "the camera to be let go")
    samples = desk.status()["samples"]
    time.sleep(3 * INTERVAL_S)
    status = desk.status()
    assert status["samples"] == samples and not camera_open(desk, video)
    assert status["locked"] is True and status["locked_via"] == "logind" and status["sampling"] == "off (locked)"
    assert status["camera"] == "released (locked)"
    assert ["locked", "session"] == desk.hooks()[-1][:2]

    # Unlocked: sampling again at once, from fresh evidence.
    drive_logind(desk.system, "EmitUnlock")
    unlocked_at = time.time()
    wait_for(lambda: desk.status()["samples"] > samples, "a sample after the unlock")
    status = desk.status()
    assert status["sampled_at"] > unlocked_at and status["locked"] is False
    # Open again (a looping replay closes and reopens its file at the end: not at one instant).
    wait_for(lambda: camera_open(desk, video), "the camera in use again")
    wait_for(lambda: desk.hooks()[-1][0] == "unlocked", "the unlocked hook")
    wait_for(lambda: desk.status()["state"] == "owner_present", "the owner again")

    # A desktop whose locker only tells the screensaver interface: ActiveChanged counts too.
    drive(desk.session, "org.freedesktop.ScreenSaver", "SetActive", "b", True)
    wait_for(lambda: not camera_open(desk, video), "the camera to be let go (screensaver)")
    assert desk.status()["locked_via"] == "org.freedesktop.ScreenSaver"
    drive(desk.session, "org.freedesktop.ScreenSaver", "SetActive", "b", False)
    wait_for(lambda: camera_open(desk, video), "the camera back (screensaver)")
    # The hooks run on their own thread, after the camera is back: wait for the last one.
    wait_for(lambda: [h[0] for h in desk.hooks()] == ["locked", "unlocked", "locked", "unlocked"], "the hooks")
    assert not desk.lock_log.exists()  # facewarden itself never locked
    assert desk.stop() == 0


def test_a_screensaver_that_exits_while_locked_no_longer_holds_the_session(desk, video):
    desk.configure(video)
    desk.start(desk.system, desk.session)
    wait_for(lambda: desk.status()["state"] == "owner_present", "the owner", timeout=60)
    drive(desk.session, "org.freedesktop.ScreenSaver", "SetActive", "b", True)
    wait_for(lambda: desk.status()["camera"] == "released (locked)", "the camera let go while locked")
    samples = desk.status()["samples"]
    desk.saver.kill()  # crashed while locked: the screen is uncovered, nothing will say "unlocked"
    wait_for(lambda: desk.status()["samples"] > samples, "sampling again after the screensaver died")
    status = desk.status()
    assert status["locked"] is False and status["sampling"] == "on"
    assert "org.freedesktop.ScreenSaver left the session bus" in desk.log.read_text()
    wait_for(lambda: [h[0] for h in desk.hooks()] == ["locked", "unlocked"], "the locked and unlocked hooks")


@pytest.mark.parametrize("desk", [["--silent-lock", "org.mate.ScreenSaver"]], indirect=True)
def test_a_lock_call_that_never_replies_is_judged_by_the_lock_it_produces(desk, video):
    desk.configure(video, methods='["screensaver", "xdg-screensaver"]')
    desk.start(desk.system, desk.session)
    result = subprocess.run(PYTHON + ["lock"], env=desk.env, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "locked\n", "")
    status = desk.status()
    assert (status["locked"], status["locked_by"], status["locked_via"]) == (True, "facewarden", "org.mate.ScreenSaver")
    log = desk.log.read_text()
    assert log.count("asked org.mate.ScreenSaver org.mate.ScreenSaver.Lock to lock (it sends no reply)") == 1
    assert "session locked (screensaver)" in log and "NOT locked" not in log and "xdg-screensaver" not in log


def test_a_stopped_daemon_keeps_its_place(desk, video):
    desk.configure(video)
    desk.start(desk.system, desk.session)
    desk.proc.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run(PYTHON + ["run"], env=desk.env, capture_output=True, text=True, timeout=60)
    finally:
        desk.proc.send_signal(signal.SIGCONT)
    assert second.returncode == 2
    assert second.stderr.startswith("facewarden: facewarden is already running (pid ")
    assert len(second.stderr.splitlines()) == 1
    assert desk.status()["state"] in ("pending", "owner_present")  # the first still answers


def test_sleep_locks_lets_the_camera_go_then_the_inhibitor_and_wake_starts_afresh(desk, video):
    desk.configure(video)
    desk.start(desk.system, desk.session)
    wait_for(lambda: desk.status()["state"] == "owner_present", "the owner", timeout=60)
    logind_log = desk.logind_log
    assert [r for r in _records(logind_log) if r["what"] == "inhibit"][0]["args"][3] == "delay"

    drive_logind(desk.system, "Sleep", "b", True)
    wait_for(lambda: any(r["what"] == "inhibitor released" for r in _records(logind_log)), "the inhibitor let go")
    assert not camera_open(desk, video)  # the camera went before the inhibitor
    released = next(r["time"] for r in _records(logind_log) if r["what"] == "inhibitor released")
    assert float(desk.lock_log.read_text().split()[0]) < released  # locked before letting the machine sleep
    wait_for(lambda: [h[0] for h in desk.hooks()] == ["sleep", "locked"], "the sleep and locked hooks")
    assert desk.hooks()[1][1] == "facewarden"
    assert desk.status()["sampling"] == "off (asleep)"

    samples = desk.status()["samples"]
    drive_logind(desk.system, "Sleep", "b", False)
    woke = time.time()
    wait_for(lambda: desk.status()["samples"] > samples, "a sample after waking")
    status = desk.status()
    assert status["sampled_at"] > woke and status["state"] in ("pending", "owner_present")
    wait_for(lambda: len([r for r in _records(logind_log) if r["what"] == "inhibit"]) == 2, "a new inhibitor")
    wait_for(lambda: desk.hooks()[-1][0] == "wake", "the wake hook")
    wait_for(lambda: desk.status()["state"] == "owner_present", "the owner again")
    assert camera_open(desk, video)


def test_a_camera_that_blocks_on_open_is_caught_by_the_watchdog(desk, tmp_path):
    fifo = tmp_path / "wedged-camera"
    os.mkfifo(fifo)
    desk.configure(fifo)
    desk.start(desk.system, desk.session)
    wait_for(desk.lock_log.exists, "the watchdog's lock", timeout=30)
    wait_for(lambda: {"camera_lost", "locked"} <= {h[0] for h in desk.hooks()}, "camera_lost and locked")
    assert desk.status()["camera"] == "lost"
    assert "watchdog: no sampling step completed" in desk.log.read_text()
    assert "READY=1" not in desk.notifications()  # no step ever completed: systemd's watchdog would act too
    assert desk.stop() == 0  # and a read hung in the camera does not keep it from exiting


def _records(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("while_locked, actions, hook, watches", [
    ("auto", {}, False, False),  # nothing needs the camera while locked
    ("auto", {"owner_arrived": ["notify"]}, False, True),  # wake the display on return
    ("auto", {}, True, True),  # a hook on owner_arrived counts the same
    ("auto", {"owner_arrived": ["unlock"]}, False, True),
    ("watch", {}, False, True),
    ("off", {"owner_arrived": ["notify"]}, True, False),
])
def test_while_locked_watches_only_when_something_needs_the_camera(home, tmp_path, astronaut_bgr, while_locked,
                                                                   actions, hook, watches):
    from facewarden.config import parse
    from facewarden.core.guard import Reported
    from facewarden.core.presence import State
    from facewarden.paths import paths
    from facewarden.service.daemon import Daemon

    cv2.imwrite(str(tmp_path / "0.jpg"), astronaut_bgr)
    if hook:
        (home / "hooks").mkdir(parents=True)
        (home / "hooks" / "owner_arrived").write_text("#!/bin/sh\n")
        (home / "hooks" / "owner_arrived").chmod(0o755)
    cfg = parse({"camera": {"source": str(tmp_path)}, "sampling": {"while_locked": while_locked},
                 "actions": actions})
    daemon = Daemon(cfg, paths(), verifier_factory=lambda config, where: None)
    assert daemon.guard.wants_camera is True
    daemon.feed(Reported("logind", True))
    assert daemon.guard.wants_camera is watches
    daemon.guard.presence.state = State.OWNER_ABSENT  # nobody there, nothing in doubt: the locked cadence
    assert daemon.guard.interval() == (cfg.sampling.locked_interval_s if watches else cfg.sampling.paused_interval_s)
    status = daemon.server.controller.status()
    assert status["sampling"] == ("watching (locked)" if watches else "off (locked)")
    assert status["camera"] == ("ok" if watches else "released (locked)")
