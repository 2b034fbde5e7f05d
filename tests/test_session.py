"""logind.py and dbus.Bus against a private system bus (a system-bus-like policy) carrying a test logind
(tests/desktop_helpers/logind_server.py): session resolution outside a session, LockedHint and the
Lock/Unlock signals, PrepareForSleep, a real inhibitor file descriptor, LidClosed, a change of
display session, and no bus or no logind at all."""

from __future__ import annotations

import json
import logging
import os
import queue

import pytest

from desktop_helpers.buses import drive_logind, logind, system_bus
from desktop_helpers.procs import wait_for
from facewarden.service.logind import Logind


def record(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def bus(tmp_path, monkeypatch):
    with system_bus(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield address


@pytest.fixture
def client():
    clients = []

    def make(**kw):
        c = Logind(**kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def events_of(callbacks: list):
    q: queue.Queue = queue.Queue()
    callbacks.append(q.put)
    return q


def test_auto_session_lock_state_and_signals(bus, tmp_path, client):
    with logind(bus, tmp_path / "logind.jsonl"):
        c = client()
        locks = events_of(c.on_lock)
        assert c.start() is True
        assert c.session == "/org/freedesktop/login1/session/c1"
        assert c.available() == "logind (session /org/freedesktop/login1/session/c1)"
        assert locks.get(timeout=5) is False  # reported as found
        drive_logind(bus, "SetLocked", "b", True)  # a locker set LockedHint
        assert locks.get(timeout=5) is True
        drive_logind(bus, "EmitUnlock")  # Unlock counts at once
        assert locks.get(timeout=5) is False
        drive_logind(bus, "SetLocked", "b", False)  # the locker let go and cleared the hint
        assert locks.get(timeout=5) is False
        drive_logind(bus, "EmitLock")  # only a request: nobody set the hint, so still not locked
        assert locks.get(timeout=5) is False
        drive_logind(bus, "SetLocked", "b", True)
        assert locks.get(timeout=5) is True
        assert locks.empty()
    calls = [r["member"] for r in record(tmp_path / "logind.jsonl") if r["what"] == "call"]
    assert calls[:1] == ["GetSession"] and "GetSessionByPID" not in calls


def test_falls_back_to_the_users_display_session(bus, tmp_path, client):
    with logind(bus, tmp_path / "logind.jsonl", auto=False):
        c = client()
        assert c.start() is True
        assert c.session == "/org/freedesktop/login1/session/c1"
        assert c.user == f"/org/freedesktop/login1/user/_{os.getuid()}"
    calls = [r["member"] for r in record(tmp_path / "logind.jsonl") if r["what"] == "call"]
    assert calls[:3] == ["GetSession", "GetUser", "Get"]


def test_follows_a_new_display_session(bus, tmp_path, client):
    with logind(bus, tmp_path / "logind.jsonl", auto=False):
        c = client()
        c.start()
        sessions = events_of(c.on_session)
        locks = events_of(c.on_lock)
        drive_logind(bus, "SetLocked", "b", True)
        assert locks.get(timeout=5) is True
        drive_logind(bus, "NewSession", "s", "c7")  # logged out and in again: the new one is unlocked
        assert sessions.get(timeout=5) == "/org/freedesktop/login1/session/c7"
        while (locked := locks.get(timeout=5)) is True:
            pass  # the old session's word, read again while it went
        assert locked is False
        drive_logind(bus, "SetLocked", "b", True)  # and its signals are the ones followed now
        while (locked := locks.get(timeout=5)) is False:
            pass  # the new session's word, reported again by each of the changes that announced it
        assert locked is True


def test_sleep_signal_and_a_real_delay_inhibitor(bus, tmp_path, client):
    rec = tmp_path / "logind.jsonl"
    with logind(bus, rec):
        c = client()
        c.start()
        sleeps = events_of(c.on_sleep)
        fd = c.inhibit("sleep", "facewarden", "lock before sleep")
        assert fd is not None and os.fstat(fd)  # a real descriptor, ours to hold
        assert drive_logind(bus, "Inhibitors") == (1,)
        drive_logind(bus, "Sleep", "b", True)
        assert sleeps.get(timeout=5) is True
        os.close(fd)
        wait_for(lambda: any(r["what"] == "inhibitor released" for r in record(rec)), "the inhibitor's release")
        drive_logind(bus, "Sleep", "b", False)
        assert sleeps.get(timeout=5) is False
    (taken,) = [r for r in record(rec) if r["what"] == "inhibit"]
    assert taken["args"] == ["sleep", "facewarden", "lock before sleep", "delay"]


def test_lid_closed_and_idle_hint(bus, tmp_path, client):
    with logind(bus, tmp_path / "logind.jsonl"):
        c = client()
        c.start()
        lids = events_of(c.on_lid)
        assert c.lid_closed() is False
        drive_logind(bus, "SetLid", "b", True)
        assert lids.get(timeout=5) is True
        assert c.lid_closed() is True
        since = c.idle_since()
        assert since is not None  # not idle: since about now
        drive_logind(bus, "SetIdle", "bt", True, 1_000_000_000 * 1_000_000)
        assert c.idle_since() == 1_000_000_000.0


def test_no_system_bus_says_so_once(tmp_path, monkeypatch, client, caplog):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'nobus'}")
    c = client()
    with caplog.at_level(logging.INFO):
        assert c.start() is False
    assert c.problem.startswith("no system bus at unix:path=")
    assert (c.available(), c.lid_closed(), c.idle_since(), c.inhibit("sleep", "a", "b")) == (None, None, None, None)
    said = [r for r in caplog.records if "system bus" in r.getMessage()]
    assert len(said) == 1 and not any(r.exc_info for r in caplog.records)


def test_a_bus_without_logind(bus, client, caplog):
    c = client()
    with caplog.at_level(logging.INFO):
        assert c.start() is False
    assert c.problem == "logind is not on the system bus" and c.lid_closed() is None


def test_the_bus_going_away_is_logged_not_raised(tmp_path, monkeypatch, client, caplog):
    with system_bus(tmp_path) as address:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        with logind(address, tmp_path / "logind.jsonl"):
            c = client()
            assert c.start() is True
    wait_for(lambda: not c.reachable, "the client to notice the bus is gone")
    assert c.lid_closed() is None  # queries answer None
    assert not any(r.exc_info for r in caplog.records)


def test_doctor_says_which_idle_source_and_whether_logind_answers(bus, tmp_path):
    import subprocess
    import sys

    from desktop_helpers.buses import desktop
    from desktop_helpers.procs import session_bus

    env = {**os.environ, "FACEWARDEN_HOME": str(tmp_path / "fw"), "DBUS_SYSTEM_BUS_ADDRESS": bus}
    env.pop("DISPLAY", None)
    (tmp_path / "s").mkdir()
    with logind(bus, tmp_path / "logind.jsonl"), session_bus(tmp_path / "s") as session, \
            desktop(session, "org.gnome.Mutter.IdleMonitor"):
        env["DBUS_SESSION_BUS_ADDRESS"] = session
        out = subprocess.run([sys.executable, "-m", "facewarden", "doctor"], env=env, capture_output=True, text=True,
                             timeout=120).stdout
    lines = {line[5:].split(":", 1)[0]: line for line in out.splitlines()}
    assert lines["logind"] == "ok   logind: logind (session /org/freedesktop/login1/session/c1)"
    assert lines["idle"] == ("ok   idle: mutter (org.gnome.Mutter.IdleMonitor) "
                             "(also: logind (IdleHint of /org/freedesktop/login1/session/c1))")
    env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={tmp_path / 'nobus'}"
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={tmp_path / 'nobus'}"
    r = subprocess.run([sys.executable, "-m", "facewarden", "doctor"], env=env, capture_output=True, text=True,
                       timeout=120)
    lines = {line[5:].split(":", 1)[0]: line for line in r.stdout.splitlines()}
    assert lines["logind"].startswith(f"warn logind: no system bus at unix:path={tmp_path / 'nobus'} -- fix: ")
    assert lines["idle"].startswith("warn idle: no idle-input source here")
    assert r.stderr == ""


def test_the_real_loginctl_against_the_test_logind(bus, tmp_path):
    """`loginctl lock-session` only asks: logind emits Lock, and nothing counts until a locker sets
    the hint. Run against the test logind where loginctl will run at all."""
    import shutil
    import subprocess

    if shutil.which("loginctl") is None:
        pytest.skip("loginctl is not installed (Debian's systemd package)")
    rec = tmp_path / "logind.jsonl"
    with logind(bus, rec):
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus}
        result = subprocess.run(["loginctl", "lock-session", "c1"], env=env, capture_output=True, text=True,
                                timeout=30)
        if "not been booted with systemd" in result.stderr:
            pytest.skip("loginctl refuses to run where systemd is not PID 1 (this container)")
        assert result.returncode == 0, result.stderr
        assert [r["member"] for r in record(rec) if r["what"] == "call"][-1] == "LockSession"
        shown = subprocess.run(["loginctl", "show-session", "c1", "-p", "LockedHint", "--value"], env=env,
                               capture_output=True, text=True, timeout=30)
        assert shown.stdout.strip() == "no"  # asked, not locked: no locker set the hint
