"""The tracker's appearance check (recognition/tracking.py) on real faces: how often does a face
that stays keep its track, and how alike does someone else cut in for it look?

Samples once a second (every 5th frame) of NUAA's live webcam clips: between two samples, the
correlation of the face's look with the previous sample's, the later face found as the daemon
finds it between full scans (the region around the earlier box). Against that, the same samples
with someone else put exactly where the face was (cli.demo.in_place_of): every other NUAA subject,
and LFW people. Prints, per threshold, the share of samples a staying face keeps its track and the
cut-ins that would keep it (each of those would be judged by the model at the next re-verify).

Then the still-scene check (`tracking.Scene`): the change it reads 2 s apart (a full scan's
period) in the same clips, where nobody new comes in, against the same later frames with an LFW
face of 32 to 96 px come into view beside the followed face. Prints, per threshold, the share of
full scans a staying face's clip still runs (the rest are saved) and the new faces it would miss.

    .venv/bin/python bench/calibrate_tracking.py [--lfw 100]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from facewarden.cli.demo import in_place_of
from facewarden.recognition import tracking, vision

REPO = Path(__file__).resolve().parent.parent
FACES = Path(os.environ.get("FACEWARDEN_FACES", REPO.parent / "shared" / "data" / "faces"))
THRESHOLDS = (0.80, 0.85, 0.90, 0.91, 0.92, 0.93, 0.95)
SCENE_THRESHOLDS = (6.0, 9.0, 12.0, 16.0, 24.0)
NEWCOMER_SIDES = (32, 48, 64, 96)  # px: a face a few metres back to one at the owner's shoulder


def look_after(frame: np.ndarray, before: vision.Face, detector: vision.Detector) -> np.ndarray | None:
    """The later sample's look, as the tracker takes it: the one face in the region, at the earlier box's scale."""
    found = detector.around(frame, before.box)
    if len(found) != 1 or not tracking.same_spot(before, found[0]):
        return None  # the track breaks on the geometry alone
    return tracking.patch(frame, before.box, before.box[2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=int, default=100, help="LFW people cut in (their first photo)")
    args = parser.parse_args()
    clips = sorted((FACES / "nuaa-dev" / "sequences").glob("*_live"))
    if not clips:
        sys.exit(f"needs the shared face data at {FACES}")
    detector = vision.Detector()
    others = [cv2.imread(str(c / "020.jpg")) for c in clips]
    lfw = [cv2.imread(str(p)) for p in sorted((FACES / "lfw-dev").glob("*/*_0001.jpg"))[: args.lfw]]
    stays: list[float] = []  # a staying face's correlation (-1: the geometry broke the track)
    cuts: list[float] = []
    for i, clip in enumerate(clips):
        frames = [cv2.imread(str(p)) for p in sorted(clip.glob("*.jpg"))][::5]
        for before_frame, after_frame in zip(frames, frames[1:]):
            found = detector(before_frame)
            if not found:
                continue
            before = max(found, key=lambda f: f.box[2])
            look = tracking.patch(before_frame, before.box, before.box[2])
            after = look_after(after_frame, before, detector)
            stays.append(-1.0 if after is None else tracking.correlation(look, after))
            for j, image in enumerate(others + lfw):
                if j == i:
                    continue
                cut = in_place_of(before_frame, before, image, detector)
                after = None if cut is None else look_after(cut, before, detector)
                if after is not None:
                    cuts.append(tracking.correlation(look, after))
    s, c = np.array(stays), np.array(cuts)
    print(f"NUAA live clips, one sample a second: {len(s)} pairs of samples of a staying face "
          f"({(s < 0).mean():.1%} broken by geometry); {len(c)} cut-ins of another person in the same place "
          f"({len(clips) - 1} NUAA subjects, {len(lfw)} LFW people), PATCH {tracking.PATCH}, "
          f"SLACK {tracking.SLACK}")
    print(f"staying face: median correlation {np.median(s[s >= 0]):.3f}; cut-ins: median {np.median(c):.3f}, "
          f"max {c.max():.3f}")
    print(f"{'threshold':>9s} {'staying face kept':>18s} {'cut-ins kept':>13s}")
    for t in THRESHOLDS:
        marker = "  <- shipped" if t == tracking.MIN_CORRELATION else ""
        print(f"{t:9.2f} {(s >= t).mean():18.1%} {int((c >= t).sum()):>6d} of {len(c)}{marker}")
    scene(clips, lfw, detector)
    return 0


def beside(frame: np.ndarray, face: vision.Face, image: np.ndarray, side: int, right: bool) -> np.ndarray:
    """`frame` with `image`'s middle, `side` px square, come into view beside `face` at eye height."""
    x, y, w, h = (int(v) for v in face.box)
    left = min(frame.shape[1] - side, x + w + w // 2) if right else max(0, x - w // 2 - side)
    top = max(0, min(frame.shape[0] - side, y + h // 4))
    ih, iw = image.shape[:2]
    out = frame.copy()
    out[top:top + side, left:left + side] = cv2.resize(image[ih // 4: 3 * ih // 4, iw // 4: 3 * iw // 4], (side, side))
    return out


def scene(clips: list[Path], lfw: list[np.ndarray], detector: vision.Detector) -> None:
    still: list[float] = []
    newcomers: list[float] = []
    for clip in clips:
        frames = [cv2.imread(str(p)) for p in sorted(clip.glob("*.jpg"))][::10]  # 2 s apart
        for k, (before_frame, after_frame) in enumerate(zip(frames, frames[1:])):
            found = detector(before_frame)
            if not found:
                continue
            before = max(found, key=lambda f: f.box[2])
            after = detector.around(after_frame, before.box)
            followed = after[0] if len(after) == 1 else before
            check = tracking.Scene()
            check.scanned(before_frame, [before])
            still.append(check.change(after_frame, followed))
            for i, side in enumerate(NEWCOMER_SIDES):
                image = lfw[(k * len(NEWCOMER_SIDES) + i) % len(lfw)]
                newcomers.append(check.change(beside(after_frame, followed, image, side, (k + i) % 2 == 0), followed))
    s, n = np.array(still), np.array(newcomers)
    print(f"\nStill scene, NUAA live clips 2 s apart: {len(s)} pairs; {len(n)} with a face of "
          f"{', '.join(map(str, NEWCOMER_SIDES))} px come in beside the followed one; block change: staying "
          f"median {np.median(s):.1f}, newcomers min {n.min():.1f}")
    print(f"{'threshold':>9s} {'full scans still run':>21s} {'newcomers missed':>17s}")
    for t in SCENE_THRESHOLDS:
        marker = "  <- shipped" if t == tracking.Scene.MIN_CHANGE else ""
        print(f"{t:9.1f} {(s > t).mean():21.1%} {int((n <= t).sum()):>8d} of {len(n)}{marker}")


if __name__ == "__main__":
    sys.exit(main())
