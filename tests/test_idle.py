"""The idle-input back-ends for real: Xvfb with xdotool moving the pointer (MIT-SCREEN-SAVER), a test
Mutter IdleMonitor and ScreenSaver on a private session bus, the test logind's IdleHint, and
`detect` picking the first that answers."""

from __future__ import annotations

import subprocess
import time

import pytest

from desktop_helpers.buses import desktop, drive, drive_logind, logind, system_bus
from desktop_helpers.procs import need, session_bus, xvfb
from facewarden.service import idle
from facewarden.service.dbus import Bus
from facewarden.service.logind import Logind


@pytest.fixture
def session(tmp_path, monkeypatch):
    with session_bus(tmp_path) as address:
        bus = Bus.open(address, "session")
        assert bus is not None
        yield address, bus
        bus.close()


def test_x11_idle_follows_the_pointer(monkeypatch):
    xdotool = need("xdotool", "xdotool")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with xvfb() as display:
        source = idle.X11Idle(display)
        assert source.available() == f"x11 (MIT-SCREEN-SAVER on {display})"
        time.sleep(1.2)
        before = source.idle_seconds()
        assert before is not None and before >= 1.0
        subprocess.run([xdotool, "mousemove", "50", "60"], env={"DISPLAY": display}, check=True)
        after = source.idle_seconds()
        assert after is not None and after < before and after < 0.5


def test_x11_is_skipped_under_wayland_and_without_a_display(monkeypatch):
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert idle.X11Idle(":0").available() is None
    monkeypatch.delenv("WAYLAND_DISPLAY")
    assert idle.X11Idle("").available() is None
    assert idle.X11Idle(":97").idle_seconds() is None  # no server there: None, not an exception


@pytest.mark.parametrize("name, source", [("org.gnome.Mutter.IdleMonitor", idle.MutterIdle),
                                          ("org.freedesktop.ScreenSaver", idle.ScreenSaverIdle)])
def test_session_bus_idle_monitors_answer_in_milliseconds(session, name, source):
    address, bus = session
    assert source(bus).available() is None  # nobody owns the name yet
    with desktop(address, name):
        backend = source(bus)
        assert backend.available() == f"{backend.name} ({name})"
        drive(address, name, "SetIdle", "u", 4500)
        assert backend.idle_seconds() == 4.5
        drive(address, name, "SetIdle", "u", 0)
        assert backend.idle_seconds() == 0.0


def test_logind_idle_hint(tmp_path, monkeypatch):
    with system_bus(tmp_path) as address, logind(address, tmp_path / "logind.jsonl"):
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        client = Logind()
        assert client.start()
        try:
            backend = idle.LogindIdle(client)
            assert backend.available() == "logind (IdleHint of /org/freedesktop/login1/session/c1)"
            assert backend.idle_seconds() < 1.0  # not idle
            since = time.time() - 42
            drive_logind(address, "SetIdle", "bt", True, int(since * 1e6))
            assert 41.5 < backend.idle_seconds() < 45
        finally:
            client.close()
    assert idle.LogindIdle(None).available() is None


def test_detect_picks_the_first_that_answers(session, monkeypatch):
    address, bus = session
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert idle.detect(bus, None, display="") is None
    with desktop(address, "org.freedesktop.ScreenSaver"):
        assert idle.detect(bus, None, display="").name == "screensaver"
        with desktop(address, "org.gnome.Mutter.IdleMonitor"):
            assert idle.detect(bus, None, display="").name == "mutter"
            with xvfb() as display:
                assert idle.detect(bus, None, display=display).name == "x11"
    assert [s.name for s in idle.sources(None, None)] == ["x11", "mutter", "screensaver", "wayland", "logind"]
