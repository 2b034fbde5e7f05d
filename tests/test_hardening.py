"""Hardening (issue 17) without a daemon: another local user in the fallback runtime directory,
symlinks planted in the state, a purge beside the user's own files, a damaged event log, a PNG
that claims 10^10 pixels, the CLI's last tracebacks, and config values that make no sense.

A second uid where it matters: the tests run as root in CI, so a forked child drops to `nobody`."""

from __future__ import annotations

import json
import math
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from facewarden import config, paths
from facewarden.cli.demo import install_hooks
from facewarden.config import LogConfig
from facewarden.errors import UserError
from facewarden.events import Action, Event
from facewarden.recognition import assets, vision
from facewarden.service.actions import Actions, Context
from facewarden.service.control import Server, handle_request
from facewarden.service import eventlog
from facewarden.service.eventlog import EventLog
from support import mode
from test_control import STATUS, recorder

PYTHON = [sys.executable, "-m", "facewarden"]
root_only = pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as a second local user (nobody)")


def cli(env_home: dict, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(PYTHON + list(args), env=env_home, capture_output=True, text=True, timeout=120, **kwargs)


def one_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("facewarden: ") and result.stderr.count("\n") == 1, result.stderr
    for n in needles:
        assert n in result.stderr, result.stderr
    return result.stderr


@pytest.fixture
def home_env(home) -> dict:
    return {**os.environ, "FACEWARDEN_HOME": str(home)}


# -- 1. the fallback runtime directory in a shared /tmp -------------------------------------------


@pytest.fixture
def no_runtime_dir(tmp_path, monkeypatch):
    """A shared, sticky TMPDIR and no XDG_RUNTIME_DIR (a cron job, a tty, `su -`); the fallback path."""
    import shutil
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="fw-shared-tmp-"))  # under /tmp: nobody can reach it
    shared.chmod(0o1777)
    for var in ("XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("FACEWARDEN_HOME", raising=False)
    monkeypatch.setenv("TMPDIR", str(shared))
    monkeypatch.setenv("HOME", str(tmp_path / "victim"))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    fallback = paths.paths().runtime_dir
    assert fallback == shared / f"facewarden-{os.getuid()}"
    yield fallback
    shutil.rmtree(shared)


def as_nobody_server(directory: Path, answer: dict) -> tuple[int, Path]:
    """Fork a child that, as `nobody`, makes `directory` 0777 first and serves `answer` on its
    control.sock to anyone, writing what it receives to `directory`/got. (pid, that file)."""
    nobody = pwd.getpwnam("nobody")
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            directory.mkdir()
            directory.chmod(0o777)
            srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            srv.bind(str(directory / "control.sock"))
            os.chmod(directory / "control.sock", 0o777)
            srv.listen(8)
            os.write(ready_w, b"x")
            srv.settimeout(60)
            while True:
                conn, _ = srv.accept()
                with conn, open(directory / "got", "ab") as f:
                    try:
                        conn.settimeout(5)
                        f.write(conn.makefile("rb").readline())
                        conn.sendall((json.dumps(answer) + "\n").encode())
                    except OSError:
                        pass  # a client that hung up (ours, having checked who we are)
        finally:
            os._exit(0)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"x"
    os.close(ready_r)
    return pid, directory / "got"


@root_only
def test_a_runtime_dir_made_by_another_user_is_refused_by_server_and_client(no_runtime_dir):
    fake = {"ok": True, **STATUS, "locked": False}
    pid, got = as_nobody_server(no_runtime_dir, fake)
    try:
        with pytest.raises(UserError, match="belongs to uid .*not to you"):
            Server(paths.paths().socket_path, recorder()).start()
        assert mode(no_runtime_dir) == 0o777  # not chmodded, not taken over
        env = dict(os.environ)
        for args in (["status"], ["pause", "1h"]):
            r = cli(env, *args)
            one_line(r, "not your daemon")
            assert "owner_present" not in r.stdout
        assert not got.exists() or got.read_bytes() == b""  # the other user heard nothing from us
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_link_at_the_runtime_dir_is_refused_and_its_target_untouched(no_runtime_dir, tmp_path):
    documents = tmp_path / "victim" / "Documents"
    documents.mkdir(parents=True)
    documents.chmod(0o755)
    no_runtime_dir.symlink_to(documents)
    with pytest.raises(UserError, match="symbolic link"):
        Server(paths.paths().socket_path, recorder()).start()
    assert mode(documents) == 0o755 and list(documents.iterdir()) == []


# -- 2. links planted in the state directories ----------------------------------------------------


def test_a_link_at_the_event_log_is_not_followed(home, tmp_path, caplog):
    target = tmp_path / "someone-elses.txt"
    target.write_text("mine\n")
    target.chmod(0o644)
    p = paths.paths()
    paths.private_dir(p.state_dir)
    p.events_file.symlink_to(target)
    log = EventLog(p.events_file, LogConfig())
    with caplog.at_level("ERROR"):
        assert log.append({"time": 1.0, "event": "paused"}) is False
        assert log.append({"time": 2.0, "event": "resumed"}) is False
    assert target.read_text() == "mine\n" and mode(target) == 0o644
    assert caplog.text.count("cannot write the event log") == 1 and "symbolic link" in caplog.text


def test_a_link_at_the_state_dir_is_not_followed(home, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    elsewhere.chmod(0o755)
    home.mkdir()
    (home / "state").symlink_to(elsewhere)
    assert EventLog(paths.paths().events_file, LogConfig()).append({"time": 1.0, "event": "paused"}) is False
    assert list(elsewhere.iterdir()) == [] and mode(elsewhere) == 0o755


def snapshot_context(frame: np.ndarray, t: float) -> Context:
    return Context(Event.STRANGER_DETECTED, t, "stranger", faces=1, frame=frame)


def test_snapshots_never_prune_through_a_link_or_what_they_did_not_name(home, tmp_path, astronaut_bgr):
    holiday = tmp_path / "holiday"
    holiday.mkdir()
    for i in range(26):
        cv2.imwrite(str(holiday / f"IMG_{i:04d}.jpg"), astronaut_bgr[:64, :64])
    p = paths.paths()
    paths.private_dir(p.state_dir)
    p.snapshots_dir.symlink_to(holiday)
    actions = Actions(config.parse({"snapshot": {"enabled": True, "keep": 20}}), p, lambda: False)
    assert actions.run(Action.SNAPSHOT, snapshot_context(astronaut_bgr, 1.0)) is False
    assert len(list(holiday.iterdir())) == 26  # not one photo gone, nothing written there

    p.snapshots_dir.unlink()
    paths.private_dir(p.snapshots_dir)
    mine = p.snapshots_dir / "my-favourite.jpg"  # the user's own file in facewarden's folder
    mine.write_bytes(b"x")
    actions = Actions(config.parse({"snapshot": {"enabled": True, "keep": 1}}), p, lambda: False)
    for t in (1.0, 2.0, 3.0):
        assert actions.snapshot(snapshot_context(astronaut_bgr, 1_700_000_000 + t))
    left = sorted(f.name for f in p.snapshots_dir.iterdir())
    assert left == ["20231114-221323.000-stranger_detected.jpg", "my-favourite.jpg"], left


# -- 3. purge removes only what facewarden made ---------------------------------------------------


def fill_home(home: Path) -> paths.Paths:
    """A FACEWARDEN_HOME with every kind of file facewarden makes, by facewarden's own code."""
    p = paths.paths()
    config.write_default(p.config_file)
    install_hooks(home)  # the hooks facewarden itself installs (the demo's)
    paths.write_private(p.enroll_dir / "0123456789abcdef.png", b"png")
    meta = json.dumps({"threshold": 0.45, "threshold_grey": 0.48, "encoder_sha256": assets.SFACE.sha256}).encode()
    version = p.models_dir / "versions" / "0001-20260101T000000Z"  # as `train` publishes a model
    for name in ("owner.h5", "owner.tflite", "owner.json"):
        paths.write_private(version / name, meta)
    (p.models_dir / "current").symlink_to("versions/0001-20260101T000000Z")
    EventLog(p.events_file, LogConfig()).append({"time": 1.0, "event": "paused"})
    paths.write_private(p.snapshots_dir / "20231114-221323.000-stranger_detected.jpg", b"jpg")
    paths.write_private(p.cache_dir / "encoder" / f"sface-{assets.SFACE.sha256[:16]}.h5", b"h5")
    paths.private_dir(p.runtime_dir)
    return p


def test_purge_keeps_what_facewarden_did_not_make(home, home_env, tmp_path):
    fill_home(home)
    (home / "thesis.txt").write_text("four years of work")
    (home / "photos").mkdir()
    (home / "photos" / "beach.jpg").write_bytes(b"sand")
    (home / "state" / "notes.txt").write_text("mine too")
    r = cli({**home_env, "HOME": str(tmp_path / "user")}, "uninstall", "--purge")
    assert r.returncode == 0, r.stderr
    assert (home / "thesis.txt").read_text() == "four years of work"
    assert (home / "photos" / "beach.jpg").read_bytes() == b"sand"
    assert (home / "state" / "notes.txt").read_text() == "mine too"
    left = sorted(str(f.relative_to(home)) for f in home.rglob("*"))
    assert left == ["photos", "photos/beach.jpg", "state", "state/notes.txt", "thesis.txt"], left
    assert f"kept {home}" in r.stdout and "thesis.txt" in r.stdout and "photos" in r.stdout


def test_purge_of_facewarden_files_alone_removes_the_directory(home, home_env, tmp_path):
    fill_home(home)
    r = cli({**home_env, "HOME": str(tmp_path / "user")}, "uninstall", "--purge")
    assert r.returncode == 0, r.stderr
    assert not home.exists() and f"purged {home}" in r.stdout


# -- 5. the event log read back -------------------------------------------------------------------


def test_a_record_after_a_torn_line_starts_on_a_fresh_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"time": 1, "event": "paused"}\n{"time": 2, "ev')  # a crash mid-write
    EventLog(path, LogConfig()).append({"time": 3.0, "event": "locked"})
    assert [r["time"] for r in eventlog.read(path)] == [1, 3.0]


def test_events_skips_and_counts_unreadable_lines(home, home_env):
    p = paths.paths()
    EventLog(p.events_file, LogConfig()).append({"time": time.time(), "event": "paused", "state": "paused"})
    with open(p.events_file, "ab") as f:
        f.write(b'\xff\xfe{"time": 1\n[1, 2]\n{"event": "x"}\n')
    EventLog(p.events_file, LogConfig()).append({"time": time.time(), "event": "resumed", "state": "pending"})
    r = cli(home_env, "events")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert [line.split()[1] for line in r.stdout.splitlines()] == ["paused", "resumed"]
    assert "skipped 3 unreadable line(s)" in r.stderr and r.stderr.count("\n") == 1


def test_events_at_a_directory_is_one_clear_line(home, home_env):
    paths.paths().events_file.mkdir(parents=True)
    one_line(cli(home_env, "events"), "events.jsonl is not a plain file")


# -- 12. an image that claims 10^10 pixels --------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4)) + chunk(b"IEND", b"")


def test_a_png_claiming_ten_billion_pixels_is_one_unreadable_line(home, home_env, tmp_path, astronaut_bgr):
    src = tmp_path / "photos"
    src.mkdir()
    bomb = png_claiming(100_000, 100_000)
    assert len(bomb) < 80
    (src / "b-huge.png").write_bytes(bomb)
    with pytest.raises(UserError, match="not a readable image .*100000 x 100000"):
        vision.read_image(src / "b-huge.png")
    for i, name in enumerate(("a-first.jpg", "c-last.jpg")):  # one before it, one after
        cv2.imwrite(str(src / name), np.roll(astronaut_bgr, 6 * i, axis=1))
    r = cli(home_env, "enroll", "--from", str(src))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert f"skipped {src / 'b-huge.png'}: not a readable image" in r.stdout
    assert "enrolled 2 new face(s)" in r.stdout, r.stdout


# -- 13. the CLI's last tracebacks ----------------------------------------------------------------


@pytest.fixture
def serving(home):
    fake = recorder()
    srv = Server(paths.paths().socket_path, fake)
    srv.start()
    yield fake
    srv.stop()


def test_an_absurd_pause_is_refused_before_the_daemon_hears_it(serving, home_env):
    one_line(cli(home_env, "pause", "--", "99999999999999999999d"), "too long a duration")
    assert serving.calls == []
    for seconds in (math.inf, 1e30, 400 * 86400):
        refused = handle_request(recorder(), json.dumps({"cmd": "pause", "seconds": seconds}).encode())
        assert refused["ok"] is False and "seconds must be" in refused["error"]


def test_a_closed_pipe_is_a_quiet_exit_and_a_full_disk_one_line(serving, home_env):
    read_end, write_end = os.pipe()
    os.close(read_end)  # `status | head -1` with head gone before we write
    r = subprocess.run(PYTHON + ["status"], env=home_env, stdout=write_end, stderr=subprocess.PIPE, text=True,
                       timeout=120)
    os.close(write_end)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        r = subprocess.run(PYTHON + ["status"], env=home_env, stdout=full, stderr=subprocess.PIPE, text=True,
                           timeout=120)
    one_line(r, "No space left on device")


def test_a_socket_that_is_a_directory_or_a_run_that_is_a_file(home, home_env):
    p = paths.paths()
    p.socket_path.mkdir(parents=True)
    with pytest.raises(UserError, match="not a socket"):
        Server(p.socket_path, recorder()).start()
    assert p.socket_path.is_dir()
    one_line(cli(home_env, "status"), "daemon not running")
    p.socket_path.rmdir()
    (p.runtime_dir / "daemon.lock").unlink()
    p.runtime_dir.rmdir()
    p.runtime_dir.write_text("")
    with pytest.raises(UserError, match="not a directory"):
        Server(p.socket_path, recorder()).start()
    one_line(cli(home_env, "status"), "daemon not running")


# -- 14. values that make no sense; private roots -------------------------------------------------

DURATIONS = [("lock", "after_absent_s"), ("lock", "after_stranger_s"), ("sampling", "interval_s"),
             ("sampling", "doubt_interval_s"), ("sampling", "paused_interval_s"), ("camera", "retry_max_s"),
             ("liveness", "window_s"), ("hooks", "timeout_s")]


@pytest.mark.parametrize("section,key", DURATIONS)
@pytest.mark.parametrize("value", ["inf", "nan", "1e12"])
def test_every_duration_is_finite_and_bounded(tmp_path, section, key, value):
    file = tmp_path / "config.toml"
    file.write_text(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(config.ConfigError, match=f"{section}.{key}"):
        config.load(file)


def test_a_threshold_of_zero_or_less_is_refused():
    with pytest.raises(config.ConfigError, match="model.threshold"):
        config.parse({"model": {"threshold": -0.5}})


def test_the_home_root_and_cache_are_created_private(home, home_env, tmp_path, astronaut_bgr):
    src = tmp_path / "one"
    src.mkdir()
    cv2.imwrite(str(src / "a.jpg"), astronaut_bgr)
    r = cli(home_env, "enroll", "--from", str(src))
    assert r.returncode == 0, r.stderr
    assert mode(home) == 0o700 and mode(home / "enroll") == 0o700
    p = paths.paths()
    paths.write_private(p.cache_dir / "encoder" / "x.h5", b"")  # as encoder.save_private writes the port
    assert mode(p.cache_dir) == 0o700
