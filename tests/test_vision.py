"""Detection, alignment and frame quality on real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facewarden import config
from facewarden.recognition import vision
from facewarden.core.observation import Face

DEFAULTS = config.Config()


@pytest.fixture(scope="module")
def detector() -> vision.Detector:
    return vision.Detector(DEFAULTS.model.detect_width, DEFAULTS.model.min_detection_score)


def test_finds_the_astronauts_face_with_plausible_landmarks(detector, astronaut_bgr):
    faces = detector(astronaut_bgr)
    assert len(faces) == 1
    face = faces[0]
    x, y, w, h = face.box
    # Eileen Collins' face in the 512x512 photo: about 90x110 px, upper middle-left
    assert 150 < x < 210 and 40 < y < 90 and 70 < w < 120 and 90 < h < 140
    assert face.score > 0.8
    right_eye, left_eye, nose, mouth_right, mouth_left = face.landmarks
    assert face.landmarks.shape == (5, 2)
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in face.landmarks)
    assert right_eye[0] < nose[0] < left_eye[0]  # the subject's right eye is on the image's left
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_right[1], mouth_left[1])


def test_downscaled_detection_maps_back_to_full_frame(astronaut_bgr):
    full = vision.Detector(detect_width=10_000)(astronaut_bgr)[0]
    small = vision.Detector(detect_width=256)(astronaut_bgr)[0]
    assert np.abs(np.subtract(full.box, small.box)).max() < 8
    assert np.abs(full.landmarks - small.landmarks).max() < 8


@pytest.mark.parametrize("sizes", [1, 3])
def test_the_shipped_yunet_finds_what_opencvs_yunet_finds(astronaut_bgr, lfw, nuaa, sizes):
    """The .tflite the package ships (bench/make_yunet_tflite.py) against OpenCV's FaceDetectorYN on
    the pinned ONNX file: real faces at the full scan's size, at region sizes and at sizes that are
    not multiples of 32 (padded), several faces in one image (the NMS), grey frames, no face; with
    one net resized for each size, and with nets kept for a few sizes and reused."""
    from facewarden.cli.demo import compose
    from facewarden.recognition import assets

    images = [cv2.resize(vision.read_image(p), (w, h), interpolation=cv2.INTER_AREA)
              for p, (w, h) in zip(sorted(lfw.glob("*/*_0001.jpg"))[:12], [(250, 250), (96, 96), (64, 64), (100, 75)] * 3)]
    images += [cv2.resize(cv2.imread(str(p)), (320, 240), interpolation=cv2.INTER_AREA)
               for p in sorted((nuaa / "sequences").glob("*/010.jpg"))]
    images += [compose([astronaut_bgr, astronaut_bgr], np.full((480, 640, 3), 120, np.uint8)),
               cv2.cvtColor(cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR),
               np.zeros((240, 320, 3), np.uint8)]
    ours = vision.YuNet(0.6, 0.3, sizes=sizes)
    faces = 0
    for image in images:
        theirs = cv2.FaceDetectorYN.create(str(assets.path(assets.YUNET)), "", (image.shape[1], image.shape[0]), 0.6, 0.3)
        expected, got = theirs.detect(image)[1], ours.detect(image)
        assert (expected is None) == (got is None)
        if expected is not None:
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() < 1e-2  # px and score: float32 against OpenCV's float32
            faces += len(got)
    assert faces >= len(images) - 2  # (one image holds two faces, one none)


def test_a_net_is_allocated_once_for_each_size_it_keeps(astronaut_bgr, monkeypatch):
    """The changed parts of a scene come in a few sizes: a net kept for each is not allocated again
    when its size comes back, and the least recently used one is resized for a size it does not keep."""
    from facewarden.recognition import runtime

    allocated: list[tuple[int, ...]] = []
    allocate = runtime.TFLiteModel._allocate
    monkeypatch.setattr(runtime.TFLiteModel, "_allocate", lambda model: allocate(model) or allocated.append(
        model.input_shapes[0]))
    net = vision.YuNet(0.6, 0.3, sizes=2)
    found: dict[tuple[int, int], np.ndarray] = {}
    for size in [(96, 96), (128, 96), (96, 96), (128, 96), (96, 96)]:
        rows = net.detect(cv2.resize(astronaut_bgr, size, interpolation=cv2.INTER_AREA))
        assert rows is not None and np.array_equal(rows, found.setdefault(size, rows))
    # Each net made (at the file's 1 x 1 input), then sized once.
    assert allocated == [(1, 1, 1, 3), (1, 96, 96, 3), (1, 1, 1, 3), (1, 96, 128, 3)]
    net.detect(cv2.resize(astronaut_bgr, (160, 128), interpolation=cv2.INTER_AREA))
    assert allocated[4:] == [(1, 128, 160, 3)]  # the 128 x 96 net, unused the longest, resized
    net.detect(cv2.resize(astronaut_bgr, (96, 96), interpolation=cv2.INTER_AREA))
    assert len(allocated) == 5


def test_finds_a_face_in_a_webcam_sized_frame_at_320(detector, nuaa):
    frame = cv2.imread(str(nuaa / "sequences" / "0001_live" / "000.jpg"))
    assert frame.shape[:2] == (480, 640)
    face = vision.nearest_centre(detector(frame), frame.shape)
    assert face is not None and face.box[2] > 60


def test_grey_frames_work(detector, astronaut_bgr):
    grey = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    assert len(detector(grey)) == 1
    assert vision.align(grey, detector(grey)[0]).shape == (112, 112, 3)


def test_finds_orl_grey_faces(detector, orl):
    found = sum(bool(detector(cv2.imread(str(orl / f"s{i}" / "1.pgm"), cv2.IMREAD_GRAYSCALE))) for i in range(1, 11))
    assert found >= 8


def test_no_face_no_detection(detector):
    from skimage import data

    assert detector(np.zeros((480, 640, 3), np.uint8)) == []
    assert detector(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)) == []


def test_score_threshold_is_applied(astronaut_bgr):
    score = vision.Detector(min_score=0.3)(astronaut_bgr)[0].score
    assert vision.Detector(min_score=min(0.99, score + 0.02))(astronaut_bgr) == []


def test_align_gives_the_encoders_rgb_input(detector, astronaut_bgr):
    crop = vision.align(astronaut_bgr, detector(astronaut_bgr)[0])
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    centre = crop[40:80, 35:77].reshape(-1, 3).mean(axis=0)
    assert centre[0] > centre[2] + 20  # skin: red channel first means RGB, not OpenCV's BGR



def _opencv_align(frame: np.ndarray, face: Face) -> np.ndarray:
    from facewarden.recognition import assets

    recognizer = cv2.FaceRecognizerSF.create(str(assets.path(assets.SFACE)), "")
    row = np.array([*face.box, *face.landmarks.reshape(-1), face.score], dtype=np.float32)
    return cv2.cvtColor(recognizer.alignCrop(frame, row), cv2.COLOR_BGR2RGB)


def _assert_same_crop(ours: np.ndarray, theirs: np.ndarray) -> None:
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    # The same transform up to float rounding: at most a grey level here and there.
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())


def test_align_matches_opencvs_aligncrop(detector, astronaut_bgr):
    face = detector(astronaut_bgr)[0]
    _assert_same_crop(vision.align(astronaut_bgr, face), _opencv_align(astronaut_bgr, face))


def test_align_matches_opencvs_aligncrop_on_lfw(detector, lfw):
    images = sorted(lfw.glob("*/*.jpg"))[::150][:20]
    for path in images:
        frame = cv2.imread(str(path))
        face = vision.nearest_centre(detector(frame), frame.shape)
        _assert_same_crop(vision.align(frame, face), _opencv_align(frame, face))


def test_similarity_transform_recovers_a_known_similarity():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = vision.TEMPLATE
    dst = src @ rotation.T + shift
    matrix = vision.similarity_transform(src, dst)
    assert np.allclose(matrix[:, :2], rotation) and np.allclose(matrix[:, 2], shift)

def _face_at(cx: float, cy: float) -> Face:
    return Face((cx - 10, cy - 10, 20, 20), np.zeros((5, 2), np.float32), 0.9)


def test_nearest_centre_picks_the_subject():
    subject, bystander = _face_at(130, 120), _face_at(20, 30)
    assert vision.nearest_centre([bystander, subject], (250, 250, 3)) is subject
    assert vision.nearest_centre([], (250, 250, 3)) is None


def test_dark_frames_are_flagged(astronaut_bgr):
    assert vision.quality_issue(astronaut_bgr, DEFAULTS.camera.dark_threshold, DEFAULTS.camera.blur_threshold) is None
    dark = (astronaut_bgr * 0.1).astype(np.uint8)  # a room with the light off
    assert vision.brightness(dark) < DEFAULTS.camera.dark_threshold < vision.brightness(astronaut_bgr)
    assert vision.quality_issue(dark, DEFAULTS.camera.dark_threshold, DEFAULTS.camera.blur_threshold) == "dark"


def _assert_blur_flagged(frame: np.ndarray) -> None:
    blurred = cv2.GaussianBlur(frame, (0, 0), 4)  # out of focus / fast motion
    assert vision.sharpness(blurred) < DEFAULTS.camera.blur_threshold < vision.sharpness(frame)
    assert vision.quality_issue(blurred, DEFAULTS.camera.dark_threshold, DEFAULTS.camera.blur_threshold) == "blurry"


def test_sharpness_is_the_variance_of_the_laplacian(astronaut_bgr):
    """The int16 sums give the figure the blur threshold was set on: float64 Laplacian, numpy's var()."""
    for image in (astronaut_bgr, cv2.GaussianBlur(astronaut_bgr, (0, 0), 2), astronaut_bgr[::3, ::2]):
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2GRAY)
        assert vision.sharpness(image) == pytest.approx(cv2.Laplacian(grey, cv2.CV_64F).var(), rel=1e-9)


def test_blurred_frames_are_flagged(astronaut_bgr):
    _assert_blur_flagged(astronaut_bgr)


def test_blurred_webcam_frames_are_flagged(nuaa):
    _assert_blur_flagged(cv2.imread(str(nuaa / "sequences" / "0005_live" / "000.jpg")))
