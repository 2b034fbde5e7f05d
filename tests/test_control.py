"""The control socket over a real Unix socket: protocol, file modes, peer-uid refusal, the client.

The daemon side here is a small recording controller; test_service.py drives the real daemon's."""

from __future__ import annotations

import json
import os
import socket
import stat
import time

import pytest

from desktop_helpers.daemon_side import TestDaemon
from support import as_nobody
from facewarden import cli
from facewarden.service.control import Server, handle_request, peer_uid, request
from facewarden.errors import UserError
from facewarden.paths import paths

STATUS = {"state": "owner_present", "since": 1700000000.0, "paused_until": None, "locked": False,
          "camera": "ok", "faces": 1, "score": 0.71}


def recorder() -> TestDaemon:
    """The daemon side: lock-now finds no lock method, and reload has a bug."""
    return TestDaemon(STATUS, refuse={"lock-now": "no lock method worked"}, broken=("reload",))


@pytest.fixture
def server(home):
    recorder_ = recorder()
    srv = Server(paths().socket_path, recorder_)
    srv.start()
    yield srv, recorder_
    srv.stop()


def test_protocol_round_trips(server):
    srv, recorder = server
    assert request({"cmd": "status"}) == {"ok": True, **STATUS}
    assert abs(request({"cmd": "pause", "seconds": 900})["paused_until"] - (time.time() + 900)) < 5
    assert request({"cmd": "pause", "seconds": None})["paused_until"] is None
    assert request({"cmd": "resume"})["ok"] is True
    assert request({"cmd": "lock-now"}) == {"ok": False, "error": "no lock method worked"}
    assert request({"cmd": "status"})["locked"] is False  # a refused lock changed nothing
    assert request({"cmd": "reload"}) == {"ok": False, "error": "reload: boom"}
    assert recorder.calls == [("pause", 900.0), ("pause", None), ("resume",), ("lock-now",)]


@pytest.mark.parametrize("line,error", [
    (b"nonsense", "not a JSON line"),
    (b"[1, 2]", "JSON object"),
    (b'{"cmd": "format-disk"}', "unknown command 'format-disk'"),
    (b'{"cmd": "pause", "seconds": -5}', "positive number"),
    (b'{"cmd": "pause", "seconds": "15m"}', "positive number"),
    (b'{"cmd": "pause", "seconds": true}', "positive number"),
])
def test_bad_requests_get_error_responses(line, error):
    response = handle_request(recorder(), line)
    assert response["ok"] is False and error in response["error"]


def test_several_requests_on_one_connection(server):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(paths().socket_path))
        s.sendall(b'{"cmd": "status"}\n\n{"cmd": "resume"}\n')
        reader = s.makefile("rb")
        assert json.loads(reader.readline())["state"] == "owner_present"
        assert json.loads(reader.readline())["ok"] is True


def test_socket_modes(server):
    path = paths().socket_path
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_peer_uid_is_ours(server):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(paths().socket_path))
        # Our end's peer is the server (this process): the same uid.
        assert peer_uid(s) == os.getuid()


def exchange(path, cmd: dict) -> str:
    """One raw request line and the reply line, as any client of another user's could send it (our
    own client would not even send: it checks the server's uid first)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        try:
            s.sendall((json.dumps(cmd) + "\n").encode())
        except BrokenPipeError:
            pass
        return s.makefile("rb").readline().decode()


def _as_nobody(path) -> str:
    """Ask for a pause as `nobody`."""
    return as_nobody(lambda: exchange(path, {"cmd": "pause", "seconds": None}))


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as another user")
def test_other_users_are_refused():
    import shutil
    import tempfile
    from pathlib import Path

    top = Path(tempfile.mkdtemp(prefix="fw-control-"))  # under /tmp, so `nobody` can traverse to it
    top.chmod(0o755)
    path = top / "run" / "control.sock"
    fake = recorder()
    srv = Server(path, fake)
    srv.start()
    try:
        # The private directory already keeps them from reaching the socket...
        assert "Permission denied" in _as_nobody(path)
        # ...and with the modes loosened, SO_PEERCRED still refuses them.
        path.parent.chmod(0o755)
        path.chmod(0o666)
        out = json.loads(_as_nobody(path))
        assert out == {"ok": False, "error": "permission denied: not the daemon's user"}
        assert fake.calls == []
    finally:
        srv.stop()
        shutil.rmtree(top)


def test_not_running_is_a_clear_user_error(home):
    with pytest.raises(UserError, match="daemon not running"):
        request({"cmd": "status"})


def test_stale_socket_is_replaced_and_a_live_one_refused(home):
    path = paths().socket_path
    dead = socket.socket(socket.AF_UNIX)
    paths().runtime_dir.mkdir(parents=True)
    dead.bind(str(path))
    dead.close()  # a file nobody listens on, as a crashed daemon leaves it
    srv = Server(path, recorder())
    srv.start()
    try:
        with pytest.raises(UserError, match="already running"):
            Server(path, recorder()).start()
        assert request({"cmd": "status"})["ok"]
    finally:
        srv.stop()
    assert not path.exists()


def test_cli_commands(server, capsys):
    srv, recorder = server
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "owner_present" in out and "best owner score 0.71" in out
    assert cli.main(["pause", "15m"]) == 0
    assert "paused" in capsys.readouterr().out
    assert cli.main(["pause"]) == 0
    assert recorder.calls[-2:] == [("pause", 900.0), ("pause", None)]
    assert cli.main(["lock"]) == 2
    assert "no lock method worked" in capsys.readouterr().err
    assert cli.main(["pause", "later"]) == 2
    assert "not a duration" in capsys.readouterr().err


def test_cli_without_a_daemon(home, capsys):
    assert cli.main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("facewarden: daemon not running") and err.count("\n") == 1
