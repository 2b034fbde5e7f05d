"""events.jsonl: private, rotated, read back in order, and the `events` command."""

from __future__ import annotations

import stat

import pytest

from facewarden import cli
from facewarden.config import LogConfig
from facewarden.errors import UserError
from facewarden.cli.daemon_commands import parse_duration
from facewarden.service.eventlog import EventLog, read
from facewarden.paths import paths


def test_append_is_private_and_reads_back(tmp_path):
    path = tmp_path / "state" / "events.jsonl"
    log = EventLog(path, LogConfig())
    log.append({"time": 1.0, "event": "owner_left"})
    log.append({"time": 2.0, "event": "locked"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [r["event"] for r in read(path)] == ["owner_left", "locked"]
    assert [r["event"] for r in read(path, since=1.5)] == ["locked"]


def test_rotation_caps_size_and_keeps_order(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, LogConfig(max_bytes=1024, keep=2))
    for i in range(200):
        log.append({"time": float(i), "event": "paused", "detail": "x" * 40})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert all(p.stat().st_size <= 1024 for p in tmp_path.iterdir())
    times = [r["time"] for r in read(path)]
    assert times == sorted(times) and times[-1] == 199.0
    assert len(times) < 200  # the oldest were dropped with the oldest file


def test_a_torn_line_is_skipped(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"time": 1, "event": "paused"}\n{"time": 2, "ev')
    assert [r["time"] for r in read(path)] == [1]


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("15m", 900), ("1.5h", 5400), ("2d", 172800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "0", "5w"])
def test_bad_durations(text):
    with pytest.raises(UserError, match="not a duration"):
        parse_duration(text)


def test_events_command(home, capsys):
    import time

    log = EventLog(paths().events_file, LogConfig())
    now = time.time()
    log.append({"time": now - 7200, "event": "owner_left", "state": "owner_absent"})
    log.append({"time": now - 60, "event": "stranger_detected", "state": "stranger", "faces": 1})
    assert cli.main(["events"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "owner_left" in out[0] and "faces=1" in out[1]
    assert cli.main(["events", "--since", "1h"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "stranger_detected" in out[0]
    assert cli.main(["events", "--since", "soon"]) == 2
    assert "not a duration" in capsys.readouterr().err
