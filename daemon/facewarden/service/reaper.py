"""The subreaper of one hook: whatever the hook starts stays a descendant of this process, however it
detaches (a double fork into a session of its own reparents to the nearest subreaper, this one,
not to init), and all of it ends when the hook ends, when the daemon asks (a timeout, shutdown),
or when the daemon is gone (its end of our stdin closes, even after a SIGKILL).

Why a process of its own and not the daemon itself as the subreaper: the daemon also starts lock
commands that daemonize on purpose (`swaylock -f`); adopting those, it would have to tell them
from a hook's and reap them behind subprocess's back. Here every descendant is the hook's.

service/hooks.py runs this file as a script (`python -I -S reaper.py GRACE REPORT_FD SCRIPT`), so it
uses the standard library only: the package need not even be on the path.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
STARTED = b"started\n"  # on REPORT_FD once the hook runs; otherwise why it did not start


class Stop(Exception):
    """SIGTERM: the daemon ends the hook (a timeout, shutdown)."""


def _stop(signum, frame) -> None:
    raise Stop


def descendants() -> list[int]:
    """Every process below this one, zombies included, from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])  # the name may hold spaces and ")"
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _reap() -> None:
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def end_all(grace_s: float) -> None:
    """SIGTERM to every descendant, SIGKILL after `grace_s` to what is left, until none is left
    (one that forks meanwhile leaves its child to us: it is found on the next round)."""
    _signal_all(descendants(), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while (left := descendants()) and time.monotonic() < deadline:
        _reap()
        time.sleep(0.02)
    while left:
        _signal_all(left, signal.SIGKILL)
        _reap()
        time.sleep(0.01)
        left = descendants()


def main(argv: list[str]) -> int:
    grace_s, report, script = float(argv[1]), int(argv[2]), argv[3]
    signal.signal(signal.SIGTERM, _stop)
    with os.fdopen(report, "wb") as said:
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            said.write(f"cannot become a subreaper: {os.strerror(ctypes.get_errno())}\n".encode())
            return 127
        try:
            hook = subprocess.Popen([script], stdin=subprocess.DEVNULL)
        except OSError as e:  # no shebang, a bad interpreter, a file removed meanwhile
            said.write(f"{e}\n".encode())
            return 127
        said.write(STARTED)
    code = 128 + signal.SIGTERM
    try:
        ended = os.pidfd_open(hook.pid)
        while True:
            ready, _, _ = select.select([sys.stdin.fileno(), ended], [], [])
            if ended in ready:
                code = hook.wait()
                code = 128 - code if code < 0 else code
                break
            if not os.read(sys.stdin.fileno(), 1):
                break  # the daemon is gone
    except Stop:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # from here on, nothing stops the ending
    end_all(grace_s)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
