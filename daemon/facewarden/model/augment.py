"""Augmentation for training: pure (a crop and a random generator in, a crop out)."""

from __future__ import annotations

import cv2
import numpy as np

from ..recognition.ownerfile import INPUT_SIZE


def augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One plausible webcam view of an enrolled RGB crop: lighting (level, gamma, a side light),
    grey (IR cameras), blur, JPEG, a small rotation, a mirror image."""
    x: np.ndarray = crop.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        angle = rng.uniform(-10, 10)
        m = cv2.getRotationMatrix2D((INPUT_SIZE / 2, INPUT_SIZE / 2), angle, rng.uniform(0.95, 1.05))
        x = cv2.warpAffine(x, m, (INPUT_SIZE, INPUT_SIZE), borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    x = x ** rng.uniform(0.7, 1.5) * rng.uniform(0.5, 1.2)
    if rng.random() < 0.3:  # light from one side
        ramp = np.linspace(1.0, rng.uniform(0.3, 0.8), INPUT_SIZE, dtype=np.float32)
        x = x * (ramp if rng.random() < 0.5 else ramp[::-1])[None, :, None]
    if rng.random() < 0.3:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    out: np.ndarray = np.clip(x * 255.0, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.4:
        _, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        out = cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)  # type: ignore[assignment]  # a JPEG we just encoded
    return np.ascontiguousarray(out)

