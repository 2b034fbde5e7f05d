"""Screen lockers that tell nobody: a running locker process of this user (swaylock, hyprlock,
waylock, gtklock, i3lock, and `lock.lockers`) counts as the session locked, from its start to its
exit, whoever started it (swayidle or xss-lock on logind's `Lock`, the user's key binding) and
whether or not it sets logind's LockedHint.

No polling of /proc. The start: exec opens the program's file, and inotify reports that open
(IN_OPEN) on the installed binaries; only then is /proc scanned, for this user's processes running
one (again a moment later: the event can arrive before exec has replaced the old image). The
exit: a pidfd per locker process, readable once it ends (then /proc is scanned once more, for a
locker that forked to the background, as `swaylock -f` does). One scan at start finds a locker
already running. The price: a locker run from a path we do not watch (a copy in a home directory
outside PATH) goes unseen until it is listed by absolute path in `lock.lockers`.

A lock-state source: `start(on_change)`, `locked()`, `available()`, `close()`.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import threading
from typing import Callable, Iterable

from .holders import IN_ATTRIB, IN_DELETE_SELF, IN_IGNORED, IN_MOVE_SELF, IN_OPEN, Inotify

log = logging.getLogger(__name__)

DEFAULT = ("swaylock", "hyprlock", "waylock", "gtklock", "i3lock")
# Where lockers are installed besides PATH (a systemd user service's PATH is short).
DIRS = ("/usr/local/bin", "/usr/bin", "/bin")
# The file was replaced (a package upgrade): watch the new one at the same path.
REPLACED = IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED
# After an open, look for the new locker at these delays (exec finishes a moment after the open).
SETTLE_S = (0.0, 0.005, 0.02, 0.1, 0.5)
COMM_LEN = 15  # /proc/PID/comm holds the first 15 bytes of the program's name


def programs(names: Iterable[str]) -> dict[str, str]:
    """Installed locker binaries: real path -> the name it was configured as."""
    found: dict[str, str] = {}
    for name in names:
        if "/" in name:
            candidates = [name]
        else:
            candidates = [shutil.which(name) or "", *(os.path.join(d, name) for d in DIRS)]
        for path in candidates:
            if path and os.path.isfile(path) and os.access(path, os.X_OK):
                found.setdefault(os.path.realpath(path), os.path.basename(name))
    return found


class Lockers:
    name = "locker"

    def __init__(self, names: Iterable[str], proc: str = "/proc"):
        self.names = list(dict.fromkeys(names))  # DEFAULT and lock.lockers, for the daemon
        self.proc = proc
        self.uid = os.getuid()
        self.running: dict[int, str] = {}  # pid -> locker name
        self._pidfds: dict[int, int] = {}  # pidfd -> pid
        self._watches: dict[int, str] = {}  # inotify watch -> binary path
        self._inotify: Inotify | None = None
        self._on_change: Callable[[bool], None] = lambda locked: None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None

    def available(self) -> str | None:
        """The lockers installed here that are watched (for doctor), or None when there are none."""
        found = sorted(set(programs(self.names).values()))
        return f"locker processes ({', '.join(found)})" if found else None

    def start(self, on_change: Callable[[bool], None]) -> bool:
        """Watch; `on_change(locked)` (on the watching thread) when a locker starts or the last ends.
        Whether anything can be watched here."""
        binaries = programs(self.names)
        if not binaries:
            log.info("no screen locker installed among %s: locker processes are not watched", ", ".join(self.names))
            return False
        self._on_change = on_change
        self._inotify = Inotify()
        for path in binaries:
            self._watch(path)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._scan()
        self._thread = threading.Thread(target=self._loop, name="lockers", daemon=True)
        self._thread.start()
        return True

    def locked(self) -> bool | None:
        """Whether a locker runs now; None when none is installed to watch (or not started)."""
        if self._thread is None:
            return None
        with self._lock:
            return bool(self.running)

    def which(self) -> str | None:
        """The running locker's name (for status), None when none runs."""
        with self._lock:
            return next(iter(self.running.values()), None)

    def close(self) -> None:
        if self._thread is None or self._stop.is_set():
            return
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._thread.join(2.0)
        for fd in (self._wake_r, self._wake_w, *self._pidfds):
            os.close(fd)
        assert self._inotify is not None
        self._inotify.close()

    # -- the watching thread ------------------------------------------------------------------

    def _watch(self, path: str) -> None:
        assert self._inotify is not None
        try:
            self._watches[self._inotify.add(path, IN_OPEN | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)] = path
        except OSError as e:
            log.info("cannot watch %s: %s", path, e)

    def _name_of(self, pid: str, binaries: dict[str, str]) -> str | None:
        """The locker `pid` runs (this user's processes only), else None."""
        try:
            if os.stat(f"{self.proc}/{pid}").st_uid != self.uid:
                return None
            # Unreadable for a zombie (a locker that ended and was not reaped yet): not running.
            exe = os.readlink(f"{self.proc}/{pid}/exe")
            if exe in binaries:
                return binaries[exe]
            with open(f"{self.proc}/{pid}/comm", encoding="utf-8", errors="replace") as f:
                comm = f.read().strip()
        except OSError:  # gone meanwhile
            return None
        # A locker whose file was replaced since it started (exe ends in " (deleted)"), or a script
        # (its exe is the interpreter) named in the config.
        return next((n for n in self.names if "/" not in n and n[:COMM_LEN] == comm), None)

    def _scan(self) -> bool:
        """Follow the lockers in /proc not yet followed; whether one was found."""
        binaries = programs(self.names)
        new = {}
        for entry in os.listdir(self.proc):
            if entry.isdigit() and int(entry) not in self.running and (name := self._name_of(entry, binaries)):
                new[int(entry)] = name
        for pid, name in new.items():
            try:
                fd = os.pidfd_open(pid)
            except OSError:  # ended already
                continue
            self._pidfds[fd] = pid
            with self._lock:
                self.running[pid] = name
            log.info("screen locker %s (pid %d) is running", name, pid)
        return bool(new)

    def _tell(self, was: bool) -> None:
        with self._lock:
            now = bool(self.running)
        if now != was:
            log.info("the session is %s (screen locker)", "locked" if now else "unlocked")
            self._on_change(now)

    def _ended(self, fd: int) -> None:
        pid = self._pidfds.pop(fd)
        os.close(fd)
        with self._lock:
            name = self.running.pop(pid, "?")
        log.info("screen locker %s (pid %d) ended", name, pid)
        self._scan()  # the locker may have forked to the background before its first process ended
        self._tell(True)

    def _opened(self) -> None:
        assert self._inotify is not None
        events = self._inotify.read()
        for wd, mask in events:
            if mask & REPLACED and wd in self._watches:
                self._watch(self._watches.pop(wd))
        if any(mask & IN_OPEN for _, mask in events):
            # Opened by exec (or read by someone): look, and again while exec may not be done yet.
            was = self.locked()
            for delay in SETTLE_S:
                if self._stop.wait(delay) or self._scan():
                    break
            self._tell(bool(was))

    def _loop(self) -> None:
        assert self._inotify is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([self._inotify.fd, self._wake_r, *self._pidfds], [], [])
            if self._stop.is_set():
                return
            try:
                for fd in ready:
                    if fd in self._pidfds:
                        self._ended(fd)
                    elif fd == self._inotify.fd:
                        self._opened()
            except Exception:  # the lock state must keep being watched; a bug here is logged, not fatal
                log.exception("watching screen lockers")
