"""What the desk around the daemon is like: an idle inhibitor held (a film, a presentation), the
machine on battery, how many monitors are connected. Kept, so that the sampling step only reads
attributes and never waits for D-Bus, and kept up to date by the desktop's own announcements rather
than by asking it every few seconds (which cost the daemon more than a millisecond a time, and the
services as much again):

- Idle inhibitors: logind's (`ListInhibitors`: "idle" in what, mode "block", held by this user),
  asked again when logind announces a change of `BlockInhibited`; and the desktop's, which is where
  an application's ScreenSaver `Inhibit` ends up: GNOME's session manager (`IsInhibited` with the
  idle flag, asked again at its `InhibitorAdded` and `InhibitorRemoved`) and KDE's PowerManagement
  (`HasInhibit`, and its `HasInhibitChanged`).
- Battery: UPower's `OnBattery`, from its `PropertiesChanged`.
- Monitors: the DRM connectors sysfs calls connected (none found: one), counted again at each of the
  kernel's DRM uevents (a connector plugged or unplugged). Where the kernel's uevents cannot be heard
  (no netlink), sysfs is read every REFRESH_S while `wanted()`.

A service that starts, restarts or stops (its bus name changes hands) is asked again at once.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
from pathlib import Path
from typing import Callable

from jeepney import DBusAddress, MatchRule, Message, new_method_call

from .dbus import Bus

log = logging.getLogger(__name__)

REFRESH_S = 3.0  # how often sysfs is read for monitors where the kernel's uevents cannot be heard
NETLINK_KOBJECT_UEVENT = 15
KERNEL_UEVENTS = 1  # the multicast group the kernel itself sends uevents to (udev re-sends on 2)
SUBSYSTEM = b"drm"  # whose uevents mean a monitor may have come or gone
PROPERTIES = "org.freedesktop.DBus.Properties"
LOGIND = DBusAddress("/org/freedesktop/login1", bus_name="org.freedesktop.login1",
                     interface="org.freedesktop.login1.Manager")
UPOWER = DBusAddress("/org/freedesktop/UPower", bus_name="org.freedesktop.UPower", interface="org.freedesktop.UPower")
GNOME_SESSION = DBusAddress("/org/gnome/SessionManager", bus_name="org.gnome.SessionManager",
                            interface="org.gnome.SessionManager")
GNOME_IDLE_FLAG = 8  # GsmInhibitorFlag "idle"
KDE_INHIBIT = DBusAddress("/org/freedesktop/PowerManagement/Inhibit",
                          bus_name="org.freedesktop.PowerManagement.Inhibit",
                          interface="org.freedesktop.PowerManagement.Inhibit")


def logind_idle_inhibited(bus: Bus, uid: int) -> bool | None:
    """Whether this user holds a logind "idle" block inhibitor; None when logind does not say."""
    body = bus.call(new_method_call(LOGIND, "ListInhibitors"))
    if body is None:
        return None
    return any("idle" in what.split(":") and mode == "block" and who_uid == uid
               for what, _who, _why, mode, who_uid, _pid in body[0])


def desktop_idle_inhibited(bus: Bus) -> bool | None:
    """Whether the desktop (GNOME's session manager, KDE's PowerManagement) has an idle inhibitor;
    None when neither answers."""
    # Only names someone owns: a call to an unowned name may start a service instead.
    calls = [(GNOME_SESSION, new_method_call(GNOME_SESSION, "IsInhibited", "u", (GNOME_IDLE_FLAG,))),
             (KDE_INHIBIT, new_method_call(KDE_INHIBIT, "HasInhibit"))]
    answers = [bus.call(msg) for where, msg in calls if where.bus_name and bus.has_name(where.bus_name)]
    known = [bool(a[0]) for a in answers if a is not None]
    return any(known) if known else None


def on_battery(bus: Bus) -> bool | None:
    """UPower's OnBattery; None without UPower."""
    value = bus.get(UPOWER, "OnBattery") if UPOWER.bus_name and bus.has_name(UPOWER.bus_name) else None
    return None if value is None else bool(value)


def connected_monitors(sysfs: Path) -> int:
    """Connected DRM connectors (card0-eDP-1, card0-HDMI-A-1, ...); 1 when sysfs shows none."""
    count = 0
    try:
        for connector in (sysfs / "drm").iterdir():
            try:
                count += (connector / "status").read_text().strip() == "connected"
            except OSError:
                continue
    except OSError:
        pass
    return max(1, count)


