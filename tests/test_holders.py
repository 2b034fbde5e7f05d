"""Sharing the camera, in process: who holds a source (/proc), the inotify watcher, a camera that
lets go when another program opens its source and takes it back after, a list of cameras in order
of preference, and a closed lid. The other program is a real process (desktop_helpers.holder)."""

from __future__ import annotations

import os
import shutil
import threading
from functools import partial
from pathlib import Path

import support

import cv2
import numpy as np
import pytest

from desktop_helpers.holder import holding
from facewarden.config import parse
from facewarden.errors import UserError
from facewarden.service.camera import LID, Cameras
from facewarden.service.holders import IN_OPEN, Holder, Inotify, Watcher, holders

WAIT_S = 10.0


wait_for = partial(support.wait_for, timeout=WAIT_S, every=0.0005)  # latencies are measured in ms here


def frame(value: int) -> np.ndarray:
    return np.full((48, 64, 3), value, np.uint8)


def level(img) -> int:
    return int(round(float(img.mean()) / 10.0))


def image_dir(root: Path, name: str, value: int) -> Path:
    d = root / name
    d.mkdir()
    for i in range(5):
        cv2.imwrite(str(d / f"{i:03d}.png"), frame(value))
    return d


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    for i in range(25):
        writer.write(frame(i * 10))
    writer.release()
    return path


def we_hold(path: Path) -> bool:
    fds = Path("/proc/self/fd")
    links = []
    for fd in fds.iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:
            pass
    return str(path) in links


def test_holders_are_other_processes_of_this_user(tmp_path, video):
    with open(video, "rb"):  # our own fd does not count
        assert holders(str(video)) == []
        with holding(video) as (proc, _):
            found = wait_for(lambda: holders(str(video)), "the holder")
            assert found == [Holder(proc.pid)] and found[0].comm == "holder"
    assert holders(str(video)) == []
    # A directory is held by whoever holds it or anything in it.
    d = image_dir(tmp_path, "frames", 50)
    with holding(d / "002.png") as (proc, _):
        assert wait_for(lambda: holders(str(d)), "the holder") == [Holder(proc.pid)]
        assert holders(str(tmp_path / "fr")) == []  # a prefix of the name is another path


def test_watcher_reports_open_and_close(video):
    changes = []
    watcher = Watcher(lambda target, found: changes.append((target, found)))
    try:
        assert watcher.watch(str(video)) and not watcher.watch(str(video) + ".missing")
        with holding(video) as (proc, _):
            wait_for(lambda: changes, "the open")
            assert changes == [(str(video), [Holder(proc.pid)])] and watcher.held(str(video))
        wait_for(lambda: len(changes) == 2, "the close")
        assert changes[1] == (str(video), []) and not watcher.held(str(video))
    finally:
        watcher.close()


def test_the_frames_of_an_image_directory_are_not_events_the_directory_itself_is(tmp_path):
    """A replayed image directory's frames are opened by the camera itself, one a sample: those
    opens are not reported (each would cost a scan of /proc); opening the directory is."""
    frames = image_dir(tmp_path, "frames", 5)
    inotify = Inotify()
    try:
        images = sorted(frames.iterdir())  # listing opens the directory: before the watch
        wd = inotify.add(str(frames))
        for path in images:
            path.read_bytes()
        assert inotify.read() == []
        fd = os.open(frames, os.O_RDONLY | os.O_DIRECTORY)
        os.close(fd)
        assert [(w, m & IN_OPEN) for w, m in inotify.read()][:1] == [(wd, IN_OPEN)]
    finally:
        inotify.close()


def test_camera_lets_go_at_the_other_open_and_takes_it_back(video):
    cams = Cameras(parse({"camera": {"source": str(video), "replay_loop": True}}).camera)
    try:
        assert cams.read() is not None and we_hold(video)
        with holding(video) as (proc, _opened_at):  # how soon: bench/bench_call.py
            wait_for(lambda: not we_hold(video), "the camera to let go")
            assert cams.read() is None and cams.busy_by == f"holder (pid {proc.pid})"
            assert not we_hold(video)  # a read while busy does not reopen it
        wait_for(lambda: cams.read() is not None, "the camera back")
        assert cams.busy_by is None and we_hold(video)
    finally:
        cams.close()
    assert not we_hold(video)


def test_a_short_probe_costs_a_moment(video):
    cams = Cameras(parse({"camera": {"source": str(video), "replay_loop": True}}).camera)
    try:
        cams.read()
        with holding(video, for_s=0.3) as (proc, _opened_at):
            assert proc.stdout.readline().startswith("closed")
            wait_for(lambda: cams.read() is not None, "the camera back")
    finally:
        cams.close()


