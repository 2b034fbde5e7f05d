"""The daemon side of the control socket for the control, tray and doctor tests: a state the test
sets, calls recorded, refusals and failures on request.

Served by the real control.Server (or its `request` method, which goes through the real protocol
handler), so clients meet the real socket and protocol; only the camera-and-model daemon behind it
is replaced (its own tests are test_service/test_e2e).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager


class TestDaemon:
    """A control.Controller whose status is `state`; pause/resume/lock-now change it as the
    daemon would."""

    __test__ = False

    def __init__(self, state: dict, refuse: dict[str, str] | None = None, broken: tuple[str, ...] = ()):
        self.calls: list[tuple] = []
        self.state = {k: v for k, v in state.items() if k != "ok"}
        self.refuse = dict(refuse or {})  # command -> the error it answers instead of acting
        self.broken = broken  # commands that raise, as a bug in the daemon would
        self.up = True  # for `request`: False answers as a daemon that is not running
        self.sent: list[dict] = []

    def request(self, cmd: dict) -> dict:
        """A stand-in for control.request: the real protocol handler, without the socket."""
        from facewarden.errors import UserError
        from facewarden.service.control import handle_request

        if not self.up:
            raise UserError("the daemon is not running")
        self.sent.append(cmd)
        return handle_request(self, json.dumps(cmd).encode())

    def _act(self, call: tuple, change: dict) -> dict:
        if call[0] in self.broken:
            raise RuntimeError("boom")
        self.calls.append(call)
        if call[0] in self.refuse:
            return {"ok": False, "error": self.refuse[call[0]]}
        self.state |= change
        return {"ok": True, **self.status()}

    def status(self) -> dict:
        return dict(self.state)

    def pause(self, seconds):
        until = None if seconds is None else time.time() + seconds
        return self._act(("pause", seconds), {"state": "paused", "paused_until": until})

    def resume(self):
        return self._act(("resume",), {"state": "owner_present", "paused_until": None})

    def lock_now(self):
        return self._act(("lock-now",), {"locked": True})

    def reload(self):
        return self._act(("reload",), {})


@contextmanager
def serving(controller):
    """The real control.Server for `controller` on this FACEWARDEN_HOME's socket, while in the block."""
    from facewarden.service.control import Server
    from facewarden.paths import paths

    server = Server(paths().socket_path, controller)
    server.start()
    try:
        yield server
    finally:
        server.stop()
