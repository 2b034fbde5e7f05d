"""Recompute the shipped owner-model thresholds (recognition/ownerfile.py) from the shared face data.

The method (ownerfile.THRESHOLD_METHOD): fixed, not tuned per owner; for <= 0.1% false accepts per
frame, the 99.9th percentile of impostor scores plus a 0.05 margin for people and conditions never
seen.
- colour: owner models of the 10 LFW people with most images (their first 5 usable faces enrolled,
  fitted as `train` fits them) against one image of each other LFW person;
- grey (IR cameras, night modes): the same owners and world rendered grey (a grey enrollment, as an
  IR camera gives), and ORL's 40 grey subjects, each the owner in turn (5 enrolled) against every
  other subject's images; the larger of the two percentiles.
Prints the computed values beside the shipped ones; changes nothing.

    .venv/bin/python bench/calibrate_thresholds.py [--cache DIR]
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_accuracy import Tools, ENROLLED, OWNERS, Encoder, crops_of, grey, log, template_weights  # noqa: E402

from facewarden.model import train as training  # noqa: E402
from facewarden.recognition import ownerfile  # noqa: E402

PERCENTILE = 99.9
MARGIN = 0.05


def up(x: float) -> float:
    """Rounded up to the hundredth: a threshold may only err on the strict side."""
    return math.ceil(x * 100 - 1e-9) / 100


def fitted_templates(crops: np.ndarray) -> np.ndarray:
    with tempfile.TemporaryDirectory() as work:
        model, _ = training.fit_owner(crops, Path(work), lambda _: None, 0)
    return template_weights(model)


def impostor_scores(owner_crops: list[np.ndarray], world: np.ndarray, fast: Encoder) -> np.ndarray:
    """Every owner model's best-template score for every world face, pooled over owners."""
    vectors = fast(world)
    return np.concatenate([(vectors @ fitted_templates(c).T).max(1) for c in owner_crops])


def main() -> int:
    started = time.time()
    tools = Tools()
    lfw, orl, fast, detector = tools.lfw, tools.orl, tools.fast, tools.detector
    people = {p.name: sorted(p.glob("*.jpg")) for p in sorted(lfw.iterdir()) if p.is_dir()}
    owners = sorted(people, key=lambda n: (-len(people[n]), n))[:OWNERS]
    log(f"aligning the faces of {len(owners)} owners and one image of each other LFW person")
    owner_crops = [np.stack(list(crops_of(people[n], detector).values())[:ENROLLED]) for n in owners]
    world = np.stack(list(crops_of([fs[0] for n, fs in people.items() if n not in owners and fs], detector).values()))

    log("colour: fitting the owner models")
    colour = impostor_scores(owner_crops, world, fast)
    log("grey: the same owners and world in grey")
    lfw_grey = impostor_scores([np.stack([grey(c) for c in cs]) for cs in owner_crops],
                               np.stack([grey(c) for c in world]), fast)
    log("grey: ORL, each subject the owner in turn")
    subjects = sorted((d for d in orl.iterdir() if d.is_dir()), key=lambda d: int(d.name[1:]))
    orl_crops = [np.stack(list(crops_of(sorted(s.glob("*.pgm"), key=lambda f: int(f.stem)), detector).values()))
                 for s in subjects]
    orl_vectors = [fast(c) for c in orl_crops]
    orl_scores = np.concatenate([
        (np.concatenate([v for j, v in enumerate(orl_vectors) if j != k]) @ fitted_templates(c[:ENROLLED]).T).max(1)
        for k, c in enumerate(orl_crops)])

    p_colour = float(np.percentile(colour, PERCENTILE))
    p_lfw_grey = float(np.percentile(lfw_grey, PERCENTILE))
    p_orl = float(np.percentile(orl_scores, PERCENTILE))
    computed_colour = up(p_colour + MARGIN)
    computed_grey = up(max(p_lfw_grey, p_orl) + MARGIN)
    print(f"impostor scores: colour {len(colour)}, grey LFW {len(lfw_grey)}, ORL {len(orl_scores)}")
    print(f"colour: {PERCENTILE}th percentile {p_colour:.3f} + {MARGIN} -> {computed_colour:.2f}"
          f"  (shipped {ownerfile.THRESHOLD_COLOUR})")
    print(f"grey:   {PERCENTILE}th percentile LFW grey {p_lfw_grey:.3f}, ORL {p_orl:.3f}; max + {MARGIN} -> "
          f"{computed_grey:.2f}  (shipped {ownerfile.THRESHOLD_GREY})")
    print(f"({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
