"""The surround cue: does the ring of the frame around the face move with the face?

A hand-held print carries its surround with it: its white margin, its edges, the fingers holding
it all move as the face moves. A live head moves in front of a background that stays still (the
camera sits on a laptop or a monitor). Between two samples, the ring around the face (the box grown
to SURROUND_OUTER, less the head at SURROUND_INNER) is compared with the earlier frame twice: as it
was (the background stood still) and carried by the face's own motion (a similarity fitted to the
mesh). On small grey frames: a few hundred microseconds.
"""

from __future__ import annotations

import cv2
import numpy as np

WIDTH = 160  # frames are compared at this width
SURROUND_OUTER = 2.0  # the ring's outer edge, in face-box sizes around the box's centre
SURROUND_INNER = 1.3  # ...its inner edge: the head and hair, which move with the face when alive
MIN_PIXELS = 200  # a ring with fewer pixels inside the frame (a face filling it) says nothing
MIN_CHANGE = 1.0  # grey levels: a ring this unchanged either way says nothing


def small_grey(frame: np.ndarray) -> np.ndarray:
    grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    height = round(grey.shape[0] * WIDTH / grey.shape[1])
    return cv2.resize(grey, (WIDTH, height), interpolation=cv2.INTER_AREA).astype(np.float32)


def _ring(box: tuple[float, float, float, float], shape: tuple[int, ...]) -> np.ndarray:
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    mask = np.zeros(shape[:2], np.uint8)
    for grow, value in ((SURROUND_OUTER, 1), (SURROUND_INNER, 0)):
        corner = (int(cx - w * grow / 2), int(cy - h * grow / 2))
        cv2.rectangle(mask, corner, (int(cx + w * grow / 2), int(cy + h * grow / 2)), value, -1)
    return mask.astype(bool)


def follows(before: np.ndarray, mesh_before: np.ndarray, after: np.ndarray, mesh_after: np.ndarray,
            box: tuple[float, float, float, float], frame_width: int) -> float | None:
    """(static error - carried error) / their sum over the ring around `box` (frame pixels, the
    later sample's face) in [-1, 1]: above 0 the surround moved with the face, below 0 it stood
    still. `before`, `after`: small_grey frames; meshes in frame pixels. None when it cannot tell."""
    scale = before.shape[1] / frame_width
    motion, _ = cv2.estimateAffinePartial2D((mesh_before * scale).astype(np.float32),
                                            (mesh_after * scale).astype(np.float32))
    if motion is None:
        return None
    ring = _ring(tuple(v * scale for v in box), after.shape)
    if ring.sum() < MIN_PIXELS:
        return None
    carried = cv2.warpAffine(before, motion, (after.shape[1], after.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    still = float(np.abs(after - before)[ring].mean())
    moved = float(np.abs(after - carried)[ring].mean())
    if still + moved < MIN_CHANGE:
        return None
    return (still - moved) / (still + moved)
