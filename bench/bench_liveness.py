"""Liveness on NUAA clips: does a printed photo of the owner produce `owner_arrived`?

Each clip of ../shared/data/faces/nuaa-dev/sequences is replayed through the daemon's own sampling
step (service.daemon.sample_once: camera.Camera on the image directory at 5 fps, the owner's Verifier, the
LivenessTracker, the presence state machine) on a replay clock, at the cadence presence asks for
(fast while liveness is pending): each sample takes the frame a real-time replay would show at
that moment, without waiting for it. Before their clips, each person is enrolled from three of their
live frames and their owner model trained with the real commands (frames of the live clip itself:
optimistic for the owner check, which is not what this bench measures).
APCER = photo clips that produce owner_arrived; BPCER = live clips that do not within the clip.
Added cost = the tracker's time per sample while pending. The table's "owner" column counts the
samples the owner model verified: photos are verified as the person too, liveness is what stops them.

The shipped thresholds were set on these same clips, so the first table is optimistic. The second
estimate is leave-one-subject-out: thresholds calibrated (as --calibrate does) on the other seven
people's photo clips, applied to the held-out person's recorded cue sequence. It is still optimistic
(the cue design and margins were chosen looking at all eight).

    python bench/bench_liveness.py [--faces DIR] [--calibrate]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from facewarden.config import Config
from facewarden.core import liveness as core_liveness
from facewarden.core.liveness import Cues, LivenessThresholds as Thresholds, judge
from facewarden.core.observation import Observation
from facewarden.core.presence import Presence, Sample
from facewarden.events import Event
from facewarden.model import evaluate
from facewarden.paths import paths
from facewarden.recognition.liveness import LivenessTracker
from facewarden.recognition.verifier import Verifier
from facewarden.recognition.vision import Detector
from facewarden.service.camera import Camera, ReplayEnded
from facewarden.service.daemon import sample_once

REPO = Path(__file__).resolve().parent.parent
FACES = Path(os.environ.get("FACEWARDEN_FACES", REPO.parent / "shared" / "data" / "faces"))
# Calibration margins beyond the worst photo clip, for people the thresholds have not seen.
BLINK_MARGIN = 0.8
MARGIN = 1.3
TEXTURE_MARGIN = 1.4


@dataclass
class Run:
    clip: str
    subject: str
    kind: str
    times: list[float] = field(default_factory=list)  # every sample
    owner: list[bool] = field(default_factory=list)
    cues: list[tuple[float, Cues]] = field(default_factory=list)  # samples the tracker measured
    events: list[tuple[float, Event]] = field(default_factory=list)
    reason: str | None = None
    cost_ms: list[float] = field(default_factory=list)  # wall time
    cpu_ms: list[float] = field(default_factory=list)  # this thread's CPU time (LiteRT runs on it)
    verify_ms: list[float] = field(default_factory=list)  # the owner check of the same samples, for scale

    def first(self, event: Event) -> float | None:
        return next((t for t, e in self.events if e == event), None)


class Clock:
    """The replay clock, advanced by the sampling interval: the camera hands out the frame current
    at each sample time as in real time, but a run takes no wall time waiting."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Measured:
    """The daemon's liveness hook around the real tracker, recording what it measured and its cost."""

    def __init__(self, tracker: LivenessTracker, run: Run):
        self.tracker, self.run = tracker, run

    def update(self, frame: np.ndarray, face, now: float) -> bool | None:
        start, cpu = time.perf_counter(), time.thread_time()
        live = self.tracker.update(frame, face, now)
        if self.tracker.last is not None:
            self.run.cost_ms.append((time.perf_counter() - start) * 1000)
            self.run.cpu_ms.append((time.thread_time() - cpu) * 1000)
            self.run.cues.append((now, self.tracker.last))
        return live

    def reset(self) -> None:
        self.tracker.reset()


ENROLL_FRAMES = (0, 13, 26)  # three of the person's live frames (from their live clip: optimistic)


