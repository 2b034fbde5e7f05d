"""Long-lived D-Bus connections, for listening: logind on the system bus, the screensaver and idle
monitors on the session bus. (`dbus.py`'s short connections are for rare one-off calls.)

One connection, two threads: a receiver that routes replies to their callers and queues signals,
and a dispatcher that runs the signal callbacks in order, so a callback may itself call methods on
the same bus. Calls work from any thread and time out. A bus that goes away is logged once and then
`closed`; nothing here raises into the daemon or prints a traceback.
"""

from __future__ import annotations

import copy
import logging
import os
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable

from jeepney import DBusAddress, HeaderFields, MatchRule, Message, MessageType, Properties, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.common import ReplyMatcher
from jeepney.io.threading import DBusConnection, ReceiveStopped, open_dbus_connection

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 1.0
CALL_TIMEOUT_S = 2.0
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
    """One open connection; see the module docstring. Make it with `Bus.open`."""

    def __init__(self, conn: DBusConnection, label: str):
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
            conn = open_dbus_connection(address, enable_fds=enable_fds, auth_timeout=CONNECT_TIMEOUT_S)
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
        except ReceiveStopped:
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
