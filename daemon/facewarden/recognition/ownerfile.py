"""The owner model's files and their contract: what `train` publishes and the daemon reads.

Every trained model lives in a directory of its own, `models/versions/<version>/` (owner.h5,
owner.tflite, owner.json), and `models/current` is a symlink facewarden makes to one of them. A new
model is written whole into its directory first and then switched to with one atomic rename of the
link, so a reader never sees a new `.tflite` beside an old `owner.json`. Old versions are kept (a
rollback is a switch of the link). The layout before versions (`models/owner.*` directly) is still
read in place, and moved into a version of its own by the next `publish`, without loss.

`owner.json` holds the decision thresholds and the model's provenance, checked by `OwnerMeta`. The
thresholds are fixed, not tuned per owner: bench/calibrate_thresholds.py recomputes them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ..config import OWNER, PERSON_NAME, _describe
from ..errors import UserError
from ..paths import Paths, private_dir, untrusted
from . import assets

INPUT_SIZE = 112
# The shipped decision thresholds (cosine of a frame's unit embedding to the nearest template).
# Calibrated once, for a stated target, on large impostor sets that are not the owner's (see
# THRESHOLD_METHOD; bench/calibrate_thresholds.py recomputes them); frames from an IR/grey camera get their own,
# because grey faces crowd together and strangers score higher there.
TARGET_FAR = 1e-3
THRESHOLD_COLOUR = 0.45
THRESHOLD_GREY = 0.48
THRESHOLD_METHOD = (
    "fixed, not tuned per owner: for <= 0.1% false accepts per frame, the 99.9th percentile of "
    "impostor scores plus a 0.05 margin for people and conditions never seen. Colour: owner models "
    "of the 10 LFW people with most images (5 faces enrolled each) against one image of each of "
    "2,677 other people: 99.9th percentile 0.394 -> 0.45. Grey (IR, night): the same world in grey "
    "(0.408) and ORL, 40 grey subjects (0.425; recomputed 0.404) -> 0.48, kept though the recomputed "
    "figure gives 0.46 (stricter). bench/calibrate_thresholds.py recomputes both."
)

MODEL_FILES = ("owner.h5", "owner.tflite", "owner.json")
CURRENT = "current"  # models/current -> versions/<version>
VERSIONS = "versions"
# "0003-20261201T203755Z": a sequence number (the order) and when it was published (UTC).
VERSION_PATTERN = r"(\d{4,})-\d{8}T\d{6}Z"
_VERSION = re.compile(f"^{VERSION_PATTERN}$")


class OwnerMeta(BaseModel):
    """owner.json: the keys the daemon decides with are checked; the provenance keys pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)
    # A threshold <= 0 (or NaN) would take every face for the owner's.
    threshold: float = Field(gt=0, le=1, allow_inf_nan=False, strict=True)
    threshold_grey: float = Field(gt=0, le=1, allow_inf_nan=False, strict=True)
    encoder_sha256: str
    enrolled: int | None = Field(None, ge=1)
    trained: str | None = None
    # The model's outputs, one score per person, in order; a model from before there were several
    # people has the one, the owner.
    people: list[Annotated[str, StringConstraints(pattern=PERSON_NAME)]] = Field([OWNER], min_length=1)


@dataclass(frozen=True)
class Version:
    name: str
    path: Path  # models/versions/<name>
    current: bool  # models/current points here


def _no_model(p: Paths) -> UserError:
    return UserError(f"no owner model in {p.models_dir}: run `facewarden enroll` and `facewarden train` first")


def _own_dir(path: Path) -> bool:
    """A real directory (not a link) of this user's."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()


def _regular(path: Path) -> bool:
    """A plain file, not a link."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _legacy(p: Paths) -> bool:
    """The layout before versions: owner.json directly in models/."""
    return _regular(p.models_dir / "owner.json")


def current_version(p: Paths) -> str | None:
    """The version models/current names (one readlink: cheap enough for every sampling step); None
    when there is no such link or it is not one of ours."""
    link = p.models_dir / CURRENT
    try:
        target = os.readlink(link)
    except OSError:
        return None
    head, _, name = target.partition("/")
    return name if head == VERSIONS and _VERSION.match(name) else None


def _trusted(p: Paths, directory: Path) -> Path:
    """`directory`, once it and its model files are this user's alone (sshd's StrictModes): a model
    another user can write decides who the owner is (an owner.json with threshold 0.01)."""
    for f in [directory, *(directory / n for n in MODEL_FILES if os.path.lexists(directory / n))]:
        if why := untrusted(f, p.data_dir):
            raise UserError(f"the owner model is not yours alone, so it is not used: {why}")
    return directory