def enroll_owner(root: Path, subject: str, home: Path, cache: Path, config: Config):
    """Enroll `subject` from three of their live frames and train their owner model with the real
    commands (`facewarden enroll --from`, `facewarden train`, in their own FACEWARDEN_HOME); the
    daemon's verifier for it. Training runs in a child process, so that TensorFlow stays out of
    this one, as it stays out of the daemon (its threads would skew the cost measured here).

    Faces other than the largest are greyed out first: enrollment wants exactly one face, and some
    NUAA live clips have colleagues in the background."""
    detector = Detector(evaluate.STILL_DETECT_WIDTH, config.model.min_detection_score)
    source = home / "enroll-src"
    source.mkdir(parents=True)
    for i in ENROLL_FRAMES:
        frame = cv2.imread(str(root / f"{subject}_live" / f"{i:03d}.jpg"))
        faces = sorted(detector(frame), key=lambda f: -f.box[2] * f.box[3])
        for face in faces[1:]:
            x, y, w, h = (int(v) for v in face.box)
            frame[max(0, y - h // 2) : y + 3 * h // 2, max(0, x - w // 2) : x + 3 * w // 2] = 128
        cv2.imwrite(str(source / f"{i:03d}.png"), frame)
    cache.mkdir(mode=0o700, exist_ok=True)
    (home / "cache").symlink_to(cache)  # the ported encoder, built once for all of them
    env = {**os.environ, "FACEWARDEN_HOME": str(home)}
    for command in (["enroll", "--from", str(source)], ["train"]):
        done = subprocess.run([sys.executable, "-m", "facewarden", *command], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"bench_liveness: {' '.join(command)} for {subject} failed: {done.stderr[-800:]}")
    os.environ["FACEWARDEN_HOME"] = str(home)
    return Verifier.from_config(config, paths()).observe


def replay(clip: Path, subject: str, kind: str, config: Config, verify, tracker: LivenessTracker) -> Run:
    """One clip through the daemon's sampling step (service.daemon.sample_once) on the replay clock."""
    run = Run(clip.name, subject, kind)
    clock = Clock()
    camera = Camera(config.camera.model_copy(update={"source": str(clip)}), clock)
    presence = Presence(config, clock.now)
    tracker.reset()
    measured = Measured(tracker, run)

    def timed_verify(frame: np.ndarray) -> Observation:
        start = time.perf_counter()
        observation = verify(frame)
        run.verify_ms.append((time.perf_counter() - start) * 1000)
        return observation

    while True:
        try:
            step = sample_once(camera, timed_verify, presence, clock, measured)
        except ReplayEnded:
            break
        run.times.append(clock.now)
        run.owner.append(bool(step.sample and step.sample.owner))
        run.events += [(clock.now, e) for e in step.events]
        clock.now += presence.interval()
    run.reason = tracker.reason
    return run


def live_at(cues: list[tuple[float, Cues]], thresholds: Thresholds, window_s: float) -> float | None:
    """When the tracker, with these thresholds, would have judged the recorded samples live."""
    for i, (now, _) in enumerate(cues):
        if judge([c for t, c in cues[: i + 1] if now - t <= window_s], thresholds) is not None:
            return now
    return None


def arrived(run: Run, thresholds: Thresholds, config: Config) -> bool:
    """Whether `owner_arrived` would fire with these thresholds: the recorded samples (same times:
    the cadence only changes after the liveness decision) through the presence machine again."""
    when = live_at(run.cues, thresholds, config.liveness.window_s)
    presence = Presence(config, 0.0)
    for now, owner in zip(run.times, run.owner):
        live = True if owner and when is not None and now >= when else None
        sample = Sample(owner=owner, live=live if owner else None)
        if Event.OWNER_ARRIVED in presence.observe(sample, now):
            return True
    return False


def _prefix_stats(cues: list[Cues], t: Thresholds) -> tuple[float, float, float, float]:
    """Per clip, the most live-looking value each cue reached over the clip's growing window (as
    the tracker sees it): the lowest blink ratio, the largest k-th gaze shift, the largest k-th
    non-rigid excess, the highest still-texture median."""
    blink, gaze, texture = np.inf, -np.inf, -np.inf
    for i in range(1, len(cues) + 1):
        steady = [c for c in cues[:i] if c.motion is None or c.motion <= core_liveness.MOTION_MAX]
        if len(steady) >= max(t.blink_min_samples, 1):
            ears = [c.ear for c in steady]
            blink = min(blink, min(ears) / float(np.median(ears)))
        if len(steady) >= max(t.gaze_min_samples, t.gaze_count):
            positions = np.array([c.gaze for c in steady])
            shift = np.sort(np.linalg.norm(positions - np.median(positions, axis=0), axis=1))[::-1]
            gaze = max(gaze, float(shift[t.gaze_count - 1]))
        still = [c.texture for c in cues[:i] if c.motion is not None and c.motion <= core_liveness.STILL]
        if len(still) >= t.texture_min_samples:
            texture = max(texture, float(np.median(still)))
    excess = sorted((c.nonrigid for c in cues if c.nonrigid is not None), reverse=True)
    nonrigid = excess[t.nonrigid_count - 1] if len(excess) >= t.nonrigid_count else -np.inf
    return blink, gaze, nonrigid, texture


def calibrate(spoofs: list[list[Cues]], base: Thresholds = core_liveness.THRESHOLDS) -> Thresholds:
    """Thresholds under which none of the `spoofs` cue sequences is judged live, with a margin
    beyond the worst of them; texture, the weakest cue (lighting, camera, print quality), gets
    the widest one."""
    stats = np.array([_prefix_stats(c, base) for c in spoofs])
    return replace(
        base,
        blink_ratio=round(float(stats[:, 0].min()) * BLINK_MARGIN, 3),
        gaze_shift=round(float(stats[:, 1].max()) * MARGIN, 3),
        nonrigid_excess=round(float(stats[:, 2].max()) * MARGIN, 4),
        texture=round(float(stats[:, 3].max()) * TEXTURE_MARGIN, 3),
    )


def _rate(hits: int, total: int) -> str:
    return f"{hits}/{total} = {100 * hits / total:.1f}%" if total else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=FACES, help="the shared face data folder")
    parser.add_argument("--calibrate", action="store_true", help="print thresholds calibrated on all photo clips")
    args = parser.parse_args()
    root = args.faces / "nuaa-dev" / "sequences"
    if not (root / "index.csv").is_file():
        print(f"bench_liveness: {root}/index.csv is absent (the shared face data is not here)", file=sys.stderr)
        return 2
    config = Config()
    tracker = LivenessTracker(config.liveness)
    with open(root / "index.csv", newline="") as f:
        clips = list(csv.DictReader(f))
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-liveness-") as tmp:
        for subject in sorted({c["subject"] for c in clips}):
            print(f"enrolling and training {subject}...", file=sys.stderr, flush=True)
            verify = enroll_owner(root, subject, Path(tmp) / subject, Path(tmp) / "cache", config)
            for c in (c for c in clips if c["subject"] == subject):
                runs.append(replay(root / c["clip"], c["subject"], c["kind"], config, verify, tracker))

    print(f"{'clip':<13} {'kind':<6} {'samples':>7} {'owner':>5} {'cue':<9} {'owner_arrived':>13} {'spoof_suspected':>15}")
    for r in runs:
        at = r.first(Event.OWNER_ARRIVED)
        spoof = r.first(Event.SPOOF_SUSPECTED)
        print(
            f"{r.clip:<13} {r.kind:<6} {len(r.times):>7} {sum(r.owner):>5} {r.reason or '-':<9} "
            f"{f'{at:.2f}s' if at is not None else '-':>13} {f'{spoof:.2f}s' if spoof is not None else '-':>15}"
        )
    photos = [r for r in runs if r.kind == "photo"]
    lives = [r for r in runs if r.kind == "live"]
    apcer = sum(r.first(Event.OWNER_ARRIVED) is not None for r in photos)
    bpcer = sum(r.first(Event.OWNER_ARRIVED) is None for r in lives)
    print(f"\nshipped thresholds ({Thresholds()}), replayed through the daemon's sampling step:")
    print(f"  APCER {_rate(apcer, len(photos))} (target <= 7%)   BPCER {_rate(bpcer, len(lives))} (target <= 15%)")

    subjects = sorted({r.subject for r in runs})
    apcer = bpcer = 0
    for s in subjects:
        fitted = calibrate([[c for _, c in r.cues] for r in photos if r.subject != s])
        apcer += sum(arrived(r, fitted, config) for r in photos if r.subject == s)
        bpcer += sum(not arrived(r, fitted, config) for r in lives if r.subject == s)
    print("leave-one-subject-out (thresholds calibrated on the other subjects' photo clips):")
    print(f"  APCER {_rate(apcer, len(photos))}   BPCER {_rate(bpcer, len(lives))}   (optimistic: cues and margins chosen on all)")
    if args.calibrate:
        print(f"calibrated on all photo clips: {calibrate([[c for _, c in r.cues] for r in photos])}")

    cost = np.concatenate([r.cost_ms for r in runs])
    cpu = np.concatenate([r.cpu_ms for r in runs])
    peer = np.concatenate([r.verify_ms for r in runs])
    print(
        f"added cost per sample while pending (target <= 10 ms median): wall median {np.median(cost):.2f} ms "
        f"(p90 {np.percentile(cost, 90):.2f}), CPU median {np.median(cpu):.2f} ms (p90 {np.percentile(cpu, 90):.2f}) "
        f"over {len(cost)} samples"
    )
    print(
        f"  peer: the owner check of the same samples, wall median {np.median(peer):.2f} ms; liveness/owner check "
        f"= {np.median(cost) / np.median(peer):.2f}x; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
