"""A test logind on a private system bus, written with jeepney: what facewarden asks of the real one.

Run as `python logind_server.py RECORD UID [--no-auto] [--sysfs=DIR]` with DBUS_SYSTEM_BUS_ADDRESS
pointing at a private bus. It owns org.freedesktop.login1 (and org.freedesktop.UPower) and serves:
- Manager: GetSession("auto") (refused with --no-auto, like a logind too old to resolve "auto"
  outside a session), GetUser(uid), Inhibit (a real pipe: the caller gets the write end, this side
  notices when it is closed, as logind does with its FIFOs), ListInhibitors, LockSession(id) (as
  real logind: it only emits the session's Lock; the locker sets LockedHint), properties LidClosed,
  BlockInhibited and DelayInhibited; signals PrepareForSleep, SessionNew, SessionRemoved, and
  PropertiesChanged for BlockInhibited or DelayInhibited as an inhibitor starts or ends.
- /org/freedesktop/login1/session/<id> (and session/auto, the caller's): properties Id, LockedHint,
  IdleHint, IdleSinceHint; methods Lock (emits Lock, no hint), SetLockedHint(b) (what a locker
  calls) and SetBrightness(s subsystem, s name, u value), recorded and, with --sysfs, written to
  DIR/<subsystem>/<name>/brightness as the kernel would; signals Lock, Unlock; PropertiesChanged
  for LockedHint and IdleHint.
- UPower's /org/freedesktop/UPower: property OnBattery, and its PropertiesChanged.
- /org/freedesktop/login1/user/_<uid>: properties Display (so), Sessions a(so).
- org.facewarden.Test on / for the test to drive it: SetLocked(b) (as a locker would: hint and
  PropertiesChanged), EmitLock(), EmitUnlock(), Sleep(b) (PrepareForSleep), SetLid(b),
  SetIdle(b, t usec), NewSession(s id) (the user's display session moves there), SetBattery(b).
Appends one JSON line per happening to RECORD ({"what": ..., "time": ...}); prints "ready".
"""

from __future__ import annotations

import json
import os
import select
import sys
import time

from jeepney import (DBusAddress, HeaderFields, MessageType, new_error, new_method_return, new_signal)
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

ROOT = "/org/freedesktop/login1"
MANAGER = "org.freedesktop.login1.Manager"
SESSION = "org.freedesktop.login1.Session"
USER = "org.freedesktop.login1.User"
PROPS = "org.freedesktop.DBus.Properties"


