"""The daemon (`facewarden run`): wires camera, verifier, liveness, presence, actions, hooks, the event log and the
control socket, and runs the sampling step on an APScheduler interval job.

Threads: the scheduler's worker runs `Daemon.step` (one at a time); built-in actions run in order on
an "actions" thread and user hooks on a "hooks" thread, so neither a slow lock method nor a hanging
hook ever delays sampling, and a hook never delays a lock. The control socket has its own threads.
Every touch of the presence machine holds `Daemon._lock`.

This module must never import TensorFlow: the verifier's inference runs through runtime.py (LiteRT).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass
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
from .camera import Camera, ReplayEnded
from .control import Server
from .eventlog import EventLog
from .hooks import Runner

log = logging.getLogger("facewarden")

LIVENESS_EVENTS = (Event.OWNER_ARRIVED, Event.SPOOF_SUSPECTED)  # their records say why
DRAIN_GRACE_S = 2.0  # at shutdown, queued hooks get hooks.timeout_s plus this, then are killed
MODEL_CHECK_S = 2.0  # how often the sampling step looks whether `train` published a new model


class Verify(Protocol):
    def __call__(self, frame: np.ndarray, /) -> Observation: ...


class Liveness(Protocol):
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


def sample_once(camera: Camera, verify: Verify, presence: Presence, clock: Callable[[], float],
                liveness: Liveness | None = None) -> Step:
    """The sampling step: read a frame, judge it, feed presence. Raises ReplayEnded at a replay's end.

    `liveness` None means liveness is off: a verified face counts as live.
    """
    now = clock()
    if presence.state == State.PAUSED:
        return Step(presence.tick(now), None, None)
    frame = camera.read()
    observation = None
    if frame is None:
        sample = Sample.camera_failed()
    else:
        observation = verify(frame)
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


def build_liveness(config: Config) -> Liveness | None:
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
        self.camera = Camera(config.camera)
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
        self._interval = 0.0
        self._failing = False
        self._lock = threading.RLock()
        self._actions = Worker("actions")
        self._hooks = Worker("hooks")
        self.stopping = threading.Event()
        self.exit_code = 0
        self._warn_unlock()

    def _warn_unlock(self) -> None:
        if self.config.unlock_enabled:
            log.warning("the unlock action is enabled: a face on camera unlocks this session; "
                        "see the README's security section for what that risks")

    # -- sampling -----------------------------------------------------------------------------

    def step(self) -> None:
        """The scheduler's job: one sample, its events dispatched, the cadence adjusted."""
        with self._lock:
            if self.stopping.is_set():
                return
            self._follow_model()
            try:
                step = sample_once(self.camera, self.verify, self.presence, self.clock, self.liveness)
            except ReplayEnded:
                log.info("replay of %s ended", self.config.camera.source)
                self.stop(0)
                return
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
            self._dispatch(step.events, step.frame)
            self._adapt(step)
            self._schedule(self.presence.interval())

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

    def _schedule(self, interval: float) -> None:
        if self._job is None or interval == self._interval:
            return
        self._interval = interval
        self._job.reschedule("interval", seconds=interval)

    # -- events -------------------------------------------------------------------------------

    def _dispatch(self, events: list[Event], frame: np.ndarray | None = None) -> None:
        """Queue each event for the actions thread (actions, event log, hooks). Called holding `_lock`."""
        last = self.presence.last
        for event in events:
            context = Context(event, self.clock(), self.presence.state.value, faces=last.faces,
                              score=last.score, frame=frame, person=last.person,
                              liveness=self._liveness_reason() if event in LIVENESS_EVENTS else None)
            self._actions.submit(partial(self._act, context))

    def _liveness_reason(self) -> str:
        return "off" if self.liveness is None else self.liveness.reason or "-"

    def _act(self, context: Context) -> None:
        """On the actions thread: built-in actions in their configured order, then the event log and
        the hooks (a snapshot's path reaches both)."""
        for action in self.config.actions.get(context.event, []):
            if self.actions.run(action, context) and action == Action.LOCK:
                self._lock_succeeded()
        context.frame = None  # the frame is written nowhere else
        self.eventlog.append(context.record())  # never raises: a full disk must not silence the hooks
        log.info("event %s (state %s, faces %d, score %s)%s", context.event.value, context.state, context.faces,
                 "-" if context.score is None else f"{context.score:.3f}",
                 "" if context.liveness is None else f": {context.liveness}")
        env = context.hook_env()
        self._hooks.submit(partial(self.hooks.run, context.event.value, env))

    def _lock_succeeded(self) -> None:
        with self._lock:
            self._dispatch(self.presence.lock_succeeded(self.clock()))

    # -- the control socket (control.Controller) ----------------------------------------------

    def status(self) -> dict:
        with self._lock:
            p = self.presence
            return {
                "state": p.state.value, "since": p.since, "paused_until": p.paused_until, "locked": p.locked,
                "camera": "ok" if p.camera_ok else "lost", "faces": p.last.faces, "score": p.last.score,
                "person": p.last.person, "model": self.model_version, "liveness": self._liveness_reason(),
            }

    def pause(self, seconds: float | None) -> dict:
        with self._lock:
            now = self.clock()
            self._dispatch(self.presence.pause(None if seconds is None else now + seconds, now))
            self.camera.release()  # paused means the camera is free for a video call
            self._schedule(self.presence.interval())
            return {"ok": True, **self.status()}

    def resume(self) -> dict:
        with self._lock:
            self._dispatch(self.presence.resume(self.clock()))
            self._schedule(self.presence.interval())
            return {"ok": True, **self.status()}

    def lock_now(self) -> dict:
        # On the control connection's thread: the caller waits for the verdict of the lock chain.
        if not self.actions.lock():
            return {"ok": False, "error": "no lock method worked (see the daemon's log)"}
        self._lock_succeeded()
        return {"ok": True, **self.status()}

    def reload(self) -> dict:
        """Re-read config.toml and switch to the newest published model; a bad file (or a camera or
        model it cannot open) keeps the old config and model."""
        try:
            new = config_module.load(self.paths.config_file)
            with self._lock:
                camera = Camera(new.camera) if new.camera != self.config.camera else self.camera
                version = ownerfile.current_version(self.paths)
                verify = self.verify
                if new.model != self.config.model or version != self.model_version:
                    verify = self.verifier_factory(new, self.paths)
                liveness = build_liveness(new) if new.liveness != self.config.liveness else self.liveness
                if camera is not self.camera:
                    self.camera.release()
                self.config, self.camera, self.verify, self.liveness = new, camera, verify, liveness
                self.model_version, self._model_refused = version, None
                self.presence.configure(new)
                self.actions = Actions(new, self.paths)
                self.hooks = Runner(self.paths.hooks_dir, new.hooks.timeout_s)
                self.eventlog = EventLog(self.paths.events_file, new.log)
                self._schedule(self.presence.interval())
        except UserError as e:
            log.error("reload refused, the old config stays: %s", e)
            return {"ok": False, "error": f"reload refused, the old config stays: {e}"}
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
        self._interval = self.presence.interval()
        self._job = self.scheduler.add_job(
            self.step, "interval", seconds=self._interval, max_instances=1, coalesce=True, misfire_grace_time=None,
        )
        self.scheduler.start()
        log.info("watching %s (state %s)", self.config.camera.source, self.presence.state.value)
        while not self.stopping.wait(1.0):
            pass
        self._shutdown()
        return self.exit_code

    def stop(self, code: int) -> None:
        self.exit_code = code
        self.stopping.set()

    def _shutdown(self) -> None:
        self.scheduler.shutdown(wait=True)  # a running step finishes first
        self.server.stop()
        with self._lock:
            self.camera.release()
        deadline = self.config.hooks.timeout_s + DRAIN_GRACE_S
        start = time.monotonic()
        self._actions.drain(deadline)
        if not self._hooks.drain(max(0.1, deadline - (time.monotonic() - start))):
            dropped = self._hooks.drop()  # before the kill, or the worker would start the next one
            log.warning("hooks still running at shutdown, %.0f s after it began: the running one killed, "
                        "the hooks of %d more queued event(s) dropped", deadline, dropped)
            self.hooks.kill_running()
        log.info("stopped")