def model_dir(p: Paths) -> Path:
    """The directory of the model to run: the current version's (its link checked to be ours, into
    models/versions/), or models/ itself for the layout before versions; the files checked to be
    the user's alone. UserError otherwise."""
    link = p.models_dir / CURRENT
    if not os.path.lexists(link):
        if _legacy(p):
            return _trusted(p, p.models_dir)
        raise _no_model(p)
    name = current_version(p)
    if name is None or os.lstat(link).st_uid != os.getuid():
        raise UserError(f"{link} is not the link `facewarden train` makes (into {p.models_dir / VERSIONS}); "
                        "move it away and run `facewarden train` again")
    directory = p.models_dir / VERSIONS / name
    if not _own_dir(directory):
        raise UserError(f"{link} points to {directory}, which is not a model directory of yours; "
                        "run `facewarden train` again")
    return _trusted(p, directory)


def meta_of(directory: Path) -> OwnerMeta:
    """`directory`/owner.json, checked; UserError when it is missing, damaged or out of range."""
    file = directory / "owner.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{file} is missing; run `facewarden train` again") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{file} is damaged ({e}); run `facewarden train` again") from None
    if not isinstance(data, dict):
        raise UserError(f"{file} is damaged (not a JSON object); run `facewarden train` again")
    try:
        meta = OwnerMeta.model_validate(data)
    except ValidationError as e:
        raise UserError(f"{file} is out of range: {_describe(e, 'owner.json').replace(chr(10), '; ')}; "
                        "run `facewarden train` again") from None
    if meta.encoder_sha256 != assets.SFACE.sha256:
        raise UserError(f"{file} was trained on another encoder; run `facewarden train` again")
    return meta


def read_meta(p: Paths) -> OwnerMeta:
    """The current model's owner.json, checked; UserError when there is no usable owner model yet."""
    return meta_of(model_dir(p))


def versions(p: Paths) -> list[Version]:
    """Every published version, oldest first."""
    folder = p.models_dir / VERSIONS
    try:
        names = [e.name for e in os.scandir(folder) if _VERSION.match(e.name) and _own_dir(Path(e.path))]
    except OSError:
        return []
    now = current_version(p)
    names.sort(key=lambda n: int(n.split("-", 1)[0]))
    return [Version(n, folder / n, n == now) for n in names]


def activate(p: Paths, name: str) -> None:
    """Point models/current at version `name`, in one atomic rename of a fresh link."""
    if not _VERSION.match(name) or not _own_dir(p.models_dir / VERSIONS / name):
        raise UserError(f"no model version {name!r} in {p.models_dir / VERSIONS}")
    link = p.models_dir / CURRENT
    if os.path.lexists(link) and not os.path.islink(link):
        raise UserError(f"{link} is not the link `facewarden train` makes; move it away and try again")
    tmp = p.models_dir / f".{CURRENT}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(f"{VERSIONS}/{name}", tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _stamp(t: _dt.datetime) -> str:
    return t.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _add_version(p: Paths, staged: Path, when: _dt.datetime) -> str:
    """Rename the whole directory `staged` into models/versions/ under the next free version name."""
    folder = private_dir(p.models_dir / VERSIONS)
    taken = [int(m.group(1)) for n in os.listdir(folder) if (m := _VERSION.match(n))]
    number = max(taken, default=0) + 1
    while True:
        name = f"{number:04d}-{_stamp(when)}"
        try:
            os.rename(staged, folder / name)  # fails on an existing (never empty) version
        except OSError:
            if not os.path.lexists(folder / name):
                raise
            number += 1
            continue
        os.chmod(folder / name, 0o700)
        return name


def _migrate_legacy(p: Paths) -> None:
    """Move models/owner.* (the layout before versions) into a version of its own, without a moment
    where no model is readable: hard links first, the link switched, then the old names removed."""
    if not _legacy(p) or os.path.lexists(p.models_dir / CURRENT):
        return
    staged = private_dir(p.models_dir / ".legacy")
    present = [n for n in MODEL_FILES if _regular(p.models_dir / n)]
    for n in present:
        if not os.path.lexists(staged / n):
            os.link(p.models_dir / n, staged / n)
    when = _dt.datetime.fromtimestamp(os.lstat(p.models_dir / "owner.json").st_mtime, _dt.timezone.utc)
    activate(p, _add_version(p, staged, when))
    for n in present:
        (p.models_dir / n).unlink()


def publish(p: Paths, staged: Path) -> str:
    """Install the model in `staged` (a directory on the models' file system holding MODEL_FILES,
    checked) as a new version and make it current; returns the version. Old versions are kept."""
    missing = [n for n in MODEL_FILES if not (staged / n).is_file()]
    if missing:
        raise UserError(f"{staged} lacks {', '.join(missing)}; not published")
    meta_of(staged)
    private_dir(p.models_dir)
    _migrate_legacy(p)
    name = _add_version(p, staged, _dt.datetime.now(_dt.timezone.utc))
    activate(p, name)
    return name
