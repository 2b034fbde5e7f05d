"""Enrollment: aligned 112x112 face crops (PNG, 0600 in a 0700 `enroll/`), named by their content
hash, so enrolling again only ever adds. No TensorFlow here.

People: the default person, "owner", lives in `enroll/` itself (where a single-owner install has
always kept its faces, so nothing moves); everyone else enrolled with `--person NAME` in
`enroll/NAME/`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from .. import paths
from ..config import OWNER, is_person_name
from ..core.observation import Face, face_problem
from ..errors import UserError
from ..recognition import vision
from ..recognition.ownerfile import INPUT_SIZE
from ..recognition.vision import read_image

MIN_ENROLLED = 3
# Enrollment is stricter than the detector's own cut: a template must be a clear frontal face.
MIN_ENROLL_SCORE = 0.8
# A frame with more than one face still enrolls its subject when that face clearly dominates: this
# many times wider than every other face, and nearer the frame's centre than each of them. A
# colleague behind the user (NUAA's office frames: at most 0.41 of the subject's width) is far
# below; two people side by side at one desk are ambiguous and refused.
DOMINANT_WIDTH = 2.0


@dataclass
class EnrollResult:
    added: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, why)
    ignored: list[tuple[str, int]] = field(default_factory=list)  # (source, background faces left out)
    total: int = 0  # crops enrolled after this run


def dominant_face(faces: list[Face], frame_shape: tuple[int, ...]) -> Face | None:
    """The one face that clearly is the subject of a frame with several, or None when ambiguous."""
    cy, cx = frame_shape[0] / 2, frame_shape[1] / 2

    def off_centre(f: Face) -> float:
        x, y, w, h = f.box
        return (x + w / 2 - cx) ** 2 + (y + h / 2 - cy) ** 2

    big = max(faces, key=lambda f: f.box[2])
    others = [f for f in faces if f is not big]
    if all(big.box[2] >= DOMINANT_WIDTH * f.box[2] and off_centre(big) < off_centre(f) for f in others):
        return big
    return None


@dataclass(frozen=True)
class Subject:
    """The aligned RGB crop of a frame's subject (None when unusable), why not, and what else was seen."""

    crop: np.ndarray | None
    why: str | None = None
    face: Face | None = None
    ignored: int = 0  # smaller background faces left out


def subject(frame: np.ndarray, detector: vision.Detector) -> Subject:
    faces = detector(frame)
    if not faces:
        return Subject(None, "no face found")
    face = faces[0] if len(faces) == 1 else dominant_face(faces, frame.shape)
    if face is None:
        return Subject(None, f"{len(faces)} faces and none clearly the subject (one larger and nearer the centre)")
    problem = face_problem(face, MIN_ENROLL_SCORE)
    if problem:
        return Subject(None, problem, face)
    return Subject(vision.align(frame, face), None, face, len(faces) - 1)


def check_name(name: str) -> str:
    if not is_person_name(name):
        raise UserError(f"{name!r} is not a usable person name: letters, digits, - and _, up to 32, "
                        "starting with a letter or digit")
    return name


def person_dir(p: paths.Paths, person: str = OWNER) -> Path:
    return p.enroll_dir if person == OWNER else p.enroll_dir / check_name(person)


# What store_crop names a face: the first 16 hex digits of its PNG's sha256. Only files so named are
# faces facewarden wrote; only those are listed, trained on, or deleted.
CROP_NAME = re.compile(r"[0-9a-f]{16}\.png")


def own_folder(p: paths.Paths, folder: Path) -> bool:
    """Whether `folder` (inside the data dir) exists; UserError when it or a directory between it and
    the data dir is a symbolic link or not a directory. A link where facewarden keeps its own files
    (enroll/, adapt/, a person's folder) points at someone else's files: listing, training on or
    deleting through it would take them for faces of ours."""
    parts = folder.relative_to(p.data_dir).parts
    for d in [p.data_dir.joinpath(*parts[:i]) for i in range(len(parts) + 1)]:
        try:
            st = os.lstat(d)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(st.st_mode):
            raise UserError(f"{d} is a symbolic link; facewarden keeps its files only in a directory it made: "
                            "move the link away")
        if not stat.S_ISDIR(st.st_mode):
            raise UserError(f"{d} is not a directory; move it away")
    return True


def crops_in(p: paths.Paths, folder: Path) -> list[Path]:
    """The faces facewarden wrote in `folder`: plain files named as store_crop names them, by name."""
    if not own_folder(p, folder):
        return []
    return sorted(Path(e.path) for e in os.scandir(folder)
                  if CROP_NAME.fullmatch(e.name) and e.is_file(follow_symlinks=False))


