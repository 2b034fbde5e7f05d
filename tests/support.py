"""Small helpers shared by the tests: the CLI as a child process, file modes, a hand-set clock."""

from __future__ import annotations

import stat
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
