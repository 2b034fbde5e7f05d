"""A private system bus with a test logind, and a test desktop (screensaver, idle monitor) on a
private session bus, for the session tests and the desktop-day bench. Each is a context manager that
waits until its process is usable and stops it (and only it) on exit."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection

from .procs import _stop, dbus_daemon

HERE = Path(__file__).resolve().parent

# Like /usr/share/dbus-1/system.conf: EXTERNAL auth only, method calls denied by default, only the
# bus itself and logind may be called and only logind's name may be owned; replies and signals pass.
SYSTEM_POLICY = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow own="org.freedesktop.login1"/>
    <allow send_destination="org.freedesktop.login1"/>
    <allow own="org.freedesktop.UPower"/>
    <allow send_destination="org.freedesktop.UPower"/>
  </policy>
</busconfig>
"""


@contextmanager
def system_bus(tmp: Path) -> Iterator[str]:
    """A private `dbus-daemon` with a system-bus-like policy; yields its address."""
    conf = tmp / "system.conf"
    conf.write_text(SYSTEM_POLICY.format(address=f"unix:path={tmp / 'system_bus_socket'}"))
    with dbus_daemon(f"--config-file={conf}") as address:
        yield address


def _helper(script: str, env: dict, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(HERE / script), *args], env=env, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line != "ready":
        _stop(proc)
        raise AssertionError(f"{script} said {line!r} (exit {proc.poll()})")
    return proc


@contextmanager
def logind(address: str, record: Path, uid: int | None = None, auto: bool = True,
           sysfs: Path | None = None) -> Iterator[Path]:
    """The test logind (logind_server.py) on the system bus at `address`, recording into `record`;
    with `sysfs`, SetBrightness writes the backlight's brightness there."""
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address)
    proc = _helper("logind_server.py", env, str(record), str(os.getuid() if uid is None else uid),
                   *([] if auto else ["--no-auto"]), *([f"--sysfs={sysfs}"] if sysfs else []))
    try:
        yield record
    finally:
        _stop(proc)


@contextmanager
def desktop(address: str, *names: str) -> Iterator[subprocess.Popen]:
    """desktop_server.py owning `names` on the session bus at `address` (options first: --silent-lock)."""
    proc = _helper("desktop_server.py", dict(os.environ, DBUS_SESSION_BUS_ADDRESS=address), *names)
    try:
        yield proc
    finally:
        _stop(proc)


def drive(address: str, name: str, member: str, signature: str | None = None, *args) -> tuple:
    """Call the test interface (org.facewarden.Test on /) of the test server owning `name`."""
    with open_dbus_connection(address) as conn:
        reply = conn.send_and_get_reply(
            new_method_call(DBusAddress("/", bus_name=name, interface="org.facewarden.Test"), member, signature, args),
            timeout=5)
    return reply.body


def drive_logind(address: str, member: str, signature: str | None = None, *args) -> tuple:
    return drive(address, "org.freedesktop.login1", member, signature, *args)
