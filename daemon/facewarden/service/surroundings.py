"""What the desk around the daemon is like: an idle inhibitor held (a film, a presentation), the
machine on battery, how many monitors are connected. Read on a thread of its own every REFRESH_S,
over the session's long-lived buses and sysfs, and kept: the sampling step only reads attributes,
it never waits for D-Bus.

Idle inhibitors: logind's (`ListInhibitors`: "idle" in what, mode "block", held by this user), and
the desktop's, which is where an application's ScreenSaver `Inhibit` ends up: GNOME's session
manager (`IsInhibited` with the idle flag) and KDE's PowerManagement (`HasInhibit`). Battery:
UPower's `OnBattery`. Monitors: the DRM connectors sysfs calls connected (none found: one).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable
from pathlib import Path

from jeepney import DBusAddress, new_method_call

from .dbus import Bus

log = logging.getLogger(__name__)

REFRESH_S = 3.0
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


class Surroundings:
    """The cached answers (see the module docstring); `start` begins refreshing them."""

    def __init__(self, sysfs: Path, uid: int | None = None):
        self.sysfs = sysfs
        self.uid = os.getuid() if uid is None else uid
        self.inhibited = False
        self.on_battery: bool | None = None
        self.monitors = 1
        self._system: Bus | None = None
        self._session: Bus | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, system: Bus | None, session: Bus | None, wanted: Callable[[], bool] = lambda: True) -> None:
        """Refresh every REFRESH_S while `wanted()`: nothing reads these while the camera is released
        (locked, asleep, paused), and a locked session should cost next to nothing."""
        self._system, self._session = system, session
        self.refresh()
        self._thread = threading.Thread(target=self._loop, args=(wanted,), name="surroundings", daemon=True)
        self._thread.start()

    def _loop(self, wanted: Callable[[], bool]) -> None:
        while not self._stop.wait(REFRESH_S):
            if wanted():
                self.refresh()

    def refresh(self) -> None:
        system, session = self._system, self._session
        answers = [logind_idle_inhibited(system, self.uid) if system and not system.closed else None,
                   desktop_idle_inhibited(session) if session and not session.closed else None]
        inhibited = any(a for a in answers if a)
        if inhibited != self.inhibited:
            log.info("an application %s an idle inhibitor", "holds" if inhibited else "no longer holds")
        self.inhibited = inhibited
        battery = on_battery(system) if system and not system.closed else None
        if battery != self.on_battery and battery is not None:
            log.info("on %s power", "battery" if battery else "mains")
        self.on_battery = battery
        self.monitors = connected_monitors(self.sysfs)

    def close(self) -> None:
        self._stop.set()
