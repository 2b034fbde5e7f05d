"""dbus.py against a private dbus-daemon and a test desktop (tests/desktop_helpers/bus_server.py)
that records every call it receives."""

from __future__ import annotations

import json

import pytest

from desktop_helpers.procs import bus_server, session_bus
from facewarden.service import dbus


def calls(record):
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


@pytest.fixture
def bus(tmp_path, monkeypatch):
    with session_bus(tmp_path) as address:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        yield address


def test_notify_delivers_summary_body_and_urgency(bus, tmp_path):
    record = tmp_path / "calls.jsonl"
    with bus_server(bus, record, "org.freedesktop.Notifications"):
        assert dbus.has_name("org.freedesktop.Notifications")
        assert dbus.notify("Stranger at your desk", "Locked the session.", urgency="critical") is True
    (call,) = calls(record)
    assert call["member"] == "Notify" and call["interface"] == "org.freedesktop.Notifications"
    app, replaces, icon, summary, body, actions, hints, timeout = call["args"]
    assert (app, summary, body) == ("facewarden", "Stranger at your desk", "Locked the session.")
    assert hints["urgency"][1] == 2  # jeepney keeps a variant as (signature, value)


def test_notify_without_a_server_is_false(bus):
    assert dbus.has_name("org.freedesktop.Notifications") is False
    assert dbus.notify("nobody listens") is False


def test_bad_urgency_is_refused():
    with pytest.raises(ValueError, match="urgency"):
        dbus.notify("x", urgency="loud")


def test_lock_calls_the_freedesktop_screensaver_first(bus, tmp_path):
    record = tmp_path / "calls.jsonl"
    with bus_server(bus, record, "org.freedesktop.ScreenSaver", "org.gnome.ScreenSaver"):
        assert dbus.lock_services() == ["org.freedesktop.ScreenSaver", "org.gnome.ScreenSaver"]
        assert dbus.screensaver_lock() is True
    assert [(c["name"], c["path"], c["member"]) for c in calls(record)] == [
        ("org.freedesktop.ScreenSaver", "/org/freedesktop/ScreenSaver", "Lock")]


def test_lock_falls_through_to_gnome_when_freedesktop_fails(bus, tmp_path):
    record = tmp_path / "calls.jsonl"
    with bus_server(bus, record, "org.freedesktop.ScreenSaver:fail", "org.gnome.ScreenSaver"):
        assert dbus.screensaver_lock() is True
    assert [(c["name"], c["member"]) for c in calls(record)] == [
        ("org.freedesktop.ScreenSaver", "Lock"),  # /org/freedesktop/ScreenSaver
        ("org.freedesktop.ScreenSaver", "Lock"),  # /ScreenSaver, older KDE
        ("org.gnome.ScreenSaver", "Lock")]


def test_lock_is_false_when_every_screensaver_refuses(bus, tmp_path):
    record = tmp_path / "calls.jsonl"
    with bus_server(bus, record, "org.gnome.ScreenSaver:fail"):
        assert dbus.screensaver_lock() is False
    assert [c["member"] for c in calls(record)] == ["Lock", "SetActive"]
    assert calls(record)[1]["args"] == [True]


def test_lock_without_a_screensaver_is_false(bus):
    assert dbus.screensaver_lock() is False


def test_no_session_bus_is_false_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'nobus'}")
    assert dbus.notify("x") is False
    assert dbus.screensaver_lock() is False
    assert dbus.has_name("org.freedesktop.Notifications") is False
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # no bus socket there either
    assert dbus.session_bus_address() is None
    assert dbus.notify("x") is False


def test_runtime_dir_bus_is_found_without_the_variable(bus, tmp_path, monkeypatch):
    # systemd user units may not see DBUS_SESSION_BUS_ADDRESS; the bus is at $XDG_RUNTIME_DIR/bus.
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    record = tmp_path / "calls.jsonl"
    with bus_server(bus, record, "org.freedesktop.Notifications"):
        assert dbus.notify("hello") is True
    assert len(calls(record)) == 1
