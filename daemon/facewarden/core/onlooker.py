"""Which second faces are onlookers: pure geometry on YuNet's box and five landmarks.

A face is an onlooker only when it is close enough to read the screen (its width relative to the
owner's face: both sit at similar distances only when they are side by side) and turned towards
it (head yaw). Yaw comes from the landmarks already detected: on a frontal face the nose tip sits
midway between the eyes; as the head turns it moves towards one eye. Measured along the eye line
and in eye distances, so it does not depend on the face's size or on a tilted head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .observation import Face


@dataclass(frozen=True)
class Reach:
    """The limits (config `onlooker`): how large, relative to the owner's face, and how frontal."""

    min_relative_size: float
    max_yaw: float


def yaw(face: Face) -> float:
    """How far the head is turned: 0 frontal, about 0.5 at a half profile (the nose over one eye)."""
    right_eye, left_eye, nose = (np.asarray(face.landmarks[i], float) for i in range(3))
    axis = left_eye - right_eye
    span = float(axis @ axis)
    if span < 1e-6:
        return 1.0  # no eye distance to speak of: a profile
    return abs(float((nose - (right_eye + left_eye) / 2) @ axis) / span)


def relative_size(face: Face, owner: Face) -> float:
    return face.box[2] / max(1.0, owner.box[2])


def can_read_screen(face: Face, owner: Face, reach: Reach) -> bool:
    return relative_size(face, owner) >= reach.min_relative_size and yaw(face) <= reach.max_yaw
