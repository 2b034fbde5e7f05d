"""The tray: its pure state -> icon/tooltip/menu logic, and the real tray process on Xvfb with
Debian's trayer as the tray host, driven by a running control server through its socket."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime

import numpy as np
import pytest

from facewarden import tray
from facewarden.errors import UserError

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


def pixels(img, colour):
    a = np.asarray(img.convert("RGBA"))
    return int(((a[..., :3] == colour).all(axis=-1) & (a[..., 3] == 255)).sum())


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


class Daemon:
    """A request function standing in for the socket: records requests, can be 'down'."""

    def __init__(self):
        self.sent, self.up, self.reply, self.answer = [], True, status(), {"ok": True}

    def __call__(self, cmd):
        if not self.up:
            raise UserError("the daemon is not running")
        self.sent.append(cmd)
        return self.reply if cmd["cmd"] == "status" else self.answer


def test_tray_shows_changes_and_survives_the_daemon_going_away():
    d, shown, told = Daemon(), [], []
    t = tray.Tray(d, show=shown.append, clock=lambda: NOW, tell=told.append)
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
    d.answer = {"ok": False, "error": "bad"}
    t.activate({"cmd": "resume"})
    assert told[-1] == "The daemon refused: bad"


def test_quit_stops_the_icon():
    stopped = []
    t = tray.Tray(Daemon(), stop=lambda: stopped.append(True), clock=lambda: NOW)
    t.activate("quit")
    assert stopped == [True] and t.stopping.is_set()
    t.loop(interval=0.01)  # returns at once once stopping


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
    r = subprocess.run([sys.executable, "-m", "facewarden", "tray"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr == "facewarden: no graphical display (DISPLAY is not set): run the tray inside your desktop session\n"
