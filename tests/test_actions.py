"""Built-in actions: the lock chain and its result checks, notify with fallback, snapshots.

Lock methods are exercised through real processes: the user's command is a real script, the D-Bus
screensaver a test desktop on a private bus; `loginctl` and `xdg-screensaver` are replaced on PATH
by scripts that behave like them on a desktop (this container has no logind session to lock).
"""

from __future__ import annotations

import json
import stat

import cv2
import numpy as np
import pytest

from desktop_helpers.procs import bus_server, session_bus
from facewarden.service import lock as lock_module
from facewarden.service.actions import Actions, Context
from facewarden.config import parse
from facewarden.events import Action, Event
from facewarden.paths import paths


def tool(bin_dir, name, body):
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A PATH with only our stand-ins first, then the system (for sh, sleep...)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.delenv("XDG_CURRENT_DESKTOP", raising=False)
    monkeypatch.delenv("DESKTOP_SESSION", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "no-runtime"))
    monkeypatch.setenv("XDG_SESSION_ID", "c7")
    return bin_dir


def make(home, lock=lambda: False):
    return Actions(parse({}), paths(), lock)


def chain(confirms: bool | None = None, **lock):
    """The lock chain over the configured methods; `confirms`: what the lock-state sources say after
    each attempt (None: there is no source that could tell)."""
    backends = lock_module.backends(parse({"lock": lock}).lock)
    return lock_module.lock_chain(backends, lambda timeout: bool(confirms), lambda: confirms is not None)


def ctx(event=Event.OWNER_LEFT, frame=None):
    return Context(event, 1700000000.25, "owner_absent", faces=1, score=0.3, frame=frame)


def test_the_lock_action_is_the_daemons_lock_sequence(home):
    assert make(home, lock=lambda: True).run(Action.LOCK, ctx()) is True
    assert make(home, lock=lambda: False).run(Action.LOCK, ctx()) is False


def test_user_command_first_and_believed_where_nothing_confirms(home, fake_bin, tmp_path):
    marker = tmp_path / "locked-by-command"
    script = tool(fake_bin, "mylocker", f'echo "$@" > "{marker}"')
    assert chain(command=[str(script), "-f", "a b"]) == ("command", False)
    assert marker.read_text() == "-f a b\n"
    # The user's own command is believed even where a source could have confirmed it (i3lock sets no hint).
    assert chain(False, command=[str(script)]) == ("command", False)


def test_failing_command_falls_through_to_the_next_method(home, fake_bin, tmp_path, monkeypatch):
    marker = tmp_path / "xdg"
    tool(fake_bin, "false-locker", "exit 1")
    tool(fake_bin, "xdg-screensaver", f'echo "$@" > "{marker}"')
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "XFCE")
    assert chain(command=["false-locker"], methods=["command", "xdg-screensaver"]) == ("xdg-screensaver", False)
    assert marker.read_text() == "lock\n"


def test_xdg_screensaver_is_not_offered_where_it_cannot_lock(home, fake_bin, tmp_path, monkeypatch):
    marker = tmp_path / "xdg"
    tool(fake_bin, "xdg-screensaver", f'echo "$@" > "{marker}"; exit 4')
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "i3")
    assert lock_module.XdgScreensaverLock().available() is None  # i3: "Unknown command 'lock'"
    assert chain(methods=["xdg-screensaver"]) is None and not marker.exists()
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "ubuntu:GNOME")
    assert lock_module.XdgScreensaverLock().available() == "xdg-screensaver (gnome)"


def test_loginctl_returning_0_is_a_lock_only_when_a_source_confirms_it(home, fake_bin, tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "LOCK_CONFIRM_S", 0.1)
    calls = tmp_path / "calls"
    tool(fake_bin, "loginctl", f'echo "$@" >> "{calls}"\nexit 0')
    assert chain(False, methods=["loginctl"]) is None  # logind is there and never saw a locker
    assert calls.read_text().splitlines() == ["lock-session c7"]
    assert chain(True, methods=["loginctl"]) == ("loginctl", True)


