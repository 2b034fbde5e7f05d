"""The daemon (`facewarden run`): the composition root. It wires the guard (core/guard.py, the one
holder of the session's state), the sampler, the event fan-out, the control API and the desktop
session, and runs them: signals, the sampling thread, the scheduler, the watchdog, shutdown.

Every input reaches the guard through `Daemon.feed`, holding `mutex`; the events that follow go to
the fan-out, and the sampling pace follows the guard (`Guard.interval`, the one place it is decided).
The sampling job runs on a thread of its own (`Pacer`), due when the pace says, one sample at a
time; a new model is taken when models/current changes (`LinkWatch`), and APScheduler runs the
model check as a backstop (or, where the link cannot be watched, as the way). The watchdog runs on
the main thread, outside the sampling thread it watches.

This module must never import TensorFlow: inference runs through runtime.py (LiteRT).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Callable

import numpy as np
from apscheduler.schedulers.background import BackgroundScheduler

from ..config import Config
from ..core.attention import turning
from ..core.guard import CameraHung, Guard, Input, Reported, Sleep, Wake
from ..core.onlooker import Reach
from ..errors import UserError
from ..events import Event
from ..paths import Paths
from ..recognition import ownerfile, runtime
from .api import Api
from .camera import Cameras, ReplayEnded
from .control import Server
from .fanout import Fanout
from .hooks import scripts
from .pacer import Pacer
from .sampler import LinkWatch, ModelFollower, Observer, Sampler, Verify, Watchdog, build_liveness, build_verifier
from .session import Session
from .surroundings import Surroundings
from .systemd import Notifier

log = logging.getLogger("facewarden")

MODEL_CHECK_S = 5.0  # how often a job looks whether a model was published, where models/current is not watched
MODEL_BACKSTOP_S = 60.0  # and where it is (the watch sees each publication at once)
# The main thread wakes when the watchdog is due (a sample that completes meanwhile moves that on),
# and at least this often: systemd's WATCHDOG=1 goes out in time for WatchdogSec=30.
WATCH_MAX_S = 5.0
SLEEP_RELEASE_WAIT_S = 3.0  # before sleep, how long the camera may take to be let go
SAMPLE_DRAIN_S = 5.0  # at shutdown, how long a running camera read may take


class Daemon:
    def __init__(self, config: Config, where: Paths, clock: Callable[[], float] = time.time,
                 verifier_factory: Callable[[Config, Paths], Verify] = build_verifier, lock: int | None = None):
        """`lock`: the one-daemon lock (control.one_daemon), when `run` took it before loading anything."""
        self.config, self.paths, self.clock = config, where, clock
        self.mutex = threading.RLock()
        self._changed = threading.Condition(self.mutex)
        self.session = Session(config.lock.lockers)
        self.guard = Guard(config, clock(), self.watches_while_locked())
        camera = self.cameras(config)  # a bad camera.source is one line, before a model is loaded
        self.model = ModelFollower(config, where, verifier_factory)
        observer = Observer(self.model.load(), build_liveness(config), self.reach(config), turning(config))
        self.surroundings = Surroundings(config.dim.sysfs)
        self.sampler = Sampler(config, where, self, observer, camera, clock, self.session.idle_seconds,
                               self.surroundings)
        self.fanout = Fanout(config, where, self, clock)
        self.server = Server(where.socket_path, Api(self), lock)
        self.scheduler = BackgroundScheduler(daemon=True)
        self.watchdog = Watchdog()
        self.notifier = Notifier()
        self.stopping = threading.Event()
        self.exit_code = 0
        self.stuck = False  # a camera read still hung at shutdown
        self.pacer: Pacer | None = None  # the sampling thread, from `run` until shutdown
        self.model_watch: LinkWatch | None = None  # from `run` until shutdown, where inotify works
        self._running = threading.Lock()  # held by the sampling job while it runs
        self._inhibitor: int | None = None
        self._ready = False
        self.warn_unlock()

    def cameras(self, config: Config) -> Cameras:
        return Cameras(config.camera, self.clock, lid_closed=self.session.logind.lid_closed)

    @staticmethod
    def reach(config: Config) -> Reach:
        return Reach(config.onlooker.min_relative_size, config.onlooker.max_yaw)

    def watches_while_locked(self) -> bool:
        mode = self.config.sampling.while_locked
        if mode != "auto":
            return mode == "watch"
        # Something must see the owner come back: the unlock action, or whatever runs on owner_arrived.
        return (self.config.unlock_enabled or bool(self.config.actions.get(Event.OWNER_ARRIVED))
                or bool(scripts(self.paths.hooks_dir, Event.OWNER_ARRIVED.value)))

    def warn_unlock(self) -> None:
        if self.config.unlock_enabled:
            log.warning("the unlock action is enabled: a face on camera unlocks this session; "
                        "see the README's security section for what that risks")

    # -- the one way into the guard -----------------------------------------------------------

    def feed(self, what: Input, frame: np.ndarray | None = None, epoch: int | None = None) -> list[Event] | None:
        """Step the guard, dispatch what follows, adjust the pace. With `epoch` (a sample), None when
        the sample went stale while it was taken."""
        with self.mutex:
            guard = self.guard
            if epoch is not None and (epoch != guard.epoch or not guard.wants_camera):
                return None
            wanted = guard.wants_camera
            events = guard.step(what, self.clock())
            self.fanout.dispatch(events, frame)
            self._changed.notify_all()
            self.pace(kick=wanted != guard.wants_camera)
            return events

    def wait_locked(self, timeout: float) -> bool:
        """Whether a lock-state source reports the session locked within `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self.guard.session_locked, timeout)

    def liveness_reason(self) -> str:
        return self.sampler.observer.reason

    def busy_by(self) -> str | None:
        camera = self.sampler.camera
        return camera.busy_by or next((c.busy_by for c in camera.cameras if c.busy_by), None)

    def pace(self, kick: bool = False, after_sample: bool = False) -> None:
        """Follow the guard's pace (holding `mutex`): a new pace is a new trigger. `after_sample`: the
        next sample comes one interval after this one ended, so that a slow sample never meets the
        next one; `kick`: sample now (to let the camera go, or to look again at once after an unlock,
        a wake, a resume)."""
        if self.pacer is None:
            return
        interval = self.watchdog.interval = self.guard.interval()
        # A running sample is followed by one an interval after it ends, at the new pace.
        self.pacer.pace(interval, after_run=after_sample, now=kick and not self._running.locked())

    # -- sampling -----------------------------------------------------------------------------

    def _sample(self) -> None:
        """The sampling job: one sample (its events already dispatched), the watchdogs fed."""
        running = self._running
        # Held by nothing else but shutdown, which keeps it: a sample due as the daemon stops must
        # not wait for it.
        if not running.acquire(blocking=False):
            return
        try:
            self.sampler.take()
        except ReplayEnded:
            log.info("replay of %s ended", self.config.camera.source)
            self.stop(0)
            return
        finally:
            running.release()
        self.watchdog.fed()
        if not self._ready:
            self._ready = True
            self.notifier.send("READY=1")
        with self.mutex:
            self.pace(after_sample=True)

    def _check_model(self) -> None:
        """A model `train` or `model activate` published, loaded then (also while locked or paused:
        it is ready when sampling resumes). From the link's watch, and the scheduler's backstop."""
        watch = self.model_watch
        if watch is not None and not watch.watching:
            watch.watching = watch.rewatch()  # there was no link to watch (it was removed): maybe now
        self.model.check(self.sampler.observer)

    def _start_sampling(self) -> None:
        """A sampling thread, sampling at once (holding `mutex`)."""
        self.watchdog.interval = self.guard.interval()
        if self.pacer is None:
            self.pacer = Pacer(self._sample, self.watchdog.interval)
        self.pacer.start()
        self.watchdog.fed()

    def _watch(self) -> None:
        """On the main thread: feed systemd while samples complete in time; act once when they stop."""
        watchdog = self.watchdog
        late = watchdog.late()
        if late <= 0:
            if self._ready:
                self.notifier.send("WATCHDOG=1")
            return
        if watchdog.tripped:
            return
        watchdog.tripped = True
        log.error("watchdog: no sampling step completed for %.1f s (a camera read or a step hangs): locking "
                  "and restarting the camera", late + watchdog.deadline)
        watchdog.abandoned = watchdog.abandoned or self._running.locked()
        self.feed(CameraHung())  # camera_lost; whatever the hung sample returns is stale
        self.fanout.lock_async()
        try:
            camera = self.cameras(self.config)
        except UserError as e:
            log.error("camera.source: %s", e)
        else:
            self.sampler.camera = camera  # the hung one is left to its read
        # A fresh sampling thread: the old one is stuck in its sample.
        with self.mutex:
            if self.pacer is not None:
                self._running = threading.Lock()
                self._start_sampling()

    # -- the session (on its bus threads) -----------------------------------------------------

    def _reported(self, source: str, locked: bool | None) -> None:
        events = self.feed(Reported(source, locked)) or []
        if Event.LOCKED in events:
            log.info("the session is locked (%s)%s", source, "; watching on" if self.guard.wants_camera
                     else "; the camera is released until it is unlocked")
        elif Event.UNLOCKED in events:
            log.info("the session is unlocked (%s): sampling from fresh evidence", source)

    def _sleep_changed(self, sleeping: bool) -> None:
        """PrepareForSleep: before sleep, lock (lock.before_sleep) and let the camera go, then let go
        of the delay inhibitor; after, start afresh."""
        if not sleeping:
            self.feed(Wake())
            self._hold_sleep()
            return
        with self.mutex:
            lock = self.config.lock.before_sleep and not self.guard.locked
        self.feed(Sleep())
        if lock:
            self.fanout.lock()
        if not self.sampler.released.wait(SLEEP_RELEASE_WAIT_S):
            log.warning("the camera was not let go before sleep (a camera read still runs)")
        self._let_sleep()

    def _hold_sleep(self) -> None:
        if self._inhibitor is None:
            self._inhibitor = self.session.logind.inhibit(
                "sleep", "facewarden", "lock the session and release the camera first", "delay")

    def _let_sleep(self) -> None:
        if self._inhibitor is not None:
            os.close(self._inhibitor)
            self._inhibitor = None

    # -- life cycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT or the end of a replay; the exit status."""
        self.server.start()
        signal.signal(signal.SIGTERM, lambda *_: self.stop(0))
        signal.signal(signal.SIGINT, lambda *_: self.stop(0))
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=self.server.controller.reload,
                                                                   daemon=True).start())
        self.session.on_sleep.append(self._sleep_changed)
        self.session.start(self._reported)
        if self.session.idle is None and self.config.camera.when_busy == "idle":
            log.warning('camera.when_busy = "idle" but no idle-input source works here: while another program '
                        'holds the camera, the lock fails closed (as "lock")')
        self._hold_sleep()
        self.surroundings.start(self.session.logind.bus, self.session.session_bus, lambda: self.guard.wants_camera)
        self.fanout.actions.dimmer.restore()  # a dim that a daemon before this one left behind
        runtime.release_file_pages(uncache=True)  # start-up is over: its pages go, the libraries' in small folios
        with self.mutex:
            self._start_sampling()
        try:
            self.model_watch = LinkWatch(self.paths.models_dir / ownerfile.CURRENT, self._check_model)
        except OSError as e:
            log.info("cannot watch the owner model's link (%s): looking for a new model every %g s", e, MODEL_CHECK_S)
        watched = self.model_watch is not None and self.model_watch.watching
        self.scheduler.add_job(self._check_model, "interval", seconds=MODEL_BACKSTOP_S if watched else MODEL_CHECK_S,
                               max_instances=1, coalesce=True)
        self.scheduler.start()
        log.info("watching %s (state %s)", self.config.camera.source, self.guard.presence.state.value)
        while not self.stopping.wait(min(WATCH_MAX_S, self.watchdog.until_due())):
            self._watch()
        self._shutdown()
        return self.exit_code

    def stop(self, code: int) -> None:
        self.exit_code = code
        self.stopping.set()

    def _shutdown(self) -> None:
        with self.mutex:
            if self.pacer is not None:
                self.pacer.stop()
            self.pacer = None  # a sample still running must not pace a thread that is gone
        self.scheduler.shutdown(wait=False)
        if self.model_watch is not None:
            self.model_watch.close()
        self.server.stop()
        finished = self._running.acquire(timeout=SAMPLE_DRAIN_S)  # a running sample finishes first
        self.stuck = not finished or self.watchdog.abandoned
        if self.stuck:
            log.warning("a camera read still hangs at shutdown: leaving it")
        else:
            self.sampler.camera.close()
        self._let_sleep()
        self.session.close()
        self.notifier.send("STOPPING=1")
        self.fanout.shutdown()
        self.fanout.actions.dimmer.restore()  # leave the screen as bright as it was found
        self.surroundings.close()
        log.info("stopped")
