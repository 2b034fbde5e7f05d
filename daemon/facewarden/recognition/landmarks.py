"""Liveness: is the verified face a live head or a photo of one?

The landmark cues, from MediaPipe's landmark models (face mesh and iris, run with LiteRT) on the
face the detector found:
- blinks: the iris model's eye contour closes with the eyelid (the mesh's own eyelids do not), so
  the eye aspect ratio dips well below the person's usual value;
- gaze shifts: a live person's eyes move within their sockets (saccades, fixations, following the
  screen as the head turns) even while the head is still; a photo's irises stay where they were
  printed relative to the eye corners;
- local motion: the mesh's move between two samples after the best smooth warp of the whole face
  (core.liveness_rules.smooth_residual): a photo, tilted, bent or curled, leaves nothing; eyelids, lips
  and cheeks moving against the face's outline do. The residual is only judged for frame pairs
  whose motion falls in a fixed band, never by how much a face moves.
The other cues are measured beside these: the surround (surround.py) and texture (texture.py).
`core.liveness_rules.verdict` (pure) weighs a window of per-sample cues; an optional MiniFASNet the user
supplies must then agree. This module measures; the rules are `core.liveness_rules`, the window
`recognition.liveness`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..core.observation import Face
from ..errors import UserError
from . import assets
from .runtime import TFLiteModel, release_file_pages

MESH_SIZE = 192  # face_landmark.tflite input, RGB in [0, 1]
EYE_SIZE = 64  # iris_landmark.tflite input, RGB in [0, 1]
MESH_ROI_SCALE = 1.5  # MediaPipe's face ROI: the detection box grown by half
EYE_ROI_SCALE = 2.3  # MediaPipe's eye ROI: eye corners' box grown to include the brow
MESH_PRESENT = 0.5  # the mesh model's face-present probability below which it saw no face
# Eye corners in the 468-point mesh (outer, inner for the eye on the image's left; inner, outer
# for the other), as MediaPipe's iris graph uses them to place the eye ROIs.
EYE_CORNERS = ((33, 133), (362, 263))


def _roi_matrix(center: np.ndarray, side: float, angle: float, size: int) -> np.ndarray:
    """The 2x3 affine map from frame pixels to a `size`-pixel square crop of side `side` around
    `center`, rotated by `angle` so that the crop's x axis runs along that direction."""
    scale = size / side
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    # u = R(-angle) * scale * (p - center) + size/2
    return np.array(
        [
            [c, s, size / 2 - c * center[0] - s * center[1]],
            [-s, c, size / 2 + s * center[0] - c * center[1]],
        ],
        dtype=np.float64,
    )


