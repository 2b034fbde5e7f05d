"""Idle input: how long since the last keyboard or mouse input in this session. One small interface,
one back-end per way a desktop tells it; `detect` picks the first that works here.

- `x11`: the X server's MIT-SCREEN-SAVER extension (python-xlib). Skipped under Wayland, where
  XWayland only sees input that goes to X clients.
- `mutter`: GNOME's `org.gnome.Mutter.IdleMonitor.GetIdletime` (milliseconds), X11 or Wayland.
- `screensaver`: `org.freedesktop.ScreenSaver.GetSessionIdleTime` (KDE and others). The draft
  spec says seconds, KDE (its main provider) answers milliseconds, like KIdleTime: milliseconds here.
- `logind`: the session's `IdleHint`/`IdleSinceHint`, coarse (the desktop sets the hint after its
  own idle delay; 0 until then), the last resort.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Protocol

from .bus import Bus, method
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
    return [X11Idle(display), MutterIdle(session_bus), ScreenSaverIdle(session_bus), LogindIdle(logind)]


def detect(session_bus: Bus | None, logind: Logind | None, display: str | None = None) -> IdleSource | None:
    """The first back-end that answers here; None (logged) when none does."""
    for source in sources(session_bus, logind, display):
        if source.available() is not None:
            log.info("idle input from %s", source.name)
            return source
    log.info("no idle input source here (no X11 screensaver extension, idle monitor or logind hint)")
    return None
