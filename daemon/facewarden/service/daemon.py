"""The daemon (`facewarden run`): wires camera, verifier, liveness, presence, actions, hooks, the event log, the
control socket and the desktop session (service/session.py), and runs the sampling step on an APScheduler
interval job.

Threads: the scheduler's worker runs `Daemon.step` (one at a time); built-in actions run in order on
an "actions" thread and user hooks on a "hooks" thread, so neither a slow lock method nor a hanging
hook ever delays sampling, and a hook never delays a lock. The control socket has its own threads, the
session's buses theirs. Every touch of the presence machine holds `Daemon._mutex`; the camera is only
touched by the sampling step, which reads it *outside* the lock, so that a read that hangs (a wedged
USB camera blocks in the driver) blocks nothing else.

The session: while it is locked and nothing needs the camera (`sampling.while_locked`), and while the
machine sleeps, steps release the camera and read nothing; unlocking or waking starts from fresh
evidence (`Presence.start_afresh`), and a frame read across such a change is dropped (`_generation`).

The watchdog (the main thread): when no step has completed within a few sampling intervals (at
least WATCHDOG_MIN_S), it locks, fires `camera_lost` and restarts the camera on a fresh scheduler
thread. systemd's own watchdog (`WatchdogSec=`) gets WATCHDOG=1 only while steps complete in time.

This module must never import TensorFlow: the verifier's inference runs through runtime.py (LiteRT).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Callable, Protocol

import numpy as np
from apscheduler.schedulers.background import BackgroundScheduler

from .. import config as config_module
from ..config import Config
from ..core.adapt import Track
from ..core.observation import Observation
from ..core.presence import Presence, Sample, State
from ..errors import UserError
from ..events import Action, Event
from ..model import adapt
from ..paths import Paths
from ..recognition import ownerfile, vision
from .actions import Actions, Context
from .camera import Camera, Cameras, ReplayEnded
from .control import Server
from .eventlog import EventLog
from .hooks import Runner, scripts
from .session import Session
from .systemd import Notifier

log = logging.getLogger("facewarden")

LIVENESS_EVENTS = (Event.OWNER_ARRIVED, Event.SPOOF_SUSPECTED)  # their records say why
DRAIN_GRACE_S = 2.0  # at shutdown, queued hooks get hooks.timeout_s plus this, then are killed
MODEL_CHECK_S = 2.0  # how often the sampling step looks whether `train` published a new model
WATCHDOG_MIN_S = 5.0  # the watchdog acts when no step completed for this long...
WATCHDOG_INTERVALS = 3  # ...or this many sampling intervals, whichever is longer
WATCH_PERIOD_S = 0.5  # how often the main thread looks
OWN_LOCK_S = 5.0  # a session lock this soon after facewarden started locking is facewarden's
SLEEP_RELEASE_WAIT_S = 3.0  # before sleep, how long the camera may take to be let go
STEP_DRAIN_S = 5.0  # at shutdown, how long a running camera read may take


class Verify(Protocol):
    def __call__(self, frame: np.ndarray, now: float, /) -> Observation: ...


class LivenessCheck(Protocol):
    def update(self, frame: np.ndarray, face, now: float) -> bool | None: ...
    def reset(self) -> None: ...
    @property
    def reason(self) -> str | None: ...


@dataclass(frozen=True)
class Step:
    events: list[Event]
    frame: np.ndarray | None  # what the camera gave (None: paused or failed)
    sample: Sample | None  # None while paused (the camera is not read then)
    observation: Observation | None = None  # what the verifier made of the frame


IdleSeconds = Callable[[], "float | None"]


def sample_once(camera: Camera | Cameras, verify: Verify, presence: Presence, clock: Callable[[], float],
                liveness: LivenessCheck | None = None, idle: IdleSeconds = lambda: None) -> Step:
    """The sampling step: read a frame, judge it, feed presence. Raises ReplayEnded at a replay's end.

    `liveness` None means liveness is off: a verified face counts as live. `idle`: seconds since the
    session's last input (None: unknown), asked only while the camera is busy.
    """
    now = clock()
    if presence.state == State.PAUSED:
        return Step(presence.tick(now), None, None)
    frame = camera.read()
    return judge(frame, verify, presence, now, liveness, busy_sample(frame, camera, idle))


def busy_sample(frame: np.ndarray | None, camera: Camera | Cameras, idle: IdleSeconds) -> Sample | None:
    """For no frame because another program holds the camera: the busy sample, with the idle time."""
    return Sample.camera_busy(idle()) if frame is None and camera.busy_by else None


def judge(frame: np.ndarray | None, verify: Verify, presence: Presence, now: float,
          liveness: LivenessCheck | None = None, busy: Sample | None = None) -> Step:
    """Judge one frame (None: the camera failed, or is `busy`) and feed presence."""
    observation = None
    if frame is None:
        sample = busy or Sample.camera_failed()
    else:
        observation = verify(frame, now)
        owner = observation.owner_face
        live = None
        if owner is not None:
            live = True if liveness is None else liveness.update(frame, owner.face, now)
        sample = Sample.of(observation, live, presence.reach)
    events = presence.observe(sample, now)
    if liveness is not None and not presence.owner_in_window:
        liveness.reset()  # the face was lost: whoever comes next proves life afresh
    return Step(events, frame, sample, observation)


class Worker:
    """One thread running submitted calls in order; drained with a deadline at shutdown."""

    def __init__(self, name: str):
        self._queue: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], object]) -> None:
        self._queue.put(call)

    def _loop(self) -> None:
        while (call := self._queue.get()) is not None:
            try:
                call()
            except Exception:
                log.exception("background task failed")

    def drain(self, deadline_s: float) -> bool:
        """Run what is queued, for at most `deadline_s`; whether everything finished."""
        self._queue.put(None)
        self._thread.join(deadline_s)
        return not self._thread.is_alive()

    def drop(self) -> int:
        """After a `drain` that ran out of time: forget what is still queued; how many calls that was."""
        dropped = 0
        while True:
            try:
                call = self._queue.get_nowait()
            except queue.Empty:
                break
            dropped += call is not None
        self._queue.put(None)  # the loop still ends after the call running now
        return dropped


def build_verifier(config: Config, where: Paths) -> Verify:
    from ..recognition.verifier import Verifier

    return Verifier.from_config(config, where).observe


def build_liveness(config: Config) -> LivenessCheck | None:
    if not config.liveness.enabled:
        return None
    from ..recognition.liveness import LivenessTracker

    return LivenessTracker(config.liveness)


class Daemon:
    def __init__(self, config: Config, where: Paths, clock: Callable[[], float] = time.time,
                 verifier_factory: Callable[[Config, Paths], Verify] = build_verifier):
        self.config = config
        self.paths = where
        self.clock = clock
        self.verifier_factory = verifier_factory
        self.camera = Cameras(config.camera, lid_closed=self._lid_closed)
        self.model_version = ownerfile.current_version(where)  # read before the model: never newer
        self._model_checked = time.monotonic()
        self._model_refused: str | None = None
        self.verify = verifier_factory(config, where)
        self.liveness = build_liveness(config)
        self.track = Track()  # templates that keep up (config adapt)
        self.presence = Presence(config, clock())
        self.actions = Actions(config, where)
        self.hooks = Runner(where.hooks_dir, config.hooks.timeout_s)
        self.eventlog = EventLog(where.events_file, config.log)
        self.server = Server(where.socket_path, self)
        self.scheduler = BackgroundScheduler(daemon=True)
        self._job = None
        self._job_number = 0  # of the current job; a watchdog restart makes a new one
        self._busy = False  # the current job's step is running
        self._interval = 0.0
        self._failing = False
        self._mutex = threading.RLock()
        self._actions = Worker("actions")
        self._hooks = Worker("hooks")
        self.stopping = threading.Event()
        self.exit_code = 0
        self.session = Session()
        self.notifier = Notifier()
        self._session_locked: bool | None = None  # None: nothing here tells
        self._asleep = False
        self._generation = 0  # bumped by every change that makes a frame being read stale
        self._retired: list[Cameras] = []  # replaced cameras, closed by the next step
        self._released = threading.Event()  # a step let the camera go because nothing needs it
        self._locking_until = 0.0  # monotonic: facewarden's own lock is under way until then
        self._inhibitor: int | None = None
        self._step_due = time.monotonic()  # monotonic: the watchdog acts when no step completed by then
        self._tripped = False
        self._ready = False
        self.samples = 0  # frames judged, and when the last one was (for status and the bench)
        self.sampled_at: float | None = None
        self.stuck = False  # a camera read still hung at shutdown
        self._abandoned = False  # the watchdog left a hung step behind
        self._warn_unlock()

    def _lid_closed(self) -> bool | None:
        return self.session.logind.lid_closed()

    def _warn_unlock(self) -> None:
        if self.config.unlock_enabled:
            log.warning("the unlock action is enabled: a face on camera unlocks this session; "
                        "see the README's security section for what that risks")

    # -- sampling -----------------------------------------------------------------------------

    def step(self, job: int = 0) -> None:
        """The scheduler's job: one sample, its events dispatched, the cadence adjusted."""
        if job != self._job_number:
            return  # a job the watchdog replaced
        self._busy = True
        try:
            self._step(job)
        finally:
            if job == self._job_number:
                self._busy = False

    def _step(self, job: int) -> None:
        with self._mutex:
            if self.stopping.is_set():
                return
            self._follow_model()
            for old in self._retired:
                old.close()
            self._retired.clear()
            if not self._wants_camera():
                self._idle()
                self._dispatch(self.presence.tick(self.clock()))
                self._stepped()
                return
            generation, camera = self._generation, self.camera
        frame, error, busy = None, None, None
        try:
            frame = camera.read()
            busy = busy_sample(frame, camera, self.session.idle_seconds)  # a bus call: not holding the lock
        except ReplayEnded:
            log.info("replay of %s ended", self.config.camera.source)
            self.stop(0)
            return
        except Exception as e:
            error = e
        with self._mutex:
            if generation != self._generation or job != self._job_number or not self._wants_camera():
                # Locked, asleep, woken or restarted while the frame was read: it is stale.
                if camera is not self.camera:
                    camera.close()
                if not self._wants_camera():
                    self._idle()
                self._schedule(self._next_interval())
                return
            try:
                if error is not None:
                    raise error
                step = judge(frame, self.verify, self.presence, self.clock(), self.liveness, busy)
            except Exception:
                # A broken model or library must not keep the session open: judge the sample as
                # "owner not verified", as for a failed camera, and say why once.
                if not self._failing:
                    log.exception("sampling failed; treating the owner as not verified until it works again")
                self._failing = True
                now = self.clock()
                step = Step(self.presence.observe(Sample(), now), None, Sample())
            else:
                if self._failing:
                    log.info("sampling works again")
                self._failing = False
            self.samples += 1
            self.sampled_at = time.time()
            self._dispatch(step.events, step.frame)
            self._adapt(step)
            if not self._wants_camera():
                self._idle()
            self._stepped()

    def _follow_model(self) -> None:
        """Switch to the model `train` published last (models/current: one readlink at most every
        MODEL_CHECK_S). One that does not load is logged once, and the model running stays."""
        now = time.monotonic()
        if now - self._model_checked < MODEL_CHECK_S:
            return
        self._model_checked = now
        version = ownerfile.current_version(self.paths)
        if version in (self.model_version, self._model_refused):
            return
        try:
            verify = self.verifier_factory(self.config, self.paths)
        except Exception as e:  # a damaged or refused model must not stop the one that works
            self._model_refused = version
            log.error("owner model %s does not load; still running %s: %s", version, self.model_version, e)
            return
        self.verify, self.model_version, self._model_refused = verify, version, None
        log.info("owner model %s loaded", version)

    def _adapt(self, step: Step) -> None:
        """Feed the track (config adapt.enabled); keep what it yields for the next `train`."""
        if not self.config.adapt.enabled or step.sample is None:  # off, or paused
            return
        frame = step.frame
        if step.observation is None or frame is None:
            self.track = Track()  # a failed camera or model breaks the track too
            return
        for person, crop in self.track.update(step.observation, step.sample.live, lambda f: vision.align(frame, f)):
            try:
                adapt.store(self.paths, person, crop)
            except (OSError, UserError) as e:
                log.warning("could not keep an adapted face of %s: %s", person, e)

    def _stepped(self) -> None:
        """A step completed (holding `_mutex`): the next one scheduled, the watchdogs fed."""
        self._schedule(self._next_interval())
        self._step_due = time.monotonic() + self._deadline()
        if self._tripped:
            log.info("sampling steps complete again")
            self._tripped = False
        if not self._ready:
            self._ready = True
            self.notifier.send("READY=1")

    def _deadline(self) -> float:
        return max(WATCHDOG_MIN_S, WATCHDOG_INTERVALS * self._interval)

    def _idle(self) -> None:
        """Nothing needs the camera now: let it go (the LED goes off, a video call may have it)."""
        self.camera.release()
        self._released.set()

    def _wants_camera(self) -> bool:
        """Whether steps read the camera now (holding `_mutex`)."""
        if self._asleep or self.presence.state == State.PAUSED:
            return False
        return not self._session_locked or self._watch_while_locked()

    def _watch_while_locked(self) -> bool:
        mode = self.config.sampling.while_locked
        if mode != "auto":
            return mode == "watch"
        # Something must see the owner come back: the unlock action, or whatever runs on owner_arrived.
        return (self.config.unlock_enabled or bool(self.config.actions.get(Event.OWNER_ARRIVED))
                or bool(scripts(self.paths.hooks_dir, Event.OWNER_ARRIVED.value)))

    def _next_interval(self) -> float:
        sampling = self.config.sampling
        if not self._wants_camera():
            return sampling.paused_interval_s  # steps only tick the clock then
        interval = self.presence.interval()
        if self._session_locked and interval >= sampling.interval_s:
            return sampling.locked_interval_s
        return interval

    def _schedule(self, interval: float, now: bool = False) -> None:
        if self._job is None or (interval == self._interval and not now):
            return
        self._interval = interval
        self._job.reschedule("interval", seconds=interval)
        if now:
            self._job.modify(next_run_time=datetime.now(timezone.utc))

    def _kick(self) -> None:
        """Step now (holding `_mutex`), unless a step runs: that one ends by looking again."""
        if self._job is not None and not self._busy:
            self._schedule(self._next_interval(), now=True)

    # -- events -------------------------------------------------------------------------------

    def _dispatch(self, events: list[Event], frame: np.ndarray | None = None, locked_by: str | None = None) -> None:
        """Queue each event for the actions thread (actions, event log, hooks). Called holding `_mutex`."""
        last = self.presence.last
        for event in events:
            context = Context(event, self.clock(), self.presence.state.value, faces=last.faces,
                              score=last.score, frame=frame, person=last.person,
                              locked_by=(locked_by or "facewarden") if event == Event.LOCKED else None,
                              liveness=self._liveness_reason() if event in LIVENESS_EVENTS else None,
                              camera_busy_by=self.camera.busy_by if event == Event.CAMERA_BUSY else None)
            self._actions.submit(partial(self._act, context))

    def _liveness_reason(self) -> str:
        return "off" if self.liveness is None else self.liveness.reason or "-"

    def _act(self, context: Context) -> None:
        """On the actions thread: built-in actions in their configured order, then the event log and
        the hooks (a snapshot's path reaches both)."""
        for action in self.config.actions.get(context.event, []):
            if action == Action.LOCK:
                self._locking()
            if self.actions.run(action, context) and action == Action.LOCK:
                self._lock_succeeded()
        context.frame = None  # the frame is written nowhere else
        self.eventlog.append(context.record())  # never raises: a full disk must not silence the hooks
        log.info("event %s (state %s, faces %d, score %s)%s", context.event.value, context.state, context.faces,
                 "-" if context.score is None else f"{context.score:.3f}",
                 "" if context.liveness is None else f": {context.liveness}")
        env = context.hook_env()
        self._hooks.submit(partial(self.hooks.run, context.event.value, env))

    def _locking(self) -> None:
        """facewarden starts a lock: the session lock that follows is its own (FACEWARDEN_LOCKED_BY)."""
        self._locking_until = time.monotonic() + OWN_LOCK_S

    def _lock_succeeded(self) -> None:
        with self._mutex:
            self._dispatch(self.presence.lock_succeeded(self.clock()), locked_by="facewarden")

    # -- the session (service/session.py; on its bus threads) ---------------------------------

    def _session_lock_changed(self, locked: bool) -> None:
        with self._mutex:
            was, self._session_locked = self._session_locked, locked
            if locked:
                if not self.presence.locked:
                    self.presence.locked = True
                    by = "facewarden" if time.monotonic() < self._locking_until else "session"
                    self._dispatch([Event.LOCKED], locked_by=by)
                log.info("the session is locked%s", "; watching on" if self._wants_camera() else
                         "; the camera is released until it is unlocked")
            elif was:
                log.info("the session is unlocked: sampling from fresh evidence")
                self.presence.locked = False
                self._afresh()
                self._dispatch([Event.UNLOCKED])
            self._kick()

    def _afresh(self) -> None:
        """Drop all evidence (holding `_mutex`): the owner is assumed at the keyboard, frames being read are stale."""
        self._generation += 1
        self.presence.start_afresh(self.clock())
        if self.liveness is not None:
            self.liveness.reset()

    def _sleep_changed(self, sleeping: bool) -> None:
        """PrepareForSleep, on the system bus's dispatcher thread: before sleep, lock (lock.before_sleep)
        and let the camera go, then let go of the delay inhibitor; after, start afresh."""
        if sleeping:
            with self._mutex:
                self._asleep = True
                self._generation += 1
                self._released.clear()
                self._dispatch([Event.SLEEP])
                self._kick()
                lock = self.config.lock.before_sleep and not self._session_locked
            if lock:
                self._locking()
                if self.actions.lock():
                    self._lock_succeeded()
            if not self._released.wait(SLEEP_RELEASE_WAIT_S):
                log.warning("the camera was not let go before sleep (a camera read still runs)")
            self._let_sleep()
        else:
            with self._mutex:
                self._asleep = False
                self._afresh()
                self._dispatch([Event.WAKE])
                self._kick()
            self._hold_sleep()

    def _hold_sleep(self) -> None:
        if self._inhibitor is None:
            self._inhibitor = self.session.logind.inhibit(
                "sleep", "facewarden", "lock the session and release the camera first", "delay")

    def _let_sleep(self) -> None:
        if self._inhibitor is not None:
            os.close(self._inhibitor)
            self._inhibitor = None

    # -- the control socket (control.Controller) ----------------------------------------------

    def status(self) -> dict:
        idle_s = self.session.idle_seconds()  # a bus call: not holding the lock
        with self._mutex:
            p, cam = self.presence, self.camera
            # Busy is the cameras' word, at once (the watcher's thread sets it); lost is presence's.
            in_use = cam.in_use if cam.in_use is not None and not cam.in_use.held_by else None
            busy = None if in_use else cam.busy_by or next((c.busy_by for c in cam.cameras if c.busy_by), None)
            camera = "ok" if in_use else "busy" if busy else "ok" if p.camera_ok else "lost"
            return {
                "state": p.state.value, "since": p.since, "paused_until": p.paused_until,
                # Whoever locked it; the session's own word where it has one.
                "locked": bool(self._session_locked) or p.locked, "session_locked": self._session_locked,
                "locked_via": self.session.locked_via(), "logind": self.session.logind.reachable,
                "camera": camera, "camera_busy_by": busy,
                "camera_in_use": None if in_use is None else str(in_use.source),
                "faces": p.last.faces, "score": p.last.score,
                "person": p.last.person, "model": self.model_version,
                "sampling": self._sampling_word(), "samples": self.samples, "sampled_at": self.sampled_at,
                "idle_s": idle_s, "idle_source": None if self.session.idle is None else self.session.idle.name,
                "liveness": self._liveness_reason(),
            }

    def _sampling_word(self) -> str:
        if self._asleep:
            return "off (asleep)"
        if self.presence.state == State.PAUSED:
            return "off (paused)"
        if self._session_locked:
            return "watching (locked)" if self._wants_camera() else "off (locked)"
        return "on"

    def pause(self, seconds: float | None) -> dict:
        with self._mutex:
            now = self.clock()
            self._dispatch(self.presence.pause(None if seconds is None else now + seconds, now))
            self._kick()  # paused means the camera is free for a video call: the step lets it go
            return {"ok": True, **self.status()}

    def resume(self) -> dict:
        with self._mutex:
            self._dispatch(self.presence.resume(self.clock()))
            self._kick()
            return {"ok": True, **self.status()}

    def lock_now(self) -> dict:
        # On the control connection's thread: the caller waits for the verdict of the lock chain.
        self._locking()
        if not self.actions.lock():
            return {"ok": False, "error": "no lock method worked (see the daemon's log)"}
        self._lock_succeeded()
        return {"ok": True, **self.status()}

    def reload(self) -> dict:
        """Re-read config.toml and switch to the newest published model; a bad file (or a camera or
        model it cannot open) keeps the old config and model."""
        try:
            new = config_module.load(self.paths.config_file)
            with self._mutex:
                # Loading a model holds up steps for a while (TensorFlow for "h5"): not a hang.
                self._step_due = math.inf
                same_camera = new.camera == self.config.camera
                camera = self.camera if same_camera else Cameras(new.camera, lid_closed=self._lid_closed)
                version = ownerfile.current_version(self.paths)
                verify = self.verify
                if new.model != self.config.model or version != self.model_version:
                    verify = self.verifier_factory(new, self.paths)
                liveness = build_liveness(new) if new.liveness != self.config.liveness else self.liveness
                if camera is not self.camera:
                    self._retired.append(self.camera)  # only the sampling step touches a camera
                self.config, self.camera, self.verify, self.liveness = new, camera, verify, liveness
                self.model_version, self._model_refused = version, None
                self.presence.configure(new)
                self.actions = Actions(new, self.paths)
                self.hooks = Runner(self.paths.hooks_dir, new.hooks.timeout_s)
                self.eventlog = EventLog(self.paths.events_file, new.log)
                self._kick()
        except UserError as e:
            log.error("reload refused, the old config stays: %s", e)
            return {"ok": False, "error": f"reload refused, the old config stays: {e}"}
        finally:
            self._step_due = time.monotonic() + self._deadline()
        log.info("config reloaded from %s (owner model %s)", self.paths.config_file, self.model_version)
        self._warn_unlock()
        return {"ok": True, **self.status()}

    # -- life cycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT or the end of a replay; the exit status."""
        self.server.start()
        signal.signal(signal.SIGTERM, lambda *_: self.stop(0))
        signal.signal(signal.SIGINT, lambda *_: self.stop(0))
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=self.reload, daemon=True).start())
        self._start_session()
        with self._mutex:
            self._interval = self._next_interval()
            self._add_job()
        self.scheduler.start()
        log.info("watching %s (state %s)", self.config.camera.source, self.presence.state.value)
        while not self.stopping.wait(WATCH_PERIOD_S):
            self._watchdog()
        self._shutdown()
        return self.exit_code

    def _add_job(self) -> None:
        self._job_number += 1
        self._busy = False
        self._job = self.scheduler.add_job(
            self.step, "interval", args=(self._job_number,), seconds=self._interval, max_instances=1, coalesce=True,
            misfire_grace_time=None, next_run_time=datetime.now(timezone.utc),
        )
        self._step_due = time.monotonic() + self._deadline()

    def _start_session(self) -> None:
        self.session.on_lock.append(self._session_lock_changed)
        self.session.on_sleep.append(self._sleep_changed)
        self.session.start()
        if self.session.idle is None and self.config.camera.when_busy == "idle":
            log.warning('camera.when_busy = "idle" but no idle-input source works here: while another program '
                        'holds the camera, the lock fails closed (as "lock")')
        self._session_locked = self.session.locked()
        self.presence.locked = self.presence.locked or bool(self._session_locked)
        self._hold_sleep()

    def _watchdog(self) -> None:
        """On the main thread: feed systemd while steps complete in time; act once when they stop."""
        late = time.monotonic() - self._step_due
        if late <= 0:
            if self._ready:
                self.notifier.send("WATCHDOG=1")
            return
        if self._tripped:
            return
        self._tripped = True
        log.error("watchdog: no sampling step completed for %.1f s (a camera read or a step hangs): locking "
                  "and restarting the camera", late + self._deadline())
        self._generation += 1  # whatever the hung step returns is stale
        self._abandoned = self._abandoned or self._busy
        try:
            self.camera = Cameras(self.config.camera, lid_closed=self._lid_closed)
        except UserError as e:
            log.error("camera.source: %s", e)
        threading.Thread(target=self._watchdog_lock, name="watchdog-lock", daemon=True).start()
        # The presence machine is only touched holding the lock, which a hung step might hold.
        if self._mutex.acquire(timeout=1.0):
            try:
                self.presence.camera_ok = False  # so that camera_restored fires when steps complete again
            finally:
                self._mutex.release()
        self._actions.submit(partial(self._act, Context(Event.CAMERA_LOST, self.clock(), self.presence.state.value)))
        # A fresh job, on a fresh scheduler thread: the old one is stuck in its step.
        if self._job is not None:
            self._job.remove()
        self._add_job()

    def _watchdog_lock(self) -> None:
        self._locking()
        if self.actions.lock():
            self._lock_succeeded()

    def stop(self, code: int) -> None:
        self.exit_code = code
        self.stopping.set()

    def _shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)
        self.server.stop()
        deadline = time.monotonic() + STEP_DRAIN_S
        while self._busy and time.monotonic() < deadline:  # a running step finishes first
            time.sleep(0.05)
        with self._mutex:
            self.stuck = self._busy or self._abandoned
            if self.stuck:
                log.warning("a camera read still hangs at shutdown: leaving it")
            else:
                self.camera.close()
            self._retired.clear()
        self._let_sleep()
        self.session.close()
        self.notifier.send("STOPPING=1")
        deadline = self.config.hooks.timeout_s + DRAIN_GRACE_S
        start = time.monotonic()
        self._actions.drain(deadline)
        if not self._hooks.drain(max(0.1, deadline - (time.monotonic() - start))):
            dropped = self._hooks.drop()  # before the kill, or the worker would start the next one
            log.warning("hooks still running at shutdown, %.0f s after it began: the running one killed, "
                        "the hooks of %d more queued event(s) dropped", deadline, dropped)
            self.hooks.kill_running()
        log.info("stopped")
