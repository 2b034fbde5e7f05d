"""Where facewarden keeps its files, and how it writes them privately.

FACEWARDEN_HOME moves everything into one directory (tests, demos, a second profile); otherwise the
XDG base directories are used. Nothing here touches another face tool's files (~/.config/facelock).
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

APP = "facewarden"


@dataclass(frozen=True)
class Paths:
    config_dir: Path  # config.toml, hooks/
    data_dir: Path  # enroll/, models/
    state_dir: Path  # events.jsonl, snapshots/
    cache_dir: Path  # the ported encoder, built once
    runtime_dir: Path  # control.sock

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def hooks_dir(self) -> Path:
        return self.config_dir / "hooks"

    @property
    def enroll_dir(self) -> Path:
        return self.data_dir / "enroll"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def events_file(self) -> Path:
        return self.state_dir / "events.jsonl"

    @property
    def snapshots_dir(self) -> Path:
        return self.state_dir / "snapshots"

    @property
    def socket_path(self) -> Path:
        return self.runtime_dir / "control.sock"

    @property
    def dim_file(self) -> Path:
        """The brightness facewarden dimmed, to restore (after a crash too)."""
        return self.runtime_dir / "dimmed.json"


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value and os.path.isabs(value) else Path.home() / default


def paths() -> Paths:
    home = os.environ.get("FACEWARDEN_HOME")
    if home:
        # The user named this directory: a link of theirs there is followed once, here, on purpose.
        root = Path(home).expanduser().resolve()
        return Paths(root, root, root / "state", root / "cache", root / "run")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    runtime_dir = Path(runtime) / APP if runtime else Path(tempfile.gettempdir()) / f"{APP}-{os.getuid()}"
    return Paths(
        config_dir=_xdg("XDG_CONFIG_HOME", ".config") / APP,
        data_dir=_xdg("XDG_DATA_HOME", ".local/share") / APP,
        state_dir=_xdg("XDG_STATE_HOME", ".local/state") / APP,
        cache_dir=_xdg("XDG_CACHE_HOME", ".cache") / APP,
        runtime_dir=runtime_dir,
    )


def private_dir(path: Path) -> Path:
    """Create `path` and the parents it lacks 0700, whatever the umask said; UserError for a `path`
    that is a symbolic link, not a directory, or another user's. facewarden keeps its files only in
    directories of its user's, and never chmods (or writes) through a link it did not make: in a
    shared /tmp the fallback runtime directory may have been made by someone else first."""
    missing = [d for d in (path, *path.parents) if not os.path.lexists(d)]
    try:
        for d in reversed(missing):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)
        st = os.lstat(path)
    except OSError as e:
        raise UserError(f"cannot create the directory {path}: {e.strerror or e}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UserError(f"{path} is a symbolic link; facewarden keeps its files only in a directory it made: "
                        "move the link away")
    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path} is not a directory; move it away")
    if st.st_uid != os.getuid():
        raise UserError(f"{path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}); facewarden will not "
                        "use a directory someone else made (set XDG_RUNTIME_DIR, or remove it)")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


WRITE_CHUNK = 1 << 16


def write_private(path: Path, data: bytes) -> Path:
    """Atomically write `data` to `path` as 0600 inside a 0700 directory.

    Written to a temporary file first, so a crash never leaves a half-written model or enrollment.
    """
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            # 64 KiB at a time: one big write leaves the file in the page cache as multi-MB folios,
            # and a process that maps it (LiteRT maps the models) is charged a whole folio for each
            # small constant it reads: 6 MB more daemon RSS right after `train` on Linux 6.18.
            view = memoryview(data)
            for start in range(0, len(view), WRITE_CHUNK):
                f.write(view[start : start + WRITE_CHUNK])
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _distrust(path: Path, st: os.stat_result, owners: tuple[int, ...]) -> str | None:
    if st.st_uid not in owners:
        return f"{path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}): move it away"
    if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022:
        return f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}): chmod go-w {path}"
    return None


def untrusted(path: Path, top: Path) -> str | None:
    """Why `path` could have been written by someone else, or None (sshd's StrictModes): it, a link's
    target, or a directory from it up to `top` (and on up to the home directory when `top` is in
    it) belongs to another user or is writable by group or others. Root's are trusted: root could
    write anything anyway. The reason ends with how to fix it."""
    mine = (os.getuid(), 0)
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):  # a link of ours to a script: the script is what runs
            target = Path(os.path.realpath(path))
            why = _distrust(path, st, mine) or _distrust(target, os.stat(target), mine)
            if why or (why := _distrust(target.parent, os.stat(target.parent), mine)):
                return why
        elif why := _distrust(path, st, mine):
            return why
        home = Path.home()
        stop = home if top == home or home in top.parents else top
        for d in path.parents:
            if why := _distrust(d, os.stat(d), mine):
                return why
            if d == stop or d == d.parent:
                return None
    except OSError as e:
        return f"{path}: {e.strerror or e}"
    return None
