"""The guard: the one holder of the session's state, as facewarden sees it. Pure, no I/O.

Everything the daemon learns comes in as a typed input (`step(input, now)`): a sample, a lock-state
source reporting the session locked or unlocked (or vanishing), facewarden's own lock starting and
its outcome, sleep and wake, a hung camera, pause and resume. What follows comes back as events;
nothing else writes this state. The owner decision itself (who is there, the timers) is `Presence`'s,
which only the guard feeds.

Locked means: a lock-state source says so (logind's LockedHint, a screensaver's ActiveChanged or
GetActive, a running locker), or facewarden's own lock worked where nothing can confirm it
("locked by facewarden, unconfirmed"). A source that vanishes (its bus name lost its owner: a crash,
a kill, a logout) takes its word with it, so a dead screensaver never leaves the session unguarded.
An unconfirmed lock ends as soon as input resumes after it or the owner is verified again, and the
camera keeps watching meanwhile: nothing says the screen is really covered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from ..events import Event
from .attention import Attention, Look
from .presence import Presence, Sample, State

if TYPE_CHECKING:  # only for annotations: the core does not load pydantic
    from ..config import Config

OWN_LOCK_S = 5.0  # a session lock this soon after facewarden started locking is facewarden's
# Input this long after facewarden's unconfirmed lock means the owner unlocked it (not the keystroke
# that asked for the lock).
INPUT_AFTER_LOCK_S = 1.0


@dataclass(frozen=True)
class Sampled:
    sample: Sample


@dataclass(frozen=True)
class Tick:
    """The clock alone: ends a timed pause."""


@dataclass(frozen=True)
class Reported:
    """A lock-state source's word: locked or not, or None when the source went away."""

    source: str
    locked: bool | None


@dataclass(frozen=True)
class LockStarted:
    """facewarden began its lock sequence."""


@dataclass(frozen=True)
class LockDone:
    """How facewarden's lock sequence ended: the method that locked (None: none did), and whether a
    lock-state source confirmed it."""

    method: str | None
    confirmed: bool = False


@dataclass(frozen=True)
class Sleep:
    pass


@dataclass(frozen=True)
class Wake:
    pass


@dataclass(frozen=True)
class CameraHung:
    """No sampling step completed in time: a camera read (or the model) hangs."""


@dataclass(frozen=True)
class Pause:
    until: float | None  # unix time; None: until resumed


@dataclass(frozen=True)
class Resume:
    pass


Input = Union[Sampled, Tick, Reported, LockStarted, LockDone, Sleep, Wake, CameraHung, Pause, Resume]


