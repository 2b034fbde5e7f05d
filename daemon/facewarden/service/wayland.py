"""A minimal Wayland client speaking the wire protocol itself, for the idle-notification protocols.

Why not pywayland: it builds C bindings against libwayland-client (a compiler and the -dev headers
on the user's machine, or a wheel for their Python) and generates Python from each protocol's XML,
which has to be found on the system (ext-idle-notify-v1 is in wayland-protocols 1.27+, newer than
Debian 12's; org_kde_kwin_idle is in plasma-wayland-protocols). What facewarden needs is a
handful of messages with integer and string arguments and no file descriptors: the wire format
(little framing, native-endian 32-bit words, padded strings) is simpler than either dependency.

`Connection` connects to the compositor's socket, lists the globals, binds what it is asked for and
then hands events to handlers on a reader thread. A protocol error or a closed socket marks it
`closed`; nothing here raises into the daemon after `open`.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Callable, Mapping

log = logging.getLogger(__name__)

DISPLAY_ID = 1
CONNECT_TIMEOUT_S = 2.0
Handler = Callable[[int, bytes], None]  # (opcode, argument bytes)


class WaylandError(Exception):
    """The compositor is not there, or refused what we asked (a protocol error)."""


def socket_path(env: Mapping[str, str] | None = None) -> Path | None:
    """The compositor's socket: WAYLAND_DISPLAY, absolute or in XDG_RUNTIME_DIR; None outside Wayland."""
    env = os.environ if env is None else env
    name = env.get("WAYLAND_DISPLAY")
    if not name:
        return None
    if name.startswith("/"):
        return Path(name)
    runtime = env.get("XDG_RUNTIME_DIR")
    return Path(runtime) / name if runtime else None


def string(data: bytes, at: int) -> tuple[str, int]:
    """A wire string at `at` (length with its NUL, then padded to 4): the text and where the next argument starts."""
    (length,) = struct.unpack_from("=I", data, at)
    text = data[at + 4: at + 4 + max(0, length - 1)].decode("utf-8", "replace")
    return text, at + 4 + (length + 3) // 4 * 4


def pack_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("=I", len(raw)) + raw + b"\0" * (-len(raw) % 4)


class Connection:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.closed = False
        self.globals: dict[str, tuple[int, int]] = {}  # interface -> (name, version), the first of each
        self.error: str | None = None
        self.registry = 0
        self._closing = False
        self._next_id = DISPLAY_ID + 1
        self._handlers: dict[int, Handler] = {DISPLAY_ID: self._display_event}
        self._send_lock = threading.Lock()
        self._buffer = b""

    @classmethod
    def open(cls, path: Path) -> "Connection":
        """Connect and read the globals (one roundtrip); WaylandError when no compositor answers."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(str(path))
        except OSError as e:
            sock.close()
            raise WaylandError(f"no Wayland compositor at {path}: {e.strerror or e}") from None
        conn = cls(sock)
        registry = conn.new_object(conn._registry_event)
        conn.registry = registry
        conn.request(DISPLAY_ID, 1, struct.pack("=I", registry))  # wl_display.get_registry
        try:
            conn.roundtrip()
        except (OSError, WaylandError) as e:  # TimeoutError is an OSError
            conn.close()
            raise WaylandError(f"the compositor at {path} did not answer: {e}") from None
        return conn

    # -- requests -----------------------------------------------------------------------------

    def new_object(self, handler: Handler = lambda opcode, args: None) -> int:
        obj, self._next_id = self._next_id, self._next_id + 1
        self._handlers[obj] = handler
        return obj

    def request(self, obj: int, opcode: int, args: bytes = b"") -> None:
        with self._send_lock:
            self.sock.sendall(struct.pack("=II", obj, (8 + len(args)) << 16 | opcode) + args)

    def bind(self, interface: str, version: int, handler: Handler = lambda opcode, args: None) -> int:
        """Bind the global `interface` (at most `version`); the new object's id."""
        name, offered = self.globals[interface]
        obj = self.new_object(handler)
        self.request(self.registry, 0, struct.pack("=I", name) + pack_string(interface)
                     + struct.pack("=II", min(version, offered), obj))
        return obj

    def roundtrip(self) -> None:
        """Send wl_display.sync and handle events until its callback: everything asked so far is done."""
        done = threading.Event()
        callback = self.new_object(lambda opcode, args: done.set())
        self.request(DISPLAY_ID, 0, struct.pack("=I", callback))
        while not done.is_set():
            self._read()
            if self.error is not None:
                raise WaylandError(self.error)

    # -- events -------------------------------------------------------------------------------

    def _read(self) -> None:
        data = self.sock.recv(4096)
        if not data:
            raise WaylandError("the compositor closed the connection")
        self._buffer += data
        while len(self._buffer) >= 8:
            obj, size_op = struct.unpack_from("=II", self._buffer)
            size = size_op >> 16
            if len(self._buffer) < size:
                break
            args, self._buffer = self._buffer[8:size], self._buffer[size:]
            self._handlers.get(obj, lambda opcode, args: None)(size_op & 0xFFFF, args)

    def _display_event(self, opcode: int, args: bytes) -> None:
        if opcode == 0:  # error(object, code, message): the connection is dead after this
            obj, code = struct.unpack_from("=II", args)
            self.error = f"Wayland protocol error {code} on object {obj}: {string(args, 8)[0]}"
        elif opcode == 1:  # delete_id
            self._handlers.pop(struct.unpack_from("=I", args)[0], None)

    def _registry_event(self, opcode: int, args: bytes) -> None:
        if opcode == 0:  # global(name, interface, version)
            (name,) = struct.unpack_from("=I", args)
            interface, at = string(args, 4)
            (version,) = struct.unpack_from("=I", args, at)
            self.globals.setdefault(interface, (name, version))

    def listen(self, on_close: Callable[[str], None]) -> None:
        """Handle events on a reader thread from now on; `on_close(why)` once the connection ends."""
        self.sock.settimeout(None)

        def receive() -> None:
            try:
                while self.error is None:
                    self._read()
                why = self.error
            except (OSError, WaylandError) as e:
                why = str(e)
            self.closed = True
            if not self._closing:
                on_close(why)

        threading.Thread(target=receive, name="wayland", daemon=True).start()

    def close(self) -> None:
        self._closing = True
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
