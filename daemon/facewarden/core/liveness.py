"""The liveness rules: pure (standard library and numpy). A window of per-sample cues in, the cue
that shows life (or None) out; the recognition layer measures the cues (landmarks.py) and keeps the
window (liveness.py)."""

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


@dataclass(frozen=True)
class Cues:
    """What one sample contributes to the liveness decision."""

    ear: float  # eye aspect ratio
    gaze: tuple[float, ...]  # iris positions between the eye corners (Landmarks.gaze)
    texture: float
    motion: float | None = None  # mesh motion since the previous sample (IOD units); None: first
    # The largest residual over the motion-matched bar among pairs with the recent samples whose
    # motion fell in the band; None when no pair did (a still face gives no evidence either way).
    nonrigid: float | None = None
    model: float | None = None  # the optional MiniFASNet's live probability


@dataclass(frozen=True)
class LivenessThresholds:
    """Set on the nuaa-dev clips (bench/bench_liveness.py --calibrate, at full and at half size)
    beyond the most live-looking printed-photo clip by a margin of about a third (texture, the
    weakest cue, more), for people the thresholds have not seen; the target is APCER <= 7% at
    BPCER <= 15%. The README explains them."""

    blink_ratio: float = 0.6  # a blink: eye opening below this share of the window's median
    blink_min_samples: int = 5  # ...judged against at least this many samples
    gaze_shift: float = 0.05  # iris this far (eye widths) from the window's median position...
    gaze_count: int = 3  # ...in at least this many samples
    gaze_min_samples: int = 5  # ...of at least this many
    nonrigid_excess: float = 0.015  # residual above the motion-matched bar...
    nonrigid_count: int = 4  # ...in at least this many samples
    texture: float = 0.3  # median texture of still samples...
    texture_min_samples: int = 5  # ...over at least this many
    model: float = 0.5  # median MiniFASNet live probability...
    model_min_samples: int = 3  # ...over at least this many


THRESHOLDS = LivenessThresholds()


def _landmark_cue(cues: Sequence[Cues], t: LivenessThresholds) -> str | None:
    # The eyes of a blurred, fast-moving face are unreliable, so those samples neither set the
    # baseline nor count as evidence.
    steady = [c for c in cues if c.motion is None or c.motion <= MOTION_MAX]
    ears = [c.ear for c in steady]
    if len(ears) >= t.blink_min_samples and min(ears) < t.blink_ratio * float(np.median(ears)):
        return "blink"
    if len(steady) >= t.gaze_min_samples:
        gaze = np.array([c.gaze for c in steady])
        shift = np.linalg.norm(gaze - np.median(gaze, axis=0), axis=1)
        if int((shift > t.gaze_shift).sum()) >= t.gaze_count:
            return "gaze"
    if sum(1 for c in cues if c.nonrigid is not None and c.nonrigid > t.nonrigid_excess) >= t.nonrigid_count:
        return "nonrigid"
    still = [c.texture for c in cues if c.motion is not None and c.motion <= STILL]
    if len(still) >= t.texture_min_samples and float(np.median(still)) >= t.texture:
        return "texture"
    return None


def judge(cues: Sequence[Cues], thresholds: LivenessThresholds = THRESHOLDS) -> str | None:
    """The cue that shows life in this window of samples ("blink", "gaze", "nonrigid",
    "texture"; with "+model" when the optional model agreed), or None when none does yet.

    A configured anti-spoofing model is a second opinion that must agree, not one more way in:
    a video replay blinks and looks around, and a model trained on replays is what can catch it.
    Pure: the same samples always give the same answer."""
    t = thresholds
    cue = _landmark_cue(cues, t)
    scores = [c.model for c in cues if c.model is not None]
    if cue is None or not scores:
        return cue
    if len(scores) >= t.model_min_samples and float(np.median(scores)) >= t.model:
        return f"{cue}+model"
    return None



def mesh_shift(a: np.ndarray, b: np.ndarray, iod: float) -> float:
    """How far the mesh moved from `a` to `b`: the mean point displacement, in units of the
    inter-ocular distance `iod`."""
    return float(np.linalg.norm(b - a, axis=1).mean() / iod)




def same_place(a: Face, b: Face) -> bool:
    """Whether face box `b` continues `a`: its centre within one box width, its size within half.
    A face that jumps further between two samples is treated as another one (a photo swapped in
    where the owner just was must prove life afresh)."""
    ax, ay, aw, ah = a.box
    bx, by, bw, bh = b.box
    shift = math.hypot(bx + bw / 2 - ax - aw / 2, by + bh / 2 - ay - ah / 2)
    return shift <= aw and 2 / 3 <= bw / aw <= 3 / 2