def test_a_camera_opened_for_each_sample_scans_for_others_only_when_they_come(video, monkeypatch):
    """camera.keep_open = false: the camera's own open and close at every sample are no sign of
    anyone else, so they cost no scan of /proc (thousands of descriptors on a desktop); another
    program's open still does, and the camera lets go and comes back as with a kept-open one."""
    import facewarden.service.holders as holders_module

    scans: list[list[Holder]] = []  # each scan's finding, in order

    def counted(target: str, own_pid: int | None = None) -> list[Holder]:
        scans.append(holders(target, own_pid))
        return scans[-1]

    monkeypatch.setattr(holders_module, "holders", counted)
    cams = Cameras(parse({"camera": {"source": str(video), "replay_loop": True, "keep_open": False}}).camera)
    try:
        for _ in range(10):
            assert cams.read() is not None and not we_hold(video)
        # The other program's events come after ours: the scans before the one that finds it were ours.
        with holding(video) as (proc, _):
            wait_for(lambda: any(scans), "the other program's open")
            assert cams.read() is None and cams.busy_by == f"holder (pid {proc.pid})"
        wait_for(lambda: cams.read() is not None, "the camera back")
    finally:
        cams.close()
    own = next(i for i, found in enumerate(scans) if found)
    assert own <= 1, f"{own} scans for 10 samples of our own"  # the first open's, before anything was known


def test_a_list_falls_to_the_next_camera_and_returns_to_the_first(tmp_path):
    first, second = image_dir(tmp_path, "first", 50), image_dir(tmp_path, "second", 150)
    cfg = parse({"camera": {"source": [str(first), str(second)], "replay_loop": True, "replay_fps": 1,
                            "retry_max_s": 0.2}})
    cams = Cameras(cfg.camera)
    try:
        assert level(cams.read()) == 5 and cams.in_use.source == str(first)
        first.rename(tmp_path / "away")  # unplugged
        assert level(cams.read()) == 15 and cams.in_use.source == str(second) and cams.busy_by is None
        (tmp_path / "away").rename(first)  # plugged back: taken back once its retry is due
        wait_for(lambda: level(cams.read()) == 5, "the first camera back")
        assert cams.in_use.source == str(first)
    finally:
        cams.close()


def test_a_list_skips_a_busy_camera(tmp_path, video):
    second = image_dir(tmp_path, "second", 150)
    cams = Cameras(parse({"camera": {"source": [str(video), str(second)], "replay_loop": True}}).camera)
    try:
        assert cams.in_use is None and cams.read() is not None and cams.in_use.source == str(video)
        with holding(video):
            wait_for(lambda: not we_hold(video), "the camera to let go")
            assert level(cams.read()) == 15 and cams.busy_by is None  # a camera delivers: nothing busy
        wait_for(lambda: cams.read() is not None and cams.in_use.source == str(video), "the first camera back")
    finally:
        cams.close()


def test_a_closed_lid_blinds_the_builtin_camera(tmp_path):
    inside, docked = image_dir(tmp_path, "builtin", 10), image_dir(tmp_path, "docked", 150)
    lid = {"closed": True}
    cfg = parse({"camera": {"source": [str(inside)], "builtin": [str(inside)], "replay_loop": True}})
    cams = Cameras(cfg.camera, lid_closed=lambda: lid["closed"])
    try:
        assert cams.read() is None and cams.busy_by == LID
        lid["closed"] = False
        assert cams.read() is not None and cams.busy_by is None
    finally:
        cams.close()
    lid["closed"] = True
    cfg = parse({"camera": {"source": [str(inside), str(docked)], "builtin": [str(inside)], "replay_loop": True}})
    cams = Cameras(cfg.camera, lid_closed=lambda: lid["closed"])
    try:
        assert level(cams.read()) == 15 and cams.busy_by is None  # the docked camera delivers
    finally:
        cams.close()


def test_no_builtin_named_means_sysfs_decides(tmp_path):
    d = image_dir(tmp_path, "frames", 50)
    cams = Cameras(parse({"camera": {"source": [str(d), "/dev/video99"]}}).camera)
    try:
        assert cams.builtin == [False, False]  # a replayed source, and a device sysfs does not know
    finally:
        cams.close()
    shutil.rmtree(d)


def test_a_refused_source_leaves_no_watcher_thread(tmp_path):
    frames = image_dir(tmp_path, "frames", 50)
    before = {t for t in threading.enumerate() if t.name == "camera-watch"}
    with pytest.raises(UserError, match="not a camera"):
        Cameras(parse({"camera": {"source": [str(frames), str(tmp_path / "missing.avi")]}}).camera)
    after = {t for t in threading.enumerate() if t.name == "camera-watch" and t.is_alive()}
    assert after <= before
