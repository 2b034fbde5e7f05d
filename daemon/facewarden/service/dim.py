"""Dimming back-ends, one small interface each (like the lock back-ends), and the `Dimmer` that
dims and restores through the first that works here.

A back-end lists its targets with their brightness now (`read`: a backlight device, the screen, an
X output) and sets one (`write`); `available()` says what would dim here (for doctor) or leaves
its reason in `problem`. The Dimmer keeps what it changed, from which value to which, in a private
file in the runtime directory, so that a restore sets back only what facewarden changed (a
brightness the user moved meanwhile stays theirs) and a daemon that crashed while dimmed restores
it when it starts again. Several reasons may hold one dim (the owner leaving, looking away, an
onlooker): the brightness comes back when the last is withdrawn.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Protocol, get_args

from jeepney import DBusAddress, HeaderFields, Message, Properties, new_method_call
from jeepney.bus_messages import message_bus

from ..config import DimConfig, DimMethod
from ..paths import write_private
from . import dbus
from .dbus import system_bus_address
from .lock import run

log = logging.getLogger(__name__)

LOGIND = "org.freedesktop.login1"
KDE = ("org.kde.Solid.PowerManagement", "/org/kde/Solid/PowerManagement/Actions/BrightnessControl",
       "org.kde.Solid.PowerManagement.Actions.BrightnessControl")
GNOME = ("org.gnome.SettingsDaemon.Power", "/org/gnome/SettingsDaemon/Power", "org.gnome.SettingsDaemon.Power.Screen")


class DimBackend(Protocol):
    name: str
    problem: str  # why it cannot work here, once `available` returned None
    step: float  # the finest brightness it sets (1 for a device's levels; xrandr's two decimals)

    def available(self) -> str | None:
        """What it would dim here (for doctor), or None (the reason in `problem`)."""

    def read(self) -> dict[str, float]:
        """Each target's brightness now; empty when it cannot tell."""

    def write(self, target: str, value: float) -> bool:
        """Set one target's brightness; whether it worked."""


class LogindBacklight:
    """The panel's /sys/class/backlight devices, set through logind's Session.SetBrightness (allowed
    to the session's own user without privileges), read from sysfs."""

    name = "logind"
    step = 1.0

    def __init__(self, sysfs: Path):
        self.folder = sysfs / "backlight"
        self.problem = ""

    def _devices(self) -> list[Path]:
        try:
            return sorted(d for d in self.folder.iterdir() if (d / "max_brightness").is_file())
        except OSError:
            return []

    def available(self) -> str | None:
        devices = self._devices()
        if not devices:
            self.problem = f"no backlight device in {self.folder}"
            return None
        with dbus.connect(system_bus_address()) as conn:
            session = conn and _logind_session(conn)
        if not session:
            self.problem = "logind knows no session of ours to set the brightness through"
            return None
        return f"logind ({', '.join(d.name for d in devices)} of {session})"

    def read(self) -> dict[str, float]:
        found = {}
        for device in self._devices():
            try:
                found[device.name] = float((device / "brightness").read_text())
            except (OSError, ValueError):
                continue
        return found

    def write(self, target: str, value: float) -> bool:
        with dbus.connect(system_bus_address()) as conn:
            session = conn and _logind_session(conn)
            if not session:
                return False
            msg = new_method_call(DBusAddress(session, bus_name=LOGIND, interface="org.freedesktop.login1.Session"),
                                  "SetBrightness", "ssu", ("backlight", target, round(value)))
            return dbus.call(conn, msg) is not None


def _logind_session(conn) -> str | None:
    """The display session's object path (GetSession "auto", else the user's Display)."""
    manager = DBusAddress("/org/freedesktop/login1", bus_name=LOGIND, interface="org.freedesktop.login1.Manager")
    body = dbus.call(conn, new_method_call(manager, "GetSession", "s", ("auto",)))
    if body is not None:
        return body[0]
    body = dbus.call(conn, new_method_call(manager, "GetUser", "u", (os.getuid(),)))
    if body is None:
        return None
    display = dbus.call(conn, Properties(DBusAddress(body[0], bus_name=LOGIND,
                                                     interface="org.freedesktop.login1.User")).get("Display"))
    return display[0][1][1] if display and display[0][1][1] != "/" else None


def _ask(msg: Message) -> tuple | None:
    """One call on the session bus, only to a name someone owns (else the bus may start a service)."""
    name = msg.header.fields[HeaderFields.destination]
    with dbus.connect() as conn:
        if conn is None or not (dbus.call(conn, message_bus.NameHasOwner(name)) or (False,))[0]:
            return None
        return dbus.call(conn, msg)


class _SessionService:
    """A desktop's brightness service on the session bus: `service` is its (bus name, path,
    interface); `available` when it answers `read`."""

    step = 1.0
    name: str
    service: tuple[str, str, str]
    missing: str  # what `problem` says when it does not answer

    def __init__(self) -> None:
        self.problem = ""
        self.address = DBusAddress(self.service[1], bus_name=self.service[0], interface=self.service[2])

    def available(self) -> str | None:
        if not self.read():
            self.problem = self.missing
            return None
        return f"{self.name} ({self.service[0]})"

    def read(self) -> dict[str, float]:
        raise NotImplementedError


class KdeBrightness(_SessionService):
    """KDE's PowerDevil on the session bus (brightness in its own steps)."""

    name = "kde"
    service = KDE
    missing = f"no {KDE[0]} on the session bus"

    def read(self) -> dict[str, float]:
        body = _ask(new_method_call(self.address, "brightness"))
        return {"screen": float(body[0])} if body else {}

    def write(self, target: str, value: float) -> bool:
        return _ask(new_method_call(self.address, "setBrightnessSilent", "i", (round(value),))) is not None


