"""Frames from OpenCV: a webcam (index, /dev/video*, /dev/v4l/by-id/...), a video file, or a directory
of images.

Recorded sources replay in real time, as a live camera would: each read takes the frame current at
that moment on the replay clock (a video at its own frame rate, an image directory at
`camera.replay_fps`), skipping the ones in between, so the daemon sees what it would have seen live.
A failing source is logged once, then retried with doubling back-off; meanwhile reads return None,
which the daemon judges as "owner not verified" (fail closed).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..config import Camera as CameraConfig
from ..errors import UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff"}
FIRST_RETRY_S = 1.0
# A webcam opened for one sample delivers a few dark or unexposed frames before auto-exposure settles.
WARMUP_FRAMES = 3

# OpenCV's own warnings would repeat on every retry of a lost camera; we log the loss once ourselves.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class ReplayEnded(Exception):
    """A recorded source played to its end (and camera.replay_loop is off)."""


def _device(source: int | str) -> int | str | None:
    """The OpenCV device argument for a webcam source, or None for a recorded one."""
    if isinstance(source, int):
        return source
    if source.isdigit():
        return int(source)
    if source.startswith("/dev/"):
        # /dev/v4l/by-id/... are symlinks; V4L2 wants the node they point at.
        return os.path.realpath(source)
    return None


class Camera:
    """One source, read on demand. `clock` is monotonic seconds (injected by tests)."""

    def __init__(self, config: CameraConfig, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.clock = clock
        self.device = _device(config.source)
        self.images: list[Path] = []
        if self.device is None:
            path = Path(str(config.source)).expanduser()
            if path.is_dir():
                self.images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if not self.images:
                    raise UserError(f"camera.source: {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            elif not path.exists():  # a file, or a pipe or device some other program feeds
                raise UserError(f"camera.source: {path} is not a camera, a video file or an image directory")
            self.path = path
        self._cap: cv2.VideoCapture | None = None
        self._position = -1  # index of the last frame taken from an open video...
        self._frame: np.ndarray | None = None  # ...and that frame
        self._started: float | None = None  # the replay clock's zero
        self.lost = False
        self._retry_at = 0.0
        self._backoff = FIRST_RETRY_S

    @property
    def recorded(self) -> bool:
        return self.device is None

    # -- the adapter's one entry point --------------------------------------------------------

    def read(self) -> np.ndarray | None:
        """The current frame, or None while the source fails. Raises ReplayEnded at the end."""
        now = self.clock()
        if self.lost and now < self._retry_at:
            return None
        try:
            frame = self._read(now)
        except ReplayEnded:
            self.release()
            raise
        if frame is None:
            self._failed(now)
            return None
        if self.lost:
            log.info("camera %s is back", self.config.source)
        self.lost, self._backoff = False, FIRST_RETRY_S
        if not self.config.keep_open:
            self.release()
        return frame

    def release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _failed(self, now: float) -> None:
        if not self.lost:
            log.warning("camera %s failed to deliver a frame; retrying with back-off", self.config.source)
            self._backoff = FIRST_RETRY_S
        else:
            self._backoff = min(self._backoff * 2, self.config.retry_max_s)
        self.lost = True
        self._retry_at = now + min(self._backoff, self.config.retry_max_s)
        self.release()

    # -- sources ------------------------------------------------------------------------------

    def _replay_index(self, now: float, fps: float, count: int) -> int:
        if self._started is None:
            self._started = now
            # In wall-clock time, so that benchmarks can line up the replay with the daemon's actions.
            log.info("replay of %s started at %.3f", self.config.source, time.time())
        index = math.floor((now - self._started) * fps)
        if count > 0 and index >= count:
            if not self.config.replay_loop:
                raise ReplayEnded(str(self.config.source))
            index %= count
        return index

    def _read(self, now: float) -> np.ndarray | None:
        if self.images:
            index = self._replay_index(now, self.config.replay_fps, len(self.images))
            return cv2.imread(str(self.images[index]), cv2.IMREAD_COLOR)
        if self._cap is None and not self._open():
            return None
        if self.device is not None:
            return self._read_device()
        return self._read_video(now)

    def _open(self) -> bool:
        if self.device is not None:
            cap = cv2.VideoCapture(self.device)
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
        else:
            cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            return False
        self._cap, self._position = cap, -1
        if self.device is not None and not self.config.keep_open:
            for _ in range(WARMUP_FRAMES):
                cap.grab()
        return True

    def _read_device(self) -> np.ndarray | None:
        assert self._cap is not None  # opened by _read
        ok, frame = self._cap.read()
        return frame if ok and frame is not None else None

    def _read_video(self, now: float) -> np.ndarray | None:
        cap = self._cap
        assert cap is not None  # opened by _read
        fps = cap.get(cv2.CAP_PROP_FPS) or self.config.replay_fps
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        index = self._replay_index(now, fps, count)
        if index == self._position:
            return self._frame  # several samples within one frame's time
        if index < self._position or index - self._position > 2 * fps:
            # Looped, reopened, or far behind: seeking beats decoding every frame in between.
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        else:
            for _ in range(index - self._position - 1):
                if not cap.grab():
                    break
        ok, frame = cap.read()
        if not ok or frame is None:
            if count <= 0:
                # A stream without a frame count ends when it stops delivering frames.
                raise ReplayEnded(str(self.config.source))
            return None
        self._position, self._frame = index, frame
        return frame
