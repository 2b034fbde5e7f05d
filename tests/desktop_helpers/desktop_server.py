"""A test desktop on a private session bus: a screensaver and GNOME's idle monitor, for the idle
back-ends and the session's lock state.

Run as `python desktop_server.py [--silent-lock] NAME...` with DBUS_SESSION_BUS_ADDRESS pointing at a
private bus; NAME is a screensaver's (org.freedesktop.ScreenSaver, org.mate.ScreenSaver),
org.gnome.Mutter.IdleMonitor, org.gnome.SessionManager, org.freedesktop.PowerManagement.Inhibit
(KDE's) or org.gnome.SettingsDaemon.Power. Serves the
screensaver's GetSessionIdleTime (ms, as KDE answers), GetActive, Lock (active, ActiveChanged on the
name's own path and interface; with --silent-lock it sends no reply, as mate-screensaver 1.26 does),
org.gnome.Mutter.IdleMonitor's GetIdletime (ms), org.gnome.SessionManager's IsInhibited(u flags)
(and its InhibitorAdded and InhibitorRemoved as the flags become set or clear), KDE's HasInhibit
(and HasInhibitChanged),
the Power.Screen Brightness property (Get, Set: recorded in RECORD when the environment names one in
FACEWARDEN_TEST_RECORD), and org.facewarden.Test on / for the test: SetIdle(t ms), SetActive(b)
(ActiveChanged), SetInhibited(u flags), SetBrightness(i) (as the user would). Prints "ready".
"""

from __future__ import annotations

import json
import os
import sys
import time

from jeepney import DBusAddress, HeaderFields, MessageType, new_error, new_method_return, new_signal
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

KDE_INHIBIT = "org.freedesktop.PowerManagement.Inhibit"


def main(names: list[str]) -> None:
    silent_lock = "--silent-lock" in names
    names = [n for n in names if n != "--silent-lock"]
    saver = next((n for n in names if n.endswith(".ScreenSaver")), "org.freedesktop.ScreenSaver")
    conn = open_dbus_connection("SESSION")
    for name in names:
        if conn.send_and_get_reply(message_bus.RequestName(name, 4)).body != (1,):
            sys.exit(f"could not own {name}")
    idle_ms, active, inhibited, brightness = 0, False, 0, 80
    record = os.environ.get("FACEWARDEN_TEST_RECORD")

    def note(value: int) -> None:
        if record:
            with open(record, "a", encoding="utf-8") as out:
                out.write(json.dumps({"what": "brightness", "args": [value], "time": time.time()}) + "\n")

    def set_active(value: bool) -> None:
        nonlocal active
        active = value
        path = "/" + saver.replace(".", "/")
        conn.send(new_signal(DBusAddress(path, interface=saver), "ActiveChanged", "b", (value,)))

    def announce_inhibited(held: bool) -> None:
        """One inhibitor came or went, as gnome-session and KDE's PowerManagement announce it."""
        if "org.gnome.SessionManager" in names:
            conn.send(new_signal(DBusAddress("/org/gnome/SessionManager", interface="org.gnome.SessionManager"),
                                 "InhibitorAdded" if held else "InhibitorRemoved", "o",
                                 ("/org/gnome/SessionManager/Inhibitor1",)))
        if KDE_INHIBIT in names:
            conn.send(new_signal(DBusAddress("/org/freedesktop/PowerManagement/Inhibit", interface=KDE_INHIBIT),
                                 "HasInhibitChanged", "b", (held,)))

    print("ready", flush=True)
    while True:
        msg = conn.receive()
        if msg.header.message_type != MessageType.method_call:
            continue
        member = msg.header.fields.get(HeaderFields.member)
        reply = new_method_return(msg)
        if member in ("GetSessionIdleTime", "GetIdletime"):
            reply = new_method_return(msg, "u" if member == "GetSessionIdleTime" else "t", (idle_ms,))
        elif member == "GetActive":
            reply = new_method_return(msg, "b", (active,))
        elif member == "Lock":
            set_active(True)
            if silent_lock:
                continue
        elif member == "SetIdle":
            idle_ms = msg.body[0]
        elif member == "SetActive":
            set_active(msg.body[0])
        elif member == "IsInhibited":
            reply = new_method_return(msg, "b", (bool(inhibited & msg.body[0]),))
        elif member == "HasInhibit":
            reply = new_method_return(msg, "b", (bool(inhibited),))
        elif member == "SetInhibited":
            if bool(msg.body[0]) != bool(inhibited):
                announce_inhibited(bool(msg.body[0]))
            inhibited = msg.body[0]
        elif member == "Get" and msg.body[1] == "Brightness":
            reply = new_method_return(msg, "v", (("i", brightness),))
        elif member == "Set" and msg.body[1] == "Brightness":
            brightness = msg.body[2][1]
            note(brightness)
        elif member == "SetBrightness":
            brightness = msg.body[0]
        else:
            reply = new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod")
        conn.send(reply)


if __name__ == "__main__":
    main(sys.argv[1:])
