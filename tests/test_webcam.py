"""The daemon's webcam path for real: `service/camera.py` reading /dev/video0 through OpenCV's V4L2
back-end, kept open, as on a laptop. This machine has no /dev/video*, so the webcam's driver is
bench/fakecam.c (built with gcc, preloaded into a child process): YUYV frames at the rate the camera
asks for, into the buffers it queues (at least two), dropped while none is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from desktop_helpers.procs import need

REPO = Path(__file__).resolve().parent.parent
FPS = 10  # the replay's frames a second, as the camera's own rate (camera.DEVICE_FPS): a frame a period
SIZE = (640, 480)

# Reads at wall-clock moments a fraction of a sensor period after one of its frames, each a second
# or so after the last; prints each read's moment, its frame's size, grey and the grabs it took.
READS = """
import json, sys, time
import cv2
from facewarden.config import parse
from facewarden.service.camera import Camera

grabs = 0
class Counting:
    def __init__(self, capture):
        self.capture = capture
    def grab(self):
        global grabs
        grabs += 1
        return self.capture.grab()
    def __getattr__(self, name):
        return getattr(self.capture, name)
opened = cv2.VideoCapture
cv2.VideoCapture = lambda *args: Counting(opened(*args))

log, periods, into = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
camera = Camera(parse({"camera": {"source": 0}}).camera)  # the shipped default: kept open
camera.read()
zero = float(open(log).read().split()[-1])  # the stream's start (wall clock): its sensor's clock
reads = []
for period in periods:
    time.sleep(max(0.0, zero + (period + into) / %(fps)d - time.time()))
    grabs, asked = 0, time.time()
    frame = camera.read()
    reads.append([(asked - zero) * %(fps)d, frame.shape[1], frame.shape[0], float(frame.mean()), grabs])
camera.release()
print(json.dumps(reads))
""" % {"fps": FPS}


def yuyv(level: int) -> np.ndarray:
    """A flat frame as a webcam's YUYV: luma `level`, no colour."""
    packed = np.full((SIZE[1], SIZE[0] * 2), 128, np.uint8)
    packed[:, 0::2] = level
    return packed


def test_a_kept_open_webcam_hands_over_the_frame_of_now_at_the_first_wait_for_the_sensor(tmp_path):
    gcc = need("gcc", "gcc")
    library = tmp_path / "fakecam.so"
    subprocess.run([gcc, "-O2", "-shared", "-fPIC", "-o", str(library), str(REPO / "bench" / "fakecam.c"), "-ldl", "-lm"],
                   check=True)
    lumas = [16 + 3 * i for i in range(70)]  # each frame's own grey: 7 s of replay
    (tmp_path / "frames.yuyv").write_bytes(b"".join(yuyv(luma).tobytes() for luma in lumas))
    # What OpenCV makes of each frame's YUYV: the grey a read frame is recognised by.
    greys = np.array([cv2.cvtColor(yuyv(luma).reshape(SIZE[1], SIZE[0], 2), cv2.COLOR_YUV2BGR_YUYV).mean()
                      for luma in lumas])
    log = tmp_path / "replay.log"
    env = {**os.environ, "LD_PRELOAD": str(library), "FAKECAM_FRAMES": str(tmp_path / "frames.yuyv"),
           "FAKECAM_SIZE": f"{SIZE[0]}x{SIZE[1]}", "FAKECAM_FPS": str(FPS), "FAKECAM_LOG": str(log),
           "FACEWARDEN_HOME": str(tmp_path / "home")}
    # Each read 0.7 of a period after a frame (the sensor's next is 30 ms away), a second or so
    # after the last: the driver's two buffers then hold frames from just after the read before.
    periods = [12, 21, 33, 42, 53]
    result = subprocess.run([sys.executable, "-c", READS, str(log), json.dumps(periods), "0.7"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    reads = json.loads(result.stdout)
    for now, width, height, grey, _ in reads:
        assert (width, height) == SIZE
        index = int(np.argmin(abs(greys - grey)))
        assert abs(greys[index] - grey) < 1.0, f"a frame of the replay, not grey {grey}"
        # The frame of the moment of the read: one the sensor took after it was asked for (a stale
        # buffer, queued at the read before, would be 8 or more frames behind). How long the read
        # took is the machine's business, not bounded here.
        assert index >= now - 1, f"frame {index} read {now:.1f} frames into the replay"
    # Two stale frames dropped, and the first the sensor delivered taken: not a period more for the
    # one after it. (A late read, in a busy moment, may meet one more.)
    assert sorted(grabs for *_, grabs in reads)[-2] == 3, reads
