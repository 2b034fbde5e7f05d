"""Small helpers shared by the tests: the CLI as a child process, file modes, a hand-set clock, hooks
that record, stopping a daemon."""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

# The real command, as systemd or a user would start it, in a child process.
PYTHON = [sys.executable, "-m", "facewarden"]


def cli(home: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """`facewarden ARGS` as a child process, as a user would run it, with FACEWARDEN_HOME=home."""
    env = {**os.environ, "FACEWARDEN_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3", **kwargs.pop("env", {})}
    return subprocess.run(PYTHON + list(args), env=env, capture_output=True, text=True, timeout=300, **kwargs)


def wait_for(check, what: str, timeout: float = 60.0, every: float = 0.05):
    """Poll `check()` until it is true (its value) or `timeout` seconds pass (an AssertionError)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return result


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def mode(path: Path) -> int:
    """The permission bits of `path` itself (a link's own, not its target's)."""
    return stat.S_IMODE(os.lstat(path).st_mode)


class Clock:
    """A clock the test moves by hand (`clock.t += 0.25`); camera replays and presence both read it."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def as_nobody(client) -> str:
    """Run `client()` in a forked child running as `nobody`; what it returned (or its OSError)."""
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, run the client, report
        try:
            os.close(read_end)
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                out = client()
            except OSError as e:
                out = f"OSError: {e}"
            os.write(write_end, out.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def recording_hooks(home: Path, events, fields: str, hook_log: Path, lock_log: Path) -> Path:
    """Hooks for `events` that each append "$FACEWARDEN_EVENT <fields> <time>" to `hook_log`, and a
    lock command (returned) that appends its time to `lock_log`."""
    hooks = home / "hooks"
    hooks.mkdir(exist_ok=True)
    for event in events:
        (hooks / event).write_text(f'#!/bin/sh\necho "$FACEWARDEN_EVENT {fields} $(date +%s.%N)" >> "{hook_log}"\n')
        (hooks / event).chmod(0o755)
    lock = lock_log.parent / "lock"
    lock.write_text(f'#!/bin/sh\ndate +%s.%N >> "{lock_log}"\n')
    lock.chmod(0o755)
    return lock


def terminate(proc, wait_s: float = 30.0) -> None:
    """Stop a daemon as systemd would: SIGTERM, then SIGKILL if it is still there after `wait_s`."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Run:
    """The guard (core/guard.py) on a hand-set clock: `feed` plays one sample (or a function of the
    seconds fed so far) at a fixed step, `step` feeds any other input; both collect the events."""

    def __init__(self, cfg=None, t0: float = 1000.0, watch_while_locked: bool = False, every: float = 0.25):
        from facewarden.config import Config
        from facewarden.core.guard import Guard

        self.now, self.every = t0, every
        self.guard = Guard(cfg or Config(), t0, watch_while_locked)
        self.events: list = []  # (time, Event)

    @property
    def machine(self):
        """The owner decision inside the guard (core/presence.py)."""
        return self.guard.presence

    def step(self, what) -> list:
        fired = self.guard.step(what, self.now)
        self.events += [(self.now, e) for e in fired]
        return fired

    def feed(self, sample, seconds: float = 1.0, step: float | None = None) -> list:
        from facewarden.core.guard import Sampled

        fired, start, step = [], self.now, step or self.every
        for _ in range(round(seconds / step)):
            self.now += step
            fired += self.step(Sampled(sample(self.now - start) if callable(sample) else sample))
        return fired

    def names(self) -> list:
        return [e for _, e in self.events]
