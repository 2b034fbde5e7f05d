"""The per-frame pipeline: frame -> faces -> owner scores -> Observation.

Daemon side: no TensorFlow here (the owner model runs through `runtime`, LiteRT by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import vision
from .config import Config
from .paths import Paths
from .vision import Face

# A face narrower than this (full-frame pixels) holds too little detail to enroll or to judge.
MIN_FACE_PX = 40
# Mean |R-G|+|G-B| of a crop below this: no colour to speak of (a grey JPEG keeps ~4, colour faces >15).
GREY_SPREAD = 8.0


@dataclass(frozen=True)
class FaceVerdict:
    face: Face
    score: float | None  # similarity to the owner; None when the face was not judged (too small, poor)
    owner: bool


@dataclass(frozen=True)
class Observation:
    faces: tuple[FaceVerdict, ...] = ()
    skipped: str | None = None  # why the frame was not judged at all ("dark", "blurry"), else None

    @property
    def owner_face(self) -> FaceVerdict | None:
        owners = [f for f in self.faces if f.owner]
        return max(owners, key=lambda f: f.score or 0.0) if owners else None


# --- the decision (pure) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    colour: float
    grey: float  # grey frames (IR cameras, night mode): faces crowd together there, so stricter

    def for_face(self, grey: bool) -> float:
        return self.grey if grey else self.colour


def is_grey(crop_rgb: np.ndarray) -> bool:
    """Whether a face crop carries no colour: an IR camera, a night mode, a grey photo."""
    if crop_rgb.ndim == 2 or crop_rgb.shape[2] == 1:
        return True
    c = crop_rgb.astype(np.int16)
    spread = np.abs(c[..., 0] - c[..., 1]) + np.abs(c[..., 1] - c[..., 2])
    return float(spread.mean()) < GREY_SPREAD


def decide(score: float | None, grey: bool, thresholds: Thresholds) -> bool:
    """The owner decision for one face: a judged score at or above its condition's threshold."""
    return score is not None and score >= thresholds.for_face(grey)


def face_problem(face: Face, min_score: float) -> str | None:
    """Why a detected face is too poor to enroll or judge, or None when it is usable."""
    if min(face.box[2], face.box[3]) < MIN_FACE_PX:
        return f"face too small ({min(face.box[2], face.box[3]):.0f} px, need {MIN_FACE_PX})"
    if face.score < min_score:
        return f"face unclear (detector confidence {face.score:.2f}, need {min_score:.2f})"
    return None


# --- the pipeline (an adapter around the detector and the owner model) --------------------------


class Verifier:
    """frame -> Observation, for the daemon. Never imports TensorFlow unless model.runtime = "h5".

    Build it with `Verifier.from_config(config, paths)`; call `observe(frame_bgr)` per frame, or
    `score_image(image)` for a still photo (its subject: the face nearest the centre).
    """

    def __init__(self, model, thresholds: Thresholds, detector: vision.Detector,
                 dark_threshold: float = 25.0, blur_threshold: float = 8.0, judge_min_score: float = 0.6):
        self.model = model  # runtime.TFLiteModel or runtime.KerasModel: (1,112,112,3) RGB -> (1,1) score
        self.thresholds = thresholds
        self.detector = detector
        self.dark_threshold = dark_threshold
        self.blur_threshold = blur_threshold
        self.judge_min_score = judge_min_score

    @classmethod
    def from_config(cls, config: Config, where: Paths) -> "Verifier":
        from . import owner, runtime

        meta = owner.read_meta(where)
        suffix = ".h5" if config.model.runtime == "h5" else ".tflite"
        model = runtime.load(where.models_dir / f"owner{suffix}", threads=config.model.threads)
        if config.model.threshold is not None:  # the user's own choice applies to every condition
            thresholds = Thresholds(config.model.threshold, config.model.threshold)
        else:
            thresholds = Thresholds(float(meta["threshold"]), float(meta["threshold_grey"]))
        detector = vision.Detector(config.model.detect_width, config.model.min_detection_score)
        return cls(model, thresholds, detector, config.camera.dark_threshold, config.camera.blur_threshold,
                   config.model.min_detection_score)

    def score_crop(self, crop_rgb: np.ndarray) -> float:
        out = self.model(crop_rgb[None].astype(np.float32))[0]
        return float(np.asarray(out).reshape(-1)[0])

    def judge(self, frame: np.ndarray, face: Face) -> FaceVerdict:
        if face_problem(face, self.judge_min_score):
            return FaceVerdict(face, None, False)
        crop = vision.align(frame, face)
        score = self.score_crop(crop)
        return FaceVerdict(face, score, decide(score, is_grey(crop), self.thresholds))

    def observe(self, frame_bgr: np.ndarray) -> Observation:
        issue = vision.quality_issue(frame_bgr, self.dark_threshold, self.blur_threshold)
        if issue:
            return Observation(skipped=issue)
        return Observation(tuple(self.judge(frame_bgr, f) for f in self.detector(frame_bgr)))

    def score_image(self, image: np.ndarray) -> FaceVerdict | None:
        """The verdict on a still photo's subject (the face nearest the centre); None: no face."""
        face = vision.nearest_centre(self.detector(image), image.shape)
        return None if face is None else self.judge(image, face)
