"""The liveness rules: pure (standard library and numpy). A window of per-sample cues in, a verdict
with its reasons out; the recognition layer measures the cues (landmarks.py, surround.py,
texture.py) and keeps the window (liveness.py).

The cues are weighed, not taken one at a time: the eyes (a blink, gaze shifts) are the strongest
evidence and enough alone; local motion (the mesh moving in ways no smooth warp explains) and
texture (the face crop's classifier) are weaker, a bent print or a sharp one can fake either, so
each is worth half and they must agree; a surround that moves with the face (a print's edges, the
hands holding it) counts against life. A face is live once the evidence reaches 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .observation import Face


# Mesh motion (IOD units) between two samples for their residual to count: below MOTION_MIN the
# landmark jitter dominates, above MOTION_MAX motion blur and rolling shutter bend even a photo's
# mesh. Inside the band the bar rises with the motion (RESIDUAL_SLOPE), matching the way a photo's
# own residual floor rises with it, so no amount of motion is by itself evidence of life.
MOTION_MIN = 0.03
MOTION_MAX = 0.3
RESIDUAL_SLOPE = 0.05
# Landmarks of a smaller face are too noisy to tell a gaze shift or a residual from jitter (at an
# inter-ocular distance of ~26 px a waved photo passed): such samples are not judged at all.
MIN_IOD = 35.0
STILL = 0.1  # texture is only read from samples that moved less than this (blur hides detail)
PAIR_SPAN_S = 1.0  # a sample is compared with the earlier samples of the last second

# What each cue is worth; a face is live at LIVE or more.
LIVE = 1.0
WEIGHTS = {"blink": 1.0, "gaze": 1.0, "local motion": 0.5, "texture": 0.5, "surround": -1.0}


@dataclass(frozen=True)
class Cues:
    """What one sample contributes to the liveness decision."""

    ear: float  # eye aspect ratio
    gaze: tuple[float, ...]  # iris positions between the eye corners (Landmarks.gaze)
    texture: float  # the texture classifier's live probability
    motion: float | None = None  # mesh motion since the previous sample (IOD units); None: first
    # The largest residual after a smooth (cubic) warp of the mesh, over the motion-matched
    # bar, among pairs with the recent samples whose motion fell in the band; None when no pair
    # did (a still face gives no evidence either way).
    nonrigid: float | None = None
    # How much better the ring around the face is explained by the face's own motion than by
    # standing still, in [-1, 1] (surround.follows); None when the face did not move enough to tell.
    surround: float | None = None
    model: float | None = None  # the optional MiniFASNet's live probability


@dataclass(frozen=True)
class LivenessThresholds:
    """Set on the nuaa-dev clips by bench/bench_liveness.py --calibrate: the landmark cues beyond
    the most live-looking printed-photo attempt by a margin, the surround beyond the most
    print-looking whole live clip; the target is APCER <= 5% at BPCER <= 10%. Texture keeps the
    classifier's own boundary. The README explains them."""

    blink_ratio: float = 0.633  # a blink: eye opening below this share of the window's median
    blink_min_samples: int = 5  # ...judged against at least this many samples
    gaze_shift: float = 0.044  # iris this far (eye widths) from the window's median position...
    gaze_count: int = 3  # ...in at least this many samples
    gaze_min_samples: int = 5  # ...of at least this many
    nonrigid_excess: float = 0.0042  # residual after a smooth warp above the motion-matched bar...
    nonrigid_count: int = 4  # ...in at least this many samples
    texture: float = 0.5  # median live probability of still samples (the classifier's own boundary)...
    texture_min_samples: int = 5  # ...over at least this many
    surround: float = 0.3  # the ring around the face follows its motion by more than this...
    surround_count: int = 2  # ...in at least this many samples: a print's surround
    model: float = 0.5  # median MiniFASNet live probability...
    model_min_samples: int = 3  # ...over at least this many


THRESHOLDS = LivenessThresholds()


@dataclass(frozen=True)
class Verdict:
    """The window's evidence: `live` once it reaches LIVE (and the optional model agrees), with
    `cues` the cues that counted for or against."""

    live: bool
    cues: tuple[str, ...]  # cue names, as in WEIGHTS, plus "model" when it agreed or vetoed
    score: float

    def reason(self, span_s: float) -> str:
        """For people: `live: blink`, `spoof: surround moves with the face, no eye movement in 20 s`
        (`span_s`: the seconds the window covered)."""
        if self.live:
            return "live: " + " + ".join(self.cues)
        against = [CAUSE[c] for c in self.cues if WEIGHTS.get(c, 0) < 0 or c == "model"]
        seen = f"in {span_s:.0f} s" if span_s >= 1 else "yet"
        missing = [] if {"blink", "gaze"} & set(self.cues) else [f"no eye movement {seen}"]
        shown = [c for c in self.cues if WEIGHTS.get(c, 0) > 0]
        return "spoof: " + ", ".join(against + missing + (["shown: " + " + ".join(shown)] if shown else []))


