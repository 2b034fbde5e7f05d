"""The desktop session the daemon lives in: whether it is locked (whoever locked it), sleep and
resume, idle input. Brings together logind on the system bus and, on the session bus, the
screensaver's `ActiveChanged` (desktops whose locker does not set logind's LockedHint still announce
it there) and the idle back-ends.

Locked means: logind's LockedHint, or a screensaver service reports itself active, or a screen
locker process runs (`lockers.py`: lockers that tell neither). None means nothing here can tell
(no logind session, no screensaver, no locker installed): the daemon then knows only its own locks.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable

from jeepney import HeaderFields, MatchRule, Message

from . import dbus, idle, lockers
from .bus import Bus, method
from .logind import Logind

log = logging.getLogger(__name__)


class Session:
    def __init__(self, locker_names: Iterable[str] = ()) -> None:
        self.logind = Logind()
        self.lockers = lockers.Lockers([*lockers.DEFAULT, *locker_names])
        self.session_bus: Bus | None = None
        self.idle: idle.IdleSource | None = None
        self._screensaver: bool | None = None  # the last ActiveChanged / GetActive
        self._locked: bool | None = None
        self._changing = threading.Lock()
        self.on_lock: list[Callable[[bool], None]] = []  # the combined lock state changed
        self.on_sleep = self.logind.on_sleep

    def start(self) -> None:
        """Connect to what is there; each absent piece says so once in the log."""
        self.logind.on_lock.append(lambda _locked: self._changed())
        self.logind.start()
        self.session_bus = Bus.open(dbus.session_bus_address(), "session")
        if self.session_bus is not None:
            self._watch_screensavers(self.session_bus)
        self.idle = idle.detect(self.session_bus, self.logind)
        self.lockers.start(lambda _locked: self._changed())
        self._locked = self.locked()

    def close(self) -> None:
        self.lockers.close()
        self.logind.close()
        if self.session_bus is not None:
            self.session_bus.close()

    def _watch_screensavers(self, bus: Bus) -> None:
        seen: set[str] = set()
        for name, path, interface, *_ in dbus.LOCK_CALLS:
            if name in seen:
                continue
            seen.add(name)
            bus.subscribe(MatchRule(type="signal", sender=name, interface=interface, member="ActiveChanged"),
                          self._active_changed)
            if self._screensaver is None and bus.has_name(name):
                body = bus.call(method(path, name, interface, "GetActive"))
                if body is not None:
                    self._screensaver = bool(body[0])

    def _active_changed(self, msg: Message) -> None:
        log.debug("%s: ActiveChanged %s", msg.header.fields.get(HeaderFields.interface), msg.body[0])
        self._screensaver = bool(msg.body[0])
        self._changed()

    def _changed(self) -> None:
        with self._changing:
            locked = self.locked()
            if locked is None or locked == self._locked:
                return
            self._locked = locked
        for callback in self.on_lock:
            callback(locked)

    # -- queries ------------------------------------------------------------------------------

    def locked(self) -> bool | None:
        known = [v for v in (self.logind.locked(), self._screensaver, self.lockers.locked()) if v is not None]
        return any(known) if known else None

    def locked_via(self) -> str | None:
        """Which source says the session is locked (or unlocked), for status."""
        if self.lockers.locked():
            return f"locker {self.lockers.which()}"
        if self.logind.locked() is not None:
            return "logind" if self.logind.locked() or not self._screensaver else "screensaver"
        return None if self._screensaver is None else "screensaver"

    def idle_seconds(self) -> float | None:
        return None if self.idle is None else self.idle.idle_seconds()
