"""The one D-Bus client module (jeepney, pure Python, so the venv needs no system D-Bus bindings).

Short calls (desktop notifications, the screensaver lock, name lookups): every call opens its own
short connection with short timeouts. The daemon calls these rarely (an event, a lock), and a stuck
or absent bus must cost it at most a few seconds and never an exception.

Long-lived connections, for listening (`Bus`: logind on the system bus, the screensaver and idle
monitors on the session bus): one connection, two threads, a receiver that routes replies to their
callers and queues signals, and a dispatcher that runs the signal callbacks in order, so a callback
may itself call methods on the same bus. Calls work from any thread and time out. A bus that goes
away is logged once and then `closed`; nothing here raises into the daemon or prints a traceback.
"""

from __future__ import annotations

import copy
import logging
import os
import queue
import threading
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from jeepney import DBusAddress, HeaderFields, MatchRule, Message, MessageType, Properties, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io import threading as threading_io
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.io.common import ReplyMatcher

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 1.0
CALL_TIMEOUT_S = 2.0
APP_NAME = "facewarden"
URGENCY = {"low": 0, "normal": 1, "critical": 2}

# (bus name, object path, interface, method, signature, args), tried in order. The freedesktop name
# is KDE's (and others'); GNOME's own Lock is preferred to SetActive, which on older GNOME only
# blanks. The others are the same interface under each desktop's own name.
LOCK_CALLS: list[tuple[str, str, str, str, str | None, tuple]] = [
    ("org.freedesktop.ScreenSaver", "/org/freedesktop/ScreenSaver", "org.freedesktop.ScreenSaver", "Lock", None, ()),
    ("org.freedesktop.ScreenSaver", "/ScreenSaver", "org.freedesktop.ScreenSaver", "Lock", None, ()),
    ("org.gnome.ScreenSaver", "/org/gnome/ScreenSaver", "org.gnome.ScreenSaver", "Lock", None, ()),
    ("org.gnome.ScreenSaver", "/org/gnome/ScreenSaver", "org.gnome.ScreenSaver", "SetActive", "b", (True,)),
    ("org.cinnamon.ScreenSaver", "/org/cinnamon/ScreenSaver", "org.cinnamon.ScreenSaver", "Lock", "s", ("",)),
    ("org.mate.ScreenSaver", "/org/mate/ScreenSaver", "org.mate.ScreenSaver", "Lock", None, ()),
    ("org.xfce.ScreenSaver", "/org/xfce/ScreenSaver", "org.xfce.ScreenSaver", "Lock", None, ()),
]


def session_bus_address() -> str | None:
    """The session bus address; systemd user sessions put the bus at $XDG_RUNTIME_DIR/bus even
    when the variable is not exported to a unit."""
    addr = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if addr:
        return addr
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and (Path(runtime) / "bus").exists():
        return f"unix:path={Path(runtime) / 'bus'}"
    return None


@contextmanager
def connect(address: str | None = None) -> Iterator[DBusConnection | None]:
    """A short connection to the bus at `address` (the session bus when None); None when there is none."""
    addr = address or session_bus_address()
    conn = None
    if addr:
        try:
            conn = open_dbus_connection(addr, auth_timeout=CONNECT_TIMEOUT_S)
        except (OSError, RuntimeError, ValueError) as e:  # TimeoutError is an OSError
            log.info("no bus at %s: %s", addr, e)
    try:
        yield conn
    finally:
        if conn is not None:
            conn.close()


class NoReply(Exception):
    """The call went out and no reply came in time (mate-screensaver's Lock never replies)."""


def call(conn: DBusConnection, msg, timeout: float = CALL_TIMEOUT_S, no_reply_ok: bool = False) -> tuple | None:
    """The reply's body, or None when the call failed or timed out; with `no_reply_ok`, a call left
    unanswered raises NoReply instead."""
    try:
        reply = conn.send_and_get_reply(msg, timeout=timeout)
    except TimeoutError:
        if no_reply_ok:
            raise NoReply() from None
        log.info("D-Bus call %s: no reply within %.1f s", msg.header.fields.get(HeaderFields.member), timeout)
        return None
    except (OSError, ValueError) as e:
        log.info("D-Bus call %s failed: %s", msg.header.fields.get(HeaderFields.member), e or type(e).__name__)
        return None
    if reply.header.message_type == MessageType.error:
        log.info("D-Bus call %s: %s %s", msg.header.fields.get(HeaderFields.member),
                 reply.header.fields.get(HeaderFields.error_name), reply.body)
        return None
    return reply.body


def _has_name(conn: DBusConnection, name: str) -> bool:
    body = call(conn, message_bus.NameHasOwner(name))
    return bool(body and body[0])