def kernel_uevents() -> socket.socket | None:
    """A socket on which the kernel's uevents arrive; None where netlink is not to be had."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT)
    except (OSError, AttributeError):  # AttributeError: no AF_NETLINK (not Linux)
        return None
    try:
        sock.bind((0, KERNEL_UEVENTS))
    except OSError:
        sock.close()
        return None
    return sock


def _properties_changed(where: DBusAddress) -> MatchRule:
    return MatchRule(type="signal", sender=where.bus_name, interface=PROPERTIES, member="PropertiesChanged",
                     path=where.object_path)


def _changed(msg: Message, name: str) -> bool:
    """A PropertiesChanged that says `name` changed (with its value, or only that it did)."""
    _interface, changed, invalidated = msg.body
    return name in changed or name in invalidated


class Surroundings:
    """The kept answers (see the module docstring); `start` listens for their changes."""

    def __init__(self, sysfs: Path, uid: int | None = None):
        self.sysfs = sysfs
        self.uid = os.getuid() if uid is None else uid
        self.on_battery: bool | None = None
        self.monitors = 1
        self._held = {"logind": False, "desktop": False}  # idle inhibitors, by where they are held
        self._system: Bus | None = None
        self._session: Bus | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake: tuple[int, int] | None = None  # what `close` writes to, to end the wait for uevents
        self._thread: threading.Thread | None = None

    @property
    def inhibited(self) -> bool:
        return any(self._held.values())

    def start(self, system: Bus | None, session: Bus | None, wanted: Callable[[], bool] = lambda: True) -> None:
        """Listen for changes on the buses and to the kernel, then read everything once. `wanted`:
        whether anyone reads these now (nobody does while the camera is released: locked, asleep,
        paused), for the sysfs reads that stand in for the kernel's uevents."""
        self._system, self._session = system, session
        if system is not None and not system.closed:
            system.subscribe(_properties_changed(LOGIND), self._logind_changed)
            system.subscribe(_properties_changed(UPOWER), self._upower_changed)
            system.watch_owner(LOGIND.bus_name, lambda _owner: self._read_logind())
            system.watch_owner(UPOWER.bus_name, lambda _owner: self._read_battery())
        if session is not None and not session.closed:
            for where, member in ((GNOME_SESSION, "InhibitorAdded"), (GNOME_SESSION, "InhibitorRemoved"),
                                  (KDE_INHIBIT, "HasInhibitChanged")):
                session.subscribe(MatchRule(type="signal", sender=where.bus_name, interface=where.interface,
                                            member=member), lambda _msg: self._read_desktop())
            for where in (GNOME_SESSION, KDE_INHIBIT):
                session.watch_owner(where.bus_name, lambda _owner: self._read_desktop())
        uevents = kernel_uevents()
        if uevents is not None:
            self._wake = os.pipe2(os.O_CLOEXEC)
        self.refresh()
        self._thread = threading.Thread(target=self._watch_monitors, name="surroundings", daemon=True,
                                        args=(uevents, self._wake and self._wake[0], wanted))
        self._thread.start()

    def refresh(self) -> None:
        """Read everything now."""
        self._read_logind()
        self._read_desktop()
        self._read_battery()
        self.monitors = connected_monitors(self.sysfs)

    # -- each answer, read when it may have changed -------------------------------------------

    def _logind_changed(self, msg: Message) -> None:
        if _changed(msg, "BlockInhibited"):  # someone's inhibitor came or went: maybe this user's
            self._read_logind()

    def _upower_changed(self, msg: Message) -> None:
        if _changed(msg, "OnBattery"):
            self._read_battery()

    def _read_logind(self) -> None:
        system = self._system
        self._set_held("logind", bool(system and not system.closed and logind_idle_inhibited(system, self.uid)))

    def _read_desktop(self) -> None:
        session = self._session
        self._set_held("desktop", bool(session and not session.closed and desktop_idle_inhibited(session)))

    def _set_held(self, where: str, held: bool) -> None:
        with self._lock:
            before = self.inhibited
            self._held[where] = held
            if self.inhibited != before:
                log.info("an application %s an idle inhibitor", "holds" if self.inhibited else "no longer holds")

    def _read_battery(self) -> None:
        system = self._system
        battery = on_battery(system) if system and not system.closed else None
        with self._lock:
            if battery != self.on_battery and battery is not None:
                log.info("on %s power", "battery" if battery else "mains")
            self.on_battery = battery

    def _watch_monitors(self, uevents: socket.socket | None, woken: int | None, wanted: Callable[[], bool]) -> None:
        """Count the monitors again at each DRM uevent from the kernel (or every REFRESH_S without
        them); `woken`: the pipe's end `close` writes to."""
        if uevents is None or woken is None:
            while not self._stop.wait(REFRESH_S):
                if wanted():
                    self.monitors = connected_monitors(self.sysfs)
            return
        with uevents:
            while not self._stop.is_set():
                ready, _, _ = select.select([uevents.fileno(), woken], [], [])
                if uevents.fileno() not in ready:
                    continue
                try:
                    data, (sender, _groups) = uevents.recvfrom(65536)
                except OSError:  # ENOBUFS: uevents were lost, a DRM one maybe among them
                    data, sender = b"SUBSYSTEM=" + SUBSYSTEM, 0
                # Only the kernel's own (sender 0): anyone with CAP_NET_ADMIN could send the rest.
                if sender == 0 and b"SUBSYSTEM=" + SUBSYSTEM in data.split(b"\0"):
                    self.monitors = connected_monitors(self.sysfs)
        os.close(woken)

    def close(self) -> None:
        self._stop.set()
        wake, self._wake = self._wake, None
        if wake is not None:
            try:
                os.write(wake[1], b"x")
            except OSError:  # the thread saw the stop already, and closed its end
                pass
            os.close(wake[1])
