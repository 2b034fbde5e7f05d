"""Templates that keep up: which of the daemon's frames may teach the model a person's new look.

Pure (standard library and numpy). A candidate is only ever a face on the *track* of an enrolled
person, and the track must prove it is one person from end to end: it starts at a face verified
and live, and goes on only while every next sample holds exactly one face where the last one was
(the same box, moved and resized only a little), that looks like its neighbour (`look`, below),
judged (no dark frame, no missed detection), and no other enrolled person's; at the first sample
where any of that fails, the track ends and what it held is dropped. The frames in between are
only kept once the same track reaches a verified, live frame again, so every candidate lies
between two verified frames of one unbroken track.

A look-alike cut into the owner's place between two samples (issue 23: a stranger scoring 0.37
for 0.8 s, then the owner again) must break all of that at once to be kept: the cut changes the
look between neighbours (`SAME_LOOK`), and even a face that passes is never kept from the band
where strangers are common: a candidate scores at least FLOOR (grey frames FLOOR_GREY), the
99.9th percentile of strangers' scores against owner models; the thresholds are that plus a
margin (recognition/ownerfile.py THRESHOLD_METHOD), so only the top 0.1% of strangers ever
reach the floor. bench/bench_adapt.py measures both on the dev sets and replays such swaps.

A candidate must also be new enough to add something (below NOVELTY). `facewarden train` applies
FLOOR and NOVELTY again against the templates it builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .observation import Face, FaceVerdict, Observation, is_grey

# Each threshold less its 0.05 margin: the 99.9th percentile of strangers' scores against owner
# models it was calibrated on (ownerfile.THRESHOLD_METHOD: colour 0.394, grey 0.425). bench_adapt.py
# measures the band again: 99.9th percentile 0.394 (LFW colour), 0.394 (LFW grey), 0.397 (ORL);
# 2.5% of LFW strangers score 0.30-0.45 (the old floor's band), 0.075% from 0.40 up.
FLOOR = 0.40
FLOOR_GREY = 0.43
NOVELTY = 0.70  # a face this close to a template already adds nothing
MAX_ADDED = 10  # added templates kept per person; the oldest added give way, never the enrolled
MAX_UNVERIFIED = 8  # samples a track may go without being verified again before its frames are dropped
MIN_OVERLAP = 0.5  # intersection over union of consecutive boxes on one track
MAX_RESIZE = 1.25  # width ratio of consecutive boxes: a face does not grow a quarter in a second
# Gradient-orientation likeness of neighbouring aligned faces (`look`). NUAA's live clips (8 people
# at a webcam, frames 0.2-1.6 s apart): 97% of one person's neighbours are above 0.80; two different
# people at the same desk: 98.5% below, at most 0.83. A cut that passes is still held to the floor.
SAME_LOOK = 0.80
_CELL = 8  # pixels of the half-size (56 x 56) face per histogram cell
_BINS = 8  # gradient orientations per cell


def overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def smooth(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Whether box `b` can be box `a` one sample later: mostly the same place, about the same size."""
    return overlap(a, b) >= MIN_OVERLAP and max(a[2], b[2]) <= MAX_RESIZE * max(1e-6, min(a[2], b[2]))


def look(crop_rgb: np.ndarray) -> np.ndarray:
    """A unit vector of how an aligned face looks (histograms of gradient orientations over a grid,
    each cell normalized, so light that dims or brightens the whole face changes little)."""
    grey = crop_rgb.astype(np.float32).reshape(crop_rgb.shape[0], crop_rgb.shape[1], -1).mean(2)
    h, w = grey.shape[0] // 2, grey.shape[1] // 2
    half = grey[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean((1, 3))
    gy, gx = np.gradient(half)
    strength = np.hypot(gx, gy)
    angle = np.minimum((np.arctan2(gy, gx) % np.pi) / np.pi * _BINS, _BINS - 1).astype(int)
    cells = np.zeros((h // _CELL + 1, w // _CELL + 1, _BINS), np.float32)
    np.add.at(cells, (np.arange(h)[:, None] // _CELL, np.arange(w)[None, :] // _CELL, angle), strength)
    cells /= np.linalg.norm(cells, axis=2, keepdims=True) + 1e-6
    vector = cells.ravel()
    return vector / max(1e-6, float(np.linalg.norm(vector)))


def wanted(score: float | None, grey: bool) -> bool:
    """A score new enough to add something and above the band where strangers are common."""
    return score is not None and (FLOOR_GREY if grey else FLOOR) <= score < NOVELTY


@dataclass
class Track:
    """One person's face followed across samples; `update` returns the crops it may learn from."""

    person: str | None = None
    box: tuple[float, float, float, float] | None = None
    seen: np.ndarray | None = None  # `look` of the track's last face
    unverified: int = 0
    pending: list[np.ndarray] = field(default_factory=list)

    def _end(self) -> None:
        self.person, self.box, self.seen, self.unverified, self.pending = None, None, None, 0, []

    def _continues(self, face: Face, seen: np.ndarray) -> bool:
        return (self.box is not None and self.seen is not None and smooth(self.box, face.box)
                and float(seen @ self.seen) >= SAME_LOOK)

    def update(self, observation: Observation, live: bool | None,
               crop: Callable[[Face], np.ndarray]) -> list[tuple[str, np.ndarray]]:
        """Feed one judged frame (`live`: the owner face's liveness); `crop` aligns a face of it."""
        if observation.skipped is not None:
            self._end()  # unseen, so not continuous
            return []
        owner = observation.owner_face
        # A verdict the tracker carried is not a verification of this frame's face: it only continues the track.
        if owner is not None and live is True and not owner.tracked:
            return self._verified(owner, crop)
        if self.box is None:
            return []
        on_track = [f for f in observation.faces if overlap(f.face.box, self.box) > 0]
        if len(on_track) != 1 or self.unverified >= MAX_UNVERIFIED or on_track[0].person not in (None, self.person):
            self._end()  # a missed detection, a second face where the one was, too long unverified, someone else
            return []
        face = on_track[0]
        image = crop(face.face)
        seen = look(image)
        if not self._continues(face.face, seen):
            self._end()  # a jump, or a cut to another face
            return []
        self.box, self.seen, self.unverified = face.face.box, seen, self.unverified + 1
        if wanted(face.score, is_grey(image)) and not face.tracked:  # a carried score is not this face's
            self.pending.append(image)
        return []

    def _verified(self, owner: FaceVerdict, crop: Callable[[Face], np.ndarray]) -> list[tuple[str, np.ndarray]]:
        image = crop(owner.face)
        seen = look(image)
        same = owner.person == self.person and self._continues(owner.face, seen)
        taken = self.pending if same else []
        person = owner.person or "owner"
        self.person, self.box, self.seen, self.unverified, self.pending = person, owner.face.box, seen, 0, []
        if wanted(owner.score, is_grey(image)):
            taken = taken + [image]
        return [(person, c) for c in taken]
