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
from ..core.observation import Observation
from ..core.presence import Presence, Sample, State
from ..errors import UserError
from ..events import Action, Event
from ..paths import Paths
from .actions import Actions, Context
from .camera import Camera, Cameras, ReplayEnded
from .control import Server
from .eventlog import EventLog
from .hooks import Runner
from .desk import Desk

log = logging.getLogger("facewarden")

DRAIN_GRACE_S = 2.0  # at shutdown, queued hooks get hooks.timeout_s plus this, then are killed


class Verify(Protocol):
    def __call__(self, frame: np.ndarray, /) -> Observation: ...


class Liveness(Protocol):
    def update(self, frame: np.ndarray, face, now: float) -> bool | None: ...
    def reset(self) -> None: ...


@dataclass(frozen=True)
class Step:
    events: list[Event]
    frame: np.ndarray | None  # what the camera gave (None: paused or failed)
    sample: Sample | None  # None while paused (the camera is not read then)


IdleSeconds = Callable[[], "float | None"]


def sample_once(camera: Camera | Cameras, verify: Verify, presence: Presence, clock: Callable[[], float],
                liveness: Liveness | None = None, idle: IdleSeconds = lambda: None) -> Step:
    """The sampling step: read a frame, judge it, feed presence. Raises ReplayEnded at a replay's end.

    `liveness` None means liveness is off: a verified face counts as live. `idle`: seconds since the
    session's last input (None: unknown), asked only while the camera is busy.
    """
    now = clock()
    if presence.state == State.PAUSED:
        return Step(presence.tick(now), None, None)
    frame = camera.read()
    if frame is None:
        sample = Sample.camera_busy(idle()) if camera.busy_by else Sample.camera_failed()
    else:
        observation = verify(frame)
        owner = observation.owner_face
        live = None
        if owner is not None:
            live = True if liveness is None else liveness.update(frame, owner.face, now)
        sample = Sample.of(observation, live)
    events = presence.observe(sample, now)
    if liveness is not None and not presence.owner_in_window:
        liveness.reset()  # the face was lost: whoever comes next proves life afresh
    return Step(events, frame, sample)


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
        # Idle input and the lid, for a busy camera (camera.when_busy): connected by `run`.
        self.desk = Desk(None, None)
        self.camera = Cameras(config.camera, lid_closed=self._lid_closed)
        self.verify = verifier_factory(config, where)
        self.liveness = build_liveness(config)
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

    def _lid_closed(self) -> bool | None:
        return self.desk.lid_closed()

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
            try:
                step = sample_once(self.camera, self.verify, self.presence, self.clock, self.liveness,
                                   self.desk.idle_seconds)
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
            self._schedule(self.presence.interval())

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
                              score=last.score, frame=frame)
            self._actions.submit(partial(self._act, context))

    def _act(self, context: Context) -> None:
        """On the actions thread: built-in actions in their configured order, then the event log and
        the hooks (a snapshot's path reaches both)."""
        for action in self.config.actions.get(context.event, []):
            if self.actions.run(action, context) and action == Action.LOCK:
                self._lock_succeeded()
        context.frame = None  # the frame is written nowhere else
        self.eventlog.append(context.record())
        log.info("event %s (state %s, faces %d, score %s)", context.event.value, context.state, context.faces,
                 "-" if context.score is None else f"{context.score:.3f}")
        env = context.hook_env()
        self._hooks.submit(partial(self.hooks.run, context.event.value, env))

    def _lock_succeeded(self) -> None:
        with self._lock:
            self._dispatch(self.presence.lock_succeeded(self.clock()))

    # -- the control socket (control.Controller) ----------------------------------------------

    def status(self) -> dict:
        with self._lock:
            p, cam = self.presence, self.camera
            # Busy is the cameras' word, at once (the watcher's thread sets it); lost is presence's.
            in_use = cam.in_use if cam.in_use is not None and not cam.in_use.held_by else None
            busy = None if in_use else cam.busy_by or next((c.busy_by for c in cam.cameras if c.busy_by), None)
            camera = "ok" if in_use else "busy" if busy else "ok" if p.camera_ok else "lost"
            return {
                "state": p.state.value, "since": p.since, "paused_until": p.paused_until, "locked": p.locked,
                "camera": camera, "camera_busy_by": busy,
                "camera_in_use": None if in_use is None else str(in_use.source),
                "faces": p.last.faces, "score": p.last.score,
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
        """Re-read config.toml; a bad file (or a camera/model it cannot open) keeps the old config."""
        try:
            new = config_module.load(self.paths.config_file)
            with self._lock:
                same_camera = new.camera == self.config.camera
                camera = self.camera if same_camera else Cameras(new.camera, lid_closed=self._lid_closed)
                verify = self.verifier_factory(new, self.paths) if new.model != self.config.model else self.verify
                liveness = build_liveness(new) if new.liveness != self.config.liveness else self.liveness
                if camera is not self.camera:
                    self.camera.close()
                self.config, self.camera, self.verify, self.liveness = new, camera, verify, liveness
                self.presence.configure(new)
                self.actions = Actions(new, self.paths)
                self.hooks = Runner(self.paths.hooks_dir, new.hooks.timeout_s)
                self.eventlog = EventLog(self.paths.events_file, new.log)
                self._schedule(self.presence.interval())
        except UserError as e:
            log.error("reload refused, the old config stays: %s", e)
            return {"ok": False, "error": f"reload refused, the old config stays: {e}"}
        log.info("config reloaded from %s", self.paths.config_file)
        self._warn_unlock()
        return {"ok": True, **self.status()}

    # -- life cycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT or the end of a replay; the exit status."""
        self.server.start()
        self.desk = Desk.connect(self.config.camera.when_busy)
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
            self.camera.close()
        self.desk.close()
        deadline = self.config.hooks.timeout_s + DRAIN_GRACE_S
        start = time.monotonic()
        self._actions.drain(deadline)
        if not self._hooks.drain(max(0.1, deadline - (time.monotonic() - start))):
            log.warning("hooks still running at shutdown: killed")
            self.hooks.kill_running()
        log.info("stopped")
