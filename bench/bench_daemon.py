"""The daemon over a long replayed run at the default cadence: memory, CPU, lock latency, false locks.

    .venv/bin/python bench/bench_daemon.py [--minutes 10] [--threads N] [--no-liveness] [--frames webcam|raw|jpeg]

The real `facewarden run` process, with the shipped defaults (liveness on), watches a camera whose
frames are a replay at 5 fps. By default it is the shipped default camera itself (`source = 0`,
/dev/video0, a webcam at 640x480 kept open) read through OpenCV's V4L2 back-end, as on a laptop:
bench/fakecam.c (built here with gcc, preloaded into the daemon alone) plays the part of the
webcam's driver, handing out YUYV frames at the rate the daemon asks for (10 fps), into buffers
the daemon queues, and drops them while none is queued. `--frames raw`: the same YUYV as a
YUV4MPEG file that OpenCV plays itself through FFmpeg (`camera.source` a recording: each frame
between two samples is read from the file and skipped, which a webcam does not cost). `--frames
jpeg`: an image directory of JPEGs instead, as an MJPEG-only camera delivers them (a JPEG decode
a frame, and one open of a file, which the camera's watcher sees).

The owner is NUAA subject 0008, enrolled from three of their live frames, and sits in the replay as
their live 8-s clip played forwards and backwards (no jump at the seams). The replay: 5 minutes at the desk (the steady stretch), away 20 s, back for a minute,
then a stranger (NUAA subject 0001's live clip) cut in for the owner in the same place between two
frames (cli.demo.in_place_of, frame by frame) for 20 s, away 20 s, then the owner coming and going
(100 s at the desk, 20 s away) to the end. Away is an empty scene. The lock command is a script
recording when it ran.

`--no-liveness`: an LFW person in still photos (enrolled and trained with the real commands from
other photos of them), liveness off (the photos would rightly be refused), coming and going.

Measured on the daemon process alone (os.wait4 and /proc): peak RSS (VmHWM) (target <= 160 MB; and
at the once-a-second reading that raised it, how much was the daemon's own memory and how much pages
of mapped files, libraries and models, which depend on how those files came into the page cache), CPU as a
share of one core over the whole run (target <= 1%) and over the desk stretch after its first 20 s
(target <= 0.5%), time from the owner's last frame to the lock (target <= lock.after_absent_s + 2 s),
from the stranger's cut to the lock (target <= lock.after_stranger_s + 2 s), and locks while the
owner is present (target 0).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "daemon"))

# Nothing here maps the daemon's libraries (OpenCV, LiteRT, NumPy): the replay is made by a child
# process (`prepare`), so that what the daemon has resident is its own, as on a machine where
# nothing else runs them. A page that another process maps stays in the page cache as it came,
# in the large folios of a file just installed (runtime.release_file_pages).
from facewarden.config import Config  # noqa: E402

FACES = Path(os.environ.get("FACEWARDEN_FACES", REPO.parent / "shared" / "data" / "faces"))
OWNER_S, AWAY_S = 100, 20
FPS = 5
LIVE_OWNER, LIVE_ENROLL = "0008", (0, 13, 26)  # as bench_liveness: a subject and three live frames
STRANGER = "0001"  # the NUAA subject cut in for the owner
DESK_S, BACK_S, STRANGER_S = 300, 60, 20
SETTLE_S = 20  # the desk stretch's CPU leaves out its start (the owner proving life) before this


def owner_photos(enroll_dir: Path) -> tuple[str, list]:
    """Enrolls photos into `enroll_dir`; returns the owner's name and other photos of them for the replay."""
    import cv2

    from facewarden.cli.demo import _astronaut, augmented

    enroll_dir.mkdir(parents=True)
    people = FACES / "lfw-dev"
    if people.is_dir():
        name = max((p for p in people.iterdir() if p.is_dir()), key=lambda p: len(list(p.glob("*.jpg"))))
        images = sorted(name.glob("*.jpg"))
        for p in images[:8]:
            (enroll_dir / p.name).write_bytes(p.read_bytes())
        return f"{name.name} (LFW)", [cv2.imread(str(p)) for p in images[8:28]]
    photo = _astronaut()
    for i, img in enumerate(augmented(photo, 12)):
        cv2.imwrite(str(enroll_dir / f"{i}.jpg"), img)
    return "the astronaut (no ../shared: augmented copies of one photo)", augmented(photo, 20, seed=11)


