"""The daemon over a long replayed run at the default cadence: memory, CPU, lock latency, false locks.

    .venv/bin/python bench/bench_daemon.py [--minutes 10]

The real `facewarden run` process watches a replayed camera (an image directory at 5 fps) of an LFW
person (the owner, enrolled and trained with the real commands from other photos of them) who sits
at the desk and leaves for 20 s at a time. Liveness is off: the frames are still photos, which the
liveness check would rightly refuse. The lock command is a script recording when it ran.

`--liveness` runs the shipped default instead (liveness on, its two landmark models loaded): the
owner is NUAA subject 0008, enrolled from three of their live frames, and sits in the replay as
their live 8-s clip played forwards and backwards (no jump at the seams); away is an empty scene.

Measured on the daemon process alone (os.wait4): peak RSS (target <= 200 MB), CPU as a share of one
core (target <= 3%), time from the owner's last frame to the lock action (target <=
lock.after_absent_s + 2 sampling intervals), locks while the owner is present (target 0).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "daemon"))

from facewarden.config import Config  # noqa: E402
from facewarden.cli.demo import _astronaut, _empty_scene, augmented, write_replay  # noqa: E402

FACES = Path(os.environ.get("FACEWARDEN_FACES", REPO.parent / "shared" / "data" / "faces"))
OWNER_S, AWAY_S = 100, 20
FPS = 5
LIVE_OWNER, LIVE_ENROLL = "0008", (0, 13, 26)  # as bench_liveness: a subject and three live frames
STEADY_AFTER_S = 60  # CPU "steady state" leaves out start-up (model loading) before this


def owner_photos(enroll_dir: Path) -> tuple[str, list]:
    """Enrolls photos into `enroll_dir`; returns the owner's name and other photos of them for the replay."""
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


def live_owner(enroll_dir: Path, frames_dir: Path, cycles: int) -> tuple[str, dict[str, float]]:
    """The --liveness scenario: enrolls NUAA 0008's live frames into `enroll_dir` and writes the
    replay into `frames_dir`; returns the owner's name and when each segment starts, in seconds."""
    clip = FACES / "nuaa-dev" / "sequences" / f"{LIVE_OWNER}_live"
    if not clip.is_dir():
        sys.exit(f"--liveness needs the shared NUAA clips at {clip.parent}")
    live = [cv2.imread(str(p)) for p in sorted(clip.glob("*.jpg"))]
    enroll_dir.mkdir(parents=True)
    for i in LIVE_ENROLL:
        cv2.imwrite(str(enroll_dir / f"{i:03d}.png"), live[i])
    there = live + live[-2:0:-1]  # forwards then backwards: the face never jumps
    empty = cv2.resize(_empty_scene(), (live[0].shape[1], live[0].shape[0]))
    frames_dir.mkdir(parents=True)
    index, starts = 0, {}
    for i in range(cycles):
        for name, seconds, frames in ((f"owner{i}", OWNER_S, there), (f"away{i}", AWAY_S, [empty])):
            starts[name] = index / FPS
            for n in range(round(seconds * FPS)):
                cv2.imwrite(str(frames_dir / f"{index:05d}.jpg"), frames[n % len(frames)])
                index += 1
    starts["end"] = index / FPS
    return f"NUAA {LIVE_OWNER} (live clip)", starts


