"""Templates that keep up: enroll in one condition, live in another, FRR and FAR before and after
adaptation, at the shipped (fixed) thresholds.

Each owner's model is fitted exactly as `train` fits it (training.fit_owner) on the enrolled faces;
"live" faces are offered as the daemon's track offers them (those scoring between core.adapt_track.FLOOR
and NOVELTY against the model: new, yet the owner's), and added as `train` adds them
(model.adapt.select: new against the templates so far, at most MAX_ADDED, mirror-averaged like the
enrolled). Then the owner's remaining faces are the genuine probes, the same impostors as
bench_accuracy.py before and after.

1. ORL (grey): the first 20 subjects, enrolled from images 1-3, living images 4-7, probed on 8-10 (other poses).
2. LFW owners (the 10 with most images): enrolled from their 5 earliest photos, living the next 10,
   probed on the rest; and the same with the lived and probed faces grey (an IR camera at night)
   and in dim side light, enrollment in colour.
3. The band where strangers are common: every LFW stranger (one photo each, colour and grey)
   against each owner's model; how many score in the old floor's band (0.30 up to the threshold) and
   above the floor (core.adapt_track.FLOOR, FLOOR_GREY): the floor is the 99.9th percentile.
4. The swap (issue 23): each owner's track through the daemon's own Track, cut to a look-alike (one
   of the 10 strangers who score highest against that owner's model, yet under the threshold) for 3
   samples and back to the owner; what the track yields is added as `train` adds it; then: is the
   look-alike accepted by the adapted model? 100 swaps. The faces keep one box (the look-alike sits
   exactly where the owner sat: the track's box rules cannot help), so only the floor and the look
   between neighbours can stop it. `--swap` runs only 3 and 4; run it on the code before a change
   (PYTHONPATH) for the before figure (ORL's band comes with the full run only). The attack bypassing the track: another owner's photos
   offered to the bank directly.

    .venv/bin/python bench/bench_adapt.py [--swap]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench_accuracy import Tools, Encoder, crops_of, far_frr, grey, log, row, side_light, template_weights  # noqa: E402
from bench_people import finish  # noqa: E402
from facewarden.core import adapt_track as rules  # noqa: E402
from facewarden.core.observation import Face, FaceVerdict, Observation, OwnerThresholds, decide, is_grey  # noqa: E402
from facewarden.model import adapt  # noqa: E402
from facewarden.model import train as training  # noqa: E402
from facewarden.recognition import ownerfile  # noqa: E402

THRESHOLDS = OwnerThresholds(ownerfile.THRESHOLD_COLOUR, ownerfile.THRESHOLD_GREY)


def accepts(scores: np.ndarray, crops: np.ndarray) -> np.ndarray:
    return np.array([decide(float(s), is_grey(c), THRESHOLDS) for s, c in zip(scores, crops)])


class Case:
    """One condition: per owner, accept flags before and after, genuine and impostor; templates added."""

    def __init__(self):
        self.before: tuple[list, list] = ([], [])
        self.after: tuple[list, list] = ([], [])
        self.added: list[int] = []

    def lines(self, name: str) -> list[str]:
        far0, frr0 = far_frr(*self.before)
        far1, frr1 = far_frr(*self.after)
        halved = "ok" if (frr0 <= 0.01 or frr1 <= frr0 / 2) and far1 <= 0.001 else "MISSES"
        return [row(f"{name}: before", far0, frr0, "fixed"),
                row(f"{name}: after (+{np.mean(self.added):.1f} templates)", far1, frr1, "fixed") + f"  {halved}"]


def fitted(enrolled: np.ndarray) -> np.ndarray:
    """The owner's templates, fitted as `train` fits them."""
    with tempfile.TemporaryDirectory() as work:
        model, _ = training.fit_owner(enrolled, Path(work), lambda _: None, 0)
    return template_weights(model)


def run(case: Case, fast: Encoder, templates: np.ndarray, lived: np.ndarray, probes: np.ndarray,
        impostors: np.ndarray, impostor_crops: np.ndarray) -> None:
    mirrored = fast(lived) + fast(lived[:, :, ::-1])
    mirrored /= np.linalg.norm(mirrored, axis=1, keepdims=True)
    offered_scores = (fast(lived) @ templates.T).max(1)  # what the daemon's track sees, frame by frame
    offered = mirrored[[rules.wanted(float(s), is_grey(c)) for s, c in zip(offered_scores, lived)]]
    bank = np.concatenate([templates, offered[adapt.select(templates, offered)]]) if len(offered) else templates
    case.added.append(len(bank) - len(templates))
    probe_emb = fast(probes)
    for flags, tmpl in ((case.before, templates), (case.after, bank)):
        flags[0].append(accepts((probe_emb @ tmpl.T).max(1), probes))
        flags[1].append(accepts((impostors @ tmpl.T).max(1), impostor_crops))


