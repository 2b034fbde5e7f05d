"""Train the texture classifier that ships in the package (daemon/facewarden/data/liveness_texture.npy).

Every frame of every nuaa-dev clip (../shared/data/faces/nuaa-dev/sequences: 8 people, a live clip
and two printed-photo clips each, 40 frames a clip) goes through the daemon's own detector and
mesh model; the face crop the mesh model saw gives the uniform LBP histograms
(recognition.texture.features), live frames label 1, photo frames 0. The classifier is a logistic
regression (L2, classes weighted equally) fitted by plain gradient descent from zero: the same
frames always give the same weights and the same file, byte for byte.

It reports leave-one-subject-out accuracy per frame (fitted on 7 people, scored on the 8th) and, for
the weights fitted on all 8, the accuracy on the single frames in nuaa-dev/live and nuaa-dev/spoof
(most of them people who appear in no clip). NUAA is for research use (Tan et al., ECCV 2010):
so are these weights.

    python bench/train_liveness_texture.py [--faces DIR] [--write]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from facewarden.recognition.landmarks import Landmarker
from facewarden.recognition.texture import WEIGHTS, TextureClassifier, features
from facewarden.recognition.vision import Detector

REPO = Path(__file__).resolve().parent.parent
FACES = Path(os.environ.get("FACEWARDEN_FACES", REPO.parent / "shared" / "data" / "faces"))
OUT = REPO / "daemon" / "facewarden" / "data" / WEIGHTS
L2 = 0.1  # strong: 1,180 features from 8 people; weaker fits scored worse held out
STEPS = 500
RATE = 0.5


def face_features(frame: np.ndarray, detector: Detector, landmarker: Landmarker) -> np.ndarray | None:
    """Features of the frame's largest face, as the tracker measures them; None without one."""
    faces = detector(frame)
    if not faces:
        return None
    marks = landmarker(frame, max(faces, key=lambda f: f.box[2] * f.box[3]))
    return None if marks is None else features(marks.crop)


def clip_features(faces: Path, detector: Detector, landmarker: Landmarker) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per subject, the features of their clips' frames and the labels (1 live, 0 photo)."""
    root = faces / "nuaa-dev" / "sequences"
    with open(root / "index.csv", newline="") as f:
        clips = list(csv.DictReader(f))
    rows: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    for clip in clips:
        xs, ys = rows.setdefault(clip["subject"], ([], []))
        for image in sorted((root / clip["clip"]).glob("*.jpg")):
            feats = face_features(cv2.imread(str(image)), detector, landmarker)
            if feats is not None:
                xs.append(feats)
                ys.append(int(clip["kind"] == "live"))
    return {s: (np.array(xs), np.array(ys)) for s, (xs, ys) in rows.items()}


def fit(x: np.ndarray, y: np.ndarray) -> TextureClassifier:
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    # Each class weighs half, whatever their counts.
    balance = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    weights = np.zeros(z.shape[1])
    bias = 0.0
    for _ in range(STEPS):
        error = (1 / (1 + np.exp(-(z @ weights + bias))) - y) * balance
        weights -= RATE * (z.T @ error / len(y) + L2 * weights)
        bias -= RATE * error.mean()
    return TextureClassifier(mean, scale, weights, bias)


def fit_without(data: dict[str, tuple[np.ndarray, np.ndarray]], left_out: str | None = None) -> TextureClassifier:
    """The classifier fitted on every subject but `left_out`."""
    kept = [v for s, v in data.items() if s != left_out]
    return fit(np.concatenate([x for x, _ in kept]), np.concatenate([y for _, y in kept]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=FACES, help="the shared face data folder")
    parser.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(REPO)}")
    args = parser.parse_args()
    if not (args.faces / "nuaa-dev" / "sequences" / "index.csv").is_file():
        print(f"train_liveness_texture: {args.faces}/nuaa-dev is absent (the shared face data is not here)", file=sys.stderr)
        return 2
    detector, landmarker = Detector(), Landmarker()
    data = clip_features(args.faces, detector, landmarker)
    print("leave-one-subject-out, per frame (fitted on the other 7 people):")
    right = total = 0
    for subject, (x, y) in data.items():
        p = fit_without(data, subject).score(x)
        hits = int(((p >= 0.5) == (y == 1)).sum())
        right, total = right + hits, total + len(y)
        print(f"  {subject}: {hits}/{len(y)}   live median {np.median(p[y == 1]):.2f}   photo median {np.median(p[y == 0]):.2f}")
    print(f"  all: {right}/{total} = {100 * right / total:.1f}%")
    classifier = fit_without(data)
    for kind, label in (("live", 1), ("spoof", 0)):
        frames = sorted((args.faces / "nuaa-dev" / kind).glob("*.jpg"))
        feats = [f for f in (face_features(cv2.imread(str(p)), detector, landmarker) for p in frames) if f is not None]
        hits = sum((classifier.score(f) >= 0.5) == bool(label) for f in feats)
        print(f"single {kind} frames (fitted on all 8): {hits}/{len(feats)} right")
    data_bytes = classifier.to_bytes()
    print(f"{WEIGHTS}: {len(data_bytes)} bytes, sha256 {hashlib.sha256(data_bytes).hexdigest()}")
    if args.write:
        OUT.write_bytes(data_bytes)
        print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
