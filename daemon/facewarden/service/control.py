"""The control socket: how `facewarden status|pause|resume|lock|reload` and the tray talk to the daemon.

A Unix stream socket at paths().socket_path, 0600 in a 0700 directory, and every connection's peer
uid checked (SO_PEERCRED): no other local user may pause your lock, even if the file modes were
loosened. The protocol is JSON lines, one request, one response:

    {"cmd": "status"} -> {"ok": true, "state": "owner_present"|"owner_absent"|"stranger"|"paused"|"pending",
                          "since": <unix time>, "paused_until": <unix time>|null, "locked": bool,
                          "camera": "ok"|"lost", "faces": int, "score": float|null,
                          "model": <owner model version>|null}
    {"cmd": "pause", "seconds": N|null}  (null: until resumed) -> {"ok": true, ...status}
    {"cmd": "resume"}, {"cmd": "lock-now"}, {"cmd": "reload"} -> {"ok": true, ...status}
    errors -> {"ok": false, "error": "..."}
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import stat
import struct
import threading
from pathlib import Path
from typing import Callable, Protocol

from ..errors import UserError
from ..paths import paths, private_dir

log = logging.getLogger(__name__)

MAX_LINE = 65536  # far above any request; a peer sending more is cut off
MAX_PAUSE_S = 366 * 86400.0  # a pause longer than a year is a typo; "until resumed" is null
REFUSE_READ_S = 1.0  # how long a refused peer has to send its request line before it gets the refusal


class Controller(Protocol):
    """What the daemon offers the socket (service.Daemon). Each returns the response's fields."""

    def status(self) -> dict: ...
    def pause(self, seconds: float | None) -> dict: ...
    def resume(self) -> dict: ...
    def lock_now(self) -> dict: ...
    def reload(self) -> dict: ...


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket, from the kernel (not from the peer)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def handle_request(controller: Controller, line: bytes) -> dict:
    """One request line -> its response. Bad requests get an error response, never an exception."""
    try:
        request = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"ok": False, "error": "not a JSON line"}
    if not isinstance(request, dict):
        return {"ok": False, "error": "a request is a JSON object with a \"cmd\""}
    cmd = request.get("cmd")
    try:
        if cmd == "status":
            return {"ok": True, **controller.status()}
        if cmd == "pause":
            seconds = request.get("seconds")
            number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
            if seconds is not None and (not number or not 0 < seconds <= MAX_PAUSE_S):
                return {"ok": False,
                        "error": f"pause: seconds must be a positive number (at most {MAX_PAUSE_S:.0f}) or null"}
            return controller.pause(None if seconds is None else float(seconds))
        if cmd == "resume":
            return controller.resume()
        if cmd == "lock-now":
            return controller.lock_now()
        if cmd == "reload":
            return controller.reload()
    except Exception as e:  # the socket must outlive any one request
        log.exception("control request %r failed", cmd)
        return {"ok": False, "error": f"{cmd}: {e}"}
    return {"ok": False, "error": f"unknown command {cmd!r} (status, pause, resume, lock-now, reload)"}


LOCK_NAME = "daemon.lock"


