"""The event fan-out: each event the guard returns goes, in order, to its built-in actions, the event
log and the user's hooks.

Built-in actions run on an "actions" thread and hooks on a "hooks" thread, so that neither a slow lock
method nor a hanging hook ever delays sampling, and a hook never delays a lock. The lock sequence is
written once, here (`lock`): the daemon's lock action, `facewarden lock`, the lock before sleep and
the watchdog's lock all run it, and its outcome goes back to the guard as an input.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from functools import partial
from typing import Callable, Protocol

import numpy as np

from ..config import Config
from ..core.guard import Guard, Input, LockDone, LockStarted
from ..events import Event
from ..paths import Paths
from .actions import Actions, Context
from .eventlog import EventLog
from .hooks import Runner
from .lock import backends, lock_chain

log = logging.getLogger("facewarden")

LIVENESS_EVENTS = (Event.OWNER_ARRIVED, Event.SPOOF_SUSPECTED)  # their records say why
DRAIN_GRACE_S = 2.0  # at shutdown, queued hooks get hooks.timeout_s plus this, then are killed


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


class Core(Protocol):
    """What the fan-out needs of the daemon: its one input, and waiting on the guard."""

    guard: Guard

    def feed(self, what: Input, frame: np.ndarray | None = None, epoch: int | None = None) -> list[Event] | None: ...
    def wait_locked(self, timeout: float) -> bool: ...
    def liveness_reason(self) -> str: ...
    def busy_by(self) -> str | None: ...


class Fanout:
    def __init__(self, config: Config, where: Paths, core: Core, clock: Callable[[], float]):
        self.core, self.paths, self.clock = core, where, clock
        self._actions = Worker("actions")
        self._hooks = Worker("hooks")
        self.configure(config)

    def configure(self, config: Config) -> None:
        self.config = config
        self.actions = Actions(config, self.paths, self.lock)
        self.hooks = Runner(self.paths.hooks_dir, config.hooks.timeout_s)
        self.eventlog = EventLog(self.paths.events_file, config.log)
        self.lock_backends = backends(config.lock)

    def dispatch(self, events: list[Event], frame: np.ndarray | None = None) -> None:
        """Queue each event for the actions thread. Called holding the daemon's lock, right after
        the guard's step, so that each context shows the state that event left."""
        guard = self.core.guard
        last = guard.presence.last
        if frame is not None and events:  # the camera reads the next frame into this one's buffer
            frame = frame.copy()
        for event in events:
            context = Context(event, self.clock(), guard.presence.state.value, faces=last.faces,
                              score=last.score, frame=frame, person=last.person,
                              locked_by=guard.locked_by if event == Event.LOCKED else None,
                              liveness=self.core.liveness_reason() if event in LIVENESS_EVENTS else None,
                              camera_busy_by=self.core.busy_by() if event == Event.CAMERA_BUSY else None)
            self._actions.submit(partial(self._act, context))

    def _act(self, context: Context) -> None:
        """On the actions thread: built-in actions in their configured order, then the event log and
        the hooks (a snapshot's path reaches both)."""
        for action in self.config.actions.get(context.event, []):
            self.actions.run(action, context)
        context.frame = None  # the frame is written nowhere else
        self.eventlog.append(context.record())  # never raises: a full disk must not silence the hooks
        log.info("event %s (state %s, faces %d, score %s)%s", context.event.value, context.state, context.faces,
                 "-" if context.score is None else f"{context.score:.3f}",
                 "" if context.liveness is None else f": {context.liveness}")
        self._hooks.submit(partial(self.hooks.run, context.event.value, context.hook_env()))

    def lock(self) -> bool:
        """The lock sequence, on the caller's thread: tell the guard, run the chain, tell the guard
        how it ended. Whether the session is locked now."""
        self.core.feed(LockStarted())
        outcome = lock_chain(self.lock_backends, self.core.wait_locked, lambda: bool(self.core.guard.sources))
        self.core.feed(LockDone(*outcome) if outcome else LockDone(None))
        return outcome is not None

    def lock_async(self) -> None:
        """The lock sequence on the actions thread (the watchdog's: the caller must not wait)."""
        self._actions.submit(self.lock)

    def shutdown(self) -> None:
        deadline = self.config.hooks.timeout_s + DRAIN_GRACE_S
        start = time.monotonic()
        self._actions.drain(deadline)
        # One deadline for both: the hooks get what the actions left of it.
        if not self._hooks.drain(max(0.1, deadline - (time.monotonic() - start))):
            dropped = self._hooks.drop()  # before the kill, or the worker would start the next one
            log.warning("hooks still running at shutdown, %.0f s after it began: the running one killed, "
                        "the hooks of %d more queued event(s) dropped", deadline, dropped)
            self.hooks.kill_running()
