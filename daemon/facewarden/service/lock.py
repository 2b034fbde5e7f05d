"""Lock back-ends: the ways a session can be locked, one small interface each.

Each says whether it can work here (`available`, which `doctor` shows), locks, and where it can
tell, whether the session is locked now. The lock chain tries the configured ones in order; the
first that verifiably worked wins.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from typing import Callable, Protocol

from ..config import LockConfig
from . import dbus

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 10.0
# A screen locker sets logind's LockedHint once its lock is up, which can take a moment.
LOCKED_HINT_WAIT_S = 3.0


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

    def available(self) -> str | None:
        """What would lock here (for doctor), or None when this back-end cannot work here."""

    def lock(self) -> bool:
        """Lock the session; whether it verifiably worked."""

    def is_locked(self) -> bool | None:
        """Whether the session is locked now; None when this back-end cannot tell."""


class CommandLock:
    name = "command"

    def __init__(self, argv: list[str]):
        self.argv = list(argv)

    def available(self) -> str | None:
        return f"command ({self.argv[0]})" if self.argv and shutil.which(self.argv[0]) else None

    def lock(self) -> bool:
        # The user's own command talks to the daemon's stdout and stderr (the journal), like a hook.
        return bool(self.argv) and succeeded(self.argv, capture=False)

    def is_locked(self) -> bool | None:
        return None


class LoginctlLock:
    name = "loginctl"

    def available(self) -> str | None:
        if shutil.which("loginctl") is None:
            return None
        # Whether logind knows a session of ours that `loginctl lock-session` could lock.
        result = run(["loginctl", "show-user", str(os.getuid()), "-p", "Sessions", "--value"])
        return "loginctl" if result is not None and result.returncode == 0 and result.stdout.strip() else None

    def lock(self) -> bool:
        if shutil.which("loginctl") is None or not succeeded(["loginctl", "lock-session", session_id()]):
            return False
        # loginctl returns 0 whether or not a locker reacted: only LockedHint says it did.
        deadline = time.monotonic() + LOCKED_HINT_WAIT_S
        while not self.is_locked():
            if time.monotonic() >= deadline:
                log.info("loginctl lock-session: no screen locker set LockedHint")
                return False
            time.sleep(0.25)
        return True

    def is_locked(self) -> bool | None:
        hint = run(["loginctl", "show-session", session_id(), "--property=LockedHint", "--value"])
        if hint is None or hint.returncode != 0:
            return None
        return hint.stdout.strip() == "yes"


class ScreenSaverLock:
    name = "screensaver"

    def available(self) -> str | None:
        names = dbus.lock_services()
        return f"screensaver ({names[0]})" if names else None

    def lock(self) -> bool:
        return dbus.screensaver_lock()

    def is_locked(self) -> bool | None:
        return dbus.screensaver_active()


class XdgScreensaverLock:
    name = "xdg-screensaver"

    def available(self) -> str | None:
        return "xdg-screensaver" if shutil.which("xdg-screensaver") else None

    def lock(self) -> bool:
        return shutil.which("xdg-screensaver") is not None and succeeded(["xdg-screensaver", "lock"])

    def is_locked(self) -> bool | None:
        return None


def backends(config: LockConfig) -> list[LockBackend]:
    """The configured back-ends, in the configured order."""
    make: dict[str, Callable[[], LockBackend]] = {
        "command": lambda: CommandLock(config.command),
        "loginctl": LoginctlLock,
        "screensaver": ScreenSaverLock,
        "xdg-screensaver": XdgScreensaverLock,
    }
    return [make[method]() for method in config.methods]


def lock_chain(chain: list[LockBackend]) -> bool:
    """Try each back-end in order; the first that verifiably works wins."""
    for backend in chain:
        if backend.lock():
            log.info("session locked (%s)", backend.name)
            return True
    log.error("no lock method worked (tried %s): the session is NOT locked", ", ".join(b.name for b in chain))
    return False
