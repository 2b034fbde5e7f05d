"""The user's event scripts: hooks/<event>, then hooks/<event>.d/* in name order.

Each runs as a plain argv (no shell) with the event in its environment, in a session of its own so
that a timeout kills everything it started. A failing or hanging hook is logged and never stops the
daemon; the caller runs hooks off the sampling thread.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KILL_GRACE_S = 1.0  # between SIGTERM and SIGKILL of a timed-out hook's process group


def scripts(hooks_dir: Path, event: str) -> list[Path]:
    """The executable hooks for `event`, in the order they run. Hidden files (editor swap files) are not hooks."""
    candidates = [hooks_dir / event]
    folder = hooks_dir / f"{event}.d"
    if folder.is_dir():
        candidates += sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    return [p for p in candidates if p.is_file() and os.access(p, os.X_OK)]


@dataclass(frozen=True)
class Result:
    script: Path
    returncode: int | None  # None: it did not finish (timed out) or did not start
    timed_out: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Runner:
    def __init__(self, hooks_dir: Path, timeout_s: float):
        self.hooks_dir = hooks_dir
        self.timeout_s = timeout_s
        self._running: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def run(self, event: str, env: dict[str, str]) -> list[Result]:
        return [self._run_one(script, env) for script in scripts(self.hooks_dir, event)]

    def _run_one(self, script: Path, env: dict[str, str]) -> Result:
        try:
            proc = subprocess.Popen(
                [str(script)], env={**os.environ, **env}, cwd=self.hooks_dir,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError as e:  # no shebang, a bad interpreter, a file removed meanwhile
            log.warning("hook %s did not start: %s", script, e)
            return Result(script, None, error=str(e))
        with self._lock:
            self._running = proc
        try:
            code = proc.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("hook %s still running after %.0f s: killed with its process group", script, self.timeout_s)
            self._kill(proc)
            return Result(script, None, timed_out=True)
        finally:
            with self._lock:
                self._running = None
        if code != 0:
            log.warning("hook %s failed with exit status %d", script, code)
        return Result(script, code)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        # start_new_session made the hook the leader of its own process group, id = its pid.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
            # Even when the leader obeyed, what it started may linger in the group.
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def kill_running(self) -> None:
        """At shutdown, past the drain deadline: end the hook still running, with its group."""
        with self._lock:
            proc = self._running
        if proc is not None and proc.poll() is None:
            self._kill(proc)
