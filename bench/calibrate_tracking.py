"""The tracker's appearance check (recognition/tracking.py) on real faces: how often does a face
that stays keep its track, and how alike does someone else cut in for it look?

Samples once a second (every 5th frame) of NUAA's live webcam clips: between two samples, the
correlation of the face's look with the previous sample's (and with the best of the last LOOKS
samples', as the tracker compares), the later face found as the daemon finds it between full
scans (the region around the earlier box). Against that, the same samples with someone else put
exactly where the face was (cli.demo.in_place_of): every other NUAA subject, and LFW people.
Prints, per threshold, the share of samples a staying face keeps its track and the cut-ins that
would keep it (each of those would be judged by the model at the next re-verify); then the cut-ins
as the samples between looks at the scene meet them, by the look alone (no detector, so also those
whose face the region's geometry would have refused).

Then the still-scene check (`tracking.Scene`): the change it reads 2 s apart (a full scan's
period) in the same clips, where nobody new comes in, against the same later frames with an LFW
face of 32 to 96 px come into view beside the followed face. Prints, per threshold, the share of
searches a staying face's clip still runs (the rest are saved) and the new faces it would miss;
then how much of the frame the changed part is, and whether searching it finds the new faces a
full scan finds.

Last, the dark and blur check (`vision.Quality`), which reads a followed face's box instead of the
whole frame: the same frames, sharp, blurred and darkened, read both ways at the shipped thresholds.

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
from facewarden.config import CameraConfig
from facewarden.core.adapt_track import overlap
from facewarden.recognition import tracking, vision

REPO = Path(__file__).resolve().parent.parent
FACES = Path(os.environ.get("FACEWARDEN_FACES", REPO.parent / "shared" / "data" / "faces"))
THRESHOLDS = (0.80, 0.85, 0.90, 0.91, 0.92, 0.93, 0.95)
SCENE_THRESHOLDS = (6.0, 9.0, 12.0, 16.0, 24.0)
NEWCOMER_SIDES = (32, 48, 64, 96)  # px: a face a few metres back to one at the owner's shoulder


def geometry_holds(frame: np.ndarray, before: vision.Face, detector: vision.Detector) -> bool:
    """The later sample's face is found as the tracker finds it: the one face in the region around
    the earlier box, in its place."""
    found = detector.around(frame, before.box)
    return len(found) == 1 and tracking.same_spot(before, found[0])


def best_look(looks: list[tuple[vision.Face, np.ndarray]], frame: np.ndarray) -> float:
    """The frame's look against the last samples' (newest last), each at its own box: the best correlation."""
    return max(tracking.correlation(look, tracking.patch(frame, face.box, face.box[2])) for face, look in looks)


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
    # A staying face's correlation (-1: the geometry broke the track) and the cut-ins', against the
    # previous sample's look alone and against the last LOOKS samples' (as the tracker compares).
    stays: dict[int, list[float]] = {1: [], tracking.LOOKS: []}
    cuts: dict[int, list[float]] = {1: [], tracking.LOOKS: []}
    by_look: list[float] = []  # every cut-in against the last LOOKS looks, whatever its geometry
    for i, clip in enumerate(clips):
        frames = [cv2.imread(str(p)) for p in sorted(clip.glob("*.jpg"))][::5]
        looks: list[tuple[vision.Face, np.ndarray]] = []
        for before_frame, after_frame in zip(frames, frames[1:]):
            found = detector(before_frame)
            if not found:
                looks = []
                continue
            before = max(found, key=lambda f: f.box[2])
            looks = (looks + [(before, tracking.patch(before_frame, before.box, before.box[2]))])[-tracking.LOOKS:]
            held = geometry_holds(after_frame, before, detector)
            cut_in = [c for j, image in enumerate(others + lfw) if j != i
                      for c in [in_place_of(before_frame, before, image, detector)] if c is not None]
            by_look += [best_look(looks, c) for c in cut_in]
            cut_frames = [c for c in cut_in if geometry_holds(c, before, detector)]
            for k in stays:
                stays[k].append(best_look(looks[-k:], after_frame) if held else -1.0)
                cuts[k] += [best_look(looks[-k:], c) for c in cut_frames]
    s = {k: np.array(v) for k, v in stays.items()}
    c = {k: np.array(v) for k, v in cuts.items()}
    n = len(c[1])
    print(f"NUAA live clips, one sample a second: {len(s[1])} pairs of samples of a staying face "
          f"({(s[1] < 0).mean():.1%} broken by geometry); {n} cut-ins of another person in the same place "
          f"({len(clips) - 1} NUAA subjects, {len(lfw)} LFW people), PATCH {tracking.PATCH}, "
          f"SLACK {tracking.SLACK}; compared with the last sample's look, and the last {tracking.LOOKS}'")
    for k in s:
        print(f"{k} look(s): staying face median correlation {np.median(s[k][s[k] >= 0]):.3f}; "
              f"cut-ins median {np.median(c[k]):.3f}, max {c[k].max():.3f}")
    print(f"{'threshold':>9s} {'kept, 1 look':>13s} {'cut-ins kept':>15s} {f'kept, {tracking.LOOKS} looks':>15s} "
          f"{'cut-ins kept':>15s}")
    for t in THRESHOLDS:
        marker = "  <- shipped" if t == tracking.MIN_CORRELATION else ""
        print(f"{t:9.2f} " + " ".join(f"{(s[k] >= t).mean():13.1%} {int((c[k] >= t).sum()):>6d} of {n}" for k in s)
              + marker)
    alone = np.array(by_look)
    print(f"by the look alone (no detector), all {len(alone)} cut-ins against the last {tracking.LOOKS} looks: "
          f"{int((alone >= tracking.MIN_CORRELATION).sum())} kept at the shipped {tracking.MIN_CORRELATION}, "
          f"median {np.median(alone):.3f}, max {alone.max():.3f}")
    scene(clips, lfw, detector)
    quality(clips, detector)
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
    searched: list[float] = []  # the share of the frame a staying face's changed scene has searched
    seen = {"scan": 0, "search": 0}  # newcomers found by a full scan, and by searching the changed part
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
            region = check.changed(after_frame, followed)
            searched.append(0.0 if region is None else area(region) / area((0, 0, *after_frame.shape[1::-1])))
            for i, side in enumerate(NEWCOMER_SIDES):
                image = lfw[(k * len(NEWCOMER_SIDES) + i) % len(lfw)]
                frame = beside(after_frame, followed, image, side, (k + i) % 2 == 0)
                newcomers.append(check.change(frame, followed))
                region = check.changed(frame, followed)
                seen["scan"] += any(not overlap(f.box, followed.box) for f in detector(frame))
                seen["search"] += region is not None and any(
                    not overlap(f.box, followed.box) for f in detector.within(frame, region))
    s, n, a = np.array(still), np.array(newcomers), np.array(searched)
    print(f"\nStill scene, NUAA live clips 2 s apart: {len(s)} pairs; {len(n)} with a face of "
          f"{', '.join(map(str, NEWCOMER_SIDES))} px come in beside the followed one; block change: staying "
          f"median {np.median(s):.1f}, newcomers min {n.min():.1f}")
    print(f"{'threshold':>9s} {'searches still run':>19s} {'newcomers missed':>17s}")
    for t in SCENE_THRESHOLDS:
        marker = "  <- shipped" if t == tracking.Scene.MIN_CHANGE else ""
        print(f"{t:9.1f} {(s > t).mean():19.1%} {int((n <= t).sum()):>8d} of {len(n)}{marker}")
    print(f"the changed part searched (GROW {tracking.Scene.GROW} blocks): median {np.median(a):.1%} of the frame, "
          f"max {a.max():.1%}; newcomers found by a full scan {seen['scan']} of {len(n)}, by searching the "
          f"changed part {seen['search']}")


def quality(clips: list[Path], detector: vision.Detector) -> None:
    """The share of frames, and of the same frames' face boxes, the shipped thresholds call dark or
    blurry, sharp and degraded, and the box's Laplacian variance against its frame's."""
    camera = CameraConfig()
    check = vision.Quality(camera.dark_threshold, camera.blur_threshold)
    cases = {"as taken": lambda f: f, "5x5 blur": lambda f: cv2.GaussianBlur(f, (5, 5), 0),
             "9x9 blur": lambda f: cv2.GaussianBlur(f, (9, 9), 0), "13x13 blur": lambda f: cv2.GaussianBlur(f, (13, 13), 0),
             "a fifth of the light": lambda f: (f // 5).astype(np.uint8),
             "a tenth of the light": lambda f: (f // 10).astype(np.uint8)}
    flagged = {name: [0, 0] for name in cases}
    ratios: list[float] = []
    n = 0
    for clip in clips:
        for path in sorted(clip.glob("*.jpg"))[::5]:
            frame = cv2.imread(str(path))
            found = detector(frame)
            if not found:
                continue
            box = max(found, key=lambda f: f.box[2]).box
            x, y, w, h = (int(v) for v in box)
            ratios.append(vision.sharpness(frame[max(0, y):y + h, max(0, x):x + w]) / vision.sharpness(frame))
            n += 1
            for name, degrade in cases.items():
                seen = degrade(frame)
                flagged[name][0] += check(seen) is not None
                flagged[name][1] += check(seen, box) is not None
    print(f"\nDark and blur check (dark < {camera.dark_threshold}, blurry < {camera.blur_threshold}), {n} NUAA "
          f"live frames with a face: the face box's Laplacian variance is {np.median(ratios):.2f} of its frame's "
          f"(median; 5th-95th percentile {np.percentile(ratios, 5):.2f}-{np.percentile(ratios, 95):.2f})")
    print(f"{'frames':>22s} {'flagged, frame':>15s} {'flagged, face box':>18s}")
    for name, (frame_flags, box_flags) in flagged.items():
        print(f"{name:>22s} {frame_flags / n:15.1%} {box_flags / n:18.1%}")


def area(box: tuple[int, int, int, int]) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


if __name__ == "__main__":
    sys.exit(main())
