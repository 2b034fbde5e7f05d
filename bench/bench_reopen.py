"""A camera opened for each sample (`camera.keep_open = false`) on a desktop full of open files:
how often the daemon scans /proc for other programs holding the camera, and what that costs.

    .venv/bin/python bench/bench_reopen.py [--samples 60] [--files 5000]

`Cameras` (the daemon's own camera code, its watcher thread included) reads a replayed video with
keep_open off, one sample every 0.2 s, while another process of the user holds `--files`
descriptors open (a desktop session with a browser holds thousands): each scan reads a link for
every one of them. Then another program opens the video, as a call app opens /dev/video0, and the
camera must see it (busy). Prints the scans per sample of our own (target 0: the camera's own open
and close are no sign of anyone else), the CPU of one scan, and what the scans cost a sample.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "daemon"))
sys.path.insert(0, str(REPO / "tests"))

from desktop_helpers.holder import holding  # noqa: E402
import facewarden.service.holders as holders_module  # noqa: E402
from facewarden.config import parse  # noqa: E402
from facewarden.service.camera import Cameras  # noqa: E402

# A desktop program with many files open: `n` descriptors of /dev/null until stdin closes.
MANY = """
import os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(int(sys.argv[1]))]
print("ready", flush=True)
sys.stdin.read()
"""
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="facewarden-bench-reopen-"))
    video = folder / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (640, 480))
    rng = np.random.default_rng(0)
    for _ in range(50):
        writer.write(rng.integers(0, 255, (480, 640, 3), np.uint8))
    writer.release()

    scans: list[tuple[float, list]] = []  # (CPU seconds, holders found) of each scan
    scan = holders_module.holders

    def counted(target: str, own_pid: int | None = None) -> list:
        started = time.thread_time()
        found = scan(target, own_pid)
        scans.append((time.thread_time() - started, found))
        return found

    holders_module.holders = counted
    many = subprocess.Popen([sys.executable, "-c", MANY, str(args.files)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    cams = None
    try:
        assert many.stdout.readline().startswith("ready")
        cams = Cameras(parse({"camera": {"source": str(video), "replay_loop": True, "keep_open": False}}).camera)
        cams.read()  # the first open: its scan happens once, before anything is known
        time.sleep(0.2)
        first = len(scans)
        for _ in range(args.samples):
            assert cams.read() is not None, "the replay delivered no frame"
            time.sleep(0.2)  # the watcher's thread handles our open and close meanwhile
        own = len(scans) - first
        own_ms = sum(t for t, _ in scans[first:]) * 1000
        with holding(video):  # a call app's open
            deadline = time.monotonic() + 5
            while (cams.read() is not None or cams.busy_by is None) and time.monotonic() < deadline:
                time.sleep(0.01)
            seen = cams.busy_by
    finally:
        if cams is not None:
            cams.close()
        many.kill()
        many.wait()
        subprocess.run(["rm", "-rf", str(folder)], check=False)
    cost = statistics.median(t for t, _ in scans) * 1000
    print(f"keep_open = false, {args.samples} samples of a replayed 640x480 video, another process holding "
          f"{args.files} files open")
    print(f"scans of /proc of our own  : {own / args.samples:.2f} a sample ({own} in {args.samples})  (target 0)  "
          f"{'PASS' if own == 0 else 'FAIL'}")
    print(f"one scan                   : {cost:.2f} CPU-ms (median of {len(scans)})")
    print(f"scans' CPU a sample        : {own_ms / args.samples:.2f} ms ({own_ms / args.samples / 10:.2f}% of a core "
          f"at the default sample a second)")
    print(f"another program's open seen: {'yes, ' + seen if seen else 'no'}  {'PASS' if seen else 'FAIL'}")
    return 0 if own == 0 and seen else 1


if __name__ == "__main__":
    sys.exit(main())
