"""Small helpers shared by the tests: the CLI as a child process, file modes, a hand-set clock, hooks
that record, stopping a daemon."""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import sys
from pathlib import Path

# The real command, as systemd or a user would start it, in a child process.
PYTHON = [sys.executable, "-m", "facewarden"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


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
