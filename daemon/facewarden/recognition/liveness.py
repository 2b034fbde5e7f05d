"""The liveness tracker the daemon calls once per sample of the owner's face: it measures each
sample's cues (landmarks.py) and keeps the window that the pure rules (core.liveness) judge."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..config import Liveness
from ..core.liveness import (MIN_IOD, MOTION_MAX, MOTION_MIN, PAIR_SPAN_S, RESIDUAL_SLOPE, THRESHOLDS, Cues,
                             LivenessThresholds, judge, mesh_shift, same_place)
from ..core.observation import Face
from .landmarks import Landmarker, MiniFASNet, homography_residual, texture


@dataclass(frozen=True)
class _Seen:
    now: float
    mesh: np.ndarray
    iod: float




class LivenessTracker:
    """One face's liveness over time. `update` once per sample of the owner's face; `reset` when
    the face is lost or another person takes its place. Once judged live it stays live until reset
    or until the face jumps elsewhere (`same_place`), and costs nothing more meanwhile."""

    def __init__(self, config: Liveness, landmarker: Landmarker | None = None,
                 thresholds: LivenessThresholds = THRESHOLDS):
        self.enabled = config.enabled
        self.window_s = config.window_s
        self.thresholds = thresholds
        self._landmarker = landmarker or Landmarker() if self.enabled else None
        self._model = MiniFASNet(config.model_path) if self.enabled and config.model_path else None
        self.reset()

    def reset(self) -> None:
        self._seen: deque[_Seen] = deque()
        self._cues: deque[tuple[float, Cues]] = deque()
        self.reason: str | None = None  # the cue that proved life, for logs and status
        self.last: Cues | None = None  # what the latest update measured (None: nothing)
        self._face: Face | None = None  # the face of the latest update

    def update(self, frame_bgr: np.ndarray, face: Face, now: float) -> bool | None:
        """True once the face has shown life, None while pending (the caller's clock runs out)."""
        if not self.enabled:
            return True
        if self._face is not None and not same_place(self._face, face):
            self.reset()
        self._face = face
        self.last = None
        if self.reason is not None:
            return True
        assert self._landmarker is not None  # made whenever liveness is enabled
        marks = self._landmarker(frame_bgr, face)
        if marks is None or marks.iod < MIN_IOD:
            return None  # no face in the box for the mesh model, or too small: no evidence
        iod = marks.iod
        while self._seen and now - self._seen[0].now > PAIR_SPAN_S:
            self._seen.popleft()
        while self._cues and now - self._cues[0][0] > self.window_s:
            self._cues.popleft()
        motion = None
        nonrigid = None
        for i, earlier in enumerate(reversed(self._seen)):
            scale = (earlier.iod + iod) / 2
            moved = mesh_shift(earlier.mesh, marks.mesh, scale)
            if i == 0:
                motion = moved
            # The fit is the costly part, and pairs outside the band are not judged anyway.
            if MOTION_MIN <= moved <= MOTION_MAX:
                excess = homography_residual(earlier.mesh, marks.mesh, scale) - RESIDUAL_SLOPE * moved
                nonrigid = excess if nonrigid is None else max(nonrigid, excess)
        self._seen.append(_Seen(now, marks.mesh, iod))
        cues = Cues(
            ear=marks.ear,
            gaze=tuple(float(v) for v in marks.gaze),
            texture=texture(marks.crop),
            motion=motion,
            nonrigid=nonrigid,
            model=self._model(frame_bgr, face) if self._model is not None else None,
        )
        self._cues.append((now, cues))
        self.last = cues
        self.reason = judge([c for _, c in self._cues], self.thresholds)
        return True if self.reason is not None else None