def enroll_and_train(python: list[str], env: dict, enroll_dir: Path) -> bool:
    """`facewarden enroll --from` and `train`, as a user runs them; False (their output printed) on failure."""
    for cmd in (["enroll", "--from", str(enroll_dir)], ["train"]):
        result = subprocess.run(python + cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stdout[-2000:], result.stderr[-2000:])
            return False
    return True


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, help="model.threads for the daemon (default: the config's)")
    parser.add_argument("--liveness", action="store_true", help="liveness on (the default config), a live owner")
    args = parser.parse_args()
    defaults = Config()
    interval, after_absent = defaults.sampling.interval_s, defaults.lock.after_absent_s
    target_latency = after_absent + 2 * interval

    home = Path(tempfile.mkdtemp(prefix="facewarden-bench-"))
    env = {**os.environ, "FACEWARDEN_HOME": str(home)}
    python = [sys.executable, "-m", "facewarden"]
    cycles = max(1, round(args.minutes * 60 / (OWNER_S + AWAY_S)))
    if args.liveness:
        owner, starts = live_owner(home / "bench-enroll", home / "bench-frames", cycles)
    else:
        owner, photos = owner_photos(home / "bench-enroll")
        segments = []
        for i in range(cycles):
            segments += [(f"owner{i}", OWNER_S, [[p] for p in photos]), (f"away{i}", AWAY_S, [[]])]
        starts = write_replay(home / "bench-frames", segments, FPS)
    if not enroll_and_train(python, env, home / "bench-enroll"):
        return 1

    locks = home / "locks.txt"
    lock_script = home / "lock"
    lock_script.write_text(f'#!/bin/sh\ndate +%s.%N >> "{locks}"\n')
    lock_script.chmod(0o755)
    (home / "config.toml").write_text(f"""
[camera]
source = "{home / 'bench-frames'}"
replay_fps = {FPS}
[lock]
command = ["{lock_script}"]
methods = ["command"]
[liveness]
enabled = {str(args.liveness).lower()}
[model]
threads = {args.threads or defaults.model.threads}
[actions]
owner_left = ["lock"]
stranger_detected = ["lock"]
spoof_suspected = ["lock"]
""")

    log_path = home / "daemon.log"
    with open(log_path, "w") as log:
        started = time.time()
        proc = subprocess.Popen(python + ["run"], env=env, stderr=log, stdout=subprocess.DEVNULL)
        cpu_at_steady = last_cpu = None
        # os.wait4 rather than proc.poll(): the daemon's own rusage (peak RSS, CPU) comes with its exit.
        while (waited := os.wait4(proc.pid, os.WNOHANG))[0] == 0:
            time.sleep(1.0)
            if cpu_at_steady is None and time.time() - started >= STEADY_AFTER_S:
                try:
                    cpu_at_steady = (time.time(), cpu_seconds(proc.pid))
                except (FileNotFoundError, ProcessLookupError):
                    pass
            try:
                last_cpu = (time.time(), cpu_seconds(proc.pid))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass  # exiting: wait4 collects it on the next turn
        _, status, usage = waited
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.time() - started
    code = proc.returncode
    text = log_path.read_text()
    match = re.search(r"replay of .* started at ([0-9.]+)", text)
    if code != 0 or not match:
        print(text[-3000:])
        print(f"daemon exited {code}")
        return 1
    t0 = float(match.group(1))
    lock_times = [float(x) - t0 for x in locks.read_text().split()] if locks.exists() else []

    latencies, false_locks = [], 0
    for i in range(cycles):
        gone, back = starts[f"away{i}"], starts[f"away{i}"] + AWAY_S
        in_absence = [t for t in lock_times if gone <= t < back + 1.0]
        if in_absence:
            latencies.append(in_absence[0] - gone)
    for t in lock_times:
        # A lock while the owner sits there: inside an owner segment, past the k-of-n frames it takes
        # to see them again after an absence.
        false_locks += any(starts[f"owner{i}"] + 2.0 <= t < starts[f"away{i}"] for i in range(cycles))

    peak_mb = usage.ru_maxrss * 1024 / 1e6  # ru_maxrss is in KiB; the target is read as decimal MB, the stricter
    cpu = (usage.ru_utime + usage.ru_stime) / wall * 100
    steady = None
    if cpu_at_steady and last_cpu and last_cpu[0] > cpu_at_steady[0]:
        steady = (last_cpu[1] - cpu_at_steady[1]) / (last_cpu[0] - cpu_at_steady[0]) * 100

    def verdict(ok):
        return "PASS" if ok else "FAIL"

    print(f"daemon bench: {starts['end'] / 60:.1f} min replay at {FPS} fps, owner {owner}, default cadence "
          f"(interval {interval:g} s, doubt {defaults.sampling.doubt_interval_s:g} s), "
          f"{args.threads or defaults.model.threads} inference threads, "
          f"{cycles} absences of {AWAY_S} s, liveness {'on' if args.liveness else 'off'}")
    print(f"peak RSS             : {peak_mb:7.1f} MB ({usage.ru_maxrss / 1024:.1f} MiB) (target <= 200 MB)  "
          f"{verdict(peak_mb <= 200)}")
    print(f"CPU, whole run       : {cpu:7.2f} % of one core  (target <= 3%)      {verdict(cpu <= 3)}")
    if steady is not None:
        print(f"CPU, after {STEADY_AFTER_S} s      : {steady:7.2f} % of one core")
    if latencies:
        print(f"lock latency         : median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s over "
              f"{len(latencies)}/{cycles} absences (target <= {target_latency:g} s)  "
              f"{verdict(len(latencies) == cycles and max(latencies) <= target_latency)}")
    else:
        print(f"lock latency         : no lock in any of {cycles} absences  FAIL")
    print(f"false locks          : {false_locks} of {len(lock_times)} locks while the owner was present (target 0)  "
          f"{verdict(false_locks == 0)}")
    subprocess.run(["rm", "-rf", str(home)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
