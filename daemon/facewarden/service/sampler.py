"""The per-sample step: read the camera, judge the frame, feed the guard.

`Sampler.take` is the one per-sample call: the daemon's sampling job runs it, and so do the tests and
the benches (with a hand-set clock). It reads the camera *outside* the daemon's lock, so that a read
that hangs (a wedged USB camera blocks in the driver) blocks nothing else; a frame read while the
guard's epoch moved on (locked, asleep, woken, paused, restarted) is stale and dropped.

`Observer.observe(frame, now)` is the frame's judgement on its own (verifier, liveness tracker,
onlookers' reach): frame -> Sample.
"""

from __future__ import annotations

import logging
import math
import os
import select
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..config import Config
from ..core.adapt_track import Track
from ..core.guard import Guard, Input, Sampled, Tick
from ..core.observation import Observation
from ..core.onlooker import Reach, yaw
from ..core.presence import Sample
from ..errors import UserError
from ..events import Event
from ..model import adapt
from ..paths import Paths
from ..recognition import ownerfile, vision
from .camera import Cameras
from .holders import IN_ATTRIB, IN_DELETE_SELF, IN_DONT_FOLLOW, IN_MOVE_SELF, Inotify
from .surroundings import Surroundings

log = logging.getLogger("facewarden")


class Verify(Protocol):
    """The verifier's per-frame call (recognition/verifier.py): `now` paces its tracking; `precise`
    asks for every face exactly where a full scan puts it."""

    def __call__(self, frame: np.ndarray, now: float, precise: bool, /) -> Observation: ...


class LivenessCheck(Protocol):
    def update(self, frame: np.ndarray, face, now: float) -> bool | None: ...
    def reset(self) -> None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def proving(self) -> bool: ...


def build_verifier(config: Config, where: Paths) -> Verify:
    from ..recognition.verifier import Verifier

    return Verifier.from_config(config, where).observe


def verifier_settings(config: Config) -> tuple:
    """What `Verifier.from_config` reads of the config: a reload that changes any of it builds a new
    verifier (the model, the tracking's periods, the dark and blur thresholds, who is an owner)."""
    camera, sampling = config.camera, config.sampling
    return (config.model, config.people, sampling.reverify_s, sampling.full_scan_s, camera.dark_threshold,
            camera.blur_threshold)


def build_liveness(config: Config) -> LivenessCheck | None:
    if not config.liveness.enabled:
        return None
    from ..recognition.liveness import LivenessTracker

    return LivenessTracker(config.liveness)


@dataclass(frozen=True)
class Seen:
    sample: Sample
    observation: Observation | None = None  # None: no frame (the camera failed or is busy)


class Observer:
    """One frame -> Sample: faces and owner scores (the verifier), the owner face's liveness, and
    which other faces could read the screen."""

    def __init__(self, verify: Verify, liveness: LivenessCheck | None, reach: Reach, turning: float = math.inf):
        self.verify, self.liveness, self.reach = verify, liveness, reach
        self.turning = turning  # core.attention.turning: from this yaw on, the owner may be turning away
        self._turned = False

    def observe(self, frame: np.ndarray, now: float) -> Seen:
        # Landmarks that move by a pixel read as motion to a face still proving life, and a turning
        # head's yaw is read a few hundredths off in a region: the whole frame is scanned for them;
        # otherwise the followed face is found in its region (recognition/tracking.py).
        proving = self.liveness is not None and self.liveness.proving
        observation = self.verify(frame, now, proving or self._turned)
        owner = observation.owner_face
        self._turned = owner is not None and yaw(owner.face) >= self.turning
        live = None
        if owner is not None:
            live = True if self.liveness is None else self.liveness.update(frame, owner.face, now)
        return Seen(Sample.of(observation, live, self.reach), observation)

    def forget(self) -> None:
        """The owner's face was lost: whoever comes next proves life afresh."""
        if self.liveness is not None:
            self.liveness.reset()

    @property
    def reason(self) -> str:
        return "off" if self.liveness is None else self.liveness.reason or "-"


