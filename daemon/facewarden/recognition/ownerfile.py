"""The owner model's files and their contract: what `train` writes and the daemon reads.

`models/owner.json` holds the decision thresholds and the model's provenance. The thresholds are
fixed, not tuned per owner: bench/calibrate_thresholds.py recomputes them.
"""

from __future__ import annotations

import json

from ..errors import UserError
from ..paths import Paths
from . import assets

INPUT_SIZE = 112
# The shipped decision thresholds (cosine of a frame's unit embedding to the nearest template).
# Calibrated once, for a stated target, on large impostor sets that are not the owner's (see
# THRESHOLD_METHOD and bench/bench_accuracy.py); frames from an IR/grey camera get their own,
# because grey faces crowd together and strangers score higher there.
TARGET_FAR = 1e-3
THRESHOLD_COLOUR = 0.45
THRESHOLD_GREY = 0.48
THRESHOLD_METHOD = (
    "fixed, not tuned per owner: for <= 0.1% false accepts per frame, the 99.9th percentile of "
    "impostor scores plus a 0.05 margin for people and conditions never seen. Colour: owner models "
    "of the 10 LFW people with most images (5 faces enrolled each) against one image of each of "
    "2,677 other people: 99.9th percentile 0.394 -> 0.45. Grey (IR, night): the same world in grey "
    "(0.408) and ORL, 40 grey subjects (0.425) -> 0.48. bench/bench_accuracy.py measures both."
)


def read_meta(p: Paths) -> dict:
    """models/owner.json, checked; UserError when there is no usable owner model yet."""
    file = p.models_dir / "owner.json"
    if not file.is_file():
        raise UserError(f"no owner model in {p.models_dir}: run `facewarden enroll` and `facewarden train` first")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
        float(meta["threshold"]), float(meta["threshold_grey"])
        meta.setdefault("people", ["owner"])  # a model trained before there were several people
        if not meta["people"] or not all(isinstance(n, str) for n in meta["people"]):
            raise ValueError("no list of people")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{file} is damaged ({e}); run `facewarden train` again") from None
    if meta.get("encoder_sha256") != assets.SFACE.sha256:
        raise UserError(f"{file} was trained on another encoder; run `facewarden train` again")
    return meta