def live_owner(enroll_dir: Path, frames_dir: Path, seconds: float) -> tuple[str, list[tuple[str, float, float]]]:
    """The shipped-defaults scenario: enrolls NUAA 0008's live frames into `enroll_dir` and writes the
    replay into `frames_dir`; returns the owner's name and the segments (name, start, end in seconds)."""
    import cv2

    from facewarden.cli.demo import _empty_scene, in_place_of
    from facewarden.recognition.vision import Detector

    clips = FACES / "nuaa-dev" / "sequences"
    if not (clips / f"{LIVE_OWNER}_live").is_dir():
        sys.exit(f"needs the shared NUAA clips at {clips}")

    def clip(subject: str) -> list:
        live = [cv2.imread(str(p)) for p in sorted((clips / f"{subject}_live").glob("*.jpg"))]
        return live + live[-2:0:-1]  # forwards then backwards: the face never jumps

    there = clip(LIVE_OWNER)
    enroll_dir.mkdir(parents=True)
    for i in LIVE_ENROLL:
        cv2.imwrite(str(enroll_dir / f"{i:03d}.png"), there[i])
    detector = Detector(640)
    stranger = []
    for frame, theirs in zip(there, clip(STRANGER) * 2):
        cut = in_place_of(frame, detector(frame)[0], theirs, detector)
        stranger.append(frame if cut is None else cut)
    empty = [cv2.resize(_empty_scene(), (there[0].shape[1], there[0].shape[0]))]
    desk = min(DESK_S, max(60, seconds - 140))
    plan = [("desk", desk, there), ("away0", AWAY_S, empty), ("owner1", BACK_S, there),
            ("stranger", STRANGER_S, stranger), ("away1", AWAY_S, empty)]
    while sum(s for _, s, _ in plan) < seconds:
        i = len(plan)
        plan += [(f"owner{i}", OWNER_S, there), (f"away{i}", AWAY_S, empty)]
    frames_dir.mkdir(parents=True)
    index, segments = 0, []
    for name, length, frames in plan:
        start = index / FPS
        for _ in range(round(length * FPS)):
            # The owner's clip runs on across segments: a cut at the segment's start is between two frames.
            cv2.imwrite(str(frames_dir / f"{index:05d}.jpg"), frames[index % len(frames)])
            index += 1
        segments.append((name, start, index / FPS))
    return f"NUAA {LIVE_OWNER} (live clip), stranger NUAA {STRANGER}", segments


def to_video(frames_dir: Path, path: Path, fps: int, webcam: bool) -> tuple[Path, tuple[int, int]]:
    """The numbered frames of `frames_dir` as raw video, chroma halved across as in YUYV (4:2:2), and
    their size (width, height); the directory is removed. `webcam`: YUYV buffers back to back, as a
    webcam fills them (what bench/fakecam.c hands out); else one YUV4MPEG video at `fps` (planes),
    which OpenCV plays, and reads back within about a grey level a pixel."""
    import cv2
    import numpy as np

    # BT.601 at studio range, RGB -> Y Cb Cr: what a webcam's YUYV carries and what FFmpeg reads a
    # YUV4MPEG file as.
    ycbcr = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]],
                     np.float32) / 255
    frames = sorted(frames_dir.glob("*.jpg"))
    height, width = cv2.imread(str(frames[0])).shape[:2]
    with open(path, "wb") as out:
        if not webcam:
            out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C422\n".encode())
        for frame in frames:
            rgb = cv2.imread(str(frame))[..., ::-1].astype(np.float32)
            ycc = rgb @ ycbcr.T + np.array([16, 128, 128], np.float32)
            luma = np.clip(np.rint(ycc[..., 0]), 0, 255).astype(np.uint8)
            chroma = np.clip(np.rint((ycc[:, 0::2, 1:] + ycc[:, 1::2, 1:]) / 2), 0, 255).astype(np.uint8)
            if webcam:  # Y0 Cb Y1 Cr for each pair of pixels
                out.write(np.stack([luma[:, 0::2], chroma[..., 0], luma[:, 1::2], chroma[..., 1]], -1).tobytes())
            else:
                out.write(b"FRAME\n")
                for plane in (luma, chroma[..., 0], chroma[..., 1]):
                    out.write(plane.tobytes())
    subprocess.run(["rm", "-rf", str(frames_dir)], check=True)
    return path, (width, height)