class Core(Protocol):
    """What a sample needs of the daemon: the guard (read holding `mutex`) and its one input."""

    guard: Guard
    mutex: threading.RLock

    def feed(self, what: Input, frame: np.ndarray | None = None, epoch: int | None = None) -> list[Event] | None: ...


class Sampler:
    def __init__(self, config: Config, where: Paths, core: Core, observer: Observer, camera: Cameras,
                 clock: Callable[[], float], idle: Callable[[], float | None], surroundings: Surroundings):
        self.config, self.paths, self.core, self.observer, self.camera = config, where, core, observer, camera
        self.clock, self.idle, self.surroundings = clock, idle, surroundings
        self.retired: list[Cameras] = []  # replaced cameras, closed by the next sample (only it touches one)
        self.track = Track()  # templates that keep up (config adapt)
        self.samples = 0  # frames judged, and when the last one was (status, the bench)
        self.sampled_at: float | None = None
        self.released = threading.Event()  # the camera was let go because nothing needs it
        self._epoch = -1
        self._failing = False

    def take(self) -> list[Event]:
        """One sample; the events it caused. Raises ReplayEnded at a replay's end."""
        for old in self.retired:
            old.close()
        self.retired.clear()
        with self.core.mutex:
            guard = self.core.guard
            wants, wants_idle, epoch, camera = guard.wants_camera, guard.wants_idle, guard.epoch, self.camera
        if epoch != self._epoch:
            self.observer.forget()  # locked, woken, unlocked or paused since: fresh evidence
            self.track = Track()
            self._epoch = epoch
        if not wants:
            self.release()
            return self.core.feed(Tick()) or []
        self.released.clear()
        frame = camera.read()
        idle_s = self.idle() if (frame is None and camera.busy_by) or wants_idle else None
        seen = self._judge(frame, camera, idle_s)
        events = self.core.feed(Sampled(seen.sample), frame, epoch)
        with self.core.mutex:
            lost = not self.core.guard.owner_in_window
            wants = self.core.guard.wants_camera
        if not wants:
            self.release()
        if events is None:  # stale: locked, asleep, woken or restarted while the frame was read
            if camera is not self.camera:
                camera.close()
            return []
        self.samples += 1
        self.sampled_at = time.time()
        if lost:
            self.observer.forget()
        self._adapt(seen, frame)
        return events

    def _judge(self, frame: np.ndarray | None, camera: Cameras, idle_s: float | None) -> Seen:
        """The frame's Seen, with the desktop around it (idle time, inhibitors, monitors, battery)."""
        seen = self._observe(frame, camera)
        around = self.surroundings
        return replace(seen, sample=replace(seen.sample, idle_s=idle_s, inhibited=around.inhibited,
                                            monitors=around.monitors, on_battery=bool(around.on_battery)))

    def _observe(self, frame: np.ndarray | None, camera: Cameras) -> Seen:
        if frame is None:  # busy (another program holds it) or failed
            return Seen(Sample(camera_ok=False, busy=camera.busy_by is not None))
        try:
            seen = self.observer.observe(frame, self.clock())
        except Exception:
            # A broken model or library must not keep the session open: judge the sample as "owner
            # not verified", as for a failed camera, and say why once.
            if not self._failing:
                log.exception("sampling failed; treating the owner as not verified until it works again")
            self._failing = True
            return Seen(Sample())
        if self._failing:
            log.info("sampling works again")
        self._failing = False
        return seen

    def release(self) -> None:
        """Nothing needs the camera now: let it go (the LED goes off, a video call may have it)."""
        self.camera.release()
        self.released.set()

    def _adapt(self, seen: Seen, frame: np.ndarray | None) -> None:
        """Feed the track (config adapt.enabled); keep what it yields for the next `train`."""
        if not self.config.adapt.enabled:
            return
        if seen.observation is None or frame is None:
            self.track = Track()  # a failed camera or model breaks the track too
            return
        for person, crop in self.track.update(seen.observation, seen.sample.live, lambda f: vision.align(frame, f)):
            try:
                adapt.store(self.paths, person, crop)
            except (OSError, UserError) as e:
                log.warning("could not keep an adapted face of %s: %s", person, e)