def mirrored(fast: Encoder, crops: np.ndarray) -> np.ndarray:
    """Unit embeddings of crops and their mirror images averaged, as `train` makes templates."""
    both = fast(crops) + fast(crops[:, :, ::-1])
    return both / np.linalg.norm(both, axis=1, keepdims=True)


BOX = (260.0, 140.0, 120.0, 150.0)  # where the owner sits; the look-alike takes exactly this place
ALIKES = 10  # look-alikes tried per owner
SWAP = (4, 3, 3)  # samples: the owner, the look-alike in his place, the owner again


def swap(fast: Encoder, templates: np.ndarray, owner: np.ndarray, owner_emb: np.ndarray, alike: np.ndarray,
         alike_emb: np.ndarray) -> tuple[int, bool]:
    """One swap through the daemon's own Track: (crops of the look-alike it yielded, whether the
    model adapted as `train` adapts it accepts the look-alike)."""
    first, cut, back = SWAP
    crops = [*owner[:first], *[alike] * cut, *owner[first : first + back]]
    embs = [*owner_emb[:first], *[alike_emb] * cut, *owner_emb[first : first + back]]
    track, kept = rules.Track(), []
    for k, (crop, emb) in enumerate(zip(crops, embs)):
        score = float((templates @ emb).max())
        verified = decide(score, is_grey(crop), THRESHOLDS)
        face = Face((BOX[0] + k % 3, *BOX[1:]), np.zeros((5, 2), np.float32), 0.9)
        observation = Observation((FaceVerdict(face, score, verified, "owner" if verified else None),))
        kept += [c for _, c in track.update(observation, True if verified else None, lambda f, c=crop: c)]
    theirs = sum(bool(np.array_equal(c, alike)) for c in kept)
    bank = templates
    if kept:
        offered = mirrored(fast, np.stack(kept))
        bank = np.concatenate([templates, offered[adapt.select(templates, offered)]])
    return theirs, decide(float((bank @ alike_emb).max()), is_grey(alike), THRESHOLDS)


def band(scores: np.ndarray, threshold: float, floor: float) -> str:
    old = int(((scores >= 0.30) & (scores < threshold)).sum())
    above = int(((scores >= floor) & (scores < threshold)).sum())
    return (f"{len(scores)} scores, 99th percentile {np.percentile(scores, 99):.3f}, 99.9th "
            f"{np.percentile(scores, 99.9):.3f}; {old} ({old / len(scores):.2%}) in 0.30-{threshold:.2f}, "
            f"{above} ({above / len(scores):.3%}) from the floor {floor:.2f} up")


