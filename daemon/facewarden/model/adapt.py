"""Templates that keep up, on disk and at training time: the daemon stores the crops its tracks
yield (`core/adapt.py` says which) in `adapt/<person>/`, and `facewarden train` adds the new ones as
templates beside the enrolled (never instead of them). No TensorFlow here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import paths
from ..core.adapt import FLOOR, MAX_ADDED, NOVELTY
from .enroll import check_name, store_crop

MAX_CANDIDATES = 100  # crops waiting per person for the next `train`; the oldest go first


def adapt_dir(p: paths.Paths, person: str) -> Path:
    return p.data_dir / "adapt" / check_name(person)


def candidates(p: paths.Paths, person: str) -> list[Path]:
    """A person's stored crops, oldest first."""
    folder = adapt_dir(p, person)
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(folder.glob("*.png"), key=lambda f: (f.stat().st_mtime, f.name))


def forget(p: paths.Paths, person: str) -> int:
    """Delete the crops kept for a person's templates; how many."""
    files = candidates(p, person)
    for f in files:
        f.unlink()
    return len(files)


def store(p: paths.Paths, person: str, crop_rgb: np.ndarray) -> Path | None:
    """Keep one crop for the next `train` (0600 in a 0700 folder); None when it is already there."""
    stored = store_crop(crop_rgb, adapt_dir(p, person))
    for old in candidates(p, person)[:-MAX_CANDIDATES]:
        old.unlink(missing_ok=True)
    return stored


def select(templates: np.ndarray, offered: np.ndarray) -> list[int]:
    """Which offered unit embeddings (oldest first) become templates: each new enough (its cosine to
    the nearest template, enrolled or added before it, below NOVELTY) yet the same person (at least
    FLOOR); of those the newest MAX_ADDED, so the oldest added give way first."""
    bank = list(templates)
    taken = []
    for i, e in enumerate(offered):
        best = float(np.max(np.asarray(bank) @ e))
        if FLOOR <= best < NOVELTY:
            taken.append(i)
            bank.append(e)
    return taken[-MAX_ADDED:]
