"""A minimal session-bus client: desktop notifications, the screensaver lock, name lookups.

Pure Python (jeepney) so the venv needs no system D-Bus bindings. Every call opens its own short
connection with short timeouts: the daemon calls these rarely (an event, a lock), and a stuck or
absent bus must cost it at most a few seconds and never an exception.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection

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
