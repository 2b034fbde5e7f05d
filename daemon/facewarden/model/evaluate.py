"""Face-pair evaluation: LFW-format pairs, pure metrics (accuracy, TAR at FAR, EER) and the ROC plot."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import UserError
from ..recognition import vision
from ..recognition.vision import read_image

STILL_DETECT_WIDTH = 640  # photos: detect on more pixels than a live frame, faces may be small
STILL_MIN_SCORE = 0.5  # the pair benchmark's detector cut (YuNet's 0.9 default misses LFW faces)


def parse_pairs(text: str, source: str = "pairs") -> list[tuple[str, int, str, int]]:
    """LFW pairs format: a first line (the count), then "name i j" (same person) or
    "name1 i name2 j" (different people), tab or space separated."""
    pairs = []
    for number, line in enumerate(text.splitlines()[1:], start=2):
        fields = line.split()
        try:
            if len(fields) == 3:
                pairs.append((fields[0], int(fields[1]), fields[0], int(fields[2])))
            elif len(fields) == 4:
                pairs.append((fields[0], int(fields[1]), fields[2], int(fields[3])))
            elif fields:
                raise ValueError
        except ValueError:
            raise UserError(f"{source}:{number}: not an LFW pair line: {line.strip()!r}") from None
    if not pairs:
        raise UserError(f"{source}: holds no pairs")
    return pairs


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> float:
    """Share of genuine scores accepted at the strictest threshold letting through at most `far`
    of the impostors (accept: score > threshold)."""
    allowed = int(np.floor(far * len(impostor)))
    threshold = np.sort(impostor)[::-1][allowed] if allowed < len(impostor) else -np.inf
    return float(np.mean(genuine > threshold))


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> float:
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    far = np.array([np.mean(impostor >= t) for t in thresholds])
    frr = np.array([np.mean(genuine < t) for t in thresholds])
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The accuracy-maximising threshold, midway between two observed scores (not on one, which
    would reject an unseen pair scoring a hair below the lowest genuine one seen)."""
    values = np.unique(scores)
    candidates = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    accuracy = [np.mean((scores >= t) == same) for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def ten_fold_accuracy(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """LFW protocol: each tenth judged at the threshold best on the other nine; (mean, std)."""
    folds = np.arange(len(scores)) % 10
    accs = []
    for k in range(10):
        test = folds == k
        t = best_threshold(scores[~test], same[~test])
        accs.append(np.mean((scores[test] >= t) == same[test]))
    return float(np.mean(accs)), float(np.std(accs))


def pair_metrics(scores: np.ndarray, same: np.ndarray) -> dict:
    scores, same = np.asarray(scores, float), np.asarray(same, bool)
    genuine, impostor = scores[same], scores[~same]
    accuracy, std = ten_fold_accuracy(scores, same)
    return {
        "pairs": int(len(scores)),
        "accuracy": round(accuracy, 4),
        "accuracy_std": round(std, 4),
        "tar_at_far_1e-2": round(tar_at_far(genuine, impostor, 1e-2), 4),
        "tar_at_far_1e-3": round(tar_at_far(genuine, impostor, 1e-3), 4),
        "eer": round(equal_error_rate(genuine, impostor), 4),
        "best_threshold": round(best_threshold(scores, same), 4),
    }


def roc_plot(scores: np.ndarray, same: np.ndarray, path: Path, label: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores, same = np.asarray(scores, float), np.asarray(same, bool)
    thresholds = np.unique(scores)[::-1]
    far = [np.mean(scores[~same] >= t) for t in thresholds]
    tar = [np.mean(scores[same] >= t) for t in thresholds]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(np.maximum(far, 1e-4), tar, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_xlim(1e-3, 1)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as e:
        raise UserError(f"{path}: cannot write the ROC plot ({e.strerror})") from None
    finally:
        plt.close(fig)
    return path



def still_crop(image: np.ndarray, detector: vision.Detector) -> np.ndarray | None:
    """The aligned crop of a photo's subject (the face nearest the centre), or None: no face."""
    face = vision.nearest_centre(detector(image), image.shape)
    return None if face is None else vision.align(image, face)


def evaluate_pairs(pairs_file: Path, images: Path, roc: Path,
                   progress: Callable[[int, int], None] = lambda done, total: None) -> dict:
    """`facewarden evaluate`: an LFW pairs file scored with the encoder, its metrics and ROC plot."""
    from . import encoder as enc
    from .train import embed_batches, unit_embedding_model

    if not pairs_file.is_file():
        raise UserError(f"{pairs_file}: no such file")
    if not images.is_dir():
        raise UserError(f"{images}: not a directory")
    pairs = parse_pairs(pairs_file.read_text(encoding="utf-8", errors="replace"), str(pairs_file))
    names = sorted({(n, i) for a, i, b, j in pairs for n, i in ((a, i), (b, j))})
    detector = vision.Detector(STILL_DETECT_WIDTH, STILL_MIN_SCORE)
    crops: dict[tuple[str, int], np.ndarray | None] = {}
    for k, (name, i) in enumerate(names):
        crops[(name, i)] = still_crop(read_image(images / name / f"{name}_{i:04d}.jpg"), detector)
        if k % 200 == 0:
            progress(k, len(names))
    progress(len(names), len(names))
    found = [key for key, c in crops.items() if c is not None]
    faces = [c for c in crops.values() if c is not None]
    if not found:
        raise UserError(f"no face found in any image of {pairs_file}")
    embedder = unit_embedding_model(enc.load_encoder())
    # One encoder pass an image, as the daemon embeds a frame. Mirror-averaging both sides measured
    # no better on LFW's pairs (99.1% against 99.2%: one pair) for twice the passes.
    vectors = dict(zip(found, embed_batches(embedder, np.stack(faces))))
    # A pair with a missed face counts as "different people": the benchmark charges the detector too.
    scores = np.array([float(vectors[(a, i)] @ vectors[(b, j)]) if (a, i) in vectors and (b, j) in vectors else -1.0
                       for a, i, b, j in pairs])
    same = np.array([a == b for a, _, b, _ in pairs])
    result = pair_metrics(scores, same)
    result["missed_faces"] = len(names) - len(found)
    result["roc"] = str(roc_plot(scores, same, roc, "facewarden (SFace port)"))
    return result
