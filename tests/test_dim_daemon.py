"""The real `facewarden run` process dimming and restoring: the test logind on a private system bus
records SetBrightness and writes it into a temporary sysfs-like backlight directory (800 of 1000 at
the start), a replayed camera (an image directory: the owner, then nobody, then maybe the owner
again), hooks and a lock command that record. Default timings: lock.after_absent_s 10, the warning
(owner_leaving, dims to 30%) 5 s before it.

Owner away 7 s and back -> dim, restore, no lock. Away for good -> dim, lock, restore. Face gone
while the owner is held present (attention) -> dim, restore, no lock; the same with an idle
inhibitor held -> no dim. Brightness moved by the user while dimmed -> kept. Daemon killed while
dimmed -> the next one restores at start.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection

from desktop_helpers.buses import drive_logind, logind, system_bus
from desktop_helpers.procs import wait_for
from facewarden.cli.demo import write_replay
from facewarden.service.control import request
from support import PYTHON, recording_hooks, terminate
from test_dim import backlight, brightness_calls

EVENTS = ("owner_leaving", "owner_stayed", "owner_left", "owner_looking_away", "owner_looking_back", "locked")
FULL, DIMMED = "800", "240"


class Room:
    """The buses, the test logind, the backlight and the daemon, with what they recorded."""

    def __init__(self, home: Path, tmp: Path, system: str, record: Path, level: Path, sysfs: Path):
        self.home, self.tmp, self.system, self.record, self.level, self.sysfs = home, tmp, system, record, level, sysfs
        self.hook_log, self.lock_log = tmp / "hooks.log", tmp / "locks.log"
        self.proc: subprocess.Popen | None = None
        self.log = tmp / "daemon.log"

    def configure(self, frames: Path, extra: str = "") -> None:
        lock = recording_hooks(self.home, EVENTS, "$FACEWARDEN_STATE", self.hook_log, self.lock_log)
        (self.home / "config.toml").write_text(f"""
