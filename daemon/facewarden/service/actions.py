"""The built-in actions, looked up by `Action`: lock (the chain of lock back-ends), notify, unlock, snapshot,
dim and restore (service/dim.py: a dim is held by the event that asked for it, and withdrawn by its
counterpart, or by any other event that restores, a lock above all).

They run off the sampling thread (service/fanout.py) and never raise: a failing action is logged and the
daemon goes on. Each returns whether it worked.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..config import Config
from ..errors import UserError
from ..events import Action, Event
from ..paths import Paths, write_private
from . import dbus
from .dim import Dimmer
from .lock import session_id, succeeded

log = logging.getLogger(__name__)

# What the snapshot action names its files (and so the only files it ever prunes).
SNAPSHOT_NAME = re.compile(r"\d{8}-\d{6}\.\d{3}-[a-z_]+\.jpg")

MESSAGES: dict[Event, tuple[str, str]] = {
    Event.OWNER_LEFT: ("Session locked", "You left the desk."),
    Event.STRANGER_DETECTED: ("Stranger at your desk", "Someone who is not you sat down; the session locks."),
    Event.ONLOOKER_DETECTED: ("Someone is looking at your screen", "Another face appeared beside yours."),
    Event.SPOOF_SUSPECTED: ("Your face, but not alive", "A photo or screen of you was held up; the session locks."),
    Event.CAMERA_LOST: ("Camera lost", "facewarden cannot see; the session will lock if you are not verified."),
}


# The dim each restoring event withdraws; any other event that restores withdraws every dim.
WITHDRAWS: dict[Event, Event] = {
    Event.OWNER_STAYED: Event.OWNER_LEAVING,
    Event.OWNER_LOOKING_BACK: Event.OWNER_LOOKING_AWAY,
    Event.ONLOOKER_GONE: Event.ONLOOKER_DETECTED,
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
    person: str | None = None  # the enrolled person the frame showed (the owner face's, else a trusted one's)
    locked_by: str | None = None  # `locked` only: "facewarden" or "session" (someone else locked it)
    liveness: str | None = None  # why the face was judged live or a spoof (owner_arrived, spoof_suspected)
    camera_busy_by: str | None = None  # `camera_busy` only: who holds it ("zoom (pid 4242)", "the closed lid")

    def hook_env(self) -> dict[str, str]:
        env = {
            "FACEWARDEN_EVENT": self.event.value,
            "FACEWARDEN_TIME": f"{self.time:.3f}",
            "FACEWARDEN_SCORE": "" if self.score is None else f"{self.score:.4f}",
            "FACEWARDEN_FACES": str(self.faces),
            "FACEWARDEN_STATE": self.state,
            "FACEWARDEN_PERSON": self.person or "",
            "FACEWARDEN_LIVENESS": self.liveness or "",
        }
        if self.frame_path is not None:
            env["FACEWARDEN_FRAME"] = str(self.frame_path)
        if self.locked_by is not None:
            env["FACEWARDEN_LOCKED_BY"] = self.locked_by
        if self.camera_busy_by is not None:
            env["FACEWARDEN_CAMERA_BUSY_BY"] = self.camera_busy_by
        return env

    def record(self) -> dict:
        """Its line in events.jsonl."""
        record = {
            "time": round(self.time, 3), "event": self.event.value, "state": self.state, "faces": self.faces,
            "score": None if self.score is None else round(self.score, 4), "person": self.person,
            "frame": None if self.frame_path is None else str(self.frame_path),
            **({} if self.liveness is None else {"liveness": self.liveness}),
        }
        if self.locked_by is not None:
            record["locked_by"] = self.locked_by
        if self.camera_busy_by is not None:
            record["camera_busy_by"] = self.camera_busy_by
        return record


class Actions:
    """The registry `Action -> callable(Context) -> bool`, bound to one config."""

    def __init__(self, config: Config, paths: Paths, lock: Callable[[], bool]):
        """`lock`: the daemon's lock sequence (service/fanout.py), the one way facewarden locks."""
        self.config = config
        self.paths = paths
        self.registry: dict[Action, Callable[[Context], bool]] = {
            Action.LOCK: lambda context: lock(),
            Action.NOTIFY: self.notify,
            Action.UNLOCK: self.unlock,
            Action.SNAPSHOT: self.snapshot,
            Action.DIM: lambda context: self.dimmer.dim(context.event.value),
            Action.RESTORE: self.restore,
        }
        self.dimmer = Dimmer(config.dim, paths.dim_file)

    def run(self, action: Action, context: Context) -> bool:
        try:
            return self.registry[action](context)
        except Exception:  # an action must never take the daemon down
            log.exception("action %s for %s failed", action.value, context.event.value)
            return False

    def restore(self, context: Context) -> bool:
        withdrawn = WITHDRAWS.get(context.event)
        return self.dimmer.restore(None if withdrawn is None else withdrawn.value)

    # -- notify, unlock, snapshot -------------------------------------------------------------

    def notify(self, context: Context) -> bool:
        summary, body = MESSAGES.get(context.event, (f"facewarden: {context.event.value}", ""))
        urgency = "critical" if context.event in (Event.STRANGER_DETECTED, Event.SPOOF_SUSPECTED) else "normal"
        if dbus.notify(summary, body, urgency=urgency):
            return True
        return shutil.which("notify-send") is not None and succeeded(
            ["notify-send", f"--urgency={urgency}", "--app-name=facewarden", summary, body])

    def unlock(self, context: Context) -> bool:
        return shutil.which("loginctl") is not None and succeeded(["loginctl", "unlock-session", session_id()])

    def snapshot(self, context: Context) -> bool:
        """The frame of the event as a private JPEG; only the newest `snapshot.keep` are kept."""
        if not self.config.snapshot.enabled or context.frame is None:
            return False
        ok, jpeg = cv2.imencode(".jpg", context.frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            return False
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(context.time)) + f"{context.time % 1:.3f}"[1:]
        folder = self.paths.snapshots_dir
        try:
            context.frame_path = write_private(folder / f"{stamp}-{context.event.value}.jpg", jpeg.tobytes())
            # write_private refused a link at the folder; within it, only plain files we named go.
            ours = sorted(n for n in os.listdir(folder)
                          if SNAPSHOT_NAME.fullmatch(n) and stat.S_ISREG(os.lstat(folder / n).st_mode))
            for old in ours[: -self.config.snapshot.keep]:
                (folder / old).unlink(missing_ok=True)
        except (OSError, UserError) as e:  # a link planted at snapshots/, a full disk: said, not a traceback
            log.error("cannot keep a snapshot of %s in %s: %s", context.event.value, folder, e)
            return context.frame_path is not None  # written, only not pruned
        return True
