"""Inference without TensorFlow: LiteRT on our exported encoder and on MediaPipe's landmark model."""

from __future__ import annotations

import ctypes
import gc
import json
import mmap
import os
import subprocess
import sys

import numpy as np
import pytest

from facewarden.model import encoder
from facewarden.recognition import assets, runtime, vision
from facewarden.errors import UserError


@pytest.fixture(scope="module")
def astronaut_face(astronaut_bgr) -> np.ndarray:
    return vision.align(astronaut_bgr, vision.Detector()(astronaut_bgr)[0])


def test_tflite_model_runs_one_face_and_a_batch(encoder_tflite, astronaut_face):
    model = runtime.load(encoder_tflite, threads=2)
    assert isinstance(model, runtime.TFLiteModel)
    assert model.input_shapes == [(1, 112, 112, 3)]
    (one,) = model(astronaut_face[None])
    assert one.shape == (1, encoder.EMBEDDING_SIZE)
    flipped = astronaut_face[:, ::-1]
    (batch,) = model(np.stack([astronaut_face, flipped]))  # resizes the interpreter to a batch of 2
    np.testing.assert_allclose(batch[0], one[0], rtol=1e-4, atol=1e-4)
    assert not np.allclose(batch[1], one[0], atol=1e-2)
    (again,) = model(astronaut_face[None])  # and back to one
    np.testing.assert_allclose(again, one, rtol=1e-4, atol=1e-4)


def resident_kb(path) -> int:
    """Resident kB of this process's mappings of `path`, from /proc/self/smaps."""
    target, total, inside = os.path.realpath(path), 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                inside = len(fields) >= 6 and line.split(maxsplit=5)[5].strip() == target
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total


def test_weights_are_not_kept_twice(encoder_tflite, astronaut_face):
    """XNNPACK holds its own packed copy of the weights; the mapped file's pages are given back,
    and the model still computes exactly what an interpreter that kept them computes."""
    from ai_edge_litert.interpreter import Interpreter

    plain = Interpreter(model_path=str(encoder_tflite), num_threads=1)
    plain.allocate_tensors()
    plain.set_tensor(plain.get_input_details()[0]["index"], astronaut_face[None].astype(np.float32))
    plain.invoke()
    expected = plain.get_tensor(plain.get_output_details()[0]["index"])
    kept = resident_kb(encoder_tflite)
    assert kept > encoder_tflite.stat().st_size / 1024 / 2  # the plain interpreter's copy is resident
    del plain
    gc.collect()  # the interpreter unmaps its file when collected

    model = runtime.TFLiteModel(encoder_tflite, threads=1)
    for _ in range(3):
        (got,) = model(astronaut_face[None])
    np.testing.assert_array_equal(got, expected)
    # Not zero: the few constants the interpreter itself still reads (the dynamic batch's shape
    # arithmetic) fault their pages back in, a large page-cache folio at a time on newer kernels.
    assert resident_kb(encoder_tflite) < kept / 3