[camera]
source = "{frames}"
[liveness]
enabled = false
[dim]
sysfs = "{self.sysfs}"
methods = ["logind"]
[lock]
command = ["{lock}"]
methods = ["command"]
{extra}
""")

    def start(self) -> None:
        env = {**os.environ, "FACEWARDEN_HOME": str(self.home), "DBUS_SYSTEM_BUS_ADDRESS": self.system,
               "XDG_RUNTIME_DIR": str(self.tmp / "nobus")}
        for name in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "NOTIFY_SOCKET"):
            env.pop(name, None)
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(PYTHON + ["run"], env=env, stderr=err, stdout=subprocess.DEVNULL)
        wait_for(self._up, "the daemon's control socket", timeout=60)

    def _up(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            request({"cmd": "status"}, self.home / "run" / "control.sock")
            return True
        except Exception:
            return False

    def status(self) -> dict:
        return request({"cmd": "status"}, self.home / "run" / "control.sock")

    def brightness(self) -> str:
        return self.level.read_text().strip()

    def events(self) -> list[str]:
        return [line.split()[0] for line in self.hook_log.read_text().splitlines()] if self.hook_log.exists() else []

    def locks(self) -> int:
        return len(self.lock_log.read_text().splitlines()) if self.lock_log.exists() else 0

    def wait_brightness(self, value: str, what: str, timeout: float = 30) -> float:
        wait_for(lambda: self.brightness() == value, what, timeout=timeout)
        return time.time()

    def stop(self) -> None:
        terminate(self.proc)


@pytest.fixture
def room(owner_home, tmp_path):
    sysfs = tmp_path / "sys"
    level = backlight(sysfs)
    with system_bus(tmp_path) as address, logind(address, tmp_path / "logind.jsonl", sysfs=sysfs) as record:
        r = Room(owner_home, tmp_path, address, record, level, sysfs)
        try:
            yield r
        finally:
            r.stop()
            assert "Traceback" not in r.log.read_text(), r.log.read_text()[-3000:]


@pytest.fixture
def frames(tmp_path, astronaut_bgr):
    """`frames(owner_s, away_s, back_s)`: the image directory the camera replays, and when each part starts."""
    def make(*parts: float) -> tuple[Path, dict]:
        folder = tmp_path / "frames"
        names = ["owner", "away", "back"]
        segments = [(names[i], s, [[astronaut_bgr]] if i != 1 else [[]]) for i, s in enumerate(parts)]
        return folder, write_replay(folder, segments)
    return make


def replay_start(room: Room) -> float:
    """The wall-clock time the replay started (the camera logs it)."""
    text = wait_for(lambda: "replay of" in room.log.read_text() and room.log.read_text(), "the replay to start")
    line = next(x for x in text.splitlines() if "replay of" in x and "started at" in x)
    return float(line.rsplit(" ", 1)[1])


def test_owner_back_within_the_warning_dims_restores_and_never_locks(room, frames):
    folder, starts = frames(4, 7, 30)
    room.configure(folder)
    room.start()
    wait_for(lambda: room.status()["state"] == "owner_present", "the owner", timeout=30)
    t0 = replay_start(room)
    dimmed_at = room.wait_brightness(DIMMED, "the dim before the lock")
    status = room.status()
    assert status["warning"] == "owner_leaving" and status["dimmed"] == ["owner_leaving"]
    # Dimmed 5 s into the absence, give or take the last owner frames in the window and a sample.
    assert 4 + 4 <= dimmed_at - t0 <= 4 + 6.5
    back_at = t0 + starts["back"]
    restored_at = room.wait_brightness(FULL, "the brightness back")
    assert restored_at - back_at < 1.5  # one in-doubt sample (0.25 s), the call, and the replay's frame grid
    time.sleep(6)
    assert room.locks() == 0 and room.brightness() == FULL
    assert room.events()[:2] == ["owner_leaving", "owner_stayed"] and "owner_left" not in room.events()
    assert brightness_calls(room.record) == [["backlight", "intel_backlight", 240],
                                             ["backlight", "intel_backlight", 800]]
    assert not (room.home / "run" / "dimmed.json").exists()
    # Unplugged: UPower says so and the sampling intervals stretch (sampling.battery_factor).
    assert room.status()["on_battery"] is False
    drive_logind(room.system, "SetBattery", "b", True)
    wait_for(lambda: room.status()["interval_factor"] == 2.0, "the battery stretch", timeout=10)
    time.sleep(2.5)  # the step scheduled before the stretch has run
    before = room.status()["samples"]
    time.sleep(8)
    assert room.status()["samples"] - before <= 5  # every 2 s instead of every second


def test_owner_gone_for_good_is_dimmed_then_locked_and_the_lock_restores(room, frames):
    folder, _ = frames(4, 60)
    room.configure(folder)
    room.start()
    wait_for(lambda: room.status()["state"] == "owner_present", "the owner", timeout=30)
    room.wait_brightness(DIMMED, "the dim before the lock")
    wait_for(lambda: room.locks() == 1, "the lock", timeout=15)
    locked_at = float(room.lock_log.read_text().split()[0])
    restored_at = room.wait_brightness(FULL, "the brightness back after the lock")
    assert restored_at >= locked_at
    wait_for(lambda: "locked" in room.events(), "the locked hook")
    assert room.events()[:3] == ["owner_leaving", "owner_left", "locked"]


def test_a_brightness_moved_while_dimmed_is_the_users(room, frames):
    folder, _ = frames(4, 7, 30)
    room.configure(folder)
    room.start()
    room.wait_brightness(DIMMED, "the dim before the lock")
    room.level.write_text("500\n")  # the brightness key, while dimmed
    wait_for(lambda: "owner_stayed" in room.events(), "the owner back")
    time.sleep(1)
    assert room.brightness() == "500" and room.locks() == 0
    assert len(brightness_calls(room.record)) == 1


def test_a_daemon_killed_while_dimmed_is_followed_by_one_that_restores(room, frames):
    folder, _ = frames(4, 300)
    room.configure(folder, "after_absent_s = 30\nwarn_s = 15")
    room.start()
    room.wait_brightness(DIMMED, "the dim before the lock")
    assert room.proc is not None
    room.proc.kill()  # SIGKILL: nothing of the daemon runs after this
    room.proc.wait()
    assert room.brightness() == DIMMED and (room.home / "run" / "dimmed.json").exists()
    room.start()
    room.wait_brightness(FULL, "the restore at start", timeout=10)
    assert not (room.home / "run" / "dimmed.json").exists()


def test_looking_away_dims_and_facing_again_restores_never_a_lock(room, frames):
    # Turned far enough that no face is found, while presence still holds the owner (the absence
    # lock is 30 s away here): attention's owner_looking_away after dim_after_s.
    folder, starts = frames(4, 9, 30)
    room.configure(folder, "after_absent_s = 30\n[attention]\ndim_after_s = 4")
    room.start()
    t0 = replay_start(room)
    room.wait_brightness(DIMMED, "the look-away dim")
    assert room.status()["warning"] == "owner_looking_away"
    restored_at = room.wait_brightness(FULL, "the brightness back")
    assert restored_at - (t0 + starts["back"]) < 1.5
    time.sleep(3)
    assert room.events()[:2] == ["owner_looking_away", "owner_looking_back"] and room.locks() == 0


def test_no_look_away_dim_while_an_idle_inhibitor_is_held(room, frames):
    folder, starts = frames(4, 9, 30)
    room.configure(folder, "after_absent_s = 30\n[attention]\ndim_after_s = 4")
    with open_dbus_connection(room.system, enable_fds=True) as conn:
        manager = DBusAddress("/org/freedesktop/login1", bus_name="org.freedesktop.login1",
                              interface="org.freedesktop.login1.Manager")
        fd = conn.send_and_get_reply(new_method_call(manager, "Inhibit", "ssss",
                                                     ("idle", "mpv", "playing a film", "block"))).body[0]
        try:
            room.start()
            t0 = replay_start(room)
            wait_for(lambda: time.time() > t0 + starts["back"] + 2, "the owner back", timeout=40)
            assert room.brightness() == FULL and brightness_calls(room.record) == []
            assert "owner_looking_away" not in room.events()
        finally:
            os.close(fd.to_raw_fd())
    assert "holds an idle inhibitor" in room.log.read_text()
