"""Who else has a camera open: inotify sees any process open or close the device node (or a replayed
video file, or an image directory itself), and the same user's `/proc/PID/fd` links say who holds it.

inotify reports the open itself, before the opener can start streaming, so the daemon can let go in
time for a video-call app that would not retry. It does not say who opened, hence the /proc scan;
only processes of this user are readable there, which are the ones a desktop session runs.

A scan reads a link for every descriptor of every process of the user: thousands on a desktop
with a browser open, so it is made only when someone else may have opened or closed a camera. The
camera announces its own opens (`Watcher.opening`); a close while nobody else held the camera
changes nothing; and while the watch has seen nothing else since the last scan, that scan's
answer still holds (`Watcher.known`), so a camera opened for each sample (`camera.keep_open =
false`) costs no scan at all.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
import threading
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

IN_ATTRIB = 0x04  # metadata changed: a link count too (the file renamed over or removed)
IN_CLOSE_WRITE = 0x08
IN_CLOSE_NOWRITE = 0x10
IN_OPEN = 0x20
IN_Q_OVERFLOW = 0x4000  # the queue overflowed: events were lost
IN_IGNORED = 0x8000  # the watch is gone (the node was removed)
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_DONT_FOLLOW = 0x02000000  # watch a symlink itself, not what it points to
WATCH_MASK = IN_OPEN | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
# The opener's fd is installed a moment after inotify reports its open: look again this soon.
SETTLE_S = 0.005
# While a camera is held, look again this often (doubling to recheck_max_s) even without an event.
FIRST_RECHECK_S = 1.0


@dataclass(frozen=True)
class Holder:
    pid: int

    @property
    def comm(self) -> str:
        """Its name now (read when asked: a program that was just forked still has its parent's)."""
        try:
            with open(f"/proc/{self.pid}/comm", encoding="utf-8", errors="replace") as f:
                return f.read().strip()
        except OSError:
            return "?"

    def __str__(self) -> str:
        return f"{self.comm} (pid {self.pid})"


def holders(target: str, own_pid: int | None = None) -> list[Holder]:
    """This user's processes other than `own_pid` (default: us) with `target` open; for a
    directory, with it or anything under it open."""
    own = os.getpid() if own_pid is None else own_pid
    uid = os.getuid()
    inside = target.rstrip("/") + "/"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == own:
            continue
        fd_dir = f"/proc/{name}/fd"
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                link = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if link == target or link.startswith(inside):
                found.append(Holder(int(name)))
                break
    return found


class Inotify:
    """A non-blocking inotify instance through libc (no package needed for three calls)."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")

    def add(self, path: str, mask: int = WATCH_MASK) -> int:
        """The watch descriptor for `path` (the same one again for a path already watched)."""
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return wd

    def read(self) -> list[tuple[int, int]]:
        """(watch descriptor, mask) of the events waiting (none if none) about the watched paths
        themselves. Events about an entry of a watched directory are left out: a replayed image
        directory's entries are the frames the camera itself opens, one a sample, and each would
        cost a scan of every process's descriptors."""
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return []
        events, offset = [], 0
        while offset < len(data):
            wd, mask, _, length = EVENT.unpack_from(data, offset)
            if not length or mask & (IN_IGNORED | IN_Q_OVERFLOW):  # a name follows only for a directory's entry
                events.append((wd, mask))
            offset += EVENT.size + length
        return events

    def close(self) -> None:
        os.close(self.fd)


class Watcher:
    """One thread watching every camera target; calls `on_change(target, holders)` when the set of
    other processes holding a target changes. Targets that do not exist yet are watched once
    `watch` is called again (the camera does so when it reopens)."""

    def __init__(self, on_change: Callable[[str, list[Holder]], None], recheck_max_s: float = 30.0):
        self._on_change = on_change
        self._recheck_max_s = recheck_max_s
        self._inotify = Inotify()
        self._targets: dict[int, str] = {}  # wd -> target
        self._held: dict[str, list[Holder]] = {}
        self._own: dict[str, int] = {}  # our own opens of a target announced and not yet seen
        self._news: dict[str, int] = {}  # events about a target that may be someone else's, counted
        self._fresh: set[str] = set()  # targets watched since their last scan, with no such event since
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()  # close() wakes the thread out of its select
        self._thread = threading.Thread(target=self._loop, name="camera-watch", daemon=True)
        self._thread.start()

    def watch(self, target: str) -> bool:
        """Watch `target` (idempotent); False when it cannot be watched (it does not exist)."""
        try:
            wd = self._inotify.add(target)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EACCES, errno.ENOTDIR):
                log.warning("cannot watch %s for other programs: %s", target, e)
            return False
        with self._lock:
            if self._targets.get(wd) != target:  # a new watch: what happened before it is unknown
                self._fresh.discard(target)
            self._targets[wd] = target
        return True

    def held(self, target: str) -> list[Holder]:
        with self._lock:
            return list(self._held.get(target, []))

    def opening(self, target: str) -> None:
        """We are about to open `target` ourselves: that open is no sign of anyone else."""
        with self._lock:
            self._own[target] = self._own.get(target, 0) + 1

    def known(self, target: str) -> list[Holder]:
        """`target`'s holders: the last scan's while it still holds, else a scan's now."""
        with self._lock:
            if target in self._fresh:
                return list(self._held.get(target, []))
        return self.check(target)

    def check(self, target: str) -> list[Holder]:
        """Scan /proc for `target` now, report a change, and return its holders."""
        with self._lock:
            news = self._news.get(target, 0)
            # An announced open not seen by now may never be (the open failed): it must not hide
            # someone else's, and the scan tells all the same.
            self._own.pop(target, None)
        found = holders(target)
        with self._lock:
            changed = found != self._held.get(target, [])
            self._held[target] = found
            if self._news.get(target, 0) == news and target in self._targets.values():
                self._fresh.add(target)
        if changed:
            self._on_change(target, found)
        return found

    def _sort(self, events: list[tuple[int, int]]) -> tuple[set[str], set[str]]:
        """The targets someone else may have opened or closed (scanned), and of those the ones opened."""
        touched: set[str] = set()
        opened: set[str] = set()
        with self._lock:
            for wd, mask in events:
                if mask & IN_Q_OVERFLOW:  # lost events: anything may have happened to any target
                    touched.update(self._targets.values())
                    opened.update(self._targets.values())
                    continue
                target = self._targets.get(wd)
                if target is None:
                    continue
                if mask & IN_IGNORED:
                    del self._targets[wd]
                    self._fresh.discard(target)
                elif mask & IN_OPEN:
                    if self._own.get(target):
                        self._own[target] -= 1
                    else:
                        touched.add(target)
                        opened.add(target)
                elif self._held.get(target):  # a close: a change only while someone else held it
                    touched.add(target)
            for target in touched:
                self._news[target] = self._news.get(target, 0) + 1
                self._fresh.discard(target)
        return touched, opened

    def _loop(self) -> None:
        recheck = FIRST_RECHECK_S
        while not self._stop.is_set():
            with self._lock:
                busy = [t for t, h in self._held.items() if h]
            ready, _, _ = select.select([self._inotify.fd, self._wake_r], [], [], recheck if busy else None)
            if self._stop.is_set():
                return
            events = self._inotify.read() if ready else []
            touched, opened = self._sort(events)
            for target in touched:
                if not self.check(target) and target in opened:
                    # An open whose fd is not installed yet shows no holder: one more look.
                    self._stop.wait(SETTLE_S)
                    self.check(target)
            if events:
                recheck = FIRST_RECHECK_S
            else:
                # No event while held (a missed close, a killed holder): look again, less often.
                for target in busy:
                    self.check(target)
                recheck = min(recheck * 2, self._recheck_max_s)

    def close(self) -> None:
        """Stop the thread and close its descriptors; again is a no-op (a replaced camera may be closed twice)."""
        if self._stop.is_set():
            return
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._thread.join(2.0)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._inotify.close()