def remove_crops(p: paths.Paths, folder: Path, whole: bool) -> tuple[int, list[str]]:
    """Delete the faces facewarden wrote in `folder`, and with `whole` the folder too unless something
    else is in it: (how many deleted, with `whole` the names of what was left in it)."""
    files = crops_in(p, folder)
    for f in files:
        f.unlink()
    if not whole or not own_folder(p, folder):
        return len(files), []
    left = sorted(os.listdir(folder))
    if not left:
        folder.rmdir()
    return len(files), left


def enrolled(p: paths.Paths, person: str = OWNER) -> list[Path]:
    return crops_in(p, person_dir(p, person))


def names_in(p: paths.Paths, folder: Path) -> list[str]:
    """The person folders in `folder` (enroll/ or adapt/): directories with a person's name; a link
    with such a name is refused."""
    if not own_folder(p, folder):
        return []
    return sorted(e.name for e in os.scandir(folder)
                  if is_person_name(e.name) and e.is_dir() and own_folder(p, Path(e.path)))


def people(p: paths.Paths) -> dict[str, list[Path]]:
    """Everyone with enrolled faces, the owner first, then by name: the model's output order."""
    found = {OWNER: enrolled(p)} if enrolled(p) else {}
    for name in names_in(p, p.enroll_dir):
        if name != OWNER and (files := enrolled(p, name)):
            found[name] = files
    return found


def enrolled_when(files: list[Path]) -> tuple[str, str]:
    """The first and last enrollment dates (UTC) of a person's faces."""
    times = sorted(f.stat().st_mtime for f in files)
    day = [_dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M") for t in (times[0], times[-1])]
    return day[0], day[1]


def forget(p: paths.Paths, person: str) -> tuple[int, list[str]]:
    """Delete a person's enrolled faces (the owner's: enroll/ itself, the other people's folders
    stay), and a person's folder once empty; (how many, what was left in it that was not ours)."""
    return remove_crops(p, person_dir(p, person), whole=person != OWNER)


def store_crop(crop_rgb: np.ndarray, folder: Path) -> Path | None:
    """Store one crop under its content hash; None when that very crop is already enrolled."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise UserError("could not encode a face crop as PNG")
    target = folder / f"{hashlib.sha256(png.tobytes()).hexdigest()[:16]}.png"
    if target.exists():
        return None
    paths.private_dir(folder.parent)
    paths.private_dir(folder)
    return paths.write_private(target, png.tobytes())


def enroll_files(files: Iterable[Path], p: paths.Paths, detector: vision.Detector,
                 person: str = OWNER) -> EnrollResult:
    folder = person_dir(p, person)
    result = EnrollResult()
    for file in files:
        try:
            image = read_image(file)
        except UserError as e:
            result.skipped.append((str(file), str(e).split(": ", 1)[-1]))
            continue
        got = subject(image, detector)
        if got.crop is None:
            result.skipped.append((str(file), got.why or "no usable face"))
            continue
        stored = store_crop(got.crop, folder)
        if stored is None:
            result.skipped.append((str(file), "already enrolled"))
            continue
        result.added.append(stored)
        if got.ignored:
            result.ignored.append((str(file), got.ignored))
    result.total = len(enrolled(p, person))
    return result


def enroll_dir(source: Path, p: paths.Paths, detector: vision.Detector, person: str = OWNER) -> EnrollResult:
    if not source.is_dir():
        raise UserError(f"{source}: not a directory")
    files = sorted(f for f in source.iterdir() if f.is_file() and not f.name.startswith("."))
    if not files:
        raise UserError(f"{source}: holds no files")
    return enroll_files(files, p, detector, person)


def enroll_frames(
    frames: Iterable[np.ndarray | None],
    count: int,
    p: paths.Paths,
    detector: vision.Detector,
    progress: Callable[[int, int, Subject], None] = lambda done, want, got: None,
    person: str = OWNER,
) -> EnrollResult:
    """Enroll up to `count` frames with a usable subject from a stream (the webcam); `progress` sees
    every detected subject, taken or not, so the user sees whom it is taking."""
    folder = person_dir(p, person)
    result = EnrollResult()
    for frame in frames:
        if frame is None:
            continue
        got = subject(frame, detector)
        if got.crop is not None:
            stored = store_crop(got.crop, folder)
            if stored is not None:  # a still camera repeats frames byte for byte: those count once
                result.added.append(stored)
                if got.ignored:
                    result.ignored.append((f"frame {len(result.added)}", got.ignored))
        progress(len(result.added), count, got)
        if len(result.added) >= count:
            break
    result.total = len(enrolled(p, person))
    return result


def load_crops(files: list[Path]) -> np.ndarray:
    """Enrolled crops as (N, 112, 112, 3) RGB uint8; a damaged file is a clear error, not a skip."""
    crops = []
    for f in files:
        image = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if image is None or image.shape[:2] != (INPUT_SIZE, INPUT_SIZE):
            raise UserError(f"{f}: damaged enrollment image; delete it and enroll again")
        crops.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return np.stack(crops) if crops else np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)


