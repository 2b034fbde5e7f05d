"""What one frame showed, and the owner decision for one face: pure (standard library and numpy).

The recognition layer fills these in from a frame; presence and the service only read them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A face narrower than this (full-frame pixels) holds too little detail to enroll or to judge.
MIN_FACE_PX = 40
# Mean |R-G|+|G-B| of a crop below this: no colour to speak of (a grey JPEG keeps ~4, colour faces >15).
GREY_SPREAD = 8.0
# The light on a face's shadow side (`shadow_level`) below which a face that is not matched is
# "unsure", not a stranger. Measured with bench/bench_accuracy.py (section 4: LFW and ORL, normal
# light against two simulated side lights, subjects held out): normal faces reach below 61 (LFW)
# and 84 (ORL) in 1 case of 100, side-lit ones stay under 53.
SHADOW_MIN = 55.0


@dataclass(frozen=True)
class Face:
    """One detected face, in full-frame pixel coordinates."""

    box: tuple[float, float, float, float]  # x, y, w, h
    # (5, 2): right eye, left eye, nose tip, right and left mouth corner (YuNet's order)
    landmarks: np.ndarray
    score: float  # detector confidence



@dataclass(frozen=True)
class FaceVerdict:
    face: Face
    score: float | None  # similarity to the best-matching enrolled person; None when not judged (too small, poor)
    owner: bool  # it is an enrolled person whose role is "owner"
    person: str | None = None  # the enrolled person it is (any role); None: a stranger, or not judged
    unsure: bool = False  # not matched, but too poorly lit to call a stranger (`lighting_problem`)
    tracked: bool = False  # the verdict of an earlier sample, carried by the track (recognition/tracking.py)


@dataclass(frozen=True)
class Observation:
    faces: tuple[FaceVerdict, ...] = ()
    skipped: str | None = None  # why the frame was not judged at all ("dark", "blurry"), else None

    @property
    def owner_face(self) -> FaceVerdict | None:
        owners = [f for f in self.faces if f.owner]
        return max(owners, key=lambda f: f.score or 0.0) if owners else None



@dataclass(frozen=True)
class OwnerThresholds:
    colour: float
    grey: float  # grey frames (IR cameras, night mode): faces crowd together there, so stricter

    def for_face(self, grey: bool) -> float:
        return self.grey if grey else self.colour


def is_grey(crop_rgb: np.ndarray) -> bool:
    """Whether a face crop carries no colour: an IR camera, a night mode, a grey photo."""
    if crop_rgb.ndim == 2 or crop_rgb.shape[2] == 1:
        return True
    c = crop_rgb.astype(np.int16)
    spread = np.abs(c[..., 0] - c[..., 1]) + np.abs(c[..., 1] - c[..., 2])
    return float(spread.mean()) < GREY_SPREAD


def shadow_level(crop_rgb: np.ndarray) -> float:
    """The mean grey level (0-255) of the darker half, left or right, of an aligned 112x112 face crop's
    inner face: low when the face is half in shadow (a light from the side) or all of it is dim."""
    grey = crop_rgb.astype(np.float32) if crop_rgb.ndim == 2 else crop_rgb.astype(np.float32).mean(axis=2)
    h, w = grey.shape
    inner = grey[h * 5 // 28: h * 25 // 28, w // 7: w * 6 // 7]  # rows 20-100, columns 16-96 at 112 px
    half = inner.shape[1] // 2
    return float(min(inner[:, :half].mean(), inner[:, half:].mean()))


def poorly_lit(crop_rgb: np.ndarray) -> bool:
    """Whether a face is too poorly lit to tell who it is (`SHADOW_MIN`)."""
    return shadow_level(crop_rgb) < SHADOW_MIN


def decide(score: float | None, grey: bool, thresholds: OwnerThresholds) -> bool:
    """The owner decision for one face: a judged score at or above its condition's threshold."""
    return score is not None and score >= thresholds.for_face(grey)


def face_problem(face: Face, min_score: float) -> str | None:
    """Why a detected face is too poor to enroll or judge, or None when it is usable."""
    if min(face.box[2], face.box[3]) < MIN_FACE_PX:
        return f"face too small ({min(face.box[2], face.box[3]):.0f} px, need {MIN_FACE_PX})"
    if face.score < min_score:
        return f"face unclear (detector confidence {face.score:.2f}, need {min_score:.2f})"
    return None

