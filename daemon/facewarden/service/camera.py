"""Frames from OpenCV: a webcam (index, /dev/video*, /dev/v4l/by-id/...), a video file, or a directory
of images.

Recorded sources replay in real time, as a live camera would: each read takes the frame current at
that moment on the replay clock (a video at its own frame rate, an image directory at
`camera.replay_fps`), skipping the ones in between, so the daemon sees what it would have seen live.
A failing source is logged once, then retried with doubling back-off; meanwhile reads return None,
which the daemon judges as "owner not verified" (fail closed).

A source another program holds (a video call) is *busy*, not lost: `holders.Watcher` sees the other
open as it happens and the camera lets go at once, then takes it back once nobody else holds it.
`Cameras` is `camera.source` as a list in order of preference.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..config import CameraConfig, Source
from ..errors import UserError
from .holders import Holder, Watcher

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff"}
FIRST_RETRY_S = 1.0
# A webcam opened for one sample delivers a few dark or unexposed frames before auto-exposure settles.
WARMUP_FRAMES = 3
# Asked of a kept-open webcam: plenty at a sample a second, cheaper on USB and power than 30, and a
# read waits at most one frame (100 ms), so the camera is let go of in time for a video call.
DEVICE_FPS = 10
# At most this many frames wait in the driver's queue (we ask for one buffer; drivers may keep more).
STALE_FRAMES = 4
# A frame waiting in the driver's queue is handed over in microseconds; a grab that takes longer
# waited for the sensor, so its frame is the current one.
QUEUED_S = 0.003
LID = "the closed lid"

# OpenCV's own warnings would repeat on every retry of a lost camera; we log the loss once ourselves.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class ReplayEnded(Exception):
    """A recorded source played to its end (and camera.replay_loop is off)."""


def _device(source: Source) -> int | str | None:
    """The OpenCV device argument for a webcam source, or None for a recorded one."""
    if isinstance(source, int):
        return source
    if source.isdigit():
        return int(source)
    if source.startswith("/dev/"):
        # /dev/v4l/by-id/... are symlinks; V4L2 wants the node they point at. A node that is missing
        # is a camera not plugged in (yet); a file under /dev (a replay kept in /dev/shm) is a recording.
        node = os.path.realpath(source)
        try:
            return node if stat.S_ISCHR(os.stat(node).st_mode) else None
        except OSError:  # not there (or not ours to see): opened as a camera, which fails and backs off
            return node
    return None


def builtin(device: int | str) -> bool:
    """Whether a V4L2 device is built into the machine: on a USB port the firmware calls fixed, or
    not on USB at all (a laptop's MIPI camera)."""
    node = f"video{device}" if isinstance(device, int) else os.path.basename(device)
    sysfs = Path("/sys/class/video4linux", node, "device")
    if not sysfs.exists():
        return False
    for parent in sysfs.resolve().parents:
        removable = parent / "removable"
        if removable.is_file() and (parent / "idVendor").is_file():
            return removable.read_text().strip() == "fixed"
    return True


class Camera:
    """One source, read on demand. `clock` is monotonic seconds (injected by tests). With a
    `watcher`, it yields to other programs that open the source (`hold`)."""

    def __init__(self, config: CameraConfig, clock: Callable[[], float] = time.monotonic,
                 source: Source | None = None, watcher: Watcher | None = None):
        self.config = config
        self.clock = clock
        self.source = config.sources[0] if source is None else source
        self.device = _device(self.source)
        self.watcher = watcher
        self.images: list[Path] = []
        if self.device is None:
            path = Path(str(self.source)).expanduser()
            if path.is_dir():
                self.images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if not self.images:
                    raise UserError(f"camera.source: {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            elif not path.exists():  # a file, or a pipe or device some other program feeds
                raise UserError(f"camera.source: {path} is not a camera, a video file or an image directory")
            self.path = path
        # What inotify watches and /proc links point at.
        self.target = str(self.path.resolve()) if self.device is None else (
            f"/dev/video{self.device}" if isinstance(self.device, int) else str(self.device))
        self.held_by: list[Holder] = []
        self._io = threading.RLock()  # a read, a release and a hold never overlap
        self._cap: cv2.VideoCapture | None = None
        self._position = -1  # index of the last frame taken from an open video...
        self._frame: np.ndarray | None = None  # ...and that frame
        self._buffer: np.ndarray | None = None  # what OpenCV writes the next frame into (see `read`): the last one
        self._started: float | None = None  # the replay clock's zero
        self.lost = False
        self._retry_at = 0.0
        self._backoff = FIRST_RETRY_S

    @property
    def recorded(self) -> bool:
        return self.device is None

    @property
    def busy_by(self) -> str | None:
        """Who holds the source instead of us, when someone does."""
        return str(self.held_by[0]) if self.held_by else None

    # -- the adapter's one entry point --------------------------------------------------------

    def read(self) -> np.ndarray | None:
        """The current frame, or None while the source fails or is busy. Raises ReplayEnded at the end.

        A webcam's or video's frame is written into the buffer of the read before (a frame-sized
        allocation every sample otherwise): the next read overwrites it, so whoever keeps a frame
        past its sample keeps a copy."""
        with self._io:
            now = self.clock()
            if self.held_by or (self.lost and now < self._retry_at):
                return None
            if self.watcher is not None and self._cap is None:
                self.watcher.watch(self.target)  # again each time: a replugged camera is a new node
            try:
                frame = self._read(now)
            except ReplayEnded:
                self.release()
                raise
            if frame is None:
                # Another program that got the camera first makes it busy, not lost: at once, even
                # while the watcher's thread is still on its way to say so.
                holders = self.watcher.check(self.target) if self.watcher is not None else []
                if holders:
                    self.hold(holders)
                else:
                    self._failed(now)
                return None
            if self.lost:
                log.info("camera %s is back", self.source)
            self.lost, self._backoff = False, FIRST_RETRY_S
            if not self.config.keep_open:
                self.release()
            return frame

    def hold(self, holders: list[Holder]) -> None:
        """Other programs now holding the source (from the watcher's thread): let go of it while
        there are any; once there are none, it is read again at once."""
        with self._io:
            if holders and not self.held_by:
                log.info("camera %s is busy: %s opened it; letting go", self.source, holders[0])
            elif self.held_by and not holders:
                log.info("camera %s is free again", self.source)
                self.lost, self._retry_at, self._backoff = False, 0.0, FIRST_RETRY_S
            self.held_by = holders
            if holders:
                self.release()

    def release(self) -> None:
        with self._io:
            if self._cap is not None:
                self._cap.release()
                self._cap = None

    def _failed(self, now: float) -> None:
        if not self.lost:
            log.warning("camera %s failed to deliver a frame; retrying with back-off", self.source)
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
            log.info("replay of %s started at %.3f", self.source, time.time())
        index = math.floor((now - self._started) * fps)
        if count > 0 and index >= count:
            if not self.config.replay_loop:
                raise ReplayEnded(str(self.source))
            index %= count
        return index

    def _held_elsewhere(self) -> bool:
        """Checked before (re)opening: someone else streams from it, and opening would disturb them."""
        return self.watcher is not None and bool(self.watcher.known(self.target))

    def _read(self, now: float) -> np.ndarray | None:
        if self.images:
            if (self._started is None or self.lost) and self._held_elsewhere():
                return None
            index = self._replay_index(now, self.config.replay_fps, len(self.images))
            return cv2.imread(str(self.images[index]), cv2.IMREAD_COLOR)
        if self._cap is None and not self._open():
            return None
        if self.device is not None:
            return self._read_device()
        return self._read_video(now)

    def _open(self) -> bool:
        if self._held_elsewhere():
            return False
        if self.watcher is not None:
            self.watcher.opening(self.target)
        if self.device is not None:
            cap = cv2.VideoCapture(self.device)
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
            if self.config.keep_open:
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
                cap.set(cv2.CAP_PROP_FPS, DEVICE_FPS)
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
        cap = self._cap
        assert cap is not None  # opened by _read
        if self.config.keep_open:
            # Queued frames were taken just after the last read, a second ago: drop them, until a
            # grab has to wait for the sensor at all (its frame is then the current one; waiting
            # for the one after would cost up to a frame's time, 100 ms at 10 fps).
            for _ in range(STALE_FRAMES):
                started = time.monotonic()
                if not cap.grab():
                    return None
                if time.monotonic() - started > QUEUED_S:
                    break
            ok, frame = cap.retrieve(self._buffer)
        else:
            ok, frame = cap.read(self._buffer)
        if not ok or frame is None:
            return None
        self._buffer = frame
        return frame

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
        ok, frame = cap.read(self._buffer)
        if not ok or frame is None:
            if count <= 0:
                # A stream without a frame count ends when it stops delivering frames.
                raise ReplayEnded(str(self.source))
            return None
        self._position, self._frame = index, frame
        self._buffer = frame
        return frame


class Cameras:
    """`camera.source` in order of preference: each read comes from the first camera that delivers
    a frame (a lost one is retried with its back-off, so a preferred camera that returns is taken
    back). A built-in camera counts as busy while `lid_closed()` says the lid is shut."""

    def __init__(self, config: CameraConfig, clock: Callable[[], float] = time.monotonic,
                 lid_closed: Callable[[], bool | None] = lambda: None):
        self.watcher: Watcher | None
        try:
            self.watcher = Watcher(self._held, config.retry_max_s)
        except OSError as e:
            log.warning("cannot watch the camera for other programs (%s): it will not be shared", e)
            self.watcher = None
        try:
            self.cameras = [Camera(config, clock, source, self.watcher) for source in config.sources]
        except UserError:
            self.close_watcher()  # a refused config (a reload) must not leave a thread behind
            raise
        named = {str(s) for s in config.builtin}
        self.builtin = [str(c.source) in named or c.target in named if named else
                        c.device is not None and builtin(c.device) for c in self.cameras]
        self.lid_closed = lid_closed
        self.in_use: Camera | None = None
        self.busy_by: str | None = None

    def _held(self, target: str, holders: list[Holder]) -> None:
        for camera in self.cameras:
            if camera.target == target:
                camera.hold(holders)

    def read(self) -> np.ndarray | None:
        """A frame from the most preferred camera that delivers one; None when none does."""
        lid = self.lid_closed() is True
        busy = None
        for i, camera in enumerate(self.cameras):
            if lid and self.builtin[i]:
                camera.release()
                busy = busy or LID
                continue
            frame = camera.read()
            if frame is None:
                busy = busy or camera.busy_by
                continue
            if camera is not self.in_use:
                log.info("using camera %s", camera.source)
            for other in self.cameras[i + 1:]:
                other.release()
            self.in_use, self.busy_by = camera, None
            return frame
        self.in_use, self.busy_by = None, busy
        return None

    def release(self) -> None:
        for camera in self.cameras:
            camera.release()

    def close(self) -> None:
        self.release()
        self.close_watcher()

    def close_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
