"""The tray: its pure state -> icon/tooltip/menu logic, and the real tray process on Xvfb with
Debian's trayer as the tray host, driven by a running control server through its socket."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from desktop_helpers.daemon_side import TestDaemon, serving
from desktop_helpers.procs import pixels, wait_for
from facewarden.desktop import tray

NOW = datetime(2026, 11, 28, 9, 30).timestamp()


def status(**kw):
    base = {"ok": True, "state": "owner_present", "since": NOW - 600, "paused_until": None, "locked": False,
            "camera": "ok", "faces": 1, "score": 0.71}
    return base | kw


@pytest.mark.parametrize("kw, colour", [
    ({}, tray.GREEN),
    ({"state": "owner_absent", "faces": 0}, tray.GREY),
    ({"state": "stranger"}, tray.RED),
    ({"state": "owner_absent", "locked": True}, tray.RED),
    ({"state": "pending"}, tray.AMBER),
    ({"warning": "owner_leaving"}, tray.AMBER),
    ({"warning": "owner_looking_away"}, tray.AMBER),
    ({"state": "paused", "paused_until": NOW + 300, "locked": True}, tray.AMBER),
])
def test_state_colour(kw, colour):
    assert tray.view(status(**kw), NOW).colour == colour


def test_tooltip_says_the_state_and_since_when():
    assert tray.view(status(), NOW).tooltip == "facewarden: owner present since 09:20"
    assert tray.view(status(state="paused", paused_until=NOW + 300), NOW).tooltip == "facewarden: paused until 09:35"
    assert tray.view(status(state="paused"), NOW).tooltip == "facewarden: paused until resumed"
    lost = tray.view(status(state="owner_absent", locked=True, camera="lost"), NOW)
    assert lost.tooltip == "facewarden: owner away since 09:20; session locked; camera lost" and lost.camera_lost
    yesterday = tray.view(status(since=NOW - 86400), NOW).tooltip
    assert yesterday.endswith(datetime.fromtimestamp(NOW - 86400).strftime("since %Y-%m-%d %H:%M"))
    down = tray.view(None, NOW)
    assert down.tooltip == "facewarden: daemon not running" and not down.running


def test_tooltip_names_who_holds_a_busy_camera():
    busy = tray.view(status(camera="busy", camera_busy_by="zoom (pid 4242)"), NOW)
    assert busy.tooltip == "facewarden: owner present since 09:20; camera busy: zoom (pid 4242)"
    assert not busy.camera_lost  # busy is not lost: the camera is not struck through


def test_tooltip_says_why_the_screen_is_dimmed():
    leaving = tray.view(status(warning="owner_leaving", dimmed=["owner_leaving"]), NOW).tooltip
    assert leaving == "facewarden: owner present since 09:20; you seem to have left: dimmed, the lock follows"
    away = tray.view(status(warning="owner_looking_away"), NOW).tooltip
    assert away == "facewarden: owner present since 09:20; looking away: dimmed until you face the screen"


def test_icons_differ_per_state_and_camera_loss():
    present = tray.draw(tray.view(status(), NOW))
    lost = tray.draw(tray.view(status(camera="lost"), NOW))
    down = tray.draw(tray.view(None, NOW))
    assert present.size == (64, 64) and pixels(present, tray.GREEN) > 1000
    assert pixels(lost, tray.GREEN) < pixels(present, tray.GREEN)  # the strike-through covers some disc
    # Not running: a hollow ring, transparent between the ring and the camera.
    assert pixels(down, tray.OFF) > 300 and pixels(down, tray.GREEN) == 0
    assert down.getpixel((32, 10))[3] == 0 and present.getpixel((32, 10))[3] == 255
    assert tray.draw(tray.view(status(), NOW), size=22).size == (22, 22)


def test_click_toggles_a_short_pause():
    assert tray.click_request(tray.view(status(), NOW)) == {"cmd": "pause", "seconds": 300}
    assert tray.click_request(tray.view(status(state="paused"), NOW)) == {"cmd": "resume"}


def test_tray_shows_changes_and_survives_the_daemon_going_away():
    d, shown, told = TestDaemon(status()), [], []
    t = tray.Tray(d.request, show=shown.append, clock=lambda: NOW, tell=told.append)
    t.refresh()
    t.refresh()  # unchanged: not redrawn
    assert [v.colour for v in shown] == [tray.GREEN]
    d.up = False
    t.refresh()
    assert shown[-1].tooltip == "facewarden: daemon not running"
    t.activate({"cmd": "lock-now"})
    assert told == ["the daemon is not running"]
    d.up = True
    t.refresh()  # reconnected: every request is a fresh connection
    assert shown[-1].colour == tray.GREEN
    d.refuse["resume"] = "bad"
    t.activate({"cmd": "resume"})
    assert told[-1] == "The daemon refused: bad"


def test_quit_stops_the_icon():
    stopped, ticks, d = [], [], TestDaemon(status())
    t = tray.Tray(d.request, stop=lambda: stopped.append(True), clock=lambda: NOW)
    t.activate("quit")
    assert stopped == [True] and t.stopping.is_set()
    t.loop(interval=60, tick=lambda: ticks.append(1))  # returns at once once stopping...
    assert ticks == [] and d.sent == []  # ...without polling the daemon or redrawing again


def test_open_config_creates_the_default_once_and_never_overwrites(home, tmp_path, monkeypatch):
    # A stand-in xdg-open that records what it was asked to open.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    opened = tmp_path / "opened"
    (bindir / "xdg-open").write_text(f"#!/bin/sh\necho \"$1\" >> {opened}\n")
    (bindir / "xdg-open").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    path = tray.open_config()
    from facewarden.config import default_text

    assert open(path).read() == default_text() and oct(os.stat(path).st_mode & 0o777) == "0o600"
    with open(path, "w") as f:
        f.write("[camera]\nsource = 1\n")
    tray.open_config()
    assert open(path).read() == "[camera]\nsource = 1\n"
    deadline = time.monotonic() + 10
    while (not opened.exists() or len(opened.read_text().splitlines()) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert opened.read_text().splitlines() == [path, path]


def test_no_display_is_one_line_and_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["FACEWARDEN_HOME"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-m", "facewarden", "tray"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr == ("facewarden: no graphical display (DISPLAY is not set): "
                        "run the tray inside your desktop session\n")


# -- the real tray process on Xvfb + trayer, against the real control server ------------------

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture
def served(home):
    daemon = TestDaemon(status())
    with serving(daemon) as server:
        yield daemon, server


def test_menu_entries_reach_the_daemon_through_the_socket(served):
    daemon, _ = served
    t = tray.Tray()  # the default request: control.request on paths().socket_path
    assert t.refresh().colour == tray.GREEN
    for _label, what in tray.MENU:
        if isinstance(what, dict):
            t.activate(what)
    assert daemon.calls == [("pause", 300.0), ("pause", 900.0), ("pause", 3600.0), ("pause", None), ("resume",), ("lock-now",)]
    assert t.current.colour == tray.RED  # locked
    assert "session locked" in t.current.tooltip


@pytest.fixture(scope="module")
def x_tray():
    from desktop_helpers.procs import trayer, xvfb

    with xvfb(320, 240) as display, trayer(display):  # tall enough for the whole menu
        yield display


def icon_window(display: str):
    """(x, y, width, height, title) of our docked icon, or None while it is not docked."""
    import Xlib.display

    d = Xlib.display.Display(display)
    try:
        root = d.screen().root
        todo = list(root.query_tree().children)
        while todo:
            w = todo.pop()
            try:
                cls = w.get_wm_class() or ()
                if "facewardenSystemTrayIcon" in cls and w.query_tree().parent.id != root.id:
                    geo, pos = w.get_geometry(), w.translate_coords(root, 0, 0)
                    return -pos.x, -pos.y, geo.width, geo.height, w.get_wm_name()
                todo += w.query_tree().children
            except Exception:  # a window vanished while we walked the tree
                continue
        return None
    finally:
        d.close()


def shows(display: str, colour, name: str, title: str = "facewarden: "):
    """The icon's title once its pixels show `colour` (most of a disc) and the title starts with
    `title`, saving the screenshot."""
    from desktop_helpers.procs import screenshot

    def check():
        win = icon_window(display)
        if win is None:
            return None
        x, y, w, h, shown = win
        # While trayer (re)embeds the icon its window is briefly tiny: wait for a real icon size.
        if not shown.startswith(title) or min(w, h) < 16:
            return None
        shot = screenshot(display)
        if pixels(shot.crop((x, y, x + w, y + h)), colour, tolerance=16) < w * h // 4:
            return None
        ARTIFACTS.mkdir(exist_ok=True)
        shot.save(ARTIFACTS / f"tray-{name}.png")
        return shown

    return wait_for(check, f"the tray icon to show {name}")


@contextmanager
def start_tray(display: str, home, tmp_path):
    env = dict(os.environ, DISPLAY=display, FACEWARDEN_HOME=str(home),
               DBUS_SESSION_BUS_ADDRESS=f"unix:path={tmp_path / 'no-bus'}")
    proc = subprocess.Popen([sys.executable, "-m", "facewarden", "tray"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "tray.log", "w"))
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


@pytest.fixture
def tray_process(x_tray, served, home, tmp_path):
    with start_tray(x_tray, home, tmp_path) as proc:
        yield proc


def test_tray_icon_per_state_click_and_daemon_restart(x_tray, served, tray_process):
    daemon, server = served
    shows(x_tray, tray.GREEN, "owner_present", "facewarden: owner present since ")
    daemon.state |= {"state": "owner_absent", "faces": 0}
    shows(x_tray, tray.GREY, "owner_absent", "facewarden: owner away since ")
    daemon.state |= {"state": "stranger", "faces": 1}
    shows(x_tray, tray.RED, "stranger", "facewarden: stranger at the desk since ")
    daemon.state |= {"state": "pending"}
    shows(x_tray, tray.AMBER, "pending", "facewarden: checking since ")
    daemon.state |= {"state": "owner_absent", "locked": True, "camera": "lost"}
    assert shows(x_tray, tray.RED, "camera_lost", "facewarden: owner away").endswith("; session locked; camera lost")
    daemon.state |= {"state": "owner_present", "locked": False, "camera": "ok"}
    shows(x_tray, tray.GREEN, "owner_back", "facewarden: owner present")

    # A left click on the docked icon (xorg has no menu) pauses for 5 minutes; again resumes.
    x, y, w, h, _ = icon_window(x_tray)
    click = ["xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "1"]
    subprocess.run(click, env=dict(os.environ, DISPLAY=x_tray), check=True, timeout=30)
    shows(x_tray, tray.AMBER, "paused", "facewarden: paused until ")
    assert daemon.calls == [("pause", 300.0)]
    subprocess.run(click, env=dict(os.environ, DISPLAY=x_tray), check=True, timeout=30)
    shows(x_tray, tray.GREEN, "resumed", "facewarden: owner present")
    assert daemon.calls[-1] == ("resume",)

    # The daemon goes away: "not running"; it comes back on the same socket: the tray reconnects.
    server.stop()
    shows(x_tray, tray.OFF, "daemon_not_running", "facewarden: daemon not running")
    with serving(daemon):
        shows(x_tray, tray.GREEN, "daemon_back", "facewarden: owner present")
    assert tray_process.poll() is None


def menu_window(display: str):
    """(x, y, width, height) of a posted Tk popup menu on `display`, or None."""
    import Xlib.display
    import Xlib.X

    d = Xlib.display.Display(display)
    try:
        for w in d.screen().root.query_tree().children:
            try:
                if "Menu" in (w.get_wm_class() or ()) and w.get_attributes().map_state == Xlib.X.IsViewable:
                    geo = w.get_geometry()
                    return geo.x, geo.y, geo.width, geo.height
            except Exception:  # a window vanished while we looked
                continue
        return None
    finally:
        d.close()


def test_right_click_menu_reaches_the_daemon(x_tray, served, tray_process):
    pytest.importorskip("tkinter", reason="the xorg right-click menu needs tkinter (Debian python3-tk)")
    daemon, _ = served
    env = dict(os.environ, DISPLAY=x_tray)
    shows(x_tray, tray.GREEN, "menu_owner_present", "facewarden: owner present")

    def choose(label):
        x, y, w, h, _ = icon_window(x_tray)
        subprocess.run(["xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "3"], env=env, check=True)
        mx, my, mw, mh = wait_for(lambda: menu_window(x_tray), "the menu to open")
        ARTIFACTS.mkdir(exist_ok=True)
        from desktop_helpers.procs import screenshot

        screenshot(x_tray).save(ARTIFACTS / "tray-menu.png")
        entry = mh / len(tray.MENU)  # equal rows, no separators
        row = [label for label, _ in tray.MENU].index(label)
        subprocess.run(["xdotool", "mousemove", str(mx + mw // 2), str(int(my + entry * (row + 0.5))), "click", "1"],
                       env=env, check=True)
        wait_for(lambda: menu_window(x_tray) is None, "the menu to close")

    choose("Pause 15 min")
    wait_for(lambda: daemon.calls == [("pause", 900.0)], "pause 15 min to reach the daemon")
    shows(x_tray, tray.AMBER, "menu_paused", "facewarden: paused until ")
    choose("Lock now")
    wait_for(lambda: daemon.calls[-1:] == [("lock-now",)], "lock now to reach the daemon")
    choose("Quit tray")
    assert tray_process.wait(30) == 0


def test_icon_docks_again_when_the_tray_host_restarts(served, home, tmp_path):
    from desktop_helpers.procs import trayer, xvfb

    with xvfb() as display, ExitStack() as first_tray:
        first_tray.enter_context(trayer(display))
        with start_tray(display, home, tmp_path) as proc:
            shows(display, tray.GREEN, "before_tray_restart")
            first_tray.close()
            wait_for(lambda: icon_window(display) is None, "the icon to lose its tray")
            with trayer(display):
                shows(display, tray.GREEN, "after_tray_restart")  # same state: no update forces it
                assert proc.poll() is None


def test_no_tray_host_is_one_line_and_exit_2(home):
    from desktop_helpers.procs import xvfb

    with xvfb() as display:
        r = subprocess.run([sys.executable, "-m", "facewarden", "tray"], env=dict(os.environ, DISPLAY=display),
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith("facewarden: no tray host: ") and r.stderr.count("\n") == 1
