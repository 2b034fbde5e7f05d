"""Templates that keep up, on disk and at training time: the daemon stores the crops its tracks
yield (`core/adapt_track.py` says which) in `adapt/<person>/`, and `facewarden train` adds the new ones as
templates beside the enrolled (never instead of them). No TensorFlow here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import paths
from ..core.adapt_track import FLOOR, MAX_ADDED, NOVELTY
from .enroll import check_name, crops_in, names_in, remove_crops, store_crop

MAX_CANDIDATES = 100  # crops waiting per person for the next `train`; the oldest go first


def adapt_dir(p: paths.Paths, person: str | None = None) -> Path:
    """adapt/, or a person's folder in it."""
    return p.data_dir / "adapt" / (check_name(person) if person is not None else "")


def candidates(p: paths.Paths, person: str) -> list[Path]:
    """A person's stored crops, oldest first."""
    return sorted(crops_in(p, adapt_dir(p, person)), key=lambda f: (f.stat().st_mtime, f.name))


def people(p: paths.Paths) -> dict[str, list[Path]]:
    """Everyone with adapted faces waiting or kept, by name."""
    return {name: files for name in names_in(p, adapt_dir(p)) if (files := candidates(p, name))}


def forget(p: paths.Paths, person: str) -> tuple[int, list[str]]:
    """Delete the crops kept for a person's templates, and their folder once empty; (how many, what
    else was left in it)."""
    return remove_crops(p, adapt_dir(p, person), whole=True)


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
