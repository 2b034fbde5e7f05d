"""doctor on IR cameras whose emitter is off: dark grey frames replayed through the real camera
code, the driver's name from a stand-in /sys/class/video4linux, a stand-in /dev."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facewarden.config import parse
from facewarden.desktop import doctor


@pytest.fixture
def sys_root(tmp_path):
    root = tmp_path / "video4linux"
    for node, name in (("video0", "Integrated Camera: Integrated C"), ("video2", "Integrated Camera: Integrated I"),
                       ("video4", "Chicony IR Camera"), ("video6", "HD Webcam (infrared)")):
        (root / node).mkdir(parents=True)
        (root / node / "name").write_text(name + "\n")
    return root


def test_an_ir_camera_is_known_by_its_name(sys_root, tmp_path):
    assert doctor.ir_evidence("/dev/video4", None, str(sys_root)) == "named 'Chicony IR Camera'"
    assert doctor.ir_evidence("/dev/video6", None, str(sys_root)) == "named 'HD Webcam (infrared)'"
    # "Integrated I" is cut short by the driver: no word says IR, and nothing is guessed.
    assert doctor.ir_evidence("/dev/video2", None, str(sys_root)) is None
    assert doctor.ir_evidence("/dev/video0", None, str(sys_root)) is None
    assert doctor.ir_evidence("/dev/video9", None, str(sys_root)) is None  # no such device


def test_formats_of_something_that_is_not_a_camera_are_none(tmp_path):
    plain = tmp_path / "video0"
    plain.write_bytes(b"")
    assert doctor.v4l2_formats(str(plain)) == []  # ENOTTY: not V4L2
    assert doctor.v4l2_formats("/dev/null") == []
    assert doctor.v4l2_formats(str(tmp_path / "absent")) == []


def test_devices_list_marks_ir_cameras(sys_root, tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    for n in (0, 4):
        (dev / f"video{n}").write_bytes(b"")
    line = doctor.check_devices(str(dev), str(sys_root)).line()
    assert line.startswith(f"ok   cameras: {dev}/video0, {dev}/video4 [IR]; ")


def frames(tmp_path, image) -> str:
    folder = tmp_path / "frames"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "0001.png"), image)
    return str(folder)


def test_dark_grey_frames_are_an_ir_camera_with_its_emitter_off(tmp_path):
    rng = np.random.default_rng(0)
    # What such a camera gives: a faint grey picture (ambient infrared), one channel.
    grey = (rng.random((120, 160)) * 30).astype(np.uint8)
    source = frames(tmp_path, grey)
    check = doctor.check_camera(parse({"camera": {"source": source}}), None)
    assert not check.ok and check.essential
    assert check.text.startswith(f"{source} is an IR camera (grey frames) giving dark frames (mean grey 15 < "
                                 "camera.dark_threshold 25): its emitter is off")
    assert "linux-enable-ir-emitter" in check.line()


def test_dark_colour_frames_are_only_dark(tmp_path, astronaut_bgr):
    source = frames(tmp_path, (astronaut_bgr * 0.08).astype(np.uint8))
    check = doctor.check_camera(parse({"camera": {"source": source}}), None)
    assert not check.ok and not check.essential
    assert check.text.startswith(f"{source} gives dark frames (mean grey ")
    assert "IR" not in check.line()
    # Lit, the same camera is fine.
    lit = doctor.check_camera(parse({"camera": {"source": frames(tmp_path / "lit", astronaut_bgr)}}), None)
    assert lit.ok
