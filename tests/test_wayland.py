"""facewarden on a real wlroots desktop: Debian's sway 1.7 headless, waybar as the StatusNotifierItem
host and watcher, grim for screenshots, swaylock as the locker (desktop_helpers/wayland.py).

- the tray as a StatusNotifierItem: in waybar's tray (a screenshot shows the state's colour), its
  properties, a left click (Activate) and the menu's entries called through dbusmenu's `Event` as a
  host calls them, reaching the real control server; back after waybar restarts;
- idle input from sway's org_kde_kwin_idle, rising without input, reset by input;
- swaylock started as swayidle starts it: the real daemon reports the session locked by "session",
  lets the camera go, and samples again once swaylock ends; `facewarden lock` succeeds when the
  lock chain's command starts swaylock without anyone setting LockedHint;
- doctor names the tray and the idle source this desktop gets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from jeepney import DBusAddress, MessageType, Properties, new_method_call
from jeepney.io.blocking import open_dbus_connection

from desktop_helpers.daemon_side import TestDaemon, serving
from desktop_helpers.procs import need, pixels, wait_for
from facewarden.desktop import tray
from facewarden.paths import write_private
from test_daemon_session import video  # noqa: F401  (the replayed owner, a module fixture)

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
NOW = time.time()


@pytest.fixture(scope="module")
def desk():
    from desktop_helpers.wayland import sway

    with sway() as d:
        d.start_waybar()
        yield d


def bar_shows(desk, colour, name: str) -> None:
    """Wait until waybar's tray shows the icon in `colour` (most of a 24 px disc), keeping the screenshot."""
    def check():
        shot = desk.screenshot()
        if pixels(shot, colour, tolerance=24) < 150:
            return False
        ARTIFACTS.mkdir(exist_ok=True)
        shot.save(ARTIFACTS / f"waybar-{name}.png")
        return True

    wait_for(check, f"waybar's tray to show {name}")


class Host:
    """What a tray host does over D-Bus: read the item's properties, its menu, send clicks."""

    def __init__(self, address: str, name: str):
        self.conn = open_dbus_connection(address)
        self.item = DBusAddress("/StatusNotifierItem", bus_name=name, interface="org.kde.StatusNotifierItem")
        self.menu = DBusAddress("/MenuBar", bus_name=name, interface="com.canonical.dbusmenu")

    def call(self, msg):
        reply = self.conn.send_and_get_reply(msg, timeout=5)
        assert reply.header.message_type == MessageType.method_return, reply.body
        return reply.body

    def props(self) -> dict:
        return {k: v[1] for k, v in self.call(Properties(self.item).get_all())[0].items()}

    def entries(self) -> dict[str, tuple[int, bool, list]]:
        """label -> (id, enabled, children's labels) of the whole menu, as GetLayout gives it."""
        _revision, (_root, _props, children) = self.call(new_method_call(self.menu, "GetLayout", "iias", (0, -1, [])))
        found = {}
        for _sig, (item_id, props, kids) in children:
            if "label" in props:
                found[props["label"][1]] = (item_id, props["enabled"][1], [k[1][1]["label"][1] for k in kids])
        return found

    def click(self, label: str) -> None:
        item_id, enabled, _ = self.entries()[label]
        assert enabled, label
        self.call(new_method_call(self.menu, "Event", "isvu", (item_id, "clicked", ("i", 0), 0)))

    def close(self) -> None:
        self.conn.close()