def has_name(name: str) -> bool:
    """Whether `name` is currently owned on the session bus (False without a bus)."""
    with connect() as conn:
        return conn is not None and _has_name(conn, name)


def notify(summary: str, body: str = "", urgency: str = "normal", timeout_ms: int = -1) -> bool:
    """Show a desktop notification; whether a notification server accepted it."""
    level = URGENCY.get(urgency)
    if level is None:
        raise ValueError(f"urgency must be one of {', '.join(URGENCY)}, not {urgency!r}")
    with connect() as conn:
        if conn is None:
            return False
        server = DBusAddress("/org/freedesktop/Notifications", bus_name="org.freedesktop.Notifications",
                             interface="org.freedesktop.Notifications")
        msg = new_method_call(server, "Notify", "susssasa{sv}i",
                              (APP_NAME, 0, "", summary, body, [], {"urgency": ("y", level)}, timeout_ms))
        return call(conn, msg) is not None


LOCK_REPLY_S = 0.5  # a Lock that has not answered by then is judged by the lock state it produces


def screensaver_lock() -> bool:
    """Ask the desktop's screensaver service to lock; whether one took the request (replied, or
    kept it without a reply: the lock state tells whether it locked)."""
    with connect() as conn:
        if conn is None:
            return False
        owned: dict[str, bool] = {}
        for name, path, interface, method, signature, args in LOCK_CALLS:
            # Only call names someone owns: calling an unowned name may start a service instead.
            if name not in owned:
                owned[name] = _has_name(conn, name)
            if not owned[name]:
                continue
            msg = new_method_call(DBusAddress(path, bus_name=name, interface=interface), method, signature, args)
            try:
                replied = call(conn, msg, LOCK_REPLY_S, no_reply_ok=True) is not None
            except NoReply:
                log.info("asked %s %s.%s to lock (it sends no reply)", name, interface, method)
                return True
            if replied:
                log.info("asked %s %s.%s to lock", name, interface, method)
                return True
        return False


def lock_services() -> list[str]:
    """The screensaver names present on the session bus (for doctor), in LOCK_CALLS order."""
    with connect() as conn:
        if conn is None:
            return []
        names = dict.fromkeys(name for name, *_ in LOCK_CALLS)
        return [name for name in names if _has_name(conn, name)]


def screensaver_active() -> bool | None:
    """`GetActive` of the first screensaver service present: whether it is locked/active now;
    None without a bus or a service that answers."""
    with connect() as conn:
        if conn is None:
            return None
        for name, path, interface, *_ in LOCK_CALLS:
            if not _has_name(conn, name):
                continue
            body = call(conn, new_method_call(DBusAddress(path, bus_name=name, interface=interface), "GetActive"))
            if body is not None:
                return bool(body[0])
        return None


# -- long-lived connections, for listening --------------------------------------------------

SYSTEM_BUS_DEFAULT = "unix:path=/run/dbus/system_bus_socket"

Callback = Callable[[Message], None]


def system_bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or SYSTEM_BUS_DEFAULT


class _Tagged:
    """What jeepney's filters put matching messages into: our one queue, with the callback."""

    def __init__(self, into: queue.Queue, callback: Callback):
        self.into, self.callback = into, callback

    def put_nowait(self, msg: Message) -> None:
        self.into.put((self.callback, msg))