class ModelFollower:
    """Switches the observer to the model `train` published last (models/current: one readlink a
    check). One that does not load is logged once, and the model running stays. Checks may come from
    two threads (the link's watch and the scheduler's backstop): one at a time."""

    def __init__(self, config: Config, where: Paths, factory: Callable[[Config, Paths], Verify]):
        self.config, self.paths, self.factory = config, where, factory
        self.version = ownerfile.current_version(where)  # read before the model: never newer
        self.refused: str | None = None
        self._checking = threading.Lock()

    def load(self) -> Verify:
        return self.factory(self.config, self.paths)

    def check(self, observer: Observer) -> None:
        with self._checking:
            version = ownerfile.current_version(self.paths)
            if version in (self.version, self.refused):
                return
            try:
                verify = self.factory(self.config, self.paths)
            except Exception as e:  # a damaged or refused model must not stop the one that works
                self.refused = version
                log.error("owner model %s does not load; still running %s: %s", version, self.version, e)
                return
            observer.verify, self.version, self.refused = verify, version, None
            log.info("owner model %s loaded", version)


class LinkWatch:
    """Calls `changed()` once the symlink at `path` is replaced or removed (models/current: `train`,
    `model activate` and `model rollback` rename a fresh link over it), from a thread of its own that
    sleeps until then: a new model is taken at once, and nothing looks for one every few seconds.
    `watching` is False while there is no link to watch (`rewatch` tries again). OSError: no inotify."""

    MASK = IN_DONT_FOLLOW | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF  # the link itself, not its target

    def __init__(self, path: Path, changed: Callable[[], None]):
        self.path, self.changed = path, changed
        self._inotify = Inotify()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._stop = threading.Event()
        self.watching = self.rewatch()
        self._thread = threading.Thread(target=self._loop, name="model-watch", daemon=True)
        self._thread.start()

    def rewatch(self) -> bool:
        """Watch the link now at `path` (the one renamed over the last); whether there is one."""
        try:
            self._inotify.add(str(self.path), self.MASK)
        except OSError:
            return False
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._inotify.fd, self._wake_r], [], [])
            if self._stop.is_set():
                break
            if self._inotify.fd in ready and self._inotify.read():
                self.watching = self.rewatch()
                try:
                    self.changed()
                except Exception:  # the watch must outlive one failed check
                    log.exception("checking for a new owner model")
        self._inotify.close()
        os.close(self._wake_r)

    def close(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        os.close(self._wake_w)


WATCHDOG_MIN_S = 5.0  # the watchdog acts when no sample completed for this long...
WATCHDOG_INTERVALS = 3  # ...or this many sampling intervals, whichever is longer


class Watchdog:
    """When no sample has completed within a few sampling intervals, a camera read (or the model)
    hangs: the daemon then locks, fires `camera_lost` and restarts the camera on a fresh job."""

    def __init__(self) -> None:
        self.interval = 0.0
        self.due = time.monotonic() + WATCHDOG_MIN_S  # monotonic: acts when no sample completed by then
        self.tripped = False
        self.abandoned = False  # a hung sample was left behind

    @property
    def deadline(self) -> float:
        return max(WATCHDOG_MIN_S, WATCHDOG_INTERVALS * self.interval)

    def fed(self) -> None:
        """A sample completed (or a long reload ended)."""
        self.due = time.monotonic() + self.deadline
        if self.tripped:
            log.info("sampling steps complete again")
            self.tripped = False

    def hold(self) -> None:
        """Loading a model on reload holds up samples for a while: not a hang."""
        self.due = math.inf

    def late(self) -> float:
        """How long past due the next sample is (<= 0: in time)."""
        return time.monotonic() - self.due

    def until_due(self) -> float:
        """Seconds until the watchdog is due; inf once it is past due (it acts once, and the next
        completed sample moves it on)."""
        late = self.late()
        return -late if late < 0 else math.inf
