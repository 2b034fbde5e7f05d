"""The per-frame pipeline: frame -> faces -> owner scores -> Observation.

Daemon side: no TensorFlow here (the owner model runs through `runtime`, LiteRT by default).
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..core.observation import FaceVerdict, Observation, OwnerThresholds, decide, face_problem, is_grey, poorly_lit
from ..paths import Paths
from . import vision
from .tracking import Tracker
from .vision import Face

# --- the pipeline (an adapter around the detector and the owner model) --------------------------


class Verifier:
    """frame -> Observation, for the daemon. Never imports TensorFlow unless model.runtime = "h5".

    Build it with `Verifier.from_config(config, paths)`; call `observe(frame_bgr, now, precise)` per camera
    sample (a verified face is then tracked: `recognition/tracking.py`), `observe(image)` to judge
    every face afresh, or `score_image(image)` for a still photo (its subject: the face nearest the centre).
    """

    def __init__(self, model, thresholds: OwnerThresholds, detector: vision.Detector,
                 dark_threshold: float = 25.0, blur_threshold: float = 8.0, judge_min_score: float = 0.6,
                 people: tuple[str, ...] = ("owner",), owners: frozenset[str] = frozenset({"owner"}),
                 reverify_s: float = 5.0, full_scan_s: float = 2.0):
        # runtime.TFLiteModel or runtime.KerasModel: (1,112,112,3) RGB -> (1, people) scores
        self.model = model
        self.people = people  # the model's outputs, in order (owner.json)
        self.owners = owners  # those whose role is "owner" (config `people.roles`)
        self.thresholds = thresholds
        self.detector = detector
        self.quality = vision.Quality(dark_threshold, blur_threshold)
        self.judge_min_score = judge_min_score
        self.tracker = Tracker(detector, self.judge, reverify_s, full_scan_s, judge_min_score)

    @classmethod
    def from_config(cls, config: Config, where: Paths) -> "Verifier":
        import cv2

        from . import ownerfile, runtime

        # OpenCV's own pool (resizes, the quality check) and the detector as many threads as the model:
        # the daemon pays in CPU, and on these small images a second thread costs more CPU than it saves.
        cv2.setNumThreads(config.model.threads)
        # One directory for the metadata and the model file: a version published meanwhile is not mixed in.
        directory = ownerfile.model_dir(where)
        meta = ownerfile.meta_of(directory)
        suffix = ".h5" if config.model.runtime == "h5" else ".tflite"
        model = runtime.load(directory / f"owner{suffix}", threads=config.model.threads)
        if config.model.threshold is not None:  # the user's own choice applies to every condition
            thresholds = OwnerThresholds(config.model.threshold, config.model.threshold)
        else:
            thresholds = OwnerThresholds(meta.threshold, meta.threshold_grey)
        detector = vision.Detector(config.model.detect_width, config.model.min_detection_score,
                                   threads=config.model.threads)
        people = tuple(meta.people)
        owners = frozenset(n for n in people if config.people.role(n) == "owner")
        return cls(model, thresholds, detector, config.camera.dark_threshold, config.camera.blur_threshold,
                   config.model.min_detection_score, people, owners, config.sampling.reverify_s,
                   config.sampling.full_scan_s)

    def score_crop(self, crop_rgb: np.ndarray) -> np.ndarray:
        """The face's score for each person, in `people` order."""
        out = self.model(crop_rgb[None].astype(np.float32))[0]
        return np.asarray(out, np.float32).reshape(-1)

    def judge(self, frame: np.ndarray, face: Face) -> FaceVerdict:
        if face_problem(face, self.judge_min_score):
            return FaceVerdict(face, None, False)
        crop = vision.align(frame, face)
        scores = self.score_crop(crop)
        best = int(np.argmax(scores))
        score = float(scores[best])
        # Open-set, per person: the best-matching person's score must clear the same threshold a
        # one-person model has; below it the face is nobody enrolled.
        person = self.people[best] if decide(score, is_grey(crop), self.thresholds) else None
        # Nobody enrolled, or a face the light leaves too little of to tell: not a stranger then.
        unsure = person is None and poorly_lit(crop)
        return FaceVerdict(face, score, person in self.owners, person, unsure)

    def observe(self, frame_bgr: np.ndarray, now: float | None = None, precise: bool = False) -> Observation:
        """The frame's faces and verdicts. `now` (seconds, the sampling clock): a camera sample, on
        which a face tracked since an earlier sample keeps its verdict; None: every face judged afresh.
        `precise`: every face where a full scan finds it, none from a region (liveness is pending)."""
        # A followed face is read where it is; anything else is looked for in the whole frame.
        issue = self.quality(frame_bgr, self.tracker.followed_box(precise) if now is not None else None)
        if issue:
            self.tracker.drop()  # unseen for a sample: not continuous
            return Observation(skipped=issue)
        if now is None:
            return Observation(tuple(self.judge(frame_bgr, f) for f in self.detector(frame_bgr)))
        return Observation(self.tracker.faces(frame_bgr, now, precise))

    def score_image(self, image: np.ndarray) -> FaceVerdict | None:
        """The verdict on a still photo's subject (the face nearest the centre); None: no face."""
        face = vision.nearest_centre(self.detector(image), image.shape)
        return None if face is None else self.judge(image, face)
