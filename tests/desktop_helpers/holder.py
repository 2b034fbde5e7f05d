"""Another program holding a camera source: a child process that opens a path and keeps it open,
as a video-call app holds /dev/video0."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# Prints the monotonic time (system-wide, comparable across processes) just before its open, then
# holds the fd until stdin closes or it is killed; with a second argument, closes after that long.
HOLD = """
import os, sys, time
with open("/proc/self/comm", "w") as comm:
    comm.write("holder")  # the name status and doctor must report
print(time.monotonic(), flush=True)
fd = os.open(sys.argv[1], os.O_RDONLY)
if len(sys.argv) > 2:
    time.sleep(float(sys.argv[2]))
    os.close(fd)
    print("closed", time.monotonic(), flush=True)
sys.stdin.read()
"""


@contextmanager
def holding(path: Path, for_s: float | None = None) -> Iterator[tuple[subprocess.Popen, float]]:
    """A process named `holder` holding `path` (for `for_s` seconds, else until the block ends);
    yields it and the monotonic time of its open."""
    argv = [sys.executable, "-c", HOLD, str(path)]
    if for_s is not None:
        argv.append(str(for_s))
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        opened_at = float(proc.stdout.readline())
        yield proc, opened_at
    finally:
        proc.kill()
        proc.wait()