class Guard:
    """Not thread-safe: the daemon feeds it holding one lock."""

    def __init__(self, config: Config, now: float, watch_while_locked: bool = False):
        self.presence = Presence(config, now)
        self.attention = Attention(config)
        self.sources: dict[str, bool] = {}  # each lock-state source's latest word
        self.own_since: float | None = None  # facewarden's lock sequence under way since then
        self.unconfirmed_at: float | None = None  # facewarden's own lock, that nothing can confirm
        self.locked_by: str | None = None  # "facewarden" or "session" while locked
        self.asleep = False
        self.camera_ok = True  # not lost (a busy camera is not lost)
        self.camera_busy = False
        self.on_battery = False  # as the latest sample found the desktop
        self.epoch = 0  # bumped whenever a frame being read becomes stale
        self.configure(config, watch_while_locked)

    def configure(self, config: Config, watch_while_locked: bool) -> None:
        self.presence.configure(config)
        self.attention.configure(config)
        self.sampling = config.sampling
        self.watch_while_locked = watch_while_locked

    # -- queries ------------------------------------------------------------------------------

    @property
    def session_locked(self) -> bool:
        """A lock-state source says the session is locked."""
        return any(self.sources.values())

    @property
    def locked(self) -> bool:
        return self.session_locked or self.unconfirmed_at is not None

    @property
    def locked_via(self) -> str | None:
        """Which source says so ("facewarden" for an unconfirmed lock of its own), for status."""
        source = next((name for name, locked in self.sources.items() if locked), None)
        return source or ("facewarden" if self.unconfirmed_at is not None else None)

    @property
    def paused(self) -> bool:
        return self.presence.state == State.PAUSED

    @property
    def wants_camera(self) -> bool:
        """Whether samples read the camera now. An unconfirmed lock keeps watching."""
        if self.asleep or self.paused:
            return False
        return not self.session_locked or self.watch_while_locked

    @property
    def wants_idle(self) -> bool:
        """Whether samples should carry the session's idle time: only an unconfirmed lock needs it."""
        return self.unconfirmed_at is not None

    @property
    def camera(self) -> str:
        """The camera's real state: released (and why), busy, lost, or ok."""
        if not self.wants_camera:
            return "released (" + ("asleep" if self.asleep else "paused" if self.paused else "locked") + ")"
        return "busy" if self.camera_busy else "ok" if self.camera_ok else "lost"

    @property
    def sampling_word(self) -> str:
        if self.asleep:
            return "off (asleep)"
        if self.paused:
            return "off (paused)"
        if self.session_locked:
            return "watching (locked)" if self.wants_camera else "off (locked)"
        return "on"

    @property
    def warning(self) -> str | None:
        """The softer answer in force: the absence warning, or the owner looking away."""
        if self.presence.warned:
            return Event.OWNER_LEAVING.value
        return Event.OWNER_LOOKING_AWAY.value if self.attention.away else None

    @property
    def interval_factor(self) -> float:
        """How much longer the intervals are: `sampling.battery_factor` on battery."""
        return self.sampling.battery_factor if self.on_battery else 1.0

    def interval(self) -> float:
        """Seconds to the next sample: the one place the pace is decided."""
        sampling = self.sampling
        if not self.wants_camera:
            interval = sampling.paused_interval_s  # samples only tick the clock then
        else:
            interval = self.attention.pace(self.presence.interval(self.camera_busy), sampling.doubt_interval_s)
            if self.locked and interval >= sampling.interval_s:
                interval = sampling.locked_interval_s
        return interval * self.interval_factor

    @property
    def owner_in_window(self) -> bool:
        return self.presence.owner_in_window

    # -- the one input ------------------------------------------------------------------------

    def step(self, what: Input, now: float) -> list[Event]:
        """Feed one input; the events that follow, in order."""
        match what:
            case Sampled(sample):
                return self._sampled(sample, now)
            case Tick():
                return self.presence.tick(now)
            case Reported(source, locked):
                return self._reported(source, locked, now)
            case LockStarted():
                self.own_since = now
                return []
            case LockDone(method, confirmed):
                return self._lock_done(method, confirmed, now)
            case Sleep():
                self.asleep = True
                self.epoch += 1
                return [Event.SLEEP]
            case Wake():
                self.asleep = False
                self._afresh(now)
                return [Event.WAKE]
            case CameraHung():
                self.epoch += 1
                if not self.camera_ok:
                    return []
                self.camera_ok = False  # so that camera_restored fires when samples complete again
                return [Event.CAMERA_LOST]
            case Pause(until):
                self.epoch += 1
                return self.presence.pause(until, now)
            case Resume():
                return self.presence.resume(now)
        raise TypeError(f"not a guard input: {what!r}")

    # -- the rules ----------------------------------------------------------------------------

    def _sampled(self, sample: Sample, now: float) -> list[Event]:
        events: list[Event] = []
        if self.paused:
            return self.presence.observe(sample, now)
        if sample.busy != self.camera_busy:
            self.camera_busy = sample.busy
            events.append(Event.CAMERA_BUSY if sample.busy else Event.CAMERA_FREE)
        lost = not sample.camera_ok and not sample.busy
        if lost == self.camera_ok:
            self.camera_ok = not lost
            events.append(Event.CAMERA_LOST if lost else Event.CAMERA_RESTORED)
        if (self.unconfirmed_at is not None and sample.idle_s is not None
                and now - sample.idle_s > self.unconfirmed_at + INPUT_AFTER_LOCK_S):
            events += self._unlocked(now)  # input after facewarden's own lock: the owner unlocked it
        self.on_battery = sample.on_battery
        decided = self.presence.observe(sample, now)
        if Event.OWNER_ARRIVED in decided and self.unconfirmed_at is not None:
            self.unconfirmed_at = None  # the owner is back: an unconfirmed lock says nothing more
            self.locked_by = None if not self.session_locked else self.locked_by
        present = self.presence.state == State.OWNER_PRESENT
        facing = (sample.yaw or 0.0) if sample.owner else None  # an owner face of unknown yaw faces the screen
        look = Look(present, facing, sample.inhibited, self.camera_busy, sample.monitors)
        return events + decided + self.attention.observe(look, now)

    def _reported(self, source: str, locked: bool | None, now: float) -> list[Event]:
        was = self.locked
        if locked is None:
            self.sources.pop(source, None)
        else:
            self.sources[source] = locked
        if self.session_locked and not was:
            self.unconfirmed_at = None
            return self._became_locked(now)
        if self.session_locked and self.unconfirmed_at is not None:
            self.unconfirmed_at = None  # confirmed after all (a slow locker)
        if was and not self.locked:
            return self._unlocked(now)
        return []

    def _lock_done(self, method: str | None, confirmed: bool, now: float) -> list[Event]:
        self.own_since = None if method is None else self.own_since
        if method is None or confirmed or self.locked:
            return []
        self.unconfirmed_at = now
        self.locked_by = "facewarden"
        self.epoch += 1
        return [Event.LOCKED]

    def _became_locked(self, now: float) -> list[Event]:
        own = self.own_since is not None and now - self.own_since < OWN_LOCK_S
        self.locked_by = "facewarden" if own else "session"
        self.own_since = None
        self.epoch += 1
        return [Event.LOCKED]

    def _unlocked(self, now: float) -> list[Event]:
        self.unconfirmed_at = None
        self.locked_by = None
        self._afresh(now)
        return [Event.UNLOCKED]

    def _afresh(self, now: float) -> None:
        """Drop all evidence: the owner is assumed at the keyboard (they just unlocked, or woke the
        machine); frames being read are stale."""
        self.epoch += 1
        self.presence.start_afresh(now)