def main() -> int:
    started = time.time()
    swap_only = "--swap" in sys.argv[1:]
    tools = Tools()
    lfw, orl, fast, detector = tools.lfw, tools.orl, tools.fast, tools.detector
    floor_grey = getattr(rules, "FLOOR_GREY", rules.FLOOR)  # one floor for both before issue 23
    lines = [] if swap_only else ["Adaptation (FAR / FRR at the shipped thresholds 0.45 colour, 0.48 grey; "
                                  "mean over owners)"]

    # --- 1. ORL: frontal enrollment, other poses
    subjects = [] if swap_only else sorted((d for d in orl.iterdir() if d.is_dir()), key=lambda d: int(d.name[1:]))
    owners_orl = [s.name for s in subjects[:20]]
    orl_crops = {}
    for s in subjects:
        files = sorted(s.glob("*.pgm"), key=lambda f: int(f.stem))
        got = crops_of(files, detector)
        orl_crops[s.name] = np.stack([got[f] for f in files if f in got])
    orl_emb = {s: fast(c) for s, c in orl_crops.items()}
    case, orl_band = Case(), []
    for k, s in enumerate(owners_orl):
        log(f"ORL owner {k + 1}/{len(owners_orl)}")
        c = orl_crops[s]
        templates = fitted(c[:3])
        others = np.concatenate([orl_emb[o] for o in orl_emb if o != s])
        orl_band.append((others @ templates.T).max(1))
        run(case, fast, templates, c[3:7], c[7:], others, np.concatenate([orl_crops[o] for o in orl_crops if o != s]))
    if not swap_only:
        lines += case.lines("ORL, enrolled frontal, other poses")

    # --- 2. LFW owners: earliest photos, then later ones; grey and dim renderings
    people = {p.name: sorted(p.glob("*.jpg")) for p in sorted(lfw.iterdir()) if p.is_dir()}
    owners = sorted(people, key=lambda n: (-len(people[n]), n))[:10]
    world = crops_of([people[n][0] for n in people if n not in owners], detector)
    world_crops = np.stack(list(world.values()))
    renders = {"LFW, earliest photos, then later": lambda c: c, "LFW, lived and probed grey": grey,
               "LFW, lived and probed in dim side light": side_light}
    if swap_only:
        renders = {name: r for name, r in renders.items() if r is not side_light}
    world_sets = {name: (fast(np.stack([r(c) for c in world_crops])), np.stack([r(c) for c in world_crops]))
                  for name, r in renders.items()}
    colour, grey_world = (world_sets[name][0] for name in list(renders)[:2])
    cases = {name: Case() for name in renders}
    attack_offered = attack_added = swaps = yielded = accepted = 0
    bands: tuple[list, list] = ([], [])
    for k, person in enumerate(owners):
        log(f"LFW owner {k + 1}/{len(owners)}: {person}")
        got = crops_of(people[person], detector)
        c = np.stack([got[f] for f in people[person] if f in got])
        templates = fitted(c[:5])
        if not swap_only:
            for name, r in renders.items():
                rendered = np.stack([r(x) for x in c])
                run(cases[name], fast, templates, rendered[5:15], rendered[15:], *world_sets[name])
        # 3. the band where strangers are common; 4. the swap, with this owner's closest strangers
        scores = (colour @ templates.T).max(1)
        bands[0].append(scores)
        bands[1].append((grey_world @ templates.T).max(1))
        under = [i for i in np.argsort(-scores) if not decide(float(scores[i]), is_grey(world_crops[i]), THRESHOLDS)]
        lived = c[5:5 + SWAP[0] + SWAP[2]]
        lived_emb = fast(lived)
        for i in under[:ALIKES]:
            theirs, taken = swap(fast, templates, lived, lived_emb, world_crops[i], colour[i])
            swaps, yielded, accepted = swaps + 1, yielded + (theirs > 0), accepted + taken
        # The attack, bypassing the track: the next owner's photos offered to this owner's bank.
        stranger = np.stack(list(crops_of(people[owners[(k + 1) % 10]][:10], detector).values()))
        emb = fast(stranger)
        scores = (emb @ templates.T).max(1)
        offered = emb[(scores >= rules.FLOOR) & (scores < rules.NOVELTY)]  # colour photos: the colour floor
        attack_offered += len(offered)
        attack_added += len(adapt.select(templates, offered)) if len(offered) else 0
    if not swap_only:
        for name, case in cases.items():
            lines += case.lines(name)
        lines += ["  targets: FRR at least halved where it was above 1.00%, FAR still <= 0.100%  "
                  "(ok/MISSES on each 'after')"]
    lines += [
        "",
        "Strangers against owner models (the band where strangers are common; the floor keeps above it):",
        f"  LFW colour, 10 owners x {len(colour)} strangers: {band(np.concatenate(bands[0]), 0.45, rules.FLOOR)}",
        f"  LFW grey, the same:                  {band(np.concatenate(bands[1]), 0.48, floor_grey)}",
        *([] if swap_only else [f"  ORL, 20 owners x their 39 others (grey): "
                                f"{band(np.concatenate(orl_band), 0.48, floor_grey)}"]),
        "",
        f"Swap: each owner's track cut to one of his {ALIKES} closest strangers (under the threshold) for "
        f"{SWAP[1]} samples and back ({swaps} swaps):",
        f"  tracks that yielded a crop of the look-alike: {yielded} of {swaps}",
        f"  look-alikes accepted as the owner after adaptation: {accepted} of {swaps} (before adaptation: 0)"
        f"  {'ok' if accepted == 0 else 'MISSES'} (target 0)",
        "",
        f"Attack, bypassing the track (another owner's 10 photos offered to each of the 10 banks): "
        f"{attack_offered} of 100 above the floor {rules.FLOOR}, {attack_added} would be added",
    ]
    return finish(lines, started)


if __name__ == "__main__":
    sys.exit(main())
