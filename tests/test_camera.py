"""Camera sources through OpenCV: image directories and video files replayed on a fake clock,
failures with back-off, a missing device."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from support import Clock
from facewarden.service.camera import Camera, ReplayEnded
from facewarden.config import parse
from facewarden.errors import UserError


def frame(value: int) -> np.ndarray:
    # A flat grey level survives JPEG and video compression well enough to identify the frame.
    return np.full((48, 64, 3), value, np.uint8)


def level(img) -> int:
    return int(round(float(img.mean()) / 10.0))


def camera(source, **options) -> tuple[Camera, Clock]:
    clock = Clock(100.0)  # a start at which the test's sums stay exact enough for frame indices
    cfg = parse({"camera": {"source": str(source), "retry_max_s": 4, **options}})
    return Camera(cfg.camera, clock), clock


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(10):
        cv2.imwrite(str(d / f"{i:03d}.png"), frame(i * 10))
    (d / "notes.txt").write_text("not a frame")
    return d


def test_image_directory_replays_in_real_time(image_dir):
    cam, clock = camera(image_dir, replay_fps=5)
    assert level(cam.read()) == 0
    clock.t += 0.19
    assert level(cam.read()) == 0
    clock.t += 0.01  # 0.2 s: the second frame
    assert level(cam.read()) == 1
    clock.t += 1.0  # frames in between are skipped, as a live camera would have shown them
    assert level(cam.read()) == 6
    clock.t += 0.8
    with pytest.raises(ReplayEnded):
        cam.read()


def test_image_directory_loops_when_asked(image_dir):
    cam, clock = camera(image_dir, replay_fps=5, replay_loop=True)
    cam.read()
    clock.t += 2.4  # frame 12 of 10 -> 2
    assert level(cam.read()) == 2


def test_broken_frame_is_a_camera_failure_with_back_off(image_dir):
    (image_dir / "003.png").write_bytes(b"not a png")
    (image_dir / "004.png").write_bytes(b"not a png")
    cam, clock = camera(image_dir, replay_fps=1, replay_loop=True)
    assert level(cam.read()) == 0
    clock.t = 103.0
    assert cam.read() is None and cam.lost
    # Before the retry time the source is not touched; still failing (fail closed).
    clock.t = 103.9
    assert cam.read() is None
    clock.t = 104.0  # retry: frame 4, broken too -> back-off doubles to 2 s
    assert cam.read() is None
    clock.t = 105.5  # frame 5 is fine, but the retry is not due before 106
    assert cam.read() is None
    clock.t = 106.0
    assert level(cam.read()) == 6 and not cam.lost


def test_back_off_is_capped(image_dir):
    for p in image_dir.glob("*.png"):
        p.write_bytes(b"broken")
    cam, clock = camera(image_dir, replay_fps=1, replay_loop=True)
    attempts = []
    for step in range(400):
        clock.t = 100.0 + step * 0.1
        before = cam._retry_at
        cam.read()
        if cam._retry_at != before:
            attempts.append(clock.t)
    gaps = np.diff(attempts)
    assert list(np.round(gaps[:3], 1)) == [1.0, 2.0, 4.0]
    assert max(gaps) == pytest.approx(4.0, abs=0.11)


def write_video(path, frames, fps):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    for f in frames:
        writer.write(f)
    writer.release()


@pytest.mark.parametrize("keep_open", [True, False])
def test_video_replays_at_its_own_frame_rate(tmp_path, keep_open):
    video = tmp_path / "clip.avi"
    write_video(video, [frame(i * 10) for i in range(20)], fps=10)
    cam, clock = camera(video, replay_fps=1, keep_open=keep_open)
    assert level(cam.read()) == 0
    clock.t += 0.5
    assert level(cam.read()) == 5
    clock.t += 0.05
    assert level(cam.read()) == 5
    clock.t += 1.3
    assert level(cam.read()) == 18
    assert (cam._cap is None) == (not keep_open)
    clock.t += 0.5
    with pytest.raises(ReplayEnded):
        cam.read()
    assert cam._cap is None


@pytest.mark.parametrize("keep_open", [True, False])
def test_each_frame_is_read_into_the_buffer_of_the_one_before(tmp_path, keep_open):
    # No frame-sized allocation per sample: a frame is the sample's, the next read overwrites it.
    video = tmp_path / "clip.avi"
    write_video(video, [frame(i * 10) for i in range(20)], fps=10)
    cam, clock = camera(video, keep_open=keep_open)
    first = cam.read()
    clock.t += 0.5
    second = cam.read()
    assert level(second) == 5 and np.shares_memory(first, second)


def test_missing_device_fails_closed_without_error():
    cam, clock = camera("/dev/video99")
    assert cam.read() is None and cam.lost


def test_a_video_kept_under_dev_replays_as_a_recording_and_a_device_node_is_a_webcam(tmp_path):
    # A replay kept in memory (/dev/shm) is read on the replay clock like any video; only a character
    # device (or a node not there yet: a camera unplugged) is opened as a webcam.
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        pytest.skip("no writable /dev/shm here")
    with tempfile.TemporaryDirectory(dir=shm) as held:
        video = Path(held) / "clip.avi"
        write_video(video, [frame(i * 10) for i in range(20)], fps=10)
        cam, clock = camera(video)
        assert cam.recorded
        assert level(cam.read()) == 0
        clock.t += 1.35
        assert level(cam.read()) == 13
    assert not camera("/dev/null")[0].recorded
    assert not camera("/dev/video99")[0].recorded


def test_bad_sources_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a camera"):
        camera(tmp_path / "nope.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        camera(tmp_path / "empty")


def test_a_kept_open_replay_hands_back_the_current_frame_not_a_queued_one(tmp_path):
    # What camera.keep_open must give a live webcam too (one buffer, drained): after any gap, the
    # frame of now, never the one that followed the previous read.
    video = tmp_path / "clip.avi"
    write_video(video, [frame(i * 10) for i in range(25)], fps=10)
    cam, clock = camera(video, keep_open=True)
    cam.read()
    for gap, expected in ((0.15, 1), (1.0, 11), (0.4, 15), (0.5, 20), (0.1, 21)):
        clock.t += gap
        assert level(cam.read()) == expected
    assert cam._cap is not None