def _to_frame(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    inverse = cv2.invertAffineTransform(matrix)
    return points @ inverse[:, :2].T + inverse[:, 2]


def eye_aspect_ratio(contour: np.ndarray) -> float:
    """Eyelid opening over eye width from the iris model's 16-point eyeball contour.

    Points 0-8 are the lower lid from corner to corner, 9-15 the upper lid without the corners,
    so upper point 9+k lies above lower point 1+k. Ratios are unchanged by the crop's rotation,
    scale and flip, so the contour may stay in crop pixels.
    """
    lower, upper = contour[2:7], contour[10:15]
    opening = np.linalg.norm(upper - lower, axis=1).mean()
    width = np.linalg.norm(contour[8] - contour[0])
    return float(opening / width) if width > 0 else 0.0


def iris_position(contour: np.ndarray, iris_centre: np.ndarray) -> np.ndarray:
    """Where the iris centre sits between the eye corners: along the corner line and across it,
    in eye widths (unchanged by the crop's rotation and scale, like the aspect ratio)."""
    axis = contour[8] - contour[0]
    offset = iris_centre - contour[0]
    norm = float(axis @ axis) or 1.0
    return np.array([offset @ axis / norm, (axis[0] * offset[1] - axis[1] * offset[0]) / norm])


@dataclass(frozen=True)
class Landmarks:
    mesh: np.ndarray  # (468, 2) frame pixels
    ear: float  # eye aspect ratio, mean of both eyes
    gaze: np.ndarray  # (4,): both irises' positions between their eye corners (iris_position)
    crop: np.ndarray  # the face ROI the mesh model saw, BGR uint8, MESH_SIZE square

    @property
    def iod(self) -> float:
        """Inter-ocular distance: between the two eyes' corner midpoints, in pixels."""
        (a, b), (c, d) = EYE_CORNERS
        left = (self.mesh[a] + self.mesh[b]) / 2
        right = (self.mesh[c] + self.mesh[d]) / 2
        return float(np.linalg.norm(right - left))


class Landmarker:
    """The face mesh and iris models, run with LiteRT on one face."""

    def __init__(self, threads: int = 1):
        # One thread: these models take a millisecond or two each, less than threads cost to wake.
        # They are loaded whenever a face must prove life (an owner's return), beside everything
        # else: the peak RSS. The library pages mapped since the last release go first, once for
        # both (each release costs tens of ms): with the page cache's large folios, each page that a
        # rarely run path (a stranger, a full scan) touched maps its whole folio, megabytes of it.
        release_file_pages()
        self._mesh = TFLiteModel(assets.path(assets.FACE_MESH), threads, release=False)
        self._iris = TFLiteModel(assets.path(assets.IRIS), threads, release=False)

    @staticmethod
    def _run(model: TFLiteModel, crops_bgr: np.ndarray) -> list[np.ndarray]:
        """`crops_bgr`: one crop or a batch of them, BGR uint8; the model sees RGB in [0, 1]."""
        rgb = crops_bgr[..., ::-1].astype(np.float32) * (1 / 255)
        return model(rgb if rgb.ndim == 4 else rgb[np.newaxis])

    def __call__(self, frame_bgr: np.ndarray, face: Face) -> Landmarks | None:
        """The mesh and eyes of `face`, or None when the mesh model sees no face there."""
        if frame_bgr.ndim == 2:  # an IR or grey camera: the models take three channels
            frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
        x, y, w, h = face.box
        eye_a, eye_b = face.landmarks[0], face.landmarks[1]
        angle = math.atan2(eye_b[1] - eye_a[1], eye_b[0] - eye_a[0])
        matrix = _roi_matrix(np.array([x + w / 2, y + h / 2]), max(w, h) * MESH_ROI_SCALE, angle, MESH_SIZE)
        crop = cv2.warpAffine(frame_bgr, matrix, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR)
        raw, present = self._run(self._mesh, crop)
        if 1 / (1 + math.exp(-float(present.reshape(-1)[-1]))) <= MESH_PRESENT:
            return None
        mesh = _to_frame(raw.reshape(-1, 3)[:, :2].astype(np.float64), matrix)
        # Both eyes in one batch: one pass over the model's weights instead of two.
        contours, irises = self._run(self._iris, np.stack([self._eye_crop(frame_bgr, mesh, i) for i in range(2)]))
        eyes = [
            (eye_aspect_ratio(contour), iris_position(contour, iris[0]))
            for contour, iris in zip(contours.reshape(2, -1, 3)[:, :16, :2], irises.reshape(2, -1, 3)[:, :, :2])
        ]
        return Landmarks(
            mesh=mesh,
            ear=float(np.mean([ear for ear, _ in eyes])),
            gaze=np.concatenate([gaze for _, gaze in eyes]),
            crop=crop,
        )

    @staticmethod
    def _eye_crop(frame_bgr: np.ndarray, mesh: np.ndarray, eye: int) -> np.ndarray:
        a, b = mesh[EYE_CORNERS[eye][0]], mesh[EYE_CORNERS[eye][1]]
        side = max(abs(b[0] - a[0]), abs(b[1] - a[1])) * EYE_ROI_SCALE
        angle = math.atan2(b[1] - a[1], b[0] - a[0])
        matrix = _roi_matrix((a + b) / 2, side, angle, EYE_SIZE)
        crop = cv2.warpAffine(frame_bgr, matrix, (EYE_SIZE, EYE_SIZE), flags=cv2.INTER_LINEAR)
        # The iris model knows one eye; the other is shown to it mirrored, as MediaPipe does.
        return crop[:, ::-1] if eye == 1 else crop


# -- the optional anti-spoofing model -----------------------------------------------------------


class MiniFASNet:
    """A MiniFASNet ONNX file the user supplies (minivision's Silent-Face-Anti-Spoofing), run with
    OpenCV's dnn. Its crop protocol: the face box scaled by the factor that starts the file name
    ("2.7_80x80_MiniFASNetV2.onnx"; 2.7 when the name has none), shifted to stay inside the frame,
    resized to 80x80, raw BGR 0-255 in NCHW; softmax over the outputs, class 1 = live."""

    SIZE = 80

    def __init__(self, path: Path):
        path = Path(path).expanduser()
        if not path.is_file():
            raise UserError(f"liveness.model_path: {path} does not exist")
        try:
            self.scale = float(path.name.split("_", 1)[0])
        except ValueError:
            self.scale = 2.7
        try:
            self._net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as e:
            raise UserError(f"liveness.model_path: {path} is not a readable ONNX model: {e}") from None

    def crop(self, frame_bgr: np.ndarray, face: Face) -> np.ndarray:
        height, width = frame_bgr.shape[:2]
        x, y, w, h = face.box
        # minivision's _get_new_box: as large as asked, but never larger than the frame.
        scale = min(self.scale, (height - 1) / h, (width - 1) / w)
        new_w, new_h = w * scale, h * scale
        cx, cy = x + w / 2, y + h / 2
        left = min(max(cx - new_w / 2, 0.0), width - 1 - new_w)
        top = min(max(cy - new_h / 2, 0.0), height - 1 - new_h)
        box = frame_bgr[int(top) : int(top + new_h) + 1, int(left) : int(left + new_w) + 1]
        return cv2.resize(box, (self.SIZE, self.SIZE))

    def __call__(self, frame_bgr: np.ndarray, face: Face) -> float:
        blob = self.crop(frame_bgr, face).astype(np.float32).transpose(2, 0, 1)[np.newaxis]
        self._net.setInput(np.ascontiguousarray(blob))
        logits = self._net.forward().reshape(-1).astype(np.float64)
        if logits.size < 2:
            raise UserError("liveness.model_path: the model must output at least 2 classes (1 = live)")
        p = np.exp(logits - logits.max())
        return float(p[1] / p.sum())


