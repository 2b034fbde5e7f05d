"""The liveness tracker the daemon calls once per sample of the owner's face: it measures each
sample's cues (landmarks.py, surround.py, texture.py) and keeps the window that the pure rules
(core.liveness_rules) weigh."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..config import LivenessConfig
from ..core.liveness_rules import (MIN_IOD, MOTION_MAX, MOTION_MIN, PAIR_SPAN_S, RESIDUAL_SLOPE, THRESHOLDS, Cues,
                             LivenessThresholds, Verdict, mesh_shift, same_place, smooth_residual, verdict)
from ..core.observation import Face
from . import surround, texture
from .landmarks import Landmarker, MiniFASNet
from .runtime import trim_heap


@dataclass(frozen=True)
class _Seen:
    now: float
    mesh: np.ndarray
    iod: float


class LivenessTracker:
    """One face's liveness over time. `update` once per sample of the owner's face; `reset` when
    the face is lost or another person takes its place. Once judged live it stays live until reset
    or until the face jumps elsewhere (`same_place`), and costs nothing more meanwhile.

    The landmark models are loaded when a face first has to prove life and let go once it has: a
    live owner at the desk, most of the day, does not keep their 20 MB resident. Loading them again
    (when the owner comes back) costs about what one pending sample costs."""

    def __init__(self, config: LivenessConfig, landmarker: Landmarker | None = None,
                 thresholds: LivenessThresholds = THRESHOLDS, classifier: texture.TextureClassifier | None = None):
        self.window_s = config.window_s
        self.thresholds = thresholds
        self._given = landmarker  # kept for good (tests and benches share one)
        self._landmarker = landmarker
        self._texture = classifier or texture.shipped()
        self._model = MiniFASNet(config.model_path) if config.model_path else None
        self.reset()

    def reset(self) -> None:
        self._seen: deque[_Seen] = deque()
        self._cues: deque[tuple[float, Cues]] = deque()
        self._grey: np.ndarray | None = None  # the latest measured sample's small frame (surround)
        self.verdict: Verdict | None = None  # the window's latest verdict (None: nothing measured)
        self.last: Cues | None = None  # what the latest update measured (None: nothing)
        self._face: Face | None = None  # the face of the latest update

    @property
    def reason(self) -> str | None:
        """Why the face is live (`live: blink`) or not (yet: `spoof: no eye movement in 20 s`), for
        logs, status, the event log and hooks; None while no face is being judged."""
        if self.verdict is not None:
            return self.verdict.reason(self._cues[-1][0] - self._cues[0][0] if self._cues else 0.0)
        return None if self._face is None else "spoof: the face was too small or unclear to judge"

    @property
    def proving(self) -> bool:
        """The face has not shown life yet (or no face is being judged)."""
        return self.verdict is None or not self.verdict.live

    def update(self, frame_bgr: np.ndarray, face: Face, now: float) -> bool | None:
        """True once the face has shown life, None while pending (the caller's clock runs out)."""
        if self._face is not None and not same_place(self._face, face):
            self.reset()
        self._face = face
        self.last = None
        if self.verdict is not None and self.verdict.live:
            self._let_go()
            return True
        if self._landmarker is None:
            self._landmarker = Landmarker()
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
                excess = smooth_residual(earlier.mesh, marks.mesh, scale) - RESIDUAL_SLOPE * moved
                nonrigid = excess if nonrigid is None else max(nonrigid, excess)
        grey = surround.small_grey(frame_bgr)
        around = None
        if self._grey is not None and self._seen and motion is not None and motion >= MOTION_MIN:
            around = surround.follows(self._grey, self._seen[-1].mesh, grey, marks.mesh, face.box, frame_bgr.shape[1])
        self._seen.append(_Seen(now, marks.mesh, iod))
        self._grey = grey
        cues = Cues(
            ear=marks.ear,
            gaze=tuple(float(v) for v in marks.gaze),
            texture=self._texture(marks.crop),
            motion=motion,
            nonrigid=nonrigid,
            surround=around,
            model=self._model(frame_bgr, face) if self._model is not None else None,
        )
        self._cues.append((now, cues))
        self.last = cues
        self.verdict = verdict([c for _, c in self._cues], self.thresholds)
        if self.verdict.live:
            self._let_go()
            return True
        return None

    def _let_go(self) -> None:
        """Proved: the landmark models are not needed until a face must prove life again."""
        if self._landmarker is not self._given:
            self._landmarker = self._given
            trim_heap()
