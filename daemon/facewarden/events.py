"""The closed set of events the daemon fires, and the built-in actions they can trigger."""

from __future__ import annotations

from enum import Enum


class Event(str, Enum):
    OWNER_ARRIVED = "owner_arrived"
    OWNER_LEAVING = "owner_leaving"  # the owner has been gone for a while: the lock is coming (dims)
    OWNER_STAYED = "owner_stayed"  # ...and came back (or the timer was held) before it: no lock (restores)
    OWNER_LEFT = "owner_left"
    OWNER_LOOKING_AWAY = "owner_looking_away"  # verified but turned from the screen for a while (dims)
    OWNER_LOOKING_BACK = "owner_looking_back"  # ...and facing it again (restores)
    STRANGER_DETECTED = "stranger_detected"
    ONLOOKER_DETECTED = "onlooker_detected"
    ONLOOKER_GONE = "onlooker_gone"  # no onlooker beside the owner any more (restores a dim of onlooker_detected)
    SPOOF_SUSPECTED = "spoof_suspected"
    LOCKED = "locked"
    UNLOCKED = "unlocked"
    PAUSED = "paused"
    RESUMED = "resumed"
    CAMERA_LOST = "camera_lost"
    CAMERA_RESTORED = "camera_restored"
    CAMERA_BUSY = "camera_busy"  # another program holds it (a video call), or the lid is closed
    CAMERA_FREE = "camera_free"
    SLEEP = "sleep"
    WAKE = "wake"


class Action(str, Enum):
    LOCK = "lock"
    NOTIFY = "notify"
    UNLOCK = "unlock"
    SNAPSHOT = "snapshot"
    DIM = "dim"
    RESTORE = "restore"  # the brightness facewarden dimmed, unless the user changed it meanwhile
