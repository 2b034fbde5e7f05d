"""The per-frame pipeline: frame -> faces -> owner scores -> Observation.

Daemon side: no TensorFlow here (the owner model runs through `runtime`, LiteRT by default).
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..core.observation import FaceVerdict, Observation, OwnerThresholds, decide, face_problem, is_grey
from ..paths import Paths
from . import vision
from .vision import Face

# --- the pipeline (an adapter around the detector and the owner model) --------------------------


class Verifier:
    """frame -> Observation, for the daemon. Never imports TensorFlow unless model.runtime = "h5".

    Build it with `Verifier.from_config(config, paths)`; call `observe(frame_bgr)` per frame, or
    `score_image(image)` for a still photo (its subject: the face nearest the centre).
    """

    def __init__(self, model, thresholds: OwnerThresholds, detector: vision.Detector,
                 dark_threshold: float = 25.0, blur_threshold: float = 8.0, judge_min_score: float = 0.6):
        self.model = model  # runtime.TFLiteModel or runtime.KerasModel: (1,112,112,3) RGB -> (1,1) score
        self.thresholds = thresholds
        self.detector = detector
        self.dark_threshold = dark_threshold
        self.blur_threshold = blur_threshold
        self.judge_min_score = judge_min_score

    @classmethod
    def from_config(cls, config: Config, where: Paths) -> "Verifier":
        from . import ownerfile, runtime

        # One directory for the metadata and the model file: a version published meanwhile is not mixed in.
        directory = ownerfile.model_dir(where)
        meta = ownerfile.meta_of(directory)
        suffix = ".h5" if config.model.runtime == "h5" else ".tflite"
        model = runtime.load(directory / f"owner{suffix}", threads=config.model.threads)
        if config.model.threshold is not None:  # the user's own choice applies to every condition
            thresholds = OwnerThresholds(config.model.threshold, config.model.threshold)
        else:
            thresholds = OwnerThresholds(meta.threshold, meta.threshold_grey)
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