@contextmanager
def sni_tray(desk, home: Path):
    proc = subprocess.Popen([sys.executable, "-m", "facewarden", "tray"], env=desk.env | {"FACEWARDEN_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=open(home.parent / "tray.log", "w"))
    host = Host(desk.bus, f"org.kde.StatusNotifierItem-{proc.pid}-1")
    try:
        yield proc, host
    finally:
        host.close()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def registered(desk) -> list[str]:
    with open_dbus_connection(desk.bus) as conn:
        watcher = DBusAddress("/StatusNotifierWatcher", bus_name="org.kde.StatusNotifierWatcher",
                              interface="org.kde.StatusNotifierWatcher")
        reply = conn.send_and_get_reply(Properties(watcher).get("RegisteredStatusNotifierItems"), timeout=5)
    return reply.body[0][1]


@pytest.fixture
def served(home):
    home.mkdir(parents=True, exist_ok=True)
    daemon = TestDaemon({"state": "owner_present", "since": NOW - 600, "paused_until": None, "locked": False,
                         "camera": "ok", "faces": 1})
    with serving(daemon):
        yield daemon


def test_tray_in_waybar_shows_the_state_and_its_menu_acts(desk, served, home):
    daemon = served
    events = [{"time": NOW - 120, "event": "locked", "state": "owner_absent", "locked_by": "session"},
              {"time": NOW - 60, "event": "unlocked", "state": "pending"}]
    write_private(home / "state" / "events.jsonl", "".join(json.dumps(e) + "\n" for e in events).encode())
    with sni_tray(desk, home) as (proc, host):
        bar_shows(desk, tray.GREEN, "owner_present")
        assert any(name.startswith(host.item.bus_name) for name in registered(desk))
        props = host.props()
        assert props["Title"] == "facewarden" and props["Status"] == "Active" and props["Menu"] == "/MenuBar"
        _icon, _pixmaps, title, text = props["ToolTip"]
        assert title == "facewarden" and text.startswith("owner present since ")
        assert sorted(w for w, h, data in props["IconPixmap"] if len(data) == 4 * w * h) == [16, 22, 32, 48, 64]

        daemon.state |= {"state": "stranger"}
        bar_shows(desk, tray.RED, "stranger")
        assert host.props()["Status"] == "NeedsAttention"
        daemon.state |= {"state": "owner_present"}
        bar_shows(desk, tray.GREEN, "owner_back")

        # A left click: Activate pauses for 5 minutes; again resumes.
        host.call(new_method_call(host.item, "Activate", "ii", (0, 0)))
        bar_shows(desk, tray.AMBER, "paused")
        assert daemon.calls == [("pause", 300.0)]
        host.call(new_method_call(host.item, "Activate", "ii", (0, 0)))
        wait_for(lambda: daemon.calls[-1:] == [("resume",)], "the second click to resume")

        # The menu as the host reads it: the status line, the entries, the recent events (newest first).
        wait_for(lambda: any(label.startswith("owner present") for label in host.entries()), "the status line")
        entries = host.entries()
        status_line = next(label for label in entries if label.startswith("owner present"))
        assert entries[status_line][1] is False  # a line to read, not to click
        clock = tray.short_time(NOW - 60, NOW)
        assert entries["Recent events"][2][0] == f"{clock} unlocked"
        assert entries["Recent events"][2][1].endswith(" locked (session)")
        # A new event and no state change: opening the submenu (AboutToShow) says the layout is stale.
        about = new_method_call(host.menu, "AboutToShow", "i", (entries["Recent events"][0],))
        assert host.call(about) == (False,)
        with open(home / "state" / "events.jsonl", "a") as log:
            log.write(json.dumps({"time": NOW, "event": "owner_arrived", "state": "owner_present"}) + "\n")
        assert host.call(about) == (True,)
        assert host.entries()["Recent events"][2][0] == f"{tray.short_time(NOW, NOW)} owner arrived"
        for label, call in [("Pause 15 min", ("pause", 900.0)), ("Pause 1 h", ("pause", 3600.0)),
                            ("Pause until resumed", ("pause", None)), ("Resume", ("resume",)),
                            ("Lock now", ("lock-now",))]:
            host.click(label)
            wait_for(lambda call=call: daemon.calls[-1:] == [call], f"{label} to reach the daemon")
        bar_shows(desk, tray.RED, "locked")
        host.click("Quit tray")
        assert proc.wait(30) == 0
        wait_for(lambda: pixels(desk.screenshot(), tray.RED, tolerance=24) == 0, "the icon to leave the bar")


def test_the_icon_comes_back_when_waybar_restarts(desk, served, home):
    with sni_tray(desk, home) as (proc, _host):
        bar_shows(desk, tray.GREEN, "before_waybar_restart")
        desk.stop("waybar")
        desk.start_waybar()
        bar_shows(desk, tray.GREEN, "after_waybar_restart")  # the same state: only a new registration shows it
        assert proc.poll() is None


def test_idle_time_rises_without_input_and_input_resets_it(desk):
    from facewarden.service.idle import WaylandIdle

    source = WaylandIdle(desk.env)
    try:
        assert source.available() == f"wayland (org_kde_kwin_idle on {desk.runtime / 'wayland-1'})"
        wait_for(lambda: source.idle_seconds() >= 1.0, "sway to report the session idle")
        first = source.idle_seconds()
        wait_for(lambda: source.idle_seconds() >= first + 1.0, "the idle time to rise")
        desk.swaymsg("seat", "-", "cursor", "move", "5", "5")  # input, as a mouse would give
        wait_for(lambda: source.idle_seconds() == 0.0, "input to reset the idle time")
    finally:
        source.close()


def test_doctor_names_the_tray_and_idle_source_sway_gets(desk, home):
    r = subprocess.run([sys.executable, "-m", "facewarden", "doctor"], env=desk.env | {"FACEWARDEN_HOME": str(home)},
                       capture_output=True, text=True, timeout=120)
    lines = {line[5:].split(":", 1)[0]: line for line in r.stdout.splitlines()}
    assert lines["tray"].startswith("ok   tray: StatusNotifierItem: org.kde.StatusNotifierWatcher is on the "
                                    "session bus"), r.stdout
    assert lines["idle"].startswith("ok   idle: wayland (org_kde_kwin_idle on "), r.stdout


# -- swaylock and the real daemon -------------------------------------------------------------------
# Debian's swaylock, run from a copy named LOCKER and listed in the daemon's lock.lockers: every
# daemon of this user watches /usr/bin/swaylock, and the daemons of tests running beside this one
# (pytest-xdist) must not see this test's lock. The copy is the same program; the default list is
# the same code path with another name (test_lockers.py).

LOCKER = "fw-swaylock"


def swaylocks() -> list[int]:
    """Running LOCKER processes that lead their session: the locker itself, not its password helper."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and Path(f"/proc/{pid}/comm").read_text().strip() == LOCKER and \
                    Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3] == pid and \
                    os.readlink(f"/proc/{pid}/exe"):
                found.append(int(pid))
        except OSError:
            continue
    return found


def unlock() -> None:
    """What typing the password does: swaylock's SIGUSR1 ends the lock."""
    for pid in swaylocks():
        os.kill(pid, signal.SIGUSR1)


@pytest.fixture
def daemon_desk(desk, owner_home, tmp_path, monkeypatch):
    """(Desk, the system bus, the swaylock copy) with the daemon's config to be written by the test."""
    from desktop_helpers.buses import logind, system_bus
    from test_daemon_session import Desk

    locker = tmp_path / LOCKER
    shutil.copy2(need("swaylock", "swaylock"), locker)
    for key, value in desk.env.items():
        monkeypatch.setenv(key, value)
    with system_bus(tmp_path) as system, logind(system, tmp_path / "logind.jsonl"):
        d = Desk(owner_home, tmp_path)
        try:
            yield d, system, locker
        finally:
            if swaylocks():
                unlock()
                # The daemon takes in the unlock before it is stopped (an unlock while it shuts down
                # races its scheduler: a daemon matter, not this test's).
                wait_for(lambda: d.proc is None or d.proc.poll() is not None or not d.status()["locked"],
                         "the daemon to see the unlock")
            d.stop()
            assert "Traceback" not in d.log.read_text(), d.log.read_text()[-3000:]


def test_swaylock_locks_the_session_for_the_daemon(desk, daemon_desk, video):  # noqa: F811
    from test_daemon_session import camera_open

    d, system, locker = daemon_desk
    d.configure(video, f'lockers = ["{locker}"]')
    d.start(system, desk.bus)
    wait_for(lambda: d.status()["state"] == "owner_present", "the owner", timeout=60)
    assert camera_open(d, video) and d.status()["session_locked"] is False

    # As swayidle runs it on logind's Lock (or a key binding does): `swaylock -f`, which forks to
    # the background and sets no LockedHint.
    subprocess.run([str(locker), "-f", "-c", "202020"], env=desk.env, check=True, timeout=30)
    wait_for(lambda: not camera_open(d, video), "the camera to be let go")
    status = d.status()
    assert status["locked"] is True and status["locked_via"] == "locker"
    assert status["sampling"] == "off (locked)"
    wait_for(lambda: d.hooks() and d.hooks()[-1][0] == "locked", "the locked hook")
    assert d.hooks()[-1][:2] == ["locked", "session"]

    unlock()
    wait_for(lambda: camera_open(d, video), "sampling again after swaylock ended")
    wait_for(lambda: d.hooks()[-1][0] == "unlocked", "the unlocked hook")
    assert d.status()["locked"] is False
    assert not d.lock_log.exists()  # facewarden itself never locked


def test_facewarden_lock_succeeds_when_the_chain_starts_a_locker_without_a_hint(desk, daemon_desk, video,  # noqa: F811
                                                                                 tmp_path, monkeypatch):
    # loginctl lock-session as on sway: logind emits Lock, swayidle starts swaylock, nobody sets
    # LockedHint (so `show-session` keeps saying "no"). A stand-in loginctl does both halves.
    d, system, locker = daemon_desk
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "loginctl").write_text(f'#!/bin/sh\ncase "$1" in\n  lock-session) {locker} -f -c 202020 '
                                       '</dev/null >/dev/null 2>&1 ;;\n'
                                       '  show-session) echo no ;;\nesac\n')
    (fake_bin / "loginctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    d.configure(video, f'lockers = ["{locker}"]')
    config = d.home / "config.toml"
    config.write_text(config.read_text().replace('methods = ["command"]', 'methods = ["loginctl"]'))
    d.start(system, desk.bus)
    wait_for(lambda: d.status()["state"] == "owner_present", "the owner", timeout=60)

    r = subprocess.run([sys.executable, "-m", "facewarden", "lock"], env={**os.environ, "FACEWARDEN_HOME": str(d.home)},
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "locked\n"), r.stderr
    assert swaylocks() and d.status()["locked_via"] == "locker"
    wait_for(lambda: d.hooks() and d.hooks()[-1][0] == "locked", "the locked hook")
    assert d.hooks()[-1][:2] == ["locked", "facewarden"]