CAUSE = {"surround": "surround moves with the face", "model": "the anti-spoofing model disagreed"}


def _signs(cues: Sequence[Cues], t: LivenessThresholds) -> list[str]:
    """Which cues this window shows, in WEIGHTS order."""
    shown = []
    # The eyes of a blurred, fast-moving face are unreliable, so those samples neither set the
    # baseline nor count as evidence.
    steady = [c for c in cues if c.motion is None or c.motion <= MOTION_MAX]
    ears = [c.ear for c in steady]
    if len(ears) >= t.blink_min_samples and min(ears) < t.blink_ratio * float(np.median(ears)):
        shown.append("blink")
    if len(steady) >= t.gaze_min_samples:
        gaze = np.array([c.gaze for c in steady])
        shift = np.linalg.norm(gaze - np.median(gaze, axis=0), axis=1)
        if int((shift > t.gaze_shift).sum()) >= t.gaze_count:
            shown.append("gaze")
    if sum(1 for c in cues if c.nonrigid is not None and c.nonrigid > t.nonrigid_excess) >= t.nonrigid_count:
        shown.append("local motion")
    still = [c.texture for c in cues if c.motion is not None and c.motion <= STILL]
    if len(still) >= t.texture_min_samples and float(np.median(still)) >= t.texture:
        shown.append("texture")
    if sum(1 for c in cues if c.surround is not None and c.surround > t.surround) >= t.surround_count:
        shown.append("surround")
    return shown


def verdict(cues: Sequence[Cues], thresholds: LivenessThresholds = THRESHOLDS) -> Verdict:
    """Weigh the window's cues. A configured anti-spoofing model is a second opinion that must
    agree, not one more way in: a video replay blinks and looks around, and a model trained on
    replays is what can catch it. Pure: the same samples always give the same answer."""
    t = thresholds
    shown = _signs(cues, t)
    score = sum(WEIGHTS[c] for c in shown)
    live = score >= LIVE
    scores = [c.model for c in cues if c.model is not None]
    if live and scores:
        agrees = len(scores) >= t.model_min_samples and float(np.median(scores)) >= t.model
        live = agrees
        if agrees or len(scores) >= t.model_min_samples:
            shown.append("model")
    if live:  # say what let it through, not what it overcame
        shown = [c for c in shown if WEIGHTS.get(c, 1.0) > 0]
    return Verdict(live, tuple(shown), score)


def judge(cues: Sequence[Cues], thresholds: LivenessThresholds = THRESHOLDS) -> str | None:
    """The cue(s) that show life in this window ("blink", "local motion + texture", "gaze + model"),
    or None while they do not (yet)."""
    v = verdict(cues, thresholds)
    return " + ".join(v.cues) if v.live else None


def mesh_shift(a: np.ndarray, b: np.ndarray, iod: float) -> float:
    """How far the mesh moved from `a` to `b`: the mean point displacement, in units of the
    inter-ocular distance `iod`."""
    return float(np.linalg.norm(b - a, axis=1).mean() / iod)


def smooth_residual(a: np.ndarray, b: np.ndarray, iod: float) -> float:
    """How much of the mesh's move from `a` to `b` no smooth warp of the whole face explains: the
    RMS residual, in units of `iod`, after the least-squares cubic map of the plane (10 terms a
    coordinate). A flat photo tilted is a homography of itself, and bent round a cylinder or
    curled it is a smooth warp too, close to cubic over a face (a sine, seen in perspective);
    eyelids, lips and cheeks moving against the face's outline are local, and stay in the residual."""
    origin = a.mean(axis=0)
    x, y = ((a - origin) / iod).T
    dst = (b - origin) / iod
    design = np.stack([x**i * y**j for i in range(4) for j in range(4 - i)], axis=1)
    coef, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return float(np.sqrt(((design @ coef - dst) ** 2).sum(axis=1).mean()))


def same_place(a: Face, b: Face) -> bool:
    """Whether face box `b` continues `a`: its centre within one box width, its size within half.
    A face that jumps further between two samples is treated as another one (a photo swapped in
    where the owner just was must prove life afresh)."""
    ax, ay, aw, ah = a.box
    bx, by, bw, bh = b.box
    shift = math.hypot(bx + bw / 2 - ax - aw / 2, by + bh / 2 - ay - ah / 2)
    return shift <= aw and 2 / 3 <= bw / aw <= 3 / 2
