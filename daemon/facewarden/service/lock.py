"""Lock back-ends: the ways a session can be locked, one small interface each.

Each says whether it can work here (`available`, which `doctor` shows) and asks for a lock. A
method's success is judged by the lock state it produces, not by its reply: the chain asks, then
waits up to LOCK_CONFIRM_S for a lock-state source (logind's LockedHint, a screensaver's
ActiveChanged or GetActive) to say the session is locked. mate-screensaver's `Lock` locks and never
replies; loginctl returns 0 whether or not a locker reacted. Where no source can confirm anything,
a method that says it locked is believed ("locked by facewarden, unconfirmed"); so is the user's
own `lock.command`, which knows its locker better than any source.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from typing import Callable, Protocol

from ..config import LockConfig
from . import dbus

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 10.0
# A screen locker reports its lock once it is up, which can take a moment.
LOCK_CONFIRM_S = 2.5


def run(argv: list[str], capture: bool = True) -> subprocess.CompletedProcess | None:
    """`argv` without a shell and with a timeout; None when it did not start or did not finish."""
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=capture, text=True,
                              timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.info("%s: %s", argv[0], e)
        return None


def succeeded(argv: list[str], capture: bool = True) -> bool:
    result = run(argv, capture)
    if result is not None and result.returncode != 0:
        log.info("%s exited %d: %s", " ".join(argv), result.returncode, (result.stderr or "").strip()[:200])
    return result is not None and result.returncode == 0


def session_id() -> str:
    # Under systemd --user there is no XDG_SESSION_ID; "auto" is logind's name for the user's
    # graphical session then.
    return os.environ.get("XDG_SESSION_ID") or "auto"


class LockBackend(Protocol):
    name: str
    trusted: bool  # its own word that it locked counts even where a source could confirm

    def available(self) -> str | None:
        """What would lock here (for doctor), or None when this back-end cannot lock here."""

    def lock(self) -> bool:
        """Ask for a lock; whether the request went out and was not refused."""


class CommandLock:
    name = "command"
    trusted = True

    def __init__(self, argv: list[str]):
        self.argv = list(argv)

    def available(self) -> str | None:
        return f"command ({self.argv[0]})" if self.argv and shutil.which(self.argv[0]) else None

    def lock(self) -> bool:
        # The user's own command talks to the daemon's stdout and stderr (the journal), like a hook.
        return bool(self.argv) and succeeded(self.argv, capture=False)


class LoginctlLock:
    name = "loginctl"
    trusted = False

    def available(self) -> str | None:
        if shutil.which("loginctl") is None:
            return None
        # Whether logind knows a session of ours that `loginctl lock-session` could lock.
        result = run(["loginctl", "show-user", str(os.getuid()), "-p", "Sessions", "--value"])
        return "loginctl" if result is not None and result.returncode == 0 and result.stdout.strip() else None

    def lock(self) -> bool:
        return shutil.which("loginctl") is not None and succeeded(["loginctl", "lock-session", session_id()])


class ScreenSaverLock:
    name = "screensaver"
    trusted = False

    def available(self) -> str | None:
        names = dbus.lock_services()
        return f"screensaver ({names[0]})" if names else None

    def lock(self) -> bool:
        return dbus.screensaver_lock()


# Desktops whose own locker `xdg-screensaver lock` calls (its detectDE); elsewhere ("generic": i3,
# sway, a bare window manager) it exits 4, "Unknown command 'lock'", unless a screensaver runs.
XDG_DESKTOPS = {"gnome", "kde", "xfce", "mate", "cinnamon", "lxde", "lxqt", "enlightenment", "deepin"}


class XdgScreensaverLock:
    name = "xdg-screensaver"
    trusted = False

    def available(self) -> str | None:
        if shutil.which("xdg-screensaver") is None:
            return None
        # What xdg-screensaver would lock through, asked as it asks (no lock is taken).
        if shutil.which("xscreensaver-command") and succeeded(["xscreensaver-command", "-version"]):
            return "xdg-screensaver (xscreensaver)"
        names = dbus.lock_services()
        if names:
            return f"xdg-screensaver ({names[0]})"
        desktop = (os.environ.get("XDG_CURRENT_DESKTOP") or os.environ.get("DESKTOP_SESSION") or "").lower()
        known = [d for d in desktop.split(":") if d in XDG_DESKTOPS]
        return f"xdg-screensaver ({known[0]})" if known else None

    def lock(self) -> bool:
        return self.available() is not None and succeeded(["xdg-screensaver", "lock"])


def backends(config: LockConfig) -> list[LockBackend]:
    """The configured back-ends, in the configured order."""
    make: dict[str, Callable[[], LockBackend]] = {
        "command": lambda: CommandLock(config.command),
        "loginctl": LoginctlLock,
        "screensaver": ScreenSaverLock,
        "xdg-screensaver": XdgScreensaverLock,
    }
    return [make[method]() for method in config.methods]


def lock_chain(chain: list[LockBackend], confirmed: Callable[[float], bool],
               can_confirm: Callable[[], bool]) -> tuple[str, bool] | None:
    """Try each back-end in order until one locks: (its name, whether a source confirmed it), or
    None. `confirmed(timeout)` waits for a lock-state source to report the session locked;
    `can_confirm()` says whether any source is there to report it."""
    for backend in chain:
        if not backend.lock():
            continue
        if backend.trusted or not can_confirm():
            # Believed without waiting; a source that reports the lock later still confirms it.
            locked = confirmed(0.0)
            log.info("session locked (%s%s)", backend.name, "" if locked else "; not confirmed yet")
            return backend.name, locked
        if confirmed(LOCK_CONFIRM_S):
            log.info("session locked (%s)", backend.name)
            return backend.name, True
        log.info("%s: nothing reported the session locked within %.1f s", backend.name, LOCK_CONFIRM_S)
    log.error("no lock method worked (tried %s): the session is NOT locked", ", ".join(b.name for b in chain))
    return None