def test_nothing_works_is_none_not_an_exception(home, fake_bin):
    assert chain(methods=["command", "screensaver", "xdg-screensaver"]) is None


def test_screensaver_over_dbus(home, fake_bin, tmp_path, monkeypatch):
    record = tmp_path / "calls.jsonl"
    with session_bus(tmp_path) as address:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        with bus_server(address, record, "org.freedesktop.ScreenSaver"):
            assert chain(methods=["loginctl", "screensaver"]) == ("screensaver", False)
    (call,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert call["member"] == "Lock"


def test_notify_over_dbus_then_notify_send(home, fake_bin, tmp_path, monkeypatch):
    record = tmp_path / "calls.jsonl"
    acts = make(home)
    with session_bus(tmp_path) as address:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        with bus_server(address, record, "org.freedesktop.Notifications"):
            assert acts.run(Action.NOTIFY, ctx(Event.ONLOOKER_DETECTED)) is True
        (call,) = [json.loads(line) for line in record.read_text().splitlines()]
        assert call["args"][3] == "Someone is looking at your screen"
        # No notification server any more: notify-send is the fallback, and its absence is False.
        assert acts.run(Action.NOTIFY, ctx(Event.ONLOOKER_DETECTED)) is False
        sent = tmp_path / "sent"
        tool(fake_bin, "notify-send", f'echo "$@" > "{sent}"')
        assert acts.run(Action.NOTIFY, ctx(Event.STRANGER_DETECTED)) is True
        assert sent.read_text().startswith("--urgency=critical --app-name=facewarden Stranger at your desk")


def test_unlock_uses_loginctl(home, fake_bin, tmp_path):
    calls = tmp_path / "calls"
    tool(fake_bin, "loginctl", f'echo "$@" >> "{calls}"')
    assert make(home).run(Action.UNLOCK, ctx(Event.OWNER_ARRIVED)) is True
    assert calls.read_text() == "unlock-session c7\n"


def test_snapshot_is_private_and_pruned(home, astronaut_bgr):
    acts = Actions(parse({"snapshot": {"enabled": True, "keep": 3}}), paths(), lambda: False)
    written = []
    for i in range(5):
        c = Context(Event.STRANGER_DETECTED, 1700000000.0 + i, "stranger", frame=astronaut_bgr)
        assert acts.run(Action.SNAPSHOT, c) is True
        written.append(c.frame_path)
        assert c.hook_env()["FACEWARDEN_FRAME"] == str(c.frame_path)
    kept = sorted(paths().snapshots_dir.iterdir())
    assert kept == written[-3:]
    assert stat.S_IMODE(kept[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(paths().snapshots_dir.stat().st_mode) == 0o700
    assert cv2.imread(str(kept[-1])).shape == astronaut_bgr.shape


def test_snapshot_off_by_default_writes_nothing(home, astronaut_bgr):
    c = Context(Event.STRANGER_DETECTED, 1.0, "stranger", frame=astronaut_bgr)
    assert make(home).run(Action.SNAPSHOT, c) is False
    assert c.frame_path is None and not paths().snapshots_dir.exists()


def test_a_crashing_action_is_contained(home):
    acts = Actions(parse({"snapshot": {"enabled": True}}), paths(), lambda: False)
    assert acts.run(Action.SNAPSHOT, ctx(Event.STRANGER_DETECTED, frame=np.zeros((0, 0), np.uint8))) is False


def test_context_env_and_record():
    c = ctx()
    assert c.hook_env() == {
        "FACEWARDEN_EVENT": "owner_left", "FACEWARDEN_TIME": "1700000000.250", "FACEWARDEN_SCORE": "0.3000",
        "FACEWARDEN_FACES": "1", "FACEWARDEN_STATE": "owner_absent", "FACEWARDEN_PERSON": "",
        "FACEWARDEN_LIVENESS": "",
    }
    assert c.record()["event"] == "owner_left" and c.record()["frame"] is None and c.record()["person"] is None
    assert "liveness" not in c.record(), "only owner_arrived and spoof_suspected say why"
    c.person = "alice"
    assert c.hook_env()["FACEWARDEN_PERSON"] == "alice" and c.record()["person"] == "alice"
