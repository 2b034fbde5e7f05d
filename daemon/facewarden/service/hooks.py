"""The user's event scripts: hooks/<event>, then hooks/<event>.d/* in name order.

Each runs as a plain argv (no shell) with the event in its environment, under a subreaper of its
own (reaper.py): when it ends, times out, or the daemon stops (or dies), everything it started is
ended, even what left its process group and session (a double fork and setsid), so nothing it
started in the background outlives it (a hook that must, starts it with `systemd-run --user`). A
hook another user owns or can write is skipped with a log line (paths.untrusted). Its
output (stdout and stderr) is read to the end but only a bounded tail is kept, for the log line: a
hook running `yes` must fill neither the journal nor memory. A failing or hanging hook is logged
and never stops the daemon; the caller runs hooks off the sampling thread.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ..paths import untrusted
from .reaper import STARTED

log = logging.getLogger(__name__)

KILL_GRACE_S = 1.0  # between SIGTERM and SIGKILL of what a hook started
REAPER_SLACK_S = 2.0  # beyond the grace, for the subreaper's own end
REAPER = Path(__file__).with_name("reaper.py")
TAIL_BYTES = 2048  # of a hook's output, kept for its log line
OUTPUT = "; output: "  # in a hook's log line, before the tail of what it printed


def sorted_out(hooks_dir: Path, event: str) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The executable hooks for `event` in the order they run, and those refused with why: a hook
    (or the script a link of it points to, or a directory above it) that another user owns or can
    write would run their code as the user. Hidden files (editor swap files) are not hooks."""
    candidates = [hooks_dir / event]
    folder = hooks_dir / f"{event}.d"
    if folder.is_dir():
        candidates += sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    found = [p for p in candidates if p.is_file() and os.access(p, os.X_OK)]
    why = {p: untrusted(p, hooks_dir.parent) for p in found}
    return [p for p in found if why[p] is None], [(p, w) for p, w in why.items() if w is not None]


def scripts(hooks_dir: Path, event: str) -> list[Path]:
    """The hooks that run for `event`, in order."""
    return sorted_out(hooks_dir, event)[0]


def refused(hooks_dir: Path, events: list[str]) -> list[tuple[Path, str]]:
    """Every hook of `events` that is not run, with why (for doctor)."""
    return [r for event in events for r in sorted_out(hooks_dir, event)[1]]


@dataclass(frozen=True)
class Result:
    script: Path
    returncode: int | None  # None: it did not finish (timed out) or did not start
    timed_out: bool = False
    error: str | None = None
    output: str = ""  # the tail of what it printed

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Tail:
    """Reads a stream to its end on a thread of its own, keeping only the last TAIL_BYTES."""

    def __init__(self, stream):
        self.total = 0
        self._kept = bytearray()
        self._thread = threading.Thread(target=self._read, args=(stream,), name="hook-output", daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        with stream:
            while chunk := os.read(stream.fileno(), 1 << 16):
                self.total += len(chunk)
                self._kept += chunk
                del self._kept[:-TAIL_BYTES]

    def text(self, wait_s: float = KILL_GRACE_S) -> str:
        """The tail, once the stream ended (or after `wait_s`: a descendant the subreaper could not
        end, being another user's by now, may hold it open), as one line."""
        self._thread.join(wait_s)
        text = bytes(self._kept).decode("utf-8", "replace").strip().replace("\n", " | ")[-TAIL_BYTES:]
        return text if self.total <= TAIL_BYTES else f"[{self.total - TAIL_BYTES} bytes dropped] ...{text}"


class Runner:
    def __init__(self, hooks_dir: Path, timeout_s: float):
        self.hooks_dir = hooks_dir
        self.timeout_s = timeout_s
        self._running: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def run(self, event: str, env: dict[str, str]) -> list[Result]:
        runs, skipped = sorted_out(self.hooks_dir, event)
        for script, why in skipped:
            log.warning("hook %s skipped: %s", script, why)
        return [self._run_one(script, env) for script in runs]

    def _run_one(self, script: Path, env: dict[str, str]) -> Result:
        # The hook runs under its subreaper (reaper.py), whose stdin is our lifeline to it: its
        # other end is ours alone, so the reaper sees it close when we are gone, however we end.
        lifeline, ours = os.pipe()
        report_r, report_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(REAPER), str(KILL_GRACE_S), str(report_w), str(script)],
                env={**os.environ, **env}, cwd=self.hooks_dir, stdin=lifeline, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(report_w,),
            )
        finally:
            os.close(lifeline)
            os.close(report_w)
        with os.fdopen(report_r, "rb") as report:
            said = report.readline()
        output = Tail(proc.stdout)
        if said != STARTED:  # no shebang, a bad interpreter, a file removed meanwhile
            error = said.decode("utf-8", "replace").strip() or f"its subreaper exited with {proc.wait()}"
            proc.wait()
            os.close(ours)
            output.text()
            log.warning("hook %s did not start: %s", script, error)
            return Result(script, None, error=error)
        with self._lock:
            self._running = proc
        try:
            code = proc.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            self._kill(proc)  # the hook's descendants too, whether it ended or not
            os.close(ours)
            with self._lock:
                self._running = None
        tail = output.text()
        said_tail = f"{OUTPUT}{tail}" if tail else ""
        if code is None:
            log.warning("hook %s still running after %.0f s: killed with everything it started%s",
                        script, self.timeout_s, said_tail)
            return Result(script, None, timed_out=True, output=tail)
        if code != 0:
            log.warning("hook %s failed with exit status %d%s", script, code, said_tail)
        elif tail:
            log.info("hook %s%s", script, said_tail)
        return Result(script, code, output=tail)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        """Have the subreaper end the hook and all it started (SIGTERM, then SIGKILL after a grace);
        should the subreaper itself not end in time, its process group goes."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=KILL_GRACE_S + REAPER_SLACK_S)
                return
            except subprocess.TimeoutExpired:
                pass
        try:
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
