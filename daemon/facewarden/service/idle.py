"""Idle input: how long since the last keyboard or mouse input in this session. One small interface,
one back-end per way a desktop tells it; `detect` picks the first that works here.

- `x11`: the X server's MIT-SCREEN-SAVER extension (python-xlib). Skipped under Wayland, where
  XWayland only sees input that goes to X clients.
- `mutter`: GNOME's `org.gnome.Mutter.IdleMonitor.GetIdletime` (milliseconds), X11 or Wayland.
- `screensaver`: `org.freedesktop.ScreenSaver.GetSessionIdleTime` (KDE and others). The draft
  spec says seconds, KDE (its main provider) answers milliseconds, like KIdleTime: milliseconds here.
- `wayland`: the compositor's idle-notification protocol, `ext-idle-notify-v1` (sway 1.8+, KWin,
  Hyprland, niri, labwc, COSMIC) or `org_kde_kwin_idle` where only that is offered (sway 1.7,
  older KWin), over `wayland.py`'s wire client. On Wayland nothing else answers on wlroots
  compositors, and XWayland sees only input sent to X clients.
- `logind`: the session's `IdleHint`/`IdleSinceHint`, coarse (the desktop sets the hint after its
  own idle delay; 0 until then), the last resort.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from typing import Any, Protocol

from . import wayland
from .dbus import Bus, method
from .logind import Logind

log = logging.getLogger(__name__)

MUTTER = ("/org/gnome/Mutter/IdleMonitor/Core", "org.gnome.Mutter.IdleMonitor", "org.gnome.Mutter.IdleMonitor")
SCREENSAVERS = [("/org/freedesktop/ScreenSaver", "org.freedesktop.ScreenSaver", "org.freedesktop.ScreenSaver"),
                ("/ScreenSaver", "org.freedesktop.ScreenSaver", "org.freedesktop.ScreenSaver")]


class IdleSource(Protocol):
    name: str

    def available(self) -> str | None:
        """What answers here (for doctor), or None when this back-end cannot work here."""

    def idle_seconds(self) -> float | None:
        """Seconds since the last input; None when it cannot tell right now."""


class X11Idle:
    name = "x11"

    def __init__(self, display: str | None = None):
        self.display_name = display if display is not None else os.environ.get("DISPLAY")
        self._display: Any = None
        self._lock = threading.Lock()

    def _query(self) -> float | None:
        import Xlib.display
        import Xlib.error
        from Xlib.ext import screensaver  # noqa: F401  (registers the extension's requests)

        with self._lock:
            try:
                if self._display is None:
                    display = Xlib.display.Display(self.display_name)
                    if not display.has_extension("MIT-SCREEN-SAVER"):
                        display.close()
                        return None
                    self._display = display
                return self._display.screen().root.screensaver_query_info().idle / 1000.0
            except (Xlib.error.DisplayError, Xlib.error.ConnectionClosedError, OSError) as e:
                log.debug("X11 idle on %s: %s", self.display_name, e)
                self._display = None
                return None

    def available(self) -> str | None:
        if not self.display_name or os.environ.get("WAYLAND_DISPLAY"):
            return None
        return f"x11 (MIT-SCREEN-SAVER on {self.display_name})" if self._query() is not None else None

    def idle_seconds(self) -> float | None:
        return self._query()


class _BusIdle:
    """A back-end asking the session bus; `calls` are (path, bus name, interface) to try in order."""

    name = ""
    member = ""
    calls: list[tuple[str, str, str]] = []

    def __init__(self, bus: Bus | None):
        self.bus = bus

    def idle_seconds(self) -> float | None:
        if self.bus is None:
            return None
        for path, name, interface in self.calls:
            body = self.bus.call(method(path, name, interface, self.member))
            if body is not None:
                return body[0] / 1000.0
        return None

    def available(self) -> str | None:
        if self.bus is None or not self.bus.has_name(self.calls[0][1]):
            return None
        return f"{self.name} ({self.calls[0][1]})" if self.idle_seconds() is not None else None


class MutterIdle(_BusIdle):
    name = "mutter"
    member = "GetIdletime"
    calls = [MUTTER]


class ScreenSaverIdle(_BusIdle):
    name = "screensaver"
    member = "GetSessionIdleTime"
    calls = SCREENSAVERS


class WaylandIdle:
    """These protocols only tell "no input for T" (idled) and "input again" (resumed), so a
    notification with a short T gives the idle time to within T: 0 until T passes without input,
    then T plus the time since. The compositor starts counting when we connect.

    ext-idle-notify-v1's version 2 has an *input* idle notification, which ignores idle inhibitors
    (a video player or a call in the browser keeps the screen awake, and the owner may still have
    left): used where offered. Version 1 and org_kde_kwin_idle count an inhibited session as
    active (sway disables its idle timers while something inhibits), as the screen blanker does.
    """

    name = "wayland"
    RESOLUTION_S = 1.0
    RETRY_S = 30.0  # a compositor that did not answer is asked again at most this often

    def __init__(self, env: dict[str, str] | None = None):
        self.path = wayland.socket_path(env)
        self.protocol = ""
        self._conn: wayland.Connection | None = None
        self._idled_at: float | None = None  # monotonic time of the last `idled`; None after input
        self._tried_at = -self.RETRY_S
        self._lock = threading.Lock()

    def _event(self, opcode: int, _args: bytes) -> None:
        # Both protocols: event 0 is idled (idle for ext, idle for kde), event 1 resumed.
        self._idled_at = time.monotonic() if opcode == 0 else None

    def _connect(self) -> wayland.Connection:
        assert self.path is not None
        conn = wayland.Connection.open(self.path)
        try:
            if "wl_seat" not in conn.globals:
                raise wayland.WaylandError("the compositor offers no seat")
            seat = conn.bind("wl_seat", 1)
            timeout_ms = int(self.RESOLUTION_S * 1000)
            # Ids are handed out in order and the compositor insists on that order: the notification's
            # after the global it comes from.
            if "ext_idle_notifier_v1" in conn.globals:
                notifier = conn.bind("ext_idle_notifier_v1", 2)
                notification = conn.new_object(self._event)
                version = conn.globals["ext_idle_notifier_v1"][1]
                # get_input_idle_notification (v2, opcode 2) or get_idle_notification (opcode 1)
                conn.request(notifier, 2 if version >= 2 else 1, struct.pack("=III", notification, timeout_ms, seat))
                self.protocol = "ext-idle-notify-v1" + (" input idle" if version >= 2 else "")
            elif "org_kde_kwin_idle" in conn.globals:
                idle = conn.bind("org_kde_kwin_idle", 1)
                notification = conn.new_object(self._event)
                conn.request(idle, 0, struct.pack("=III", notification, seat, timeout_ms))  # get_idle_timeout
                self.protocol = "org_kde_kwin_idle"
            else:
                raise wayland.WaylandError("the compositor offers neither ext-idle-notify-v1 nor org_kde_kwin_idle")
            conn.roundtrip()  # a refusal arrives as a protocol error now, not later
        except (OSError, wayland.WaylandError):
            conn.close()
            raise
        self._idled_at = None
        conn.listen(lambda why: log.warning("Wayland idle input lost: %s", why))
        return conn

    def _connection(self) -> wayland.Connection | None:
        with self._lock:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            if self.path is None or time.monotonic() - self._tried_at < self.RETRY_S:
                return None
            self._tried_at = time.monotonic()
            try:
                self._conn = self._connect()
            except (OSError, wayland.WaylandError) as e:
                log.debug("Wayland idle on %s: %s", self.path, e)
                self._conn = None
            return self._conn

    def available(self) -> str | None:
        return f"wayland ({self.protocol} on {self.path})" if self._connection() is not None else None

    def idle_seconds(self) -> float | None:
        if self._connection() is None:
            return None
        idled_at = self._idled_at
        return 0.0 if idled_at is None else self.RESOLUTION_S + time.monotonic() - idled_at

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


class LogindIdle:
    name = "logind"

    def __init__(self, logind: Logind | None):
        self.logind = logind

    def idle_seconds(self) -> float | None:
        since = None if self.logind is None else self.logind.idle_since()
        return None if since is None else max(0.0, time.time() - since)

    def available(self) -> str | None:
        if self.logind is None or self.idle_seconds() is None:
            return None
        return f"logind (IdleHint of {self.logind.session})"


def sources(session_bus: Bus | None, logind: Logind | None, display: str | None = None) -> list[IdleSource]:
    """Every back-end, in the order `detect` tries them."""
    return [X11Idle(display), MutterIdle(session_bus), ScreenSaverIdle(session_bus), WaylandIdle(),
            LogindIdle(logind)]


def detect(session_bus: Bus | None, logind: Logind | None, display: str | None = None) -> IdleSource | None:
    """The first back-end that answers here; None (logged) when none does."""
    for source in sources(session_bus, logind, display):
        if source.available() is not None:
            log.info("idle input from %s", source.name)
            return source
    log.info("no idle input source here (no X11 screensaver extension, idle monitor or logind hint)")
    return None
