"""What the desktop session tells the camera policy (camera.when_busy): seconds since the last
input (idle.py's first back-end that works here) and whether the laptop lid is closed (logind)."""

from __future__ import annotations

import logging

from . import idle
from .bus import Bus
from .dbus import session_bus_address
from .logind import Logind

log = logging.getLogger(__name__)


class Desk:
    def __init__(self, logind: Logind | None, idle_source: idle.IdleSource | None, bus: Bus | None = None):
        self.logind = logind
        self.idle_source = idle_source
        self._bus = bus

    @classmethod
    def connect(cls, when_busy: str) -> "Desk":
        """logind and an idle source where there are; without them, each answer is None."""
        client = Logind()
        logind = client if client.start() else None
        if logind is None:
            client.close()
        bus = Bus.open(session_bus_address(), "session")
        source = idle.detect(bus, logind)
        if source is None and when_busy == "idle":
            log.warning('camera.when_busy = "idle" but no idle input source works here: a busy camera '
                        'fails closed (as "lock")')
        return cls(logind, source, bus)

    def idle_seconds(self) -> float | None:
        return None if self.idle_source is None else self.idle_source.idle_seconds()

    def lid_closed(self) -> bool | None:
        return None if self.logind is None else self.logind.lid_closed()

    def close(self) -> None:
        for bus in (self._bus, self.logind):
            if bus is not None:
                bus.close()
