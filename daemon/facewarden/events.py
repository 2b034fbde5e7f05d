"""The closed set of events the daemon fires, and the built-in actions they can trigger."""

from __future__ import annotations

from enum import Enum


class Event(str, Enum):
    OWNER_ARRIVED = "owner_arrived"
    OWNER_LEFT = "owner_left"
    STRANGER_DETECTED = "stranger_detected"
    ONLOOKER_DETECTED = "onlooker_detected"
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
