"""Finding faces in a frame (YuNet), aligning them for the encoder, and judging frame quality."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face, in full-frame pixel coordinates."""

    box: tuple[float, float, float, float]  # x, y, w, h
    # (5, 2): right eye, left eye, nose tip, right and left mouth corner (YuNet's order)
    landmarks: np.ndarray
    score: float  # detector confidence

    def yunet_row(self) -> np.ndarray:
        """The 15-value row `cv2.FaceRecognizerSF.alignCrop` expects."""
        return np.array([*self.box, *self.landmarks.reshape(-1), self.score], dtype=np.float32)