class GnomeBrightness(_SessionService):
    """gnome-settings-daemon's Power.Screen Brightness property (percent) on the session bus."""

    name = "gnome"
    service = GNOME
    missing = f"no {GNOME[0]} with a screen brightness on the session bus"

    def read(self) -> dict[str, float]:
        body = _ask(Properties(self.address).get("Brightness"))
        # -1: gnome-settings-daemon found no backlight to control.
        return {"screen": float(body[0][1])} if body and body[0][1] >= 0 else {}

    def write(self, target: str, value: float) -> bool:
        return _ask(Properties(self.address).set("Brightness", "i", round(value))) is not None


class XrandrGamma:
    """X11 outputs through `xrandr --brightness` (a gamma ramp: also outputs without a backlight)."""

    name = "xrandr"
    step = 0.01

    def __init__(self) -> None:
        self.problem = ""

    def available(self) -> str | None:
        if shutil.which("xrandr") is None:
            self.problem = "xrandr is not installed"
        elif not os.environ.get("DISPLAY"):
            self.problem = "no X display (DISPLAY is unset)"
        elif not (found := self.read()):
            self.problem = "no connected X output has a gamma ramp"
        else:
            return f"xrandr ({', '.join(found)})"
        return None

    def read(self) -> dict[str, float]:
        result = run(["xrandr", "--verbose"]) if shutil.which("xrandr") else None
        if result is None or result.returncode != 0:
            return {}
        found, output = {}, None
        for line in result.stdout.splitlines():
            words = line.split()
            if not line.startswith((" ", "\t")) and len(words) > 1:
                output = words[0] if words[1] == "connected" else None
            elif output and words[:1] == ["Brightness:"]:
                value = float(words[1])
                if value > 0:  # 0: no gamma ramp to scale (Xvfb has none)
                    found[output] = value
        return found

    def write(self, target: str, value: float) -> bool:
        result = run(["xrandr", "--output", target, "--brightness", f"{value:.2f}"])
        return result is not None and result.returncode == 0


def backends(config: DimConfig) -> list[DimBackend]:
    """The configured back-ends, in the configured order."""
    make: dict[str, Callable[[], DimBackend]] = {
        "logind": lambda: LogindBacklight(config.sysfs), "kde": KdeBrightness, "gnome": GnomeBrightness,
        "xrandr": XrandrGamma,
    }
    return [make[method]() for method in config.methods]


def _dimmed(value: float, level: float, step: float) -> float:
    """`value` times `level` in the back-end's steps, never off: a dimmed screen stays readable."""
    return max(step, round(value * level / step) * step)


class Dimmer:
    """dim(reason) and restore(reason) through the first back-end that works; see the module docstring.
    Everything it knows is in `state_file`, so any number of Dimmers (one per reloaded config) agree."""

    def __init__(self, config: DimConfig, state_file: Path):
        self.level = config.level
        self.chain = backends(config)
        # A dim left by a daemon configured otherwise is restored through the back-end that made it.
        self.every = {b.name: b for b in backends(config.model_copy(update={"methods": list(get_args(DimMethod))}))}
        self.state_file = state_file

    def state(self) -> dict | None:
        """What facewarden dimmed: {"method", "reasons", "targets": {target: [before, set to]}}; None if nothing."""
        try:
            with open(self.state_file, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as f:
                state = json.load(f)
            targets = state.get("targets") if isinstance(state, dict) else None
            if isinstance(targets, dict) and isinstance(state.get("reasons"), list) and all(
                    isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)
                    for v in targets.values()):
                return state
            raise ValueError("not a state facewarden wrote")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("ignoring %s: %s", self.state_file, e)
            return None

    def dim(self, reason: str) -> bool:
        state = self.state()
        if state is not None:  # dimmed already: one more reason holds it
            state["reasons"] = sorted({*state["reasons"], reason})
            write_private(self.state_file, json.dumps(state).encode())
            return True
        for backend in self.chain:
            now = backend.read()
            if not now:
                continue
            targets = {t: [v, _dimmed(v, self.level, backend.step)] for t, v in now.items()}
            # Written before the change: a crash in between restores a brightness never changed, which
            # `restore` then recognises (not the value we meant to set) and leaves alone.
            write_private(self.state_file, json.dumps(
                {"method": backend.name, "reasons": [reason], "targets": targets}).encode())
            done = [t for t, (_, to) in targets.items() if backend.write(t, to)]
            if done:
                log.info("dimmed %s through %s (%s)", ", ".join(done), backend.name, reason)
                return True
            self.state_file.unlink(missing_ok=True)
        log.info("no dimming back-end worked (tried %s)", ", ".join(b.name for b in self.chain))
        return False

    def restore(self, reason: str | None = None) -> bool:
        """Withdraw `reason` (None: all); once none is left, set back what is still as facewarden left it."""
        state = self.state()
        if state is None:
            return False
        reasons = [] if reason is None else [r for r in state["reasons"] if r != reason]
        if reasons:
            if reasons != state["reasons"]:
                write_private(self.state_file, json.dumps({**state, "reasons": reasons}).encode())
            return True
        backend = self.every.get(state["method"])
        now = backend.read() if backend is not None else {}
        for target, (before, ours) in state["targets"].items():
            if backend is not None and target in now and abs(now[target] - ours) < backend.step / 2:
                backend.write(target, before)
                log.info("restored %s to %g through %s", target, before, backend.name)
            else:
                log.info("left %s as it is (%s, not the %g facewarden set)", target, now.get(target), ours)
        self.state_file.unlink(missing_ok=True)
        return backend is not None