class Logind:
    def __init__(self, conn, record: str, uid: int, auto: bool, sysfs: str | None = None):
        self.conn, self.record, self.uid, self.auto, self.sysfs = conn, record, uid, auto, sysfs
        self.battery = False
        self.session_id = "c1"
        self.locked = False
        self.lid = False
        self.idle = (False, 0)
        self.inhibitors: dict[int, tuple] = {}  # read end -> (what, who, why, mode)
        self.sent_fds: list[int] = []

    @property
    def session_path(self) -> str:
        return f"{ROOT}/session/{self.session_id}"

    @property
    def user_path(self) -> str:
        return f"{ROOT}/user/_{self.uid}"

    def note(self, what: str, **more) -> None:
        with open(self.record, "a", encoding="utf-8") as out:
            out.write(json.dumps({"what": what, "time": time.time(), **more}) + "\n")

    def signal(self, path: str, interface: str, member: str, signature: str | None = None, body: tuple = ()):
        self.conn.send(new_signal(DBusAddress(path, interface=interface), member, signature, body))

    def changed(self, path: str, interface: str, props: dict) -> None:
        self.signal(path, PROPS, "PropertiesChanged", "sa{sv}as", (interface, props, []))

    def properties(self, path: str) -> tuple[str, dict] | None:
        if path == ROOT:
            return MANAGER, {"LidClosed": ("b", self.lid), "BlockInhibited": ("s", self.inhibited("block")),
                             "DelayInhibited": ("s", self.inhibited("delay"))}
        if path in (self.session_path, f"{ROOT}/session/auto"):
            return SESSION, {"Id": ("s", self.session_id), "LockedHint": ("b", self.locked),
                             "IdleHint": ("b", self.idle[0]), "IdleSinceHint": ("t", self.idle[1])}
        if path == "/org/freedesktop/UPower":
            return "org.freedesktop.UPower", {"OnBattery": ("b", self.battery)}
        if path == self.user_path:
            return USER, {"Display": ("(so)", (self.session_id, self.session_path)),
                          "Sessions": ("a(so)", [(self.session_id, self.session_path)])}
        return None

    def inhibited(self, mode: str) -> str:
        """What the inhibitors of `mode` inhibit, as logind's BlockInhibited says it: "idle:sleep"."""
        whats = {w for what, _who, _why, m in self.inhibitors.values() if m == mode for w in what.split(":")}
        return ":".join(sorted(whats))

    def inhibitors_changed(self, mode: str) -> None:
        """As logind, when an inhibitor of `mode` starts or ends."""
        name = "BlockInhibited" if mode == "block" else "DelayInhibited"
        self.changed(ROOT, MANAGER, {name: ("s", self.inhibited(mode))})

    def set_locked(self, locked: bool) -> None:
        self.locked = locked
        self.changed(self.session_path, SESSION, {"LockedHint": ("b", locked)})

    # -- calls --------------------------------------------------------------------------------

    def answer(self, msg):
        f = msg.header.fields
        member, path, interface = f.get(HeaderFields.member), f.get(HeaderFields.path), f.get(HeaderFields.interface)
        args = msg.body
        self.note("call", member=member, path=path, args=[a for a in args if isinstance(a, (str, int, bool))])
        if interface == PROPS:
            found = self.properties(path)
            if found is None or (args and args[0] not in (found[0], "")):
                return new_error(msg, "org.freedesktop.DBus.Error.UnknownInterface")
            if member == "Get":
                if args[1] not in found[1]:
                    return new_error(msg, "org.freedesktop.DBus.Error.UnknownProperty")
                return new_method_return(msg, "v", (found[1][args[1]],))
            if member == "GetAll":
                return new_method_return(msg, "a{sv}", (found[1],))
        if member == "GetSession":
            if args[0] == "auto" and not self.auto:
                return new_error(msg, "org.freedesktop.login1.NoSessionForPID", "s",
                             ("Caller does not belong to any known session",))
            return new_method_return(msg, "o", (self.session_path,))
        if member == "GetSessionByPID":
            return new_error(msg, "org.freedesktop.login1.NoSessionForPID", "s", ("PID does not belong to any session",))
        if member == "GetUser":
            return new_method_return(msg, "o", (self.user_path,))
        if member == "Inhibit":
            read, write = os.pipe()
            self.inhibitors[read] = tuple(args)
            self.note("inhibit", args=list(args))
            self.inhibitors_changed(args[3])
            self.sent_fds.append(write)  # ours is closed once sent: only the caller holds it then
            return new_method_return(msg, "h", (write,))
        if member == "ListInhibitors":
            held = [(*what, self.uid, os.getpid()) for what in self.inhibitors.values()]
            return new_method_return(msg, "a(ssssuu)", (held,))
        if member == "SetBrightness":
            subsystem, name, value = args
            self.note("brightness", args=[subsystem, name, value])
            if self.sysfs:
                with open(os.path.join(self.sysfs, subsystem, name, "brightness"), "w") as out:
                    out.write(f"{value}\n")
            return new_method_return(msg)
        if member == "LockSession" or (interface == SESSION and member == "Lock"):
            self.signal(self.session_path, SESSION, "Lock")  # a locker may react; logind sets no hint
            return new_method_return(msg)
        if interface == SESSION and member == "SetLockedHint":
            self.set_locked(args[0])
            return new_method_return(msg)
        # org.facewarden.Test
        if member == "SetLocked":
            self.set_locked(args[0])
        elif member == "EmitLock":
            self.signal(self.session_path, SESSION, "Lock")
        elif member == "EmitUnlock":
            self.signal(self.session_path, SESSION, "Unlock")
        elif member == "Sleep":
            self.signal(ROOT, MANAGER, "PrepareForSleep", "b", (args[0],))
        elif member == "SetLid":
            self.lid = args[0]
            self.changed(ROOT, MANAGER, {"LidClosed": ("b", self.lid)})
        elif member == "SetIdle":
            self.idle = (args[0], args[1])
            self.changed(self.session_path, SESSION, {"IdleHint": ("b", args[0]), "IdleSinceHint": ("t", args[1])})
        elif member == "NewSession":
            old = self.session_path
            self.session_id, self.locked = args[0], False
            self.signal(ROOT, MANAGER, "SessionRemoved", "so", (old.rsplit("/", 1)[1], old))
            self.signal(ROOT, MANAGER, "SessionNew", "so", (self.session_id, self.session_path))
            self.changed(self.user_path, USER, {"Display": ("(so)", (self.session_id, self.session_path))})
        elif member == "SetBattery":
            self.battery = args[0]
            self.changed("/org/freedesktop/UPower", "org.freedesktop.UPower", {"OnBattery": ("b", self.battery)})
        elif member == "Inhibitors":
            return new_method_return(msg, "u", (len(self.inhibitors),))
        else:
            return new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod")
        return new_method_return(msg)

    def watch_inhibitors(self) -> None:
        """Note each inhibitor whose holder closed its end."""
        if not self.inhibitors:
            return
        poller = select.poll()
        for fd in self.inhibitors:
            poller.register(fd, select.POLLHUP)
        for fd, _ in poller.poll(0):
            what = self.inhibitors.pop(fd)
            os.close(fd)
            self.note("inhibitor released", args=list(what))
            self.inhibitors_changed(what[3])


def main(record: str, uid: int, auto: bool, sysfs: str | None) -> None:
    conn = open_dbus_connection("SYSTEM", enable_fds=True)
    for name in ("org.freedesktop.login1", "org.freedesktop.UPower"):
        result = conn.send_and_get_reply(message_bus.RequestName(name, 4))
        if result.body != (1,):
            sys.exit(f"could not own {name}: {result.body}")
    logind = Logind(conn, record, uid, auto, sysfs)
    print("ready", flush=True)
    while True:
        logind.watch_inhibitors()
        try:
            msg = conn.receive(timeout=0.05)
        except TimeoutError:
            continue
        if msg.header.message_type == MessageType.method_call:
            conn.send(logind.answer(msg))
            while logind.sent_fds:
                os.close(logind.sent_fds.pop())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), "--no-auto" not in sys.argv[3:],
         next((a.split("=", 1)[1] for a in sys.argv[3:] if a.startswith("--sysfs=")), None))