class Bus:
    """One long-lived connection, for listening; see the module docstring. Make it with `Bus.open`."""

    def __init__(self, conn: threading_io.DBusConnection, label: str):
        self.label = label
        self.conn = conn
        self.closed = False
        self._replies = ReplyMatcher()
        self._rules: list[tuple[MatchRule, str | None, _Tagged]] = []
        # Signals carry their sender's unique name: the owner of each well-known name subscribed to,
        # so that nobody else's signal (a unicast one skips match rules) passes for the service's.
        self._owners: dict[str, str] = {}
        self._owner_watchers: dict[str, list[Callable[[str], None]]] = {}
        self._signals: queue.Queue = queue.Queue()
        self._receiver = threading.Thread(target=self._receive, name=f"bus-{label}", daemon=True)
        self._dispatcher = threading.Thread(target=self._dispatch, name=f"bus-{label}-signals", daemon=True)
        self._receiver.start()
        self._dispatcher.start()

    @classmethod
    def open(cls, address: str | None, label: str, enable_fds: bool = False) -> "Bus | None":
        """A connection to the bus at `address`; None (with the reason logged once) when there is none."""
        if not address:
            log.info("no %s bus address: living without it", label)
            return None
        try:
            conn = threading_io.open_dbus_connection(address, enable_fds=enable_fds, auth_timeout=CONNECT_TIMEOUT_S)
        except (OSError, RuntimeError, ValueError, KeyError) as e:  # TimeoutError is an OSError
            log.info("no %s bus at %s (%s): living without it", label, address, e)
            return None
        return cls(conn, label)

    # -- the two threads ----------------------------------------------------------------------

    def _receive(self) -> None:
        try:
            while True:
                msg = self.conn.receive()
                if self._replies.dispatch(msg):
                    continue
                sender = msg.header.fields.get(HeaderFields.sender)
                for rule, name, tagged in list(self._rules):
                    if rule.matches(msg) and (name is None or self._owners.get(name) == sender):
                        tagged.put_nowait(msg)
        except threading_io.ReceiveStopped:
            pass
        except Exception as e:  # the bus went away (or sent garbage): say so once, then live without it
            if not self.closed:
                log.warning("lost the %s bus: %s", self.label, e)
        finally:
            self.closed = True
            self._replies.drop_all()
            self._signals.put(None)

    def _dispatch(self) -> None:
        while (item := self._signals.get()) is not None:
            callback, msg = item
            try:
                callback(msg)
            except Exception:
                log.exception("handling %s from the %s bus failed", msg.header.fields.get(HeaderFields.member),
                              self.label)

    # -- use ----------------------------------------------------------------------------------

    def call(self, msg: Message, timeout: float = CALL_TIMEOUT_S) -> tuple | None:
        """The reply's body; None when the bus is gone, the call failed or timed out (logged)."""
        member = msg.header.fields.get(HeaderFields.member)
        if self.closed:
            return None
        serial = next(self.conn.outgoing_serial)
        try:
            with self._replies.catch(serial, Future()) as future:
                self.conn.send(msg, serial=serial)
                reply = future.result(timeout=timeout)
        except Exception as e:  # OSError, TimeoutError, RouterClosed
            log.debug("D-Bus %s on the %s bus: %s", member, self.label, e or type(e).__name__)
            return None
        if reply.header.message_type == MessageType.error:
            log.debug("D-Bus %s on the %s bus: %s %s", member, self.label,
                      reply.header.fields.get(HeaderFields.error_name), reply.body)
            return None
        return reply.body

    def get(self, where: DBusAddress, name: str) -> Any:
        """A property's value (the variant unwrapped); None when it cannot be read."""
        body = self.call(Properties(where).get(name))
        return None if body is None else body[0][1]

    def has_name(self, name: str) -> bool:
        body = self.call(message_bus.NameHasOwner(name))
        return bool(body and body[0])

    def subscribe(self, rule: MatchRule, callback: Callback) -> bool:
        """Run `callback(msg)` on the dispatcher thread for every message matching `rule` (whose
        `sender`, if any, is a well-known name)."""
        name = rule.header_fields.get("sender")
        if name is not None and name not in self._owners:
            self._follow_owner(name)
        local = copy.copy(rule)
        local.header_fields = {k: v for k, v in rule.header_fields.items() if k != "sender"}
        self._rules.append((local, name, _Tagged(self._signals, callback)))
        return self.call(message_bus.AddMatch(rule)) is not None

    def _follow_owner(self, name: str) -> None:
        self._owners[name] = ""
        changed = MatchRule(type="signal", sender="org.freedesktop.DBus", interface="org.freedesktop.DBus",
                            member="NameOwnerChanged", path="/org/freedesktop/DBus")
        changed.add_arg_condition(0, name)
        self._rules.append((changed, None, _Tagged(self._signals, self._owner_changed)))
        self.call(message_bus.AddMatch(changed))
        body = self.call(message_bus.GetNameOwner(name))
        if body is not None:
            self._owners[name] = body[0]

    def watch_owner(self, name: str, callback: Callable[[str], None]) -> str:
        """Call `callback(owner)` on the dispatcher thread whenever `name` changes hands ("" when
        nobody owns it any more: the service exited, crashed or was killed); its owner now."""
        if name not in self._owners:
            self._follow_owner(name)
        self._owner_watchers.setdefault(name, []).append(callback)
        return self._owners[name]

    def _owner_changed(self, msg: Message) -> None:
        name, _old, new = msg.body
        self._owners[name] = new
        for callback in self._owner_watchers.get(name, []):
            callback(new)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.close()  # interrupts the receiver, which stops the dispatcher


def method(path: str, bus_name: str, interface: str, name: str, signature: str | None = None,
           body: tuple = ()) -> Message:
    return new_method_call(DBusAddress(path, bus_name=bus_name, interface=interface), name, signature, body)
