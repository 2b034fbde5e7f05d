"""`uninstall --purge`: remove what facewarden made, and nothing else.

FACEWARDEN_HOME may name a directory the user keeps other things in too (a thesis beside the
state), so every directory is walked against the names facewarden gives its own files, only those
go, and a directory goes only when nothing else is left in it. Links are removed, never followed.
Hooks are the user's own scripts: only a copy of a hook facewarden ships (the demo's) goes.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from importlib import resources
from pathlib import Path
from typing import Union

from ..config import PERSON_NAME
from ..events import Event
from ..paths import Paths
from ..recognition import ownerfile
from ..service.actions import SNAPSHOT_NAME

ANY = "any"  # a directory facewarden made whole (a training's scratch space): all of it is ours
SHIPPED = "shipped"  # a hook: ours only when it is a copy of one facewarden ships (the demo installs them)
# A name pattern (whole name) -> None: a file (or link) of ours; a Spec: a directory of ours, with
# what of ours it holds; ANY; SHIPPED.
Spec = dict[str, Union["Spec", str, None]]


def _shipped() -> set[bytes]:
    hooks = resources.files("facewarden").joinpath("data", "hooks")
    return {f.read_bytes() for f in hooks.iterdir() if f.is_file()}


def _is_shipped(path: Path, shipped: set[bytes]) -> bool:
    """A plain file (never a link) whose bytes are those of a hook facewarden ships."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        return stat.S_ISREG(st.st_mode) and st.st_size <= max(map(len, shipped)) and f.read() in shipped


def _ours(name: str) -> str:
    """`name` and the temporary files written beside it (paths.write_private, encoder.save_private)."""
    stem = re.escape(name.rsplit(".", 1)[0])
    return rf"{re.escape(name)}|\.{re.escape(name)}\..+|\.{stem}\.\d+\.tmp\.\w+"


def _either(*names: str) -> str:
    return "|".join(f"(?:{_ours(n)})" for n in names)


def _specs(p: Paths) -> list[tuple[Path, Spec]]:
    events = "|".join(e.value for e in Event)
    crop = r"\.?[0-9a-f]{16}\.png(?:\..+)?"  # enroll.store_crop's names, and write_private's temporary ones
    faces: Spec = {crop: None, PERSON_NAME: {crop: None}}  # the owner's in enroll/ itself, everyone's in NAME/
    model: Spec = {_either(*ownerfile.MODEL_FILES): None}
    models: Spec = {**model, re.escape(ownerfile.CURRENT): None, r"\.current\.\d+": None,
                    re.escape(ownerfile.VERSIONS): {ownerfile.VERSION_PATTERN: model}, r"\.legacy": model,
                    r"\.train-.+": ANY}
    return [
        (p.config_dir, {_ours(p.config_file.name): None,
                        re.escape(p.hooks_dir.name): {f"(?:{events})|demo-lock": SHIPPED,
                                                      rf"(?:{events})\.d": {".+": SHIPPED}}}),
        (p.data_dir, {re.escape(p.enroll_dir.name): faces, "adapt": {PERSON_NAME: {crop: None}},
                      re.escape(p.models_dir.name): models}),
        (p.state_dir, {re.escape(p.events_file.name) + r"(?:\.\d+)?": None,
                       re.escape(p.snapshots_dir.name): {SNAPSHOT_NAME.pattern + r"|\..+\.jpg\..+": None}}),
        (p.cache_dir, {"encoder": {r"\.?sface-[0-9a-f]{16}.*\.h5": None}}),
        (p.runtime_dir, {re.escape(p.socket_path.name): None, _ours(p.dim_file.name): None}),
    ]


def _trees(p: Paths) -> dict[Path, Spec]:
    """The specs by directory, a directory that sits right inside another (FACEWARDEN_HOME/state)
    folded into its parent's."""
    trees: dict[Path, Spec] = {}
    for d, spec in _specs(p):
        trees.setdefault(d, {}).update(spec)
    for d in sorted(trees, key=lambda d: len(d.parts), reverse=True):
        if d.parent in trees:
            trees[d.parent][re.escape(d.name)] = trees.pop(d)
    return trees


def _walk(d: Path, spec: Spec, kept: list[Path], shipped: set[bytes]) -> None:
    for entry in sorted(os.scandir(d), key=lambda e: e.name):
        path = Path(entry.path)
        rule = next((r for r in spec if re.fullmatch(r, entry.name)), None)
        is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
        what = None if rule is None else spec[rule]
        a_file = what is None or what == SHIPPED
        if rule is None or a_file == is_dir or (what == SHIPPED and not _is_shipped(path, shipped)):
            kept.append(path)  # another name, a directory where we make a file (or the reverse), a user's hook
        elif a_file:
            path.unlink()
        elif what == ANY:
            shutil.rmtree(path)
        else:
            assert isinstance(what, dict)
            _walk(path, what, kept, shipped)
    try:
        d.rmdir()
    except OSError:
        pass  # something of the user's is still in it


def purge(p: Paths) -> list[tuple[Path, list[Path]]]:
    """Remove facewarden's files and then its directories if empty; each top directory with what was
    kept in it (not facewarden's)."""
    done = []
    shipped = _shipped()
    for d, spec in _trees(p).items():
        if not os.path.lexists(d):
            continue
        kept: list[Path] = []
        if stat.S_ISDIR(os.lstat(d).st_mode):
            _walk(d, spec, kept, shipped)
        else:
            kept.append(d)
        done.append((d, kept))
    return done