def one_daemon(socket_path: Path) -> int:
    """Take the one-daemon-per-user lock (flock on a file beside the socket, in the private runtime
    directory) and keep it for the process's life (the kernel lets go when it exits, however it
    exits). A daemon that is stopped (SIGSTOP) or hung still holds it, so a second `run` never takes
    over its socket. Its descriptor."""
    path = private_dir(socket_path.parent) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise UserError(f"{path}: cannot take the one-daemon lock: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise UserError(f"facewarden is already running (pid {holder or '?'} holds {path})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Server:
    def __init__(self, path: Path, controller: Controller, lock: int | None = None):
        """`lock`: the one-daemon lock, if the caller took it already (`one_daemon`)."""
        self.path = path
        self.controller = controller
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = lock  # the one-daemon lock's descriptor, held for the daemon's life
        self._inode = 0

    def start(self) -> None:
        if self._lock is None:
            self._lock = one_daemon(self.path)
        try:
            self._clear_leftover()
        except BaseException:
            self._let_go()
            raise
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The 0700 directory already shuts others out between bind and chmod.
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._inode = os.lstat(self.path).st_ino
        sock.listen(8)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def _clear_leftover(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise UserError(f"{self.path} is not a socket; move it away")
        # Holding the lock, no other daemon runs: the socket was left by one that died.
        self.path.unlink()

    def _let_go(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # the file stays: removing it would let two daemons lock two files
            self._lock = None

    def stop(self) -> None:
        if self._sock is not None:
            # shutdown() wakes the accept() blocked in the serving thread; close() alone does not.
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
            try:  # only the socket this daemon made
                if os.lstat(self.path).st_ino == self._inode:
                    self.path.unlink()
            except FileNotFoundError:
                pass
        if self._thread is not None:
            self._thread.join(2.0)
        self._let_go()

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # stopped
            threading.Thread(target=self._connection, args=(conn,), name="control-conn", daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            uid = peer_uid(conn)
            if uid != os.getuid():
                log.warning("control socket: refused a connection from uid %d", uid)
                self._refuse(conn)
                return
            reader = conn.makefile("rb")
            while True:
                line = reader.readline(MAX_LINE)
                if not line:
                    return
                if not line.endswith(b"\n") and len(line) >= MAX_LINE:
                    self._send(conn, {"ok": False, "error": "request too long"})
                    return
                if line.strip() and not self._send(conn, handle_request(self.controller, line)):
                    return

    @staticmethod
    def _refuse(conn: socket.socket) -> None:
        """Answer a refusal after reading the request line: closing with the request unread would
        reset the connection, and the refused client would see a broken pipe, not the refusal."""
        conn.settimeout(REFUSE_READ_S)
        try:
            conn.makefile("rb").readline(MAX_LINE)
        except OSError:
            pass
        if Server._send(conn, {"ok": False, "error": "permission denied: not the daemon's user"}):
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    @staticmethod
    def _send(conn: socket.socket, response: dict) -> bool:
        try:
            conn.sendall((json.dumps(response) + "\n").encode())
            return True
        except OSError:
            return False


def request(cmd: dict, path: Path | None = None, timeout: float = 2.0) -> dict:
    """Send one request to the running daemon and return its response.

    Raises UserError("daemon not running ...") when nothing answers at the socket, and refuses to
    talk to a socket served by another user (one who made the runtime directory first, in /tmp).
    """
    if path is None:
        path = paths().socket_path
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    with sock:
        try:
            sock.connect(str(path))
            uid = peer_uid(sock)
            if uid != os.getuid():
                raise UserError(f"{path} is served by uid {uid}, not by you (uid {os.getuid()}): not your daemon; "
                                "refusing to talk to it")
            try:
                sock.sendall((json.dumps(cmd) + "\n").encode())
            except BrokenPipeError:
                pass  # the server may have answered (a refusal) and closed: read what it said
            line = sock.makefile("rb").readline(MAX_LINE)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise UserError(f"daemon not running (no answer at {path}: {e.strerror}); "
                            "start it with `facewarden run`") from None
        except (socket.timeout, OSError) as e:
            raise UserError(f"daemon not running or not answering at {path}: {e}") from None
    if not line:
        raise UserError(f"daemon not running or not answering at {path}: connection closed")
    try:
        response = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        response = None
    if not isinstance(response, dict):
        raise UserError(f"the daemon at {path} answered nonsense: {line[:80]!r}")
    return response


# The lock chain may wait seconds for a screen locker to confirm; a reload re-reads the config.
TIMEOUTS_S = {"lock-now": 30.0, "reload": 10.0}


def ask(cmd: dict) -> dict:
    """`request` with the timeout that command needs."""
    return request(cmd, timeout=TIMEOUTS_S.get(str(cmd.get("cmd")), 2.0))


def poll(request_: Callable[[dict], dict] = ask) -> dict | None:
    """The daemon's status, or None when it is not running (or answers nonsense)."""
    try:
        reply = request_({"cmd": "status"})
    except (UserError, OSError, ValueError) as e:
        log.debug("status: %s", e)
        return None
    return reply if isinstance(reply, dict) and reply.get("ok") else None
