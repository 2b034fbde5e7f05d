"""The sampling job's thread: it runs the job when it is due, and the daemon moves that time as the
guard's pace changes.

A thread of its own rather than an APScheduler interval job: at a sample a second, the scheduler's
thread woke, worked out the trigger and handed every sample to its pool, a large share of what the
daemon may spend at the desk (bench/bench_daemon.py, README). The rest of the daemon's periodic
work (the model check) stays with APScheduler.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class Pacer:
    """Runs `job` on its thread whenever it is due: at once on `start`, then `interval` seconds after
    the last run began, unless `pace` moves that. One run at a time: a run never meets the next."""

    def __init__(self, job: Callable[[], None], interval: float):
        self.job = job
        self.interval = interval
        self.due = time.monotonic()  # monotonic seconds: when the job runs next
        self._wake = threading.Condition()
        self._generation = 0  # a thread whose generation is past ends once its run returns
        self._stopped = False

    def start(self) -> None:
        """Start a thread that runs the job, due at once; one started before is left to end once its
        run returns (the watchdog starts a fresh thread while the old one hangs in a camera read)."""
        with self._wake:
            self._generation += 1
            generation = self._generation
            self.due = time.monotonic()
        threading.Thread(target=self._loop, args=(generation,), name="sampling", daemon=True).start()

    def pace(self, interval: float, after_run: bool = False, now: bool = False) -> None:
        """A new `interval` runs the job that long from now; `after_run`: the run that just ended is
        followed by the next one `interval` from now (a slow run never meets the next); `now`: run
        it at once."""
        with self._wake:
            moment, due = time.monotonic(), self.due
            if interval != self.interval or after_run:
                self.interval, self.due = interval, moment + interval
            if now:
                self.due = moment
            if self.due != due:
                self._wake.notify_all()

    def stop(self) -> None:
        """No more runs (one under way finishes)."""
        with self._wake:
            self._stopped = True
            self._wake.notify_all()

    def _loop(self, generation: int) -> None:
        while True:
            with self._wake:
                while True:
                    if self._stopped or generation != self._generation:
                        return
                    wait = self.due - time.monotonic()
                    if wait <= 0:
                        break
                    self._wake.wait(wait)
                self.due = time.monotonic() + self.interval  # unless the run paces it
            self.job()