def fake_webcam(home: Path) -> Path:
    """bench/fakecam.c built into `home`: the preload that makes /dev/video0 a V4L2 webcam."""
    library = home / "fakecam.so"
    try:
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(library), str(REPO / "bench" / "fakecam.c"),
                        "-ldl", "-lm"], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"--frames webcam needs gcc to build bench/fakecam.c ({e}); --frames raw does without")
    return library


def enroll_and_train(python: list[str], env: dict, enroll_dir: Path) -> bool:
    """`facewarden enroll --from` and `train`, as a user runs them; False (their output printed) on failure."""
    for cmd in (["enroll", "--from", str(enroll_dir)], ["train"]):
        result = subprocess.run(python + cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stdout[-2000:], result.stderr[-2000:])
            return False
    return True


def memory_kib(pid: int) -> dict[str, int]:
    """The process's peak resident set so far (VmHWM), and what is resident now: RssAnon (its own
    memory) and RssFile (pages of mapped files: libraries, models). Not wait4's ru_maxrss: exec
    carries the spawning process's peak (this bench's, with the replay's frames in memory) into the
    child's."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    try:
        return {key: int(fields[key].split()[0]) for key in ("VmHWM", "RssAnon", "RssFile")}
    except (KeyError, ValueError):
        raise ValueError(f"no memory figures for {pid}") from None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, help="model.threads for the daemon (default: the config's)")
    parser.add_argument("--no-liveness", action="store_true", help="liveness off, an LFW owner in still photos")
    parser.add_argument("--frames", choices=("webcam", "raw", "jpeg"), default="webcam",
                        help="webcam: the shipped default camera, /dev/video0, a YUYV webcam (bench/fakecam.c; "
                             "the default); raw: its YUYV in a YUV4MPEG file; jpeg: JPEG files as an MJPEG camera's")
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)  # the child that makes the replay
    args = parser.parse_args()
    if args.prepare is not None:
        print(json.dumps(prepare(args, args.prepare)))
        return 0
    home = Path(tempfile.mkdtemp(prefix="facewarden-bench-"))
    try:
        return run(args, home)
    finally:
        subprocess.run(["rm", "-rf", str(home)], check=False)  # the raw replay alone is 2 GB


def prepare(args: argparse.Namespace, home: Path) -> dict:
    """The replay and the enrollment photos in `home` (in the child process): the owner's name, the
    segments, the camera's source and its frame size (the webcam's replay file, the YUV4MPEG file
    or the image directory)."""
    if not args.no_liveness:
        owner, segments = live_owner(home / "bench-enroll", home / "bench-frames", args.minutes * 60)
    else:
        from facewarden.cli.demo import write_replay

        owner, photos = owner_photos(home / "bench-enroll")
        plan = []
        for i in range(max(1, round(args.minutes * 60 / (OWNER_S + AWAY_S)))):
            plan += [(f"owner{i}", OWNER_S, [[p] for p in photos]), (f"away{i}", AWAY_S, [[]])]
        starts = write_replay(home / "bench-frames", plan, FPS)
        segments = [(name, starts[name], starts[name] + length) for name, length, _ in plan]
    source, size = home / "bench-frames", None
    if args.frames != "jpeg":
        webcam = args.frames == "webcam"
        source, size = to_video(source, home / ("bench-frames.yuyv" if webcam else "bench-frames.y4m"), FPS, webcam)
    return {"owner": owner, "segments": segments, "source": str(source), "size": size}


def run(args: argparse.Namespace, home: Path) -> int:
    """The run in `home`; 0 once the figures are printed."""
    defaults = Config()
    liveness = not args.no_liveness
    interval, after_absent, after_stranger = (defaults.sampling.interval_s, defaults.lock.after_absent_s,
                                              defaults.lock.after_stranger_s)
    threads = args.threads or defaults.model.threads

    env = {**os.environ, "FACEWARDEN_HOME": str(home)}
    python = [sys.executable, "-m", "facewarden"]
    forwarded = [f"--minutes={args.minutes}", f"--frames={args.frames}"] + (["--no-liveness"] if not liveness else [])
    child = subprocess.run([sys.executable, __file__, f"--prepare={home}", *forwarded], stdout=subprocess.PIPE, text=True)
    if child.returncode != 0:
        return child.returncode
    prepared = json.loads(child.stdout.strip().splitlines()[-1])  # (a library may print before it)
    owner, segments, source = prepared["owner"], [tuple(s) for s in prepared["segments"]], Path(prepared["source"])
    if not enroll_and_train(python, env, home / "bench-enroll"):
        return 1
    webcam = args.frames == "webcam"
    daemon_env, replay_log = env, home / "fakecam.log"
    if webcam:
        width, height = prepared["size"]
        daemon_env = {**env, "LD_PRELOAD": str(fake_webcam(home)), "FAKECAM_FRAMES": str(source),
                      "FAKECAM_SIZE": f"{width}x{height}", "FAKECAM_FPS": str(FPS), "FAKECAM_LOG": str(replay_log)}
    camera = "" if webcam else f'[camera]\nsource = "{source}"\nreplay_fps = {FPS}'  # webcam: the shipped default, 0

    locks = home / "locks.txt"
    lock_script = home / "lock"
    lock_script.write_text(f'#!/bin/sh\ndate +%s.%N >> "{locks}"\n')
    lock_script.chmod(0o755)
    (home / "config.toml").write_text(f"""
{camera}
[lock]
command = ["{lock_script}"]
methods = ["command"]
[liveness]
enabled = {str(liveness).lower()}
[model]
threads = {threads}
[actions]
owner_left = ["lock"]
stranger_detected = ["lock"]
spoof_suspected = ["lock"]
""")

    end = segments[-1][2]
    started_at = re.compile(r"replay (?:of .* )?started at ([0-9.]+)")
    log_path = home / "daemon.log"
    cpu_at: list[tuple[float, float]] = []  # (wall time, the daemon's CPU seconds), once a second
    peak_kib, peak_at = 0, 0.0  # and when the peak was last raised (wall time)
    split = (0, 0)  # RssAnon and RssFile at the reading that raised the peak
    stopped = False
    with open(log_path, "w") as log:
        started = time.time()
        proc = subprocess.Popen(python + ["run"], env=daemon_env, stderr=log, stdout=subprocess.DEVNULL)
        # os.wait4 rather than proc.poll(): the daemon's own rusage (peak RSS, CPU) comes with its exit.
        while (waited := os.wait4(proc.pid, os.WNOHANG))[0] == 0:
            time.sleep(1.0)
            # A recording ends the daemon's run at its end; a webcam goes on, so it is stopped there.
            if webcam and not stopped and replay_log.exists() and (
                    played := started_at.search(replay_log.read_text())) and time.time() > float(played.group(1)) + end:
                proc.terminate()
                stopped = True
            try:
                cpu_at.append((time.time(), cpu_seconds(proc.pid)))
                if (memory := memory_kib(proc.pid))["VmHWM"] > peak_kib:
                    peak_kib, peak_at = memory["VmHWM"], time.time()
                    split = (memory["RssAnon"], memory["RssFile"])
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass  # exiting: wait4 collects it on the next turn
        _, status, usage = waited
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.time() - started
    code = proc.returncode
    text = log_path.read_text()
    match = started_at.search(replay_log.read_text() if webcam and replay_log.exists() else text)
    if code != 0 or not match:
        print(text[-3000:])
        print(f"daemon exited {code}")
        return 1
    t0 = float(match.group(1))
    lock_times = [float(x) - t0 for x in locks.read_text().split()] if locks.exists() else []

    def verdict(ok):
        return "PASS" if ok else "FAIL"

    def share(start: float, end: float) -> float | None:
        """The daemon's CPU share of one core between two replay times, from the once-a-second readings."""
        inside = [(t - t0, c) for t, c in cpu_at if start <= t - t0 <= end]
        if len(inside) < 2:
            return None
        (a, ca), (b, cb) = inside[0], inside[-1]
        return (cb - ca) / (b - a) * 100

    latencies, false_locks = [], 0
    for i, (name, start, end) in enumerate(segments):
        after = [t for t in lock_times if start <= t < end + 1.0]
        if name.startswith("away") and not (i and segments[i - 1][0] == "stranger"):
            latencies += after[:1] and [after[0] - start]
        # A lock while the owner sits there: past the k-of-n frames it takes to see them again.
        false_locks += sum(start + 2.0 <= t < end for t in lock_times) if name.startswith(("owner", "desk")) else 0
    absences = sum(name.startswith("away") and not (i and segments[i - 1][0] == "stranger")
                   for i, (name, _, _) in enumerate(segments))

    peak_mb = peak_kib * 1024 / 1e6  # the target is read as decimal MB, the stricter
    cpu = (usage.ru_utime + usage.ru_stime) / wall * 100
    print(f"daemon bench: {end / 60:.1f} min replay at {FPS} fps ({args.frames} frames), owner {owner}, default cadence "
          f"(interval {interval:g} s, doubt {defaults.sampling.doubt_interval_s:g} s, re-verify "
          f"{defaults.sampling.reverify_s:g} s, full scan {defaults.sampling.full_scan_s:g} s), {threads} inference "
          f"thread(s), liveness {'on' if liveness else 'off'}; load average {os.getloadavg()[0]:.1f} at the end")
    when = peak_at - t0
    during = next((name for name, start, end in segments if start <= when < end), "start-up" if when < 0 else "-")
    print(f"peak RSS             : {peak_mb:7.1f} MB ({peak_kib / 1024:.1f} MiB, VmHWM) (target <= 160 MB)  "
          f"{verdict(peak_mb <= 160)}  (reached at {when:.0f} s of the replay: {during}; then "
          f"{split[0] * 1024 / 1e6:.1f} MB its own, {split[1] * 1024 / 1e6:.1f} MB of mapped files)")
    print(f"CPU, whole run       : {cpu:7.2f} % of one core  (target <= 1%)      {verdict(cpu <= 1)}  "
          f"({usage.ru_utime + usage.ru_stime:.1f} CPU-s in {wall:.0f} s, start-up included)")
    print(f"CPU per hour         : {(usage.ru_utime + usage.ru_stime) / wall * 3600:7.1f} CPU-s")
    desk = next((seg for seg in segments if seg[0] == "desk"), None)
    if desk is not None:
        steady = share(desk[1] + SETTLE_S, desk[2])
        print(f"CPU, at the desk     : {steady if steady is not None else float('nan'):7.2f} % of one core over "
              f"{desk[2] - desk[1] - SETTLE_S:.0f} s of the owner sitting there (target <= 0.5%)  "
              f"{verdict(steady is not None and steady <= 0.5)}")
    target_latency = after_absent + 2.0
    if latencies:
        print(f"lock latency         : median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s over "
              f"{len(latencies)}/{absences} absences (target <= {target_latency:g} s)  "
              f"{verdict(len(latencies) == absences and max(latencies) <= target_latency)}")
    else:
        print(f"lock latency         : no lock in any of {absences} absences  FAIL")
    cut = next((seg for seg in segments if seg[0] == "stranger"), None)
    if cut is not None:
        events = [json.loads(line) for line in (home / "state" / "events.jsonl").read_text().splitlines()]
        judged = [e["time"] - t0 for e in events if e["event"] == "stranger_detected" and e["time"] - t0 >= cut[1]]
        locked = [t - cut[1] for t in lock_times if cut[1] <= t < cut[2]]
        ok = bool(locked) and locked[0] <= after_stranger + 2.0
        print(f"stranger cut in      : stranger_detected {judged[0] - cut[1]:.2f} s after the cut, " if judged else
              "stranger cut in      : no stranger_detected, ", end="")
        print(f"locked {locked[0]:.2f} s after it (target <= after_stranger_s {after_stranger:g} + 2 s)  {verdict(ok)}"
              if locked else "not locked  FAIL")
    print(f"false locks          : {false_locks} of {len(lock_times)} locks while the owner was present (target 0)  "
          f"{verdict(false_locks == 0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
