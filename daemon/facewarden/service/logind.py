"""logind on the system bus: this user's display session (its lock state and idle hint), sleep and
resume, and the laptop lid.

The daemon is a systemd *user* service, outside any session: XDG_SESSION_ID is unset there and
GetSessionByPID fails. `GetSession("auto")` resolves, for such a process, to the user's display
session; older logind refuses "auto" outside a session, so the `Display` property of the user's
object (`GetUser(uid)`) is the fallback. The session is resolved again whenever logind adds or
removes a session or the user's display session changes (log out and in while the service runs).

The lock state is `LockedHint`, which the desktop's locker sets; it is reported, not kept here
(`core.guard` keeps it). The `Lock` signal only *asks* lockers to lock (loginctl lock-session), so
it alone never counts as locked: with a locker that never sets the hint (i3lock through xss-lock)
nothing would ever say it was unlocked again, and a daemon believing the session locked would stop
guarding an open one. `Unlock` counts at once (the safe direction: the daemon starts watching).
A session that goes away reports None: its word no longer counts.

LidClosed is read once and then follows `PropertiesChanged`, so that asking costs no bus call.

Callbacks run on the bus's dispatcher thread; each list may have several subscribers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from jeepney import DBusAddress, HeaderFields, MatchRule, Message, new_method_call

from .dbus import Bus, system_bus_address

log = logging.getLogger(__name__)

LOGIND = "org.freedesktop.login1"
ROOT = "/org/freedesktop/login1"
MANAGER_IFACE = "org.freedesktop.login1.Manager"
SESSION_IFACE = "org.freedesktop.login1.Session"
USER_IFACE = "org.freedesktop.login1.User"
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"
MANAGER = DBusAddress(ROOT, bus_name=LOGIND, interface=MANAGER_IFACE)
NO_SESSION = "/"


class Logind:
    """A client of logind for this user's display session. `start()` connects; without a system
    bus or logind it says so once in the log and every query answers None."""

    def __init__(self, uid: int | None = None):
        self.uid = os.getuid() if uid is None else uid
        self.bus: Bus | None = None
        self.problem: str | None = "not started"  # why it does not work here (for doctor), None when it does
        self.session: str | None = None  # the display session's object path
        self.user: str | None = None  # the user's object path
        self.lid: bool | None = None  # LidClosed, as last announced
        self._resolve_lock = threading.Lock()
        # Subscribers: each gets the new value.
        self.on_lock: list[Callable[[bool | None], None]] = []  # LockedHint read or announced (None: no session)
        self.on_sleep: list[Callable[[bool], None]] = []  # PrepareForSleep: True before, False after
        self.on_lid: list[Callable[[bool], None]] = []  # LidClosed changed (where logind announces it)
        self.on_session: list[Callable[[str | None], None]] = []  # the display session changed

    # -- connecting ---------------------------------------------------------------------------

    def start(self) -> bool:
        """Connect, subscribe and resolve the session; whether logind is reachable."""
        address = system_bus_address()
        self.bus = Bus.open(address, "system", enable_fds=True)
        if self.bus is None:
            self.problem = f"no system bus at {address}"
            return False
        if not self.bus.has_name(LOGIND):
            self.problem = "logind is not on the system bus"
            log.info("%s: living without it (no session lock state, no sleep notice)", self.problem)
            self.bus.close()
            self.bus = None
            return False
        bus = self.bus
        bus.subscribe(MatchRule(type="signal", sender=LOGIND, interface=MANAGER_IFACE, member="PrepareForSleep",
                                path=ROOT), self._prepare_for_sleep)
        for member in ("SessionNew", "SessionRemoved"):
            bus.subscribe(MatchRule(type="signal", sender=LOGIND, interface=MANAGER_IFACE, member=member, path=ROOT),
                          self._sessions_changed)
        bus.subscribe(MatchRule(type="signal", sender=LOGIND, interface=PROPERTIES_IFACE, member="PropertiesChanged",
                                path_namespace=ROOT), self._properties_changed)
        for member in ("Lock", "Unlock"):
            bus.subscribe(MatchRule(type="signal", sender=LOGIND, interface=SESSION_IFACE, member=member,
                                    path_namespace=f"{ROOT}/session"), self._lock_signal)
        self.problem = None
        self.resolve()
        lid = bus.get(MANAGER, "LidClosed")
        self.lid = None if lid is None else bool(lid)
        if self.session is None:
            log.info("logind knows no display session of uid %d yet; following it", self.uid)
        return True

    def close(self) -> None:
        if self.bus is not None:
            self.bus.close()

    @property
    def reachable(self) -> bool:
        return self.bus is not None and not self.bus.closed

    def available(self) -> str | None:
        """What works here, for doctor: logind and the session it follows; None without logind."""
        if not self.reachable:
            return None
        return f"logind (session {self.session or 'none yet'})"

    # -- the session --------------------------------------------------------------------------

    def _find_session(self) -> str | None:
        assert self.bus is not None
        body = self.bus.call(new_method_call(MANAGER, "GetSession", "s", ("auto",)))
        if body is not None:
            return body[0]
        body = self.bus.call(new_method_call(MANAGER, "GetUser", "u", (self.uid,)))
        if body is None:
            return None
        self.user = body[0]
        display = self.bus.get(DBusAddress(self.user, bus_name=LOGIND, interface=USER_IFACE), "Display")
        return display[1] if display and display[1] != NO_SESSION else None

    def resolve(self) -> str | None:
        """Find the display session again (at start and whenever logind's sessions change)."""
        if not self.reachable:
            return None
        with self._resolve_lock:
            session = self._find_session()
            changed = session != self.session
            self.session = session
            if changed:
                log.info("following logind session %s", session)
            locked = self._read_locked()
        if changed:
            for callback in self.on_session:
                callback(session)
        self._set_locked(locked)
        return session

    def _session_address(self) -> DBusAddress | None:
        return None if self.session is None else DBusAddress(self.session, bus_name=LOGIND, interface=SESSION_IFACE)

    def _read_locked(self) -> bool | None:
        where = self._session_address()
        if where is None or self.bus is None:
            return None
        value = self.bus.get(where, "LockedHint")
        return None if value is None else bool(value)

    def _set_locked(self, locked: bool | None) -> None:
        for callback in self.on_lock:
            callback(locked)

    # -- queries ------------------------------------------------------------------------------

    def lid_closed(self) -> bool | None:
        """The Manager's LidClosed as logind last announced it; None without logind."""
        return self.lid if self.reachable else None

    def idle_since(self) -> float | None:
        """Unix time since which the session has been idle (IdleHint, IdleSinceHint); now-ish when it
        is not idle; None without logind or a session."""
        where = self._session_address()
        if where is None or self.bus is None or not self.reachable:
            return None
        hint = self.bus.get(where, "IdleHint")
        if hint is None:
            return None
        if not hint:
            return time.time()
        since_us = self.bus.get(where, "IdleSinceHint")
        return None if not since_us else since_us / 1e6

    def inhibit(self, what: str, who: str, why: str, mode: str = "delay") -> int | None:
        """Take an inhibitor lock; its file descriptor (close it to let go), None when refused."""
        if not self.reachable:
            return None
        assert self.bus is not None
        body = self.bus.call(new_method_call(MANAGER, "Inhibit", "ssss", (what, who, why, mode)))
        if body is None:
            log.info("logind refused a %s %s inhibitor", mode, what)
            return None
        return body[0].to_raw_fd()

    # -- signals ------------------------------------------------------------------------------

    def _prepare_for_sleep(self, msg: Message) -> None:
        (start,) = msg.body
        log.info("logind: %s", "going to sleep" if start else "woke up")
        for callback in self.on_sleep:
            callback(bool(start))

    def _sessions_changed(self, _msg: Message) -> None:
        self.resolve()

    def _lock_signal(self, msg: Message) -> None:
        if msg.header.fields.get(HeaderFields.path) != self.session:
            return
        if msg.header.fields.get(HeaderFields.member) == "Unlock":
            self._set_locked(False)
        else:
            # Asked to lock: whether a locker did shows in LockedHint, read once more in case the
            # locker set it without announcing it.
            self._set_locked(self._read_locked())

    def _properties_changed(self, msg: Message) -> None:
        interface, changed, invalidated = msg.body
        path = msg.header.fields.get(HeaderFields.path)
        if interface == SESSION_IFACE and path == self.session:
            if "LockedHint" in changed:
                self._set_locked(bool(changed["LockedHint"][1]))
            elif "LockedHint" in invalidated:
                self._set_locked(self._read_locked())
        elif interface == MANAGER_IFACE and path == ROOT and "LidClosed" in changed:
            self.lid = bool(changed["LidClosed"][1])
            for callback in self.on_lid:
                callback(self.lid)
        elif interface == USER_IFACE and "Display" in {*changed, *invalidated}:
            self.resolve()

