"""Enrollment: aligned 112x112 face crops (PNG, 0600 in a 0700 `enroll/`), named by their content
hash, so enrolling again only ever adds. No TensorFlow here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from .. import paths
from ..core.observation import face_problem
from ..errors import UserError
from ..recognition import vision
from ..recognition.ownerfile import INPUT_SIZE
from ..recognition.vision import read_image

MIN_ENROLLED = 3
# Enrollment is stricter than the detector's own cut: a template must be a clear frontal face.
MIN_ENROLL_SCORE = 0.8


@dataclass
class EnrollResult:
    added: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, why)
    total: int = 0  # crops enrolled after this run


def single_face(frame: np.ndarray, detector: vision.Detector) -> tuple[np.ndarray | None, str | None]:
    """The aligned RGB crop of the one usable face in `frame`, or None and why not."""
    faces = detector(frame)
    if not faces:
        return None, "no face found"
    if len(faces) > 1:
        return None, f"{len(faces)} faces (need exactly one)"
    problem = face_problem(faces[0], MIN_ENROLL_SCORE)
    if problem:
        return None, problem
    return vision.align(frame, faces[0]), None


def enrolled(p: paths.Paths) -> list[Path]:
    return sorted(p.enroll_dir.glob("*.png")) if p.enroll_dir.is_dir() else []


def _store(crop_rgb: np.ndarray, p: paths.Paths) -> Path | None:
    """Store one crop under its content hash; None when that very crop is already enrolled."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise UserError("could not encode a face crop as PNG")
    target = p.enroll_dir / f"{hashlib.sha256(png.tobytes()).hexdigest()[:16]}.png"
    if target.exists():
        return None
    paths.private_dir(p.enroll_dir)
    return paths.write_private(target, png.tobytes())


def enroll_files(files: Iterable[Path], p: paths.Paths, detector: vision.Detector) -> EnrollResult:
    result = EnrollResult()
    for file in files:
        try:
            image = read_image(file)
        except UserError as e:
            result.skipped.append((str(file), str(e).split(": ", 1)[-1]))
            continue
        crop, why = single_face(image, detector)
        if crop is None:
            result.skipped.append((str(file), why or "no usable face"))
            continue
        stored = _store(crop, p)
        if stored is None:
            result.skipped.append((str(file), "already enrolled"))
        else:
            result.added.append(stored)
    result.total = len(enrolled(p))
    return result


def enroll_dir(source: Path, p: paths.Paths, detector: vision.Detector) -> EnrollResult:
    if not source.is_dir():
        raise UserError(f"{source}: not a directory")
    files = sorted(f for f in source.iterdir() if f.is_file() and not f.name.startswith("."))
    if not files:
        raise UserError(f"{source}: holds no files")
    return enroll_files(files, p, detector)


def enroll_frames(
    frames: Iterable[np.ndarray | None],
    count: int,
    p: paths.Paths,
    detector: vision.Detector,
    progress: Callable[[int, int], None] = lambda done, want: None,
) -> EnrollResult:
    """Enroll up to `count` frames with one usable face from a stream (the webcam)."""
    result = EnrollResult()
    for frame in frames:
        if frame is None:
            continue
        crop, _ = single_face(frame, detector)
        if crop is None:
            continue
        stored = _store(crop, p)
        if stored is not None:  # a still camera repeats frames byte for byte: those count once
            result.added.append(stored)
            progress(len(result.added), count)
        if len(result.added) >= count:
            break
    result.total = len(enrolled(p))
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


