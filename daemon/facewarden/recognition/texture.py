"""Texture liveness: a small linear classifier over uniform LBP histograms of the face crop.

A print or screen recaptured by the camera loses fine detail and gains paper grain, halftone and
moire patterns; local binary patterns (Ojala et al. 2002; on NUAA, Maatta et al. 2011) describe that
micro-texture and are unchanged by monotonic lighting changes. The weights are trained by
bench/train_liveness_texture.py and ship in the package (data/liveness_texture.npy), checked by
sha256 like the other model files. Plain numpy and OpenCV: no scikit-image in the daemon.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

import cv2
import numpy as np

from ..errors import UserError

SIZE = 64  # the face is resized to this square before its patterns are counted
GRID = 3  # histograms over GRID x GRID cells, plus one over the whole face
RADII = (1, 2)
WEIGHTS = "liveness_texture.npy"
# bench/train_liveness_texture.py prints it
WEIGHTS_SHA256 = "802947dd1e7c757eab042fce700040f11cc205644b703b4cca543106fde5f58a"


def _uniform_table() -> np.ndarray:
    """The 256 8-bit patterns mapped to 59 bins: one per pattern with at most two 0/1 transitions
    around the circle (58 of them), and one shared bin for all the others."""
    table = np.full(256, 58, np.int64)
    uniform = [c for c in range(256) if bin(c ^ ((c >> 1) | ((c & 1) << 7))).count("1") <= 2]
    table[uniform] = np.arange(len(uniform))
    return table


UNIFORM = _uniform_table()
BINS = 59
# The eight neighbours, counter-clockwise from the right (integer offsets: no interpolation).
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def lbp(grey: np.ndarray, radius: int) -> np.ndarray:
    """Uniform LBP bin (0-58) of every pixel at least `radius` from the border."""
    h, w = grey.shape
    centre = grey[radius : h - radius, radius : w - radius]
    code = np.zeros(centre.shape, np.int64)
    for bit, (dy, dx) in enumerate(_NEIGHBOURS):
        y, x = radius + dy * radius, radius + dx * radius
        code |= (grey[y : y + centre.shape[0], x : x + centre.shape[1]] >= centre).astype(np.int64) << bit
    return UNIFORM[code]


def face_grey(crop_bgr: np.ndarray) -> np.ndarray:
    """The face itself from the mesh ROI (the detection box grown by half): its central two thirds,
    grey, SIZE square."""
    side = crop_bgr.shape[0]
    face = crop_bgr[side // 6 : side - side // 6, side // 6 : side - side // 6]
    grey = face if face.ndim == 2 else cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def features(crop_bgr: np.ndarray) -> np.ndarray:
    """Normalised LBP histograms of the face: per radius, the whole face and each grid cell."""
    grey = face_grey(crop_bgr)
    parts = []
    for radius in RADII:
        codes = lbp(grey, radius)
        cells = [codes] + [
            block
            for rows in np.array_split(codes, GRID, axis=0)
            for block in np.array_split(rows, GRID, axis=1)
        ]
        for cell in cells:
            hist = np.bincount(cell.ravel(), minlength=BINS).astype(np.float64)
            parts.append(np.sqrt(hist / hist.sum()))  # Hellinger: tames the dominant flat-area bins
    return np.concatenate(parts)


@dataclass(frozen=True)
class TextureClassifier:
    """Logistic regression on standardised features."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def score(self, feats: np.ndarray) -> np.ndarray:
        """Live probability of each row of features (or of one vector)."""
        z = ((feats - self.mean) / self.scale) @ self.weights + self.bias
        return 1 / (1 + np.exp(-z))

    def __call__(self, crop_bgr: np.ndarray) -> float:
        return float(self.score(features(crop_bgr)))

    def to_bytes(self) -> bytes:
        """One float32 .npy array of rows mean, scale, weights, bias (the bias repeated): unlike an
        .npz (a zip, with times in it), the same weights always give the same bytes and digest."""
        rows = np.stack([self.mean, self.scale, self.weights, np.full_like(self.weights, self.bias)])
        out = io.BytesIO()
        np.save(out, rows.astype("<f4"), allow_pickle=False)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, expected_sha256: str = WEIGHTS_SHA256, name: str = WEIGHTS) -> "TextureClassifier":
        """The classifier from its weights file's bytes, refused unless they match the digest."""
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise UserError(
                f"liveness texture weights {name} have sha256 {actual[:12]}…, expected {expected_sha256[:12]}…: "
                "reinstall facewarden"
            )
        rows = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float64)
        return cls(rows[0], rows[1], rows[2], float(rows[3][0]))


@cache
def shipped() -> TextureClassifier:
    """The classifier that ships in the package, checked."""
    try:
        data = resources.files("facewarden").joinpath("data", WEIGHTS).read_bytes()
    except FileNotFoundError:
        raise UserError(f"liveness texture weights data/{WEIGHTS} are missing: reinstall facewarden") from None
    return TextureClassifier.from_bytes(data)
