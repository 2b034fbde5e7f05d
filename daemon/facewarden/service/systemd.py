"""sd_notify: tell systemd (a `Type=notify` unit with `WatchdogSec=`) that the daemon is ready and
still alive, over the datagram socket in $NOTIFY_SOCKET. A few lines instead of a dependency;
outside systemd (no NOTIFY_SOCKET) it does nothing."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address  # "@": the abstract namespace
        self._sock: socket.socket | None = None
        self._failed = False

    def send(self, state: str) -> bool:
        """Send `state` (e.g. "READY=1", "WATCHDOG=1"); whether it went out."""
        if not self.address:
            return False
        try:
            if self._sock is None:
                # Non-blocking: a manager that does not read (its queue full) must never stall a step.
                kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                self._sock = socket.socket(socket.AF_UNIX, kind)
            self._sock.sendto(state.encode(), self.address)
        except BlockingIOError:
            return False
        except OSError as e:
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", os.environ.get("NOTIFY_SOCKET"), e)
            self._failed = True
            return False
        self._failed = False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
