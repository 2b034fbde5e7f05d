"""The daemon side of the control socket for desktop tests: a state the test sets, calls recorded.

Served by the real control.Server, so the tray and doctor go through the real socket and protocol;
only the camera-and-model daemon behind it is replaced (its own tests are test_service/test_e2e).
"""

from __future__ import annotations

import time
from contextlib import contextmanager


class TestDaemon:
    """A control.Controller whose status is `state`; pause/resume/lock-now change it as the
    daemon would."""

    __test__ = False

    def __init__(self, state: dict):
        self.calls: list[tuple] = []
        self.state = {k: v for k, v in state.items() if k != "ok"}

    def status(self) -> dict:
        return dict(self.state)

    def pause(self, seconds):
        self.calls.append(("pause", seconds))
        self.state |= {"state": "paused", "paused_until": None if seconds is None else time.time() + seconds}
        return {"ok": True, **self.status()}

    def resume(self):
        self.calls.append(("resume",))
        self.state |= {"state": "owner_present", "paused_until": None}
        return {"ok": True, **self.status()}

    def lock_now(self):
        self.calls.append(("lock-now",))
        self.state["locked"] = True
        return {"ok": True, **self.status()}

    def reload(self):
        self.calls.append(("reload",))
        return {"ok": True, **self.status()}


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
