"""Objects this process serves on a D-Bus connection (the tray's StatusNotifierItem and its menu).

jeepney has no server side: `Server` routes the method calls that arrive on a `service.dbus.Bus`
to the exported object at their path, answers the standard interfaces (Properties, Introspectable,
Peer) from what each object declares, and sends its signals. Calls run on the bus's dispatcher
thread, one at a time: a handler whose work may take long (a lock) hands it to `later`, which runs
it on a thread of its own once the reply is sent (so the caller gets its answer even when the work
ends the process, as "Quit" does).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from jeepney import DBusAddress, HeaderFields, MatchRule, Message, new_error, new_method_return, new_signal
from jeepney.bus_messages import message_bus

from ..service.dbus import Bus

log = logging.getLogger(__name__)

PROPERTIES = "org.freedesktop.DBus.Properties"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
PEER = "org.freedesktop.DBus.Peer"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"


class Refused(Exception):
    """A D-Bus error reply: `name` (org.freedesktop.DBus.Error.*) and a message."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


class Exported:
    """One object: its path, interface, introspection XML (the <interface> element) and handlers."""

    path = "/"
    interface = ""
    xml = ""

    def properties(self) -> dict[str, tuple[str, Any]]:
        """Every property as name -> (signature, value)."""
        return {}

    def call(self, member: str, body: tuple) -> tuple[str | None, tuple]:
        """The reply to `member` of `interface`: (signature, body); raise Refused for an error."""
        raise Refused(UNKNOWN_METHOD, f"no method {member}")


def introspection(obj: Exported) -> str:
    return ('<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN" '
            '"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n<node>'
            f'<interface name="{INTROSPECTABLE}"><method name="Introspect"><arg type="s" direction="out"/></method>'
            f'</interface><interface name="{PROPERTIES}"><method name="Get"><arg type="s" direction="in"/>'
            '<arg type="s" direction="in"/><arg type="v" direction="out"/></method><method name="GetAll">'
            '<arg type="s" direction="in"/><arg type="a{sv}" direction="out"/></method></interface>'
            f"{obj.xml}</node>")


class Server:
    """Serves exported objects on `bus`; see the module docstring."""

    def __init__(self, bus: Bus):
        self.bus = bus
        self.objects: dict[str, Exported] = {}
        self._later: list[Callable[[], None]] = []  # only touched on the bus's dispatcher thread
        bus.subscribe(MatchRule(type="method_call"), self._route)

    def export(self, obj: Exported) -> None:
        self.objects[obj.path] = obj

    def own(self, name: str) -> bool:
        """Own the well-known `name` (not queued behind another owner); whether we do now."""
        body = self.bus.call(message_bus.RequestName(name, 4))
        return body is not None and body[0] in (1, 4)  # primary owner, or already were

    def later(self, work: Callable[[], None]) -> None:
        """Run `work` on a thread of its own after the reply to the call being handled is sent."""
        self._later.append(work)

    def signal(self, obj: Exported, member: str, signature: str | None = None, body: tuple = (),
               interface: str | None = None) -> None:
        if self.bus.closed:
            return
        try:
            self.bus.conn.send(new_signal(DBusAddress(obj.path, interface=interface or obj.interface), member,
                                          signature, body))
        except OSError as e:  # the bus went away: the tray ends once it notices
            log.debug("signal %s: %s", member, e)

    def _route(self, msg: Message) -> None:
        fields = msg.header.fields
        if fields.get(HeaderFields.destination) is None:
            return  # a broadcast seen through someone's match rule: not a call to us
        path, member = fields.get(HeaderFields.path), fields.get(HeaderFields.member)
        interface = fields.get(HeaderFields.interface)
        obj = self.objects.get(path)
        try:
            if interface == PEER and member == "Ping":
                reply = new_method_return(msg)
            elif obj is None:
                raise Refused("org.freedesktop.DBus.Error.UnknownObject", f"no object at {path}")
            elif interface == INTROSPECTABLE and member == "Introspect":
                reply = new_method_return(msg, "s", (introspection(obj),))
            elif interface == PROPERTIES:
                reply = new_method_return(msg, *self._properties(obj, member, msg.body))
            elif interface in (obj.interface, None):
                reply = new_method_return(msg, *obj.call(member, msg.body))
            else:
                raise Refused("org.freedesktop.DBus.Error.UnknownInterface", f"no interface {interface}")
        except Refused as e:
            reply = new_error(msg, e.name, "s", (str(e),))
        except Exception as e:  # a bug here must answer the caller, not leave it waiting
            log.exception("serving %s.%s", interface, member)
            reply = new_error(msg, "org.freedesktop.DBus.Error.Failed", "s", (str(e),))
        try:
            self.bus.conn.send(reply)
        except OSError as e:
            log.debug("reply to %s: %s", member, e)
        work, self._later = self._later, []
        for w in work:
            threading.Thread(target=w, name=f"dbus-{member}", daemon=True).start()

    @staticmethod
    def _properties(obj: Exported, member: str, body: tuple) -> tuple[str, tuple]:
        if body and body[0] not in (obj.interface, ""):
            raise Refused("org.freedesktop.DBus.Error.UnknownInterface", f"no interface {body[0]}")
        props = obj.properties()
        if member == "GetAll":
            return "a{sv}", (props,)
        if member == "Get":
            if body[1] not in props:
                raise Refused("org.freedesktop.DBus.Error.UnknownProperty", f"no property {body[1]}")
            return "v", (props[body[1]],)
        raise Refused("org.freedesktop.DBus.Error.PropertyReadOnly" if member == "Set" else UNKNOWN_METHOD,
                      f"{member} is not supported")
