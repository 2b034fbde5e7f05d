"""The presence state machine: pure, no I/O. Samples and the clock go in, events come out.

Decisions take `required` of the last `window` judged samples (config `presence`), so one bad frame
neither locks nor verifies. Skipped frames (dark, blurry) are not judged: they add no evidence either
way, but the clock keeps running and frames older than `lock.after_absent_s` drop out of the window,
so a camera that only sees darkness still ends in a lock. A failed camera is judged as "owner not
verified" (fail closed).

A camera another program holds (a video call, or a built-in one behind a closed lid) is busy, not
lost, and `camera.when_busy` decides: "lock" judges it as a failed camera; "pause" holds the
absence timer; "idle" holds it while the session had input within `lock.idle_s` (the sample
carries the idle time) and locks once it had none, or fails closed where idle time is unknown.

The warning: `lock.warn_s` before the absence lock `owner_leaving` fires (its default action dims);
one frame of the owner (live, or liveness pending) before the lock fires `owner_stayed`, as does anything that holds the
absence timer meanwhile (a busy camera taken as the owner at the keyboard, a pause, an idle
inhibitor with `lock.pause_while_inhibited`). Leaving the present/pending states ends the warning
without an event: the lock that follows restores (`locked`).

A face the verifier found too poorly lit to judge (`FaceVerdict.unsure`: side light, low contrast)
is never a stranger: such frames count as no face, so the absence timer runs and the warning comes
first. A face in good light that is not the owner is a stranger as before.

Liveness is part of the owner decision: an owner face counts as the owner only once the liveness
tracker judged it live. While it is pending the lock timers are held, for at most
`liveness.window_s`; a face still pending then is treated as not the owner:
`spoof_suspected` fires and the session locks as it would for a stranger.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from typing import TYPE_CHECKING

from ..events import Event
from .observation import Observation
from .onlooker import Reach, can_read_screen, yaw

if TYPE_CHECKING:  # only for annotations: the core does not load pydantic
    from ..config import Config


class State(str, Enum):
    PENDING = "pending"  # nothing decided yet: just started or resumed, or a verified face awaiting liveness
    OWNER_PRESENT = "owner_present"
    OWNER_ABSENT = "owner_absent"
    STRANGER = "stranger"
    PAUSED = "paused"


@dataclass(frozen=True)
class Sample:
    """What one sampling step saw, reduced to what presence decides on."""

    camera_ok: bool = True
    busy: bool = False  # no frame because another program holds the camera (or the lid is closed)
    idle_s: float | None = None  # seconds since the session's last input, None if unknown or not asked
    skipped: bool = False  # a frame was read but not judged (dark, blurry)
    owner: bool = False  # an owner face was verified in the frame
    live: bool | None = None  # liveness of that owner face: None = pending, True = live
    others: int = 0  # faces of nobody enrolled (strangers)
    onlookers: int = 0  # of those, beside a verified owner: the ones close and turned enough to read the screen
    unsure: int = 0  # faces too poorly lit to judge: neither the owner nor strangers
    yaw: float | None = None  # the owner face's head yaw (core/onlooker.py); None: no owner face
    # The desktop around the sample (service/surroundings.py):
    inhibited: bool = False  # an application holds an idle inhibitor (a film, a presentation)
    monitors: int = 1  # monitors connected
    on_battery: bool = False
    known: int = 0  # faces of enrolled people besides the owner face (a trusted person, a second owner)
    score: float | None = None  # the best score of the frame, for status and hooks
    person: str | None = None  # who the frame's owner face is (else its best-scoring enrolled face), for hooks

    @property
    def faces(self) -> int:
        return int(self.owner) + self.others + self.known

    @classmethod
    def of(cls, observation: Observation, live: bool | None, reach: Reach | None = None) -> "Sample":
        """`reach`: which faces beside the owner count as onlookers (None: every stranger's face)."""
        owner = observation.owner_face
        rest = [f for f in observation.faces if f is not owner]
        strangers = [f for f in rest if f.person is None and not f.unsure]
        scores = [f.score for f in observation.faces if f.score is not None]
        named = [f for f in observation.faces if f.person is not None]
        person = owner or max(named, key=lambda f: f.score or 0.0, default=None)
        # An onlooker need not be judged: a face too dark to tell still reads the screen.
        onlookers = [f for f in rest if f.person is None and owner is not None
                     and (reach is None or can_read_screen(f.face, owner.face, reach))]
        return cls(
            skipped=observation.skipped is not None,
            owner=owner is not None,
            live=live if owner is not None else None,
            others=len(strangers),
            onlookers=len(onlookers),
            known=sum(1 for f in rest if f.person is not None),
            unsure=sum(1 for f in rest if f.unsure),
            score=max(scores) if scores else None,
            person=person.person if person is not None else None,
            yaw=None if owner is None else yaw(owner.face),
        )

    @classmethod
    def camera_failed(cls) -> "Sample":
        return cls(camera_ok=False)

    @classmethod
    def camera_busy(cls, idle_s: float | None) -> "Sample":
        return cls(camera_ok=False, busy=True, idle_s=idle_s)


class Presence:
    """Owner present / absent / stranger / paused, from samples and the clock. Not thread-safe."""

    def __init__(self, config: Config, now: float):
        self._samples: deque[Sample] = deque()
        self._times: deque[float] = deque()
        self.configure(config)
        self.state = State.PENDING
        self.since = now
        self.paused_until: float | None = None
        self.paused_forever = False
        self.last: Sample = Sample()
        self._reset_evidence(now)

    def configure(self, config: Config) -> None:
        """Apply a (re)loaded config; the current state and evidence are kept."""
        self.window = config.presence.window
        self.required = min(config.presence.required, self.window)
        self.after_absent_s = config.lock.after_absent_s
        self.after_stranger_s = config.lock.after_stranger_s
        absent_s, warn_s = config.lock.after_absent_s, config.lock.warn_s
        self.warn_after_s = max(absent_s - warn_s, absent_s / 2) if warn_s > 0 else None
        self.pause_while_inhibited = config.lock.pause_while_inhibited
        self.onlooker_enabled = config.onlooker.enabled
        self.reach = Reach(config.onlooker.min_relative_size, config.onlooker.max_yaw)
        self.liveness_window_s = config.liveness.window_s
        self.when_busy = config.camera.when_busy
        self.idle_s = config.lock.idle_s
        self.sampling = config.sampling
        self._samples = deque(self._samples, maxlen=self.window)
        self._times = deque(self._times, maxlen=self.window)

    def _reset_evidence(self, now: float) -> None:
        self._samples = deque(maxlen=self.window)
        self._times = deque(maxlen=self.window)
        # The owner is assumed at the keyboard when the daemon starts or resumes (they started
        # it), so the absence timer runs from then: if they never show up, the lock still comes.
        self._owner_seen_at = now
        self._stranger_since: float | None = None
        self._pending_since: float | None = None
        self._spoof = False
        self._onlooker = False
        self._warned = False  # owner_leaving fired and neither owner_stayed nor the lock followed

    # -- queries ------------------------------------------------------------------------------

    def _count(self, predicate) -> int:
        return sum(1 for s in self._samples if predicate(s))

    def _go(self, state: State, now: float) -> None:
        if state != self.state:
            self.state, self.since = state, now
        if state not in (State.OWNER_PRESENT, State.PENDING):
            self._warned = False  # the lock (or a pause) took over from the warning

    @property
    def warned(self) -> bool:
        """Whether the absence warning is on (owner_leaving fired, no owner_stayed or lock yet)."""
        return self._warned

    @property
    def owner_in_window(self) -> bool:
        """Whether any recent judged frame showed an owner face (else the face is lost)."""
        return any(s.owner for s in self._samples)

    def interval(self, camera_busy: bool = False) -> float:
        """Seconds to the next sample: slow while paused, fast while in doubt, else the normal pace."""
        if self.state == State.PAUSED:
            return self.sampling.paused_interval_s
        if camera_busy:
            return self.sampling.interval_s  # nothing to be in doubt about until it is free
        return self.sampling.doubt_interval_s if self._in_doubt() else self.sampling.interval_s

    def _in_doubt(self) -> bool:
        if self.state == State.PENDING or self._pending_since is not None:
            return True
        if self._stranger_since is not None and self.state != State.STRANGER:
            return True
        last = self.last
        if self.state == State.OWNER_PRESENT:
            # The absence grace period runs as soon as the latest frame lacks the live owner.
            return not (last.owner and last.live is True)
        # Absent or stranger: a face that is not decided yet (the owner coming back, a new face).
        return last.owner or (self.state == State.OWNER_ABSENT and last.others > 0)

    # -- inputs -------------------------------------------------------------------------------

    def observe(self, sample: Sample, now: float) -> list[Event]:
        """Feed one sample; the events it causes, in order."""
        self.last = sample
        if self.state == State.PAUSED:
            return self._maybe_auto_resume(now)
        if sample.busy:
            policy = self.when_busy if sample.idle_s is not None or self.when_busy != "idle" else "lock"
            if policy != "lock":
                return self._busy(policy, sample.idle_s, now)
        events: list[Event] = []
        if not sample.skipped:
            self._samples.append(sample)
            self._times.append(now)
            if sample.owner and sample.live is True:
                self._owner_seen_at = now
            if sample.owner and sample.live is not False and self._warned:
                # One owner frame is enough to take the dim back (the lock still needs the full
                # decision, and the warning comes again if the face goes again).
                self._warned = False
                events.append(Event.OWNER_STAYED)
        if sample.inhibited and self.pause_while_inhibited and self.state in (State.OWNER_PRESENT, State.PENDING):
            events += self._hold(now)  # absence does not lock; strangers are still decided below
        while self._times and now - self._times[0] >= self.after_absent_s:
            self._samples.popleft()
            self._times.popleft()
        return events + self._decide(now)

    def tick(self, now: float) -> list[Event]:
        """The clock alone (no frame): ends a timed pause."""
        return self._maybe_auto_resume(now) if self.state == State.PAUSED else []

    def pause(self, until: float | None, now: float) -> list[Event]:
        """Pause until `until` (unix time), or until resumed when None."""
        was_paused = self.state == State.PAUSED
        stayed = [Event.OWNER_STAYED] if self._warned else []
        self.paused_until, self.paused_forever = until, until is None
        self._go(State.PAUSED, now)
        return [] if was_paused else stayed + [Event.PAUSED]

    def resume(self, now: float) -> list[Event]:
        if self.state != State.PAUSED:
            return []
        self.paused_until, self.paused_forever = None, False
        self._reset_evidence(now)
        self._go(State.PENDING, now)
        return [Event.RESUMED]

    def start_afresh(self, now: float) -> None:
        """Drop all evidence and start again, the owner assumed at the keyboard: the session was just
        unlocked (they typed their password) or the machine woke. A pause stays a pause."""
        self._reset_evidence(now)
        if self.state != State.PAUSED:
            self._go(State.PENDING, now)

    def _maybe_auto_resume(self, now: float) -> list[Event]:
        if self.paused_until is not None and now >= self.paused_until:
            return self.resume(now)
        return []

    # -- the decision -------------------------------------------------------------------------

    def _decide(self, now: float) -> list[Event]:
        k = self.required
        owner_frames = self._count(lambda s: s.owner)
        last_owner = next((s for s in reversed(self._samples) if s.owner), None)
        verified = owner_frames >= k
        live = last_owner.live if last_owner is not None else None

        events: list[Event] = []
        # Liveness: a verified face that is not live yet holds the timers, but only for so long.
        owner_live = verified and live is True
        if verified and live is not True and not self._spoof:
            if self._pending_since is None:
                self._pending_since = now
            if now - self._pending_since >= self.liveness_window_s:
                self._spoof = True
                events.append(Event.SPOOF_SUSPECTED)
        if not verified or owner_live:
            self._pending_since = None
            if not verified:
                self._spoof = False
        pending = self._pending_since is not None and not self._spoof

        if owner_live:
            self._stranger_since = None
            if self.state != State.OWNER_PRESENT:
                self._go(State.OWNER_PRESENT, now)
                events.append(Event.OWNER_ARRIVED)
            events += self._onlooker_check()
            return events
        if self._onlooker:
            self._onlooker = False
            events.append(Event.ONLOOKER_GONE)

        # A spoofed owner face counts as a stranger's from here on.
        stranger_frames = self._count(lambda s: s.others > 0 and (not s.owner or self._spoof))
        if self._spoof:
            self._go(State.STRANGER, now)
            return events
        if pending:
            if self.state != State.OWNER_PRESENT:
                self._go(State.PENDING, now)
            return events

        if stranger_frames >= k:
            if self._stranger_since is None:
                self._stranger_since = now
            if self.state != State.STRANGER and now - self._stranger_since >= self.after_stranger_s:
                self._go(State.STRANGER, now)
                events.append(Event.STRANGER_DETECTED)
                return events
        elif self._count(lambda s: s.others > 0) == 0:
            self._stranger_since = None
            if self.state == State.STRANGER:
                self._go(State.OWNER_ABSENT, now)

        if self.state in (State.OWNER_PRESENT, State.PENDING):
            absent_s = now - self._owner_seen_at
            if absent_s >= self.after_absent_s:
                self._go(State.OWNER_ABSENT, now)
                events.append(Event.OWNER_LEFT)
            elif self.warn_after_s is not None and absent_s >= self.warn_after_s and not self._warned:
                self._warned = True
                events.append(Event.OWNER_LEAVING)
        return events

    def _hold(self, now: float) -> list[Event]:
        """The owner is taken to be at the keyboard: the absence timer starts again, a warning ends."""
        self._owner_seen_at = now
        if self._warned:
            self._warned = False
            return [Event.OWNER_STAYED]
        return []

    def _busy(self, policy: str, idle_s: float | None, now: float) -> list[Event]:
        """A busy camera under "pause" or "idle": no evidence; the absence timer is held while the
        owner is taken to be at the keyboard, so they have the usual grace once it is free."""
        if policy == "idle" and idle_s is not None and idle_s >= self.idle_s:
            # A call left running on an empty desk.
            if self.state in (State.OWNER_PRESENT, State.PENDING):
                self._go(State.OWNER_ABSENT, now)
                return [Event.OWNER_LEFT]
            return []
        if self.state in (State.OWNER_PRESENT, State.PENDING):
            return self._hold(now)
        return []

    def _onlooker_check(self) -> list[Event]:
        if not self.onlooker_enabled:
            return []
        with_others = self._count(lambda s: s.owner and s.onlookers > 0)
        if with_others >= self.required and not self._onlooker:
            self._onlooker = True
            return [Event.ONLOOKER_DETECTED]
        if with_others == 0 and self._onlooker:
            self._onlooker = False
            return [Event.ONLOOKER_GONE]
        return []
