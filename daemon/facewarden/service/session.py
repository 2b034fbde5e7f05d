"""The desktop session the daemon lives in: its lock-state sources, sleep and resume, idle input.

Lock-state sources report, they do not decide: logind's LockedHint (source "logind") and each
screensaver service on the session bus (source: its bus name; desktops whose locker does not set
LockedHint still announce `ActiveChanged` there), and a running screen locker of this user
(source "locker", `lockers.py`: lockers that tell neither). Each report goes to `report(source, locked)`, the
daemon's one way into `core.guard`; `locked` None means the source went away (logind forgot the
session, the screensaver's name lost its owner: a crash, a kill, a logout), so that what it said
last no longer holds the session locked. A screensaver that (re)appears is asked `GetActive`.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

from jeepney import MatchRule, Message

from . import dbus, idle, lockers
from .dbus import Bus, method
from .logind import Logind

log = logging.getLogger(__name__)

Report = Callable[[str, "bool | None"], None]


def screensaver_names() -> dict[str, list[tuple[str, str]]]:
    """Each screensaver bus name with its (path, interface) pairs, in LOCK_CALLS order."""
    names: dict[str, list[tuple[str, str]]] = {}
    for name, path, interface, *_ in dbus.LOCK_CALLS:
        if (path, interface) not in names.setdefault(name, []):
            names[name].append((path, interface))
    return names


class Session:
    def __init__(self, locker_names: Iterable[str] = ()) -> None:
        self.logind = Logind()
        self.lockers = lockers.Lockers([*lockers.DEFAULT, *locker_names])
        self.session_bus: Bus | None = None
        self.idle: idle.IdleSource | None = None
        self.on_sleep = self.logind.on_sleep
        self._report: Report = lambda source, locked: None

    def start(self, report: Report) -> None:
        """Connect to what is there (each absent piece says so once in the log) and report what
        each lock-state source says now, then every change."""
        self._report = report
        self.logind.on_lock.append(lambda locked: report("logind", locked))
        self.logind.start()
        self.session_bus = Bus.open(dbus.session_bus_address(), "session")
        if self.session_bus is not None:
            for name, paths in screensaver_names().items():
                self._watch_screensaver(self.session_bus, name, paths)
        self.idle = idle.detect(self.session_bus, self.logind)
        # A locker speaks only while it runs: its exit takes its word away, and an idle locker binary
        # must not pass for a source that could confirm another method's lock.
        if self.lockers.start(lambda locked: report("locker", True if locked else None)) and self.lockers.locked():
            report("locker", True)

    def close(self) -> None:
        self.lockers.close()
        self.logind.close()
        if self.session_bus is not None:
            self.session_bus.close()

    def _watch_screensaver(self, bus: Bus, name: str, paths: list[tuple[str, str]]) -> None:
        def active_changed(msg: Message) -> None:
            log.debug("%s: ActiveChanged %s", name, msg.body[0])
            self._report(name, bool(msg.body[0]))

        def owner_changed(owner: str) -> None:
            if not owner:
                log.warning("%s left the session bus: what it said of the lock no longer counts", name)
                self._report(name, None)
            else:
                log.info("%s is on the session bus", name)
                self._ask(bus, name, paths)

        for _path, interface in paths:
            bus.subscribe(MatchRule(type="signal", sender=name, interface=interface, member="ActiveChanged"),
                          active_changed)
        if bus.watch_owner(name, owner_changed):
            self._ask(bus, name, paths)

    def _ask(self, bus: Bus, name: str, paths: list[tuple[str, str]]) -> None:
        for path, interface in paths:
            body = bus.call(method(path, name, interface, "GetActive"))
            if body is not None:
                self._report(name, bool(body[0]))
                return

    def idle_seconds(self) -> float | None:
        return None if self.idle is None else self.idle.idle_seconds()
