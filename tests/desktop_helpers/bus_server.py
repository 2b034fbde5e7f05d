"""A test desktop on a session bus: org.freedesktop.Notifications and screensaver services.

Run as `python bus_server.py RECORD NAME[:fail] ...` with DBUS_SESSION_BUS_ADDRESS pointing at a
private bus. It owns each NAME, answers the methods facewarden calls and appends one JSON line per
call (name, path, interface, member, args) to RECORD, so a test can assert what arrived. `:fail`
makes that name answer every call with a D-Bus error, like a desktop that lacks the method.
Prints "ready" once every name is owned.
"""

from __future__ import annotations

import json
import sys

from jeepney import HeaderFields, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection


def reply_for(msg):
    """(signature, body) for the methods a real server has; None for unknown methods."""
    member = msg.header.fields.get(HeaderFields.member)
    if member == "Notify":
        return "u", (7,)
    if member == "GetCapabilities":
        return "as", (["body"],)
    if member == "GetServerInformation":
        return "ssss", ("facewarden-test", "facewarden", "1", "1.2")
    if member in ("Lock", "SetActive"):
        return None, ()
    return None


def main(record: str, specs: list[str]) -> None:
    conn = open_dbus_connection("SESSION")
    failing = set()
    for spec in specs:
        name, _, mode = spec.partition(":")
        if mode == "fail":
            failing.add(name)
        result = conn.send_and_get_reply(message_bus.RequestName(name, 4))  # 4: do not queue
        if result.body != (1,):
            sys.exit(f"could not own {name}: {result.body}")
    print("ready", flush=True)
    while True:
        msg = conn.receive()
        if msg.header.message_type != MessageType.method_call:
            continue
        f = msg.header.fields
        name = f.get(HeaderFields.destination)
        with open(record, "a", encoding="utf-8") as out:
            out.write(json.dumps({"name": name, "path": f.get(HeaderFields.path),
                                  "interface": f.get(HeaderFields.interface),
                                  "member": f.get(HeaderFields.member), "args": list(msg.body)},
                                 default=str) + "\n")
        answer = reply_for(msg)
        if name in failing or answer is None:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))
        else:
            conn.send(new_method_return(msg, *answer))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
