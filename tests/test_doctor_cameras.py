"""doctor on cameras: the devices it finds (a stand-in /dev with a by-id link), who else holds one
(a real process), which configured camera delivers frames, and what camera.when_busy does here
(Xvfb's X11 idle, or nothing: "idle" falls back to "lock")."""

from __future__ import annotations

import os

import pytest

from desktop_helpers.holder import holding
from desktop_helpers.procs import wait_for, xvfb
from facewarden.config import parse
from facewarden.desktop import doctor
from facewarden.service.holders import holders


@pytest.fixture
def dev(tmp_path):
    root = tmp_path / "dev"
    (root / "v4l" / "by-id").mkdir(parents=True)
    for n in (0, 1, 10):
        (root / f"video{n}").write_bytes(b"")
    os.symlink("../../video0", root / "v4l" / "by-id" / "usb-Acme_IR_Camera-video-index0")
    return root


def test_devices_are_listed_with_their_stable_names_and_holders(dev):
    line = doctor.check_devices(str(dev)).line()
    assert line == (f"ok   cameras: {dev}/video0 (usb-Acme_IR_Camera-video-index0), {dev}/video1, {dev}/video10; "
                    "none held by another program")
    with holding(dev / "video1") as (proc, _):
        wait_for(lambda: holders(str(dev / "video1")), "the holder")
        assert doctor.check_devices(str(dev)).line().endswith(f"; {dev}/video1 held by holder (pid {proc.pid})")


def test_no_devices_is_a_warning(tmp_path):
    check = doctor.check_devices(str(tmp_path))
    assert not check.ok and not check.essential and "no " in check.text


def test_the_camera_that_delivers_is_named(tmp_path, astronaut_bgr):
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "0001.jpg"), astronaut_bgr)
    cfg = parse({"camera": {"source": ["/dev/video99", str(frames)]}})
    assert doctor.check_camera(cfg, None).line() == f"ok   camera: {frames} gives 512x512 frames"
    with holding(frames / "0001.jpg"):
        cfg = parse({"camera": {"source": str(frames)}})
        wait_for(lambda: holders(str(frames)), "the holder")
        check = doctor.check_camera(cfg, None)
        assert not check.ok and check.text.startswith(f"{frames} is busy: held by holder (pid ")
    busy = {"camera": "busy", "camera_busy_by": "zoom (pid 7)", "camera_in_use": None}
    assert doctor.check_camera(cfg, busy).text == \
        "the running daemon reports camera busy (held by zoom (pid 7); camera.when_busy = 'idle')"


def test_when_busy_idle_needs_an_idle_source(tmp_path, monkeypatch):
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'none'}")
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'none'}")
    monkeypatch.delenv("DISPLAY", raising=False)
    cfg = parse({})
    check = doctor.check_when_busy(cfg, doctor.check_session()[1])
    assert not check.ok and check.text.startswith('"idle" falls back to "lock" here')
    with xvfb() as display:
        monkeypatch.setenv("DISPLAY", display)
        assert doctor.check_when_busy(cfg, doctor.check_session()[1]).line() == (
            f"ok   when_busy: idle: during a video call, locks after lock.idle_s = 300 s without input "
            f"(x11 (MIT-SCREEN-SAVER on {display}))")
    assert doctor.check_when_busy(parse({"camera": {"when_busy": "pause"}}), check).ok
