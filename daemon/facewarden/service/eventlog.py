"""events.jsonl: every event as one JSON line in the state dir, size-capped and rotated, read back by
`facewarden events`, so a user can see what happened while they were away.

A write that fails (a full or read-only disk, a link planted at the path) is logged once and
reported to the caller: it must never stop the event's actions and hooks. The file is never opened
through a symbolic link, and a record always starts on a fresh line, so one cut short by a crash
or a full disk costs that record alone.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import threading
from pathlib import Path

from ..config import LogConfig
from ..errors import UserError
from ..paths import private_dir

log = logging.getLogger(__name__)


def _open(path: Path, flags: int, mode: int = 0o600) -> int:
    """os.open without following a link at `path`; UserError when it is a link (symbolic or hard) or
    not a plain file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"{path} is a symbolic link; facewarden neither reads nor writes through it") from None
        if e.errno == errno.EISDIR:
            raise UserError(f"{path} is not a file (a directory); move it away") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UserError(f"{path} is not a plain file; move it away")
    if st.st_nlink > 1:  # a hard link is a link too: another name for someone's file (a victim.txt)
        os.close(fd)
        raise UserError(f"{path} has {st.st_nlink} hard links; facewarden neither reads nor writes a file "
                        "that has another name: move it away")
    return fd


class EventLog:
    """Appends records to `path` (0600 in a 0700 dir); rotates path -> path.1 -> ... path.<keep>."""

    def __init__(self, path: Path, config: LogConfig):
        self.path = path
        self.config = config
        self._lock = threading.Lock()
        self._failing = False

    def append(self, record: dict) -> bool:
        """Add one record; whether it was written (a failure is logged once, until a write works)."""
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self._lock:
            try:
                self._write(line)
            except (OSError, UserError) as e:
                if not self._failing:
                    log.error("cannot write the event log %s (%s); events still run their actions and hooks",
                              self.path, e)
                self._failing = True
                return False
            if self._failing:
                log.info("the event log %s is written again", self.path)
            self._failing = False
            return True

    def _write(self, line: bytes) -> None:
        private_dir(self.path.parent)
        try:
            size = os.lstat(self.path).st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(line) > self.config.max_bytes:
            self._rotate()
        fd = _open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            os.fchmod(fd, 0o600)
            end = os.fstat(fd).st_size
            if end and os.pread(fd, 1, end - 1) != b"\n":
                line = b"\n" + line  # the last record was cut short: it must not swallow this one
            os.write(fd, line)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        keep = self.config.keep
        self._numbered(keep).unlink(missing_ok=True)
        for i in range(keep - 1, 0, -1):
            if os.path.lexists(self._numbered(i)):
                os.replace(self._numbered(i), self._numbered(i + 1))
        os.replace(self.path, self._numbered(1))

    def _numbered(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")


def _lines(file: Path) -> list[bytes]:
    try:
        fd = _open(file, os.O_RDONLY)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise UserError(f"cannot read {file}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        return f.read().split(b"\n")


def read_counted(path: Path, since: float | None = None) -> tuple[list[dict], int]:
    """Every record in the rotated files and the current one, oldest first, from `since` on if
    given; and how many lines were unreadable (cut short, not UTF-8, not a record) and skipped."""
    rotated = [p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()]
    rotated.sort(key=lambda p: int(p.suffix[1:]), reverse=True)
    records, skipped = [], 0
    for file in rotated + [path]:
        for line in _lines(file):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if not (isinstance(record, dict) and isinstance(record.get("event"), str)
                    and isinstance(record.get("time"), (int, float))):
                skipped += 1
                continue
            if since is None or record["time"] >= since:
                records.append(record)
    return records, skipped


def read(path: Path, since: float | None = None) -> list[dict]:
    """The records of `read_counted`, without the count."""
    return read_counted(path, since)[0]