def cached_share(path) -> float:
    """The share of `path`'s pages in the page cache (mincore on a mapping of our own)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = os.path.getsize(path)
    pages = -(-size // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        resident = (ctypes.c_ubyte * pages)()
        assert libc.mincore(address, size, resident) == 0, os.strerror(ctypes.get_errno())
        libc.munmap(address, size)
    finally:
        os.close(fd)
    return sum(page & 1 for page in resident) / pages


def touched(mapped: mmap.mmap) -> int:
    """Reads a byte of every page of `mapped` (they become resident); their sum, to compare later reads with."""
    return sum(mapped[offset] for offset in range(0, len(mapped), mmap.PAGESIZE))


def test_release_can_also_drop_the_files_from_the_page_cache(tmp_path):
    """`uncache` (the daemon, once started): a library just written by an install leaves the
    page cache once this process lets go of it, and what is still used comes back from the disk.
    Without it the file stays cached."""
    library = tmp_path / "library.so"
    with open(library, "wb") as f:
        f.write(os.urandom(4 << 20))
        os.fsync(f.fileno())  # written back, as an installed file is: only clean pages can go
    for uncache in (False, True):
        with open(library, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapped:
            read = touched(mapped)
            runtime.release_file_pages(uncache=uncache)
            cached = cached_share(library)
            assert touched(mapped) == read
        assert cached < 0.1 if uncache else cached > 0.9


def test_loading_the_landmark_models_first_gives_back_idle_file_pages(tmp_path):
    """An owner's return loads the landmark models beside everything else, the daemon's peak RSS:
    the pages of files mapped since the last release (a library's code that a rare path ran) go
    first. Only their mapping goes: the bytes still read the same."""
    from facewarden.recognition.landmarks import Landmarker

    library = tmp_path / "library.so"
    content = os.urandom(4 << 20)
    library.write_bytes(content)
    with open(library, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        read = touched(mapped)
        before = resident_kb(library)
        Landmarker()
        after = resident_kb(library)
        assert touched(mapped) == read
    assert before >= 0.9 * len(content) / 1024
    assert after < before / 4


def test_h5_runtime_gives_the_same_embedding(encoder_model, encoder_tflite, astronaut_face):
    keras_model = runtime.load(encoder_model.cache_path)
    assert isinstance(keras_model, runtime.KerasModel)
    (h5,) = keras_model(astronaut_face[None])
    (lite,) = runtime.TFLiteModel(encoder_tflite)(astronaut_face[None])
    assert float(h5[0] @ lite[0] / np.linalg.norm(h5) / np.linalg.norm(lite)) > 0.995  # the .tflite has int8 weights (cosine >= 0.997 on LFW)


def test_runs_mediapipe_face_mesh(astronaut_bgr):
    """The liveness engineer's landmark models go through the same class."""
    import cv2

    mesh = runtime.TFLiteModel(assets.path(assets.FACE_MESH), threads=1)
    (shape,) = mesh.input_shapes
    x, y, w, h = (int(v) for v in vision.Detector()(astronaut_bgr)[0].box)
    pad = w // 4
    crop = astronaut_bgr[max(0, y - pad) : y + h + pad, max(0, x - pad) : x + w + pad]
    rgb = cv2.cvtColor(cv2.resize(crop, (shape[2], shape[1])), cv2.COLOR_BGR2RGB)
    outputs = mesh((rgb[None] / 255.0).astype(np.float32))
    landmarks = next(o for o in outputs if o.size == 468 * 3).reshape(468, 3)
    # the points lie on the crop, and spread over much of it (a face, not a collapsed blob)
    assert (landmarks[:, :2] > -10).all() and (landmarks[:, :2] < shape[1] + 10).all()
    assert np.ptp(landmarks[:, 0]) > shape[2] / 3


def test_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="missing"):
        runtime.load(tmp_path / "owner.tflite")
    with pytest.raises(UserError, match="missing"):
        runtime.load(tmp_path / "owner.h5")


@pytest.mark.parametrize("name", ["owner.tflite", "owner.h5"])
def test_corrupt_model_is_a_user_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00garbage, not a model" * 50)
    with pytest.raises(UserError, match="not a usable"):
        runtime.load(path)


def test_truncated_tflite_is_a_user_error(tmp_path, encoder_tflite):
    path = tmp_path / "owner.tflite"
    path.write_bytes(encoder_tflite.read_bytes()[:4096])
    with pytest.raises(UserError, match="not a usable"):
        runtime.load(path)


DAEMON_SIDE = """
import json, sys
import cv2
from skimage import data
from facewarden.recognition import runtime, vision
frame = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
face = vision.Detector()(frame)[0]
(embedding,) = runtime.load(sys.argv[1], threads=1)(vision.align(frame, face)[None])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
print(json.dumps({"embedding": embedding[0].tolist(), "heavy": heavy}))
"""


def test_daemon_side_inference_does_not_import_tensorflow(encoder_model, encoder_tflite, astronaut_face):
    out = subprocess.run(
        [sys.executable, "-c", DAEMON_SIDE, str(encoder_tflite)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    # and it computed the real thing, not an empty run
    expected = encoder.embed(encoder_model, astronaut_face[None])[0]
    got = np.array(result["embedding"])
    assert got @ expected / np.linalg.norm(got) / np.linalg.norm(expected) > 0.995  # int8 weights
