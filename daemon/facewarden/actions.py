"""The built-in actions, looked up by `Action`: lock (a chain of methods), notify, unlock, snapshot.

They run off the sampling thread (service.py) and never raise: a failing action is logged and the
daemon goes on. Each returns whether it worked.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .config import Config
from .events import Action, Event
from .paths import Paths, write_private

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 10.0
# A screen locker sets logind's LockedHint once its lock is up, which can take a moment.
LOCKED_HINT_WAIT_S = 3.0

MESSAGES: dict[Event, tuple[str, str]] = {
    Event.OWNER_LEFT: ("Session locked", "You left the desk."),
    Event.STRANGER_DETECTED: ("Stranger at your desk", "Someone who is not you sat down; the session locks."),
    Event.ONLOOKER_DETECTED: ("Someone is looking at your screen", "Another face appeared beside yours."),
    Event.SPOOF_SUSPECTED: ("Your face, but not alive", "A photo or screen of you was held up; the session locks."),
    Event.CAMERA_LOST: ("Camera lost", "facewarden cannot see; the session will lock if you are not verified."),
}


@dataclass
class Context:
    """One event as the actions and hooks see it."""

    event: Event
    time: float
    state: str
    faces: int = 0
    score: float | None = None
    frame: np.ndarray | None = None
    frame_path: Path | None = None  # set by the snapshot action, passed to hooks
    detail: dict = field(default_factory=dict)

    def hook_env(self) -> dict[str, str]:
        env = {
            "FACEWARDEN_EVENT": self.event.value,
            "FACEWARDEN_TIME": f"{self.time:.3f}",
            "FACEWARDEN_SCORE": "" if self.score is None else f"{self.score:.4f}",
            "FACEWARDEN_FACES": str(self.faces),
            "FACEWARDEN_STATE": self.state,
        }
        if self.frame_path is not None:
            env["FACEWARDEN_FRAME"] = str(self.frame_path)
        return env

    def record(self) -> dict:
        """Its line in events.jsonl."""
        return {
            "time": round(self.time, 3), "event": self.event.value, "state": self.state, "faces": self.faces,
            "score": None if self.score is None else round(self.score, 4),
            "frame": None if self.frame_path is None else str(self.frame_path), **self.detail,
        }


def _run(argv: list[str], capture: bool = True) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=capture, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.info("%s: %s", argv[0], e)
        return None


def _succeeded(argv: list[str], capture: bool = True) -> bool:
    result = _run(argv, capture)
    if result is not None and result.returncode != 0:
        log.info("%s exited %d: %s", " ".join(argv), result.returncode, (result.stderr or "").strip()[:200])
    return result is not None and result.returncode == 0


def _session() -> str:
    # Under systemd --user there is no XDG_SESSION_ID; "auto" is logind's name for the user's
    # graphical session then.
    return os.environ.get("XDG_SESSION_ID") or "auto"


class Actions:
    """The registry `Action -> callable(Context) -> bool`, bound to one config."""

    def __init__(self, config: Config, paths: Paths):
        self.config = config
        self.paths = paths
        self.registry: dict[Action, Callable[[Context], bool]] = {
            Action.LOCK: self.lock,
            Action.NOTIFY: self.notify,
            Action.UNLOCK: self.unlock,
            Action.SNAPSHOT: self.snapshot,
        }
        self.lock_methods: dict[str, Callable[[], bool]] = {
            "command": self._lock_command,
            "loginctl": self._lock_loginctl,
            "screensaver": self._lock_screensaver,
            "xdg-screensaver": self._lock_xdg,
        }

    def run(self, action: Action, context: Context) -> bool:
        try:
            return self.registry[action](context)
        except Exception:  # an action must never take the daemon down
            log.exception("action %s for %s failed", action.value, context.event.value)
            return False

    # -- lock ---------------------------------------------------------------------------------

    def lock(self, context: Context | None = None) -> bool:
        """Try the configured methods in order; the first that verifiably works wins."""
        for method in self.config.lock.methods:
            if self.lock_methods[method]():
                log.info("session locked (%s)", method)
                return True
        log.error("no lock method worked (tried %s): the session is NOT locked", ", ".join(self.config.lock.methods))
        return False

    def _lock_command(self) -> bool:
        # The user's own command talks to the daemon's stdout and stderr (the journal), like a hook.
        return bool(self.config.lock.command) and _succeeded(list(self.config.lock.command), capture=False)

    def _lock_loginctl(self) -> bool:
        if shutil.which("loginctl") is None or not _succeeded(["loginctl", "lock-session", _session()]):
            return False
        # loginctl returns 0 whether or not a locker reacted: only LockedHint says it did.
        deadline = time.monotonic() + LOCKED_HINT_WAIT_S
        while True:
            hint = _run(["loginctl", "show-session", _session(), "--property=LockedHint", "--value"])
            if hint is not None and hint.returncode == 0 and hint.stdout.strip() == "yes":
                return True
            if time.monotonic() >= deadline:
                log.info("loginctl lock-session: no screen locker set LockedHint")
                return False
            time.sleep(0.25)

    def _lock_screensaver(self) -> bool:
        from .dbus import screensaver_lock

        return screensaver_lock()

    def _lock_xdg(self) -> bool:
        return shutil.which("xdg-screensaver") is not None and _succeeded(["xdg-screensaver", "lock"])

    # -- notify, unlock, snapshot -------------------------------------------------------------

    def notify(self, context: Context) -> bool:
        summary, body = MESSAGES.get(context.event, (f"facewarden: {context.event.value}", ""))
        urgency = "critical" if context.event in (Event.STRANGER_DETECTED, Event.SPOOF_SUSPECTED) else "normal"
        from .dbus import notify

        if notify(summary, body, urgency=urgency):
            return True
        return shutil.which("notify-send") is not None and _succeeded(
            ["notify-send", f"--urgency={urgency}", "--app-name=facewarden", summary, body])

    def unlock(self, context: Context) -> bool:
        return shutil.which("loginctl") is not None and _succeeded(["loginctl", "unlock-session", _session()])

    def snapshot(self, context: Context) -> bool:
        """The frame of the event as a private JPEG; only the newest `snapshot.keep` are kept."""
        if not self.config.snapshot.enabled or context.frame is None:
            return False
        ok, jpeg = cv2.imencode(".jpg", context.frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            return False
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(context.time)) + f"{context.time % 1:.3f}"[1:]
        path = write_private(self.paths.snapshots_dir / f"{stamp}-{context.event.value}.jpg", jpeg.tobytes())
        context.frame_path = path
        for old in sorted(self.paths.snapshots_dir.glob("*.jpg"))[: -self.config.snapshot.keep]:
            old.unlink(missing_ok=True)
        return True
