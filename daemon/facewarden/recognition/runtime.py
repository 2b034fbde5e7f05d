"""Model inference for the daemon, without TensorFlow.

.tflite files (the exported owner model, the encoder, MediaPipe's landmark models) run on LiteRT
with XNNPACK and an explicit thread count: a fraction of TensorFlow's import time and memory, and
faster per frame. `model.runtime = "h5"` runs the Keras .h5 itself instead; only that path imports
Keras/TensorFlow, and only when asked.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from ..errors import UserError


def _check_file(path: Path) -> Path:
    if not path.is_file():
        raise UserError(f"model file {path} is missing (run `facewarden train` to create the owner model)")
    return path


_MADV_DONTNEED = 4  # <sys/mman.h> on Linux


def release_file_pages(uncache: bool = False) -> None:
    """Drop this process's resident pages of every file mapping it never wrote to.

    Two kinds of pages stay resident long after they were last read, and count in the RSS: the
    .tflite files LiteRT maps (XNNPACK copies, packs, every weight into its own buffers when the
    interpreter is allocated, then barely reads the file again: 37 MB for the owner model), and
    the libraries' code and data that only start-up touched (OpenCV's library alone is 74 MB, and
    the page cache's large folios map far more of it than was run). MADV_DONTNEED on a read-only
    private file mapping only unmaps the pages: the data stays in the file and the page cache, and
    what is still used faults the same bytes back in. A mapping with anonymous pages (relocated
    data, copy-on-write) is left alone: dropping those would lose what was written.

    `uncache` (the daemon, once started): also drop those files' pages from the page cache where no
    other process maps them (POSIX_FADV_DONTNEED; clean pages only). A file just written, as by an
    install, sits in the page cache in large folios, and on newer kernels (6.18 here) a fault maps
    its whole folio: a daemon started after `pip install` kept 30 MB more of OpenCV's and LiteRT's
    libraries resident than one started after a reboot. Read back from the disk, the pages it
    still uses come in small folios, as after a reboot.
    """
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released: set[str] = set()
    with open("/proc/self/smaps") as smaps:
        mapping: tuple[int, int, str] | None = None
        for line in smaps:
            fields = line.split()
            if not fields[0].endswith(":"):  # a mapping's header: range perms offset dev inode [path]
                start, end = (int(a, 16) for a in fields[0].split("-"))
                path = line.split(maxsplit=5)[5].rstrip("\n") if len(fields) >= 6 else ""
                regular = path.startswith("/") and not path.startswith("/dev/")
                # LiteRT maps its files shared, the loader private: either, if never written to.
                mapping = (start, end, path) if regular and fields[1][1] != "w" else None
            elif fields[0] == "Anonymous:" and mapping is not None:
                if fields[1] == "0" and madvise(mapping[0], mapping[1] - mapping[0], _MADV_DONTNEED) == 0:
                    released.add(mapping[2])  # best effort: a failure costs memory
                mapping = None
    for path in released if uncache else ():
        try:  # read-only, never through a link: the advice changes no file
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:  # gone since (" (deleted)": replaced by an upgrade), or not ours to read
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def trim_heap() -> None:
    """Hand the heap's free pages back to the system (glibc's malloc_trim): freed models' buffers
    otherwise stay in the RSS, and the next model loaded on top of them sets a higher peak. A C
    library without it (musl) keeps them."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


class TFLiteModel:
    """A .tflite model: `model(*inputs)` -> list of output arrays, in the model's output order.

    Inputs whose shape differs from the model's (another batch size) resize it, once per new shape.
    `release`: drop the process's idle file pages before the load and after it (`release_file_pages`,
    tens of ms): worth it for a large model, not for a model of a few MB loaded again and again.
    """

    def __init__(self, path: Path | str, threads: int = 2, release: bool = True):
        from ai_edge_litert.interpreter import Interpreter

        self.path = _check_file(Path(path))
        self._release = release
        if release:
            release_file_pages()  # so that this model's load (its file mapped, its weights packed) adds to less
        try:
            # The default op resolver applies the XNNPACK delegate to float models.
            self._interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
            self._allocate()
        except (ValueError, RuntimeError) as e:
            raise UserError(f"model file {self.path} is not a usable TFLite model ({e}); re-create it") from None

    def _allocate(self) -> None:
        self._interpreter.allocate_tensors()
        if self._release:
            release_file_pages()  # the weights now live in XNNPACK's packed buffers
            trim_heap()  # and the loader's own buffers are freed
        self.inputs = self._interpreter.get_input_details()
        self.outputs = self._interpreter.get_output_details()

    @property
    def weights(self) -> str:
        """How the weights are stored: "int8" (dynamic range, as `train` exports) or "float32"."""
        return "int8" if any(d["dtype"] == np.int8 for d in self._interpreter.get_tensor_details()) else "float32"

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(n) for n in d["shape"]) for d in self.inputs]

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        if len(inputs) != len(self.inputs):
            raise ValueError(f"{self.path.name} takes {len(self.inputs)} inputs, got {len(inputs)}")
        arrays = [np.ascontiguousarray(x, dtype=d["dtype"]) for x, d in zip(inputs, self.inputs)]
        if any(a.shape != shape for a, shape in zip(arrays, self.input_shapes)):
            for a, d in zip(arrays, self.inputs):
                self._interpreter.resize_tensor_input(d["index"], a.shape)
            self._allocate()
        for a, d in zip(arrays, self.inputs):
            self._interpreter.set_tensor(d["index"], a)
        try:
            self._interpreter.invoke()
        except RuntimeError as e:  # XNNPACK prepares on the first run: a damaged weight scale fails there
            reason = str(e).split(" in XNNPACK")[0]
            raise UserError(f"model file {self.path} does not run ({reason}); re-create it") from None
        # get_tensor copies: the interpreter reuses its buffers on the next call.
        return [self._interpreter.get_tensor(d["index"]) for d in self.outputs]


class KerasModel:
    """A Keras .h5 model with the same call interface (imports TensorFlow: `model.runtime = "h5"`)."""

    def __init__(self, path: Path | str):
        import keras

        self.path = _check_file(Path(path))
        try:
            self._model = keras.models.load_model(self.path, compile=False)
        except Exception as e:  # h5py and keras raise many kinds for a damaged or foreign file
            raise UserError(f"model file {self.path} is not a usable Keras model ({e}); re-create it") from None

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        arrays = [np.asarray(x, dtype=np.float32) for x in inputs]
        out = self._model.predict_on_batch(arrays[0] if len(arrays) == 1 else arrays)
        return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def load(path: Path | str, threads: int = 2) -> TFLiteModel | KerasModel:
    """The model at `path`, run by LiteRT for .tflite and by Keras for .h5."""
    path = Path(path)
    if path.suffix == ".h5":
        return KerasModel(path)
    return TFLiteModel(path, threads)
