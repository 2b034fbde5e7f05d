"""events.jsonl: every event as one JSON line in the state dir, size-capped and rotated, read back by
`facewarden events`, so a user can see what happened while they were away."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from ..config import Log
from ..paths import private_dir


class EventLog:
    """Appends records to `path` (0600 in a 0700 dir); rotates path -> path.1 -> ... path.<keep>."""

    def __init__(self, path: Path, config: Log):
        self.path = path
        self.config = config
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self._lock:
            private_dir(self.path.parent)
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(line) > self.config.max_bytes:
                self._rotate()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, line)
            finally:
                os.close(fd)

    def _rotate(self) -> None:
        keep = self.config.keep
        self._numbered(keep).unlink(missing_ok=True)
        for i in range(keep - 1, 0, -1):
            if self._numbered(i).exists():
                os.replace(self._numbered(i), self._numbered(i + 1))
        os.replace(self.path, self._numbered(1))

    def _numbered(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")


def read(path: Path, since: float | None = None) -> list[dict]:
    """Every record in the rotated files and the current one, oldest first; from `since` on if given."""
    rotated = [p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()]
    rotated.sort(key=lambda p: int(p.suffix[1:]), reverse=True)
    records = []
    for file in rotated + [path]:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash or a full disk
            if since is None or record.get("time", 0) >= since:
                records.append(record)
    return records
