"""Templates that keep up: which of the daemon's frames may teach the model a person's new look.

Pure (standard library and numpy). A candidate is only ever a face on the *track* of an enrolled
person: the track starts at a face verified and live, follows the one face that overlaps it from
sample to sample, and ends at the first frame where that is not clear (no face or two faces there,
a frame not judged, another enrolled person's face, too many samples without being verified
again). The frames in between are only kept once the same track reaches a verified, live frame
again, so every candidate lies between two verified frames of one continuous track.

Why an attacker cannot teach the model their face: their face is never verified, so it never
starts a track; sitting down after the owner left finds no track (the owner's face left, which
ended it); and taking the owner's place between two samples, on the owner's track, leaves frames
that wait for a verification of that track that never comes, and are dropped.

A candidate must also be new enough to add something (its score, the cosine to that person's
nearest template, below NOVELTY) and close enough to be that person (at least FLOOR, well under the
threshold). `facewarden train` applies the same two bounds against the templates it builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .observation import Face, FaceVerdict, Observation

FLOOR = 0.30  # well under the thresholds (0.45 colour, 0.48 grey), above most strangers' scores
NOVELTY = 0.70  # a face this close to a template already adds nothing
MAX_ADDED = 10  # added templates kept per person; the oldest added give way, never the enrolled
MAX_UNVERIFIED = 8  # samples a track may go without being verified again before its frames are dropped
MIN_OVERLAP = 0.4  # intersection over union of consecutive boxes on one track


def overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def wanted(score: float | None) -> bool:
    return score is not None and FLOOR <= score < NOVELTY


@dataclass
class Track:
    """One person's face followed across samples; `update` returns the crops it may learn from."""

    person: str | None = None
    box: tuple[float, float, float, float] | None = None
    unverified: int = 0
    pending: list[np.ndarray] = field(default_factory=list)

    def _end(self) -> None:
        self.person, self.box, self.unverified, self.pending = None, None, 0, []

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
        on_track = [f for f in observation.faces if overlap(f.face.box, self.box) >= MIN_OVERLAP]
        if len(on_track) != 1 or self.unverified >= MAX_UNVERIFIED or on_track[0].person not in (None, self.person):
            self._end()
            return []
        face = on_track[0]
        self.box, self.unverified = face.face.box, self.unverified + 1
        if wanted(face.score) and not face.tracked:  # a carried score is not this face's
            self.pending.append(crop(face.face))
        return []

    def _verified(self, owner: FaceVerdict, crop: Callable[[Face], np.ndarray]) -> list[tuple[str, np.ndarray]]:
        same = (self.box is not None and owner.person == self.person
                and overlap(owner.face.box, self.box) >= MIN_OVERLAP)
        taken = self.pending if same else []
        person = owner.person or "owner"
        self.person, self.box, self.unverified, self.pending = person, owner.face.box, 0, []
        if wanted(owner.score):
            taken = taken + [crop(owner.face)]
        return [(person, c) for c in taken]
