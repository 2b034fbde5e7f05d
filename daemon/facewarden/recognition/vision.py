"""Finding faces in a frame (YuNet), aligning them for the encoder, judging frame quality, and
reading image files."""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import cv2
import numpy as np

from ..core.observation import Face
from ..errors import UserError
from . import assets, runtime


def _bgr(frame: np.ndarray) -> np.ndarray:
    """Grey frames (IR cameras, ORL's PGMs) as 3-channel BGR, which YuNet and the encoder need."""
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame


class YuNet:
    """YuNet (`assets.YUNET_LITE`) through LiteRT: `detect(image)` gives what OpenCV's FaceDetectorYN
    does (the same rows, x y w h, five points, score; None for no face), for about two thirds of its
    CPU. The image is padded at the bottom and right to multiples of the coarsest stride, as OpenCV
    pads it; the decoding and NMS follow OpenCV's face_detect.cpp.

    A net is allocated for one input size, and allocating it again for another costs more than a
    small region's detection: `sizes` nets are kept, one per padded size, the least recently used
    one resized when another size comes (each costs 2 to 3 MB)."""

    STRIDES = (8, 16, 32)

    def __init__(self, min_score: float, nms_threshold: float, threads: int = 1, sizes: int = 1):
        self.min_score, self.nms_threshold = min_score, nms_threshold
        self.threads, self.sizes = threads, sizes
        # Each padded size's net, padded input and each anchor's column, row and stride; most recent last.
        self._nets: dict[tuple[int, int], tuple[runtime.TFLiteModel, np.ndarray, np.ndarray]] = {}

    @classmethod
    def _anchors(cls, height: int, width: int) -> np.ndarray:
        """Each anchor's column, row and stride, in the network's output order (stride by stride,
        each row-major over its grid)."""
        grids = []
        for stride in cls.STRIDES:
            rows, cols = np.mgrid[: height // stride, : width // stride]
            grids.append(np.stack([cols, rows, np.full_like(cols, stride)], -1).reshape(-1, 3))
        return np.concatenate(grids).astype(np.float32)

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        h, w = image.shape[:2]
        coarsest = self.STRIDES[-1]
        padded = (-(-h // coarsest) * coarsest, -(-w // coarsest) * coarsest)
        net = self._nets.pop(padded, None)
        if net is None:
            if len(self._nets) < self.sizes:
                # release=False: a 0.25 MB file, loaded a few times a Detector.
                model = runtime.TFLiteModel(assets.path(assets.YUNET_LITE), self.threads, release=False)
            else:
                model = self._nets.pop(next(iter(self._nets)))[0]  # resized on its first call
            net = (model, np.empty((1, *padded, 3), np.float32), self._anchors(*padded))
        self._nets[padded] = net
        model, padded_input, grid = net
        padded_input[0, :h, :w] = image
        padded_input[0, h:] = 0  # the padding, as OpenCV's
        padded_input[0, :h, w:] = 0
        heads = model(padded_input)[0][0]
        score = np.sqrt(np.clip(heads[:, 0], 0, 1) * np.clip(heads[:, 1], 0, 1))
        keep = np.flatnonzero(score >= self.min_score)
        if not keep.size:
            return None
        kept, (col, row, stride) = heads[keep], grid[keep].T
        rows = np.empty((keep.size, 15), np.float32)
        rows[:, 2], rows[:, 3] = np.exp(kept[:, 4]) * stride, np.exp(kept[:, 5]) * stride
        rows[:, 0] = (col + kept[:, 2]) * stride - rows[:, 2] / 2
        rows[:, 1] = (row + kept[:, 3]) * stride - rows[:, 3] / 2
        rows[:, 4:14:2] = (kept[:, 6:16:2] + col[:, None]) * stride[:, None]
        rows[:, 5:14:2] = (kept[:, 7:16:2] + row[:, None]) * stride[:, None]
        rows[:, 14] = score[keep]
        if keep.size > 1:  # OpenCV suppresses on whole-pixel boxes
            boxes = np.trunc(rows[:, :4]).astype(np.int32).tolist()
            chosen = cv2.dnn.NMSBoxes(boxes, rows[:, 14].tolist(), self.min_score, self.nms_threshold)
            rows = rows[np.asarray(chosen, np.int64).reshape(-1)]
        return rows


class Detector:
    """YuNet on a frame downscaled to `detect_width`: a quarter of the cost of 640x480, and a face
    at laptop distance is still 70+ px wide. Faces come back in full-frame coordinates, best score
    first.

    `around(frame, box)` looks only in the region around a face already found, for the samples
    between full scans; `within(frame, region)`, only in a part of the frame that changed."""

    COARSE_FACE = 56  # px as YuNet sees it: the face's side in a region
    REGION_GROW = 1.5  # the region's side in face sizes: room for a face that moved since the last sample
    STRIDE = YuNet.STRIDES[-1]  # px as YuNet sees it: its coarsest step, which region sides are multiples of

    def __init__(self, detect_width: int = 320, min_score: float = 0.6, nms_threshold: float = 0.3,
                 threads: int = 1):
        self.detect_width = detect_width
        self.min_score = min_score
        self._small = np.empty((0, 0, 3), np.uint8)
        # Nets for whole frames (one size), for the followed face's region (its size changes with the
        # face's, seldom, and back), and for the changed parts of a scene, in sizes that come and go:
        # the desk replay's 125 searches of changed parts in 260 s came in 7 sizes, which resized one
        # net 61 times, two 33 times (four: 27).
        self._nets = {"frame": YuNet(min_score, nms_threshold, threads),
                      "around": YuNet(min_score, nms_threshold, threads, sizes=2),
                      "within": YuNet(min_score, nms_threshold, threads, sizes=2)}

    def __call__(self, frame: np.ndarray) -> list[Face]:
        frame = _bgr(frame)
        h, w = frame.shape[:2]
        scale = min(1.0, self.detect_width / w)  # never upscale: it invents no detail, only cost
        if scale < 1.0:
            size = (self.detect_width, max(1, round(h * scale)))
            if self._small.shape[:2] != (size[1], size[0]):
                self._small = np.empty((size[1], size[0], 3), np.uint8)
            small = cv2.resize(frame, size, dst=self._small, interpolation=cv2.INTER_AREA)  # the last sample's buffer
            scale_x, scale_y = size[0] / w, size[1] / h
        else:
            small, scale_x, scale_y = frame, 1.0, 1.0
        return _faces(self._nets["frame"].detect(small), (scale_x, scale_y), (0, 0))

    def around(self, frame: np.ndarray, box: tuple[float, float, float, float]) -> list[Face]:
        """The faces in the region of REGION_GROW face sizes around `box`, the face at most COARSE_FACE
        px as YuNet sees it: its box and landmarks within a few pixels of the full scan's, for a
        third of a full scan's cost at laptop distance."""
        h, w = frame.shape[:2]
        x, y, bw, bh = box
        full = min(1.0, self.detect_width / w)
        # Coarser by a whole factor: OpenCV shrinks by whole factors at a tenth of the cost of others.
        scale = full / max(1, math.ceil(max(bw, bh) * full / self.COARSE_FACE))
        small_w, small_h = max(1, round(w * scale)), max(1, round(h * scale))
        side = self.STRIDE * math.ceil(max(bw, bh) * self.REGION_GROW * scale / self.STRIDE)
        side_w, side_h = min(small_w, side), min(small_h, side)
        left = min(max(0, round((x + bw / 2) * scale - side_w / 2)), small_w - side_w)
        top = min(max(0, round((y + bh / 2) * scale - side_h / 2)), small_h - side_h)
        x0, y0 = round(left / scale), round(top / scale)
        x1, y1 = min(w, round((left + side_w) / scale)), min(h, round((top + side_h) / scale))
        return self._detect("around", frame, (x0, y0, x1, y1), (side_w, side_h))

    def within(self, frame: np.ndarray, region: tuple[int, int, int, int]) -> list[Face]:
        """The faces in `region` (x0, y0, x1, y1 in frame pixels) at the full scan's scale: a part of
        the scene that changed, searched for someone who came into view, at the cost of its area."""
        x0, y0, x1, y1 = region
        scale = min(1.0, self.detect_width / frame.shape[1])
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        return self._detect("within", frame, region, size)

    def _detect(self, kind: str, frame: np.ndarray, region: tuple[int, int, int, int],
                size: tuple[int, int]) -> list[Face]:
        """YuNet (the `kind` net) on `region` of the frame resized to `size`; faces in frame pixels."""
        x0, y0, x1, y1 = region
        small = cv2.resize(_bgr(frame[y0:y1, x0:x1]), size, interpolation=cv2.INTER_AREA)
        return _faces(self._nets[kind].detect(small), (size[0] / (x1 - x0), size[1] / (y1 - y0)), (x0, y0))


def _faces(rows: np.ndarray | None, scale: tuple[float, float], offset: tuple[int, int]) -> list[Face]:
    """YuNet's rows as Faces in frame pixels, best score first: the detector saw the frame scaled by
    `scale` from `offset` on."""
    if rows is None:
        return []
    factor = np.array(scale, dtype=np.float32)
    shift = np.array(offset, dtype=np.float32)
    faces = []
    for row in rows:
        xy = row[:14].reshape(7, 2) / factor
        xy[0] += shift  # the box's top-left corner; xy[1] is its width and height
        xy[2:] += shift  # the 5 points
        x, y, w, h = (float(t) for t in xy[:2].reshape(-1))
        faces.append(Face((x, y, w, h), xy[2:].copy(), float(row[14])))
    return sorted(faces, key=lambda f: -f.score)


def nearest_centre(faces: list[Face], frame_shape: tuple[int, ...]) -> Face | None:
    """The face whose box centre is nearest the frame centre: the subject of a still photo (LFW's
    images are cropped around their subject, with bystanders at the edges)."""
    if not faces:
        return None
    cy, cx = frame_shape[0] / 2, frame_shape[1] / 2

    def distance(f: Face) -> float:
        x, y, w, h = f.box
        return (x + w / 2 - cx) ** 2 + (y + h / 2 - cy) ** 2

    return min(faces, key=distance)


# SFace's 5-point template in its 112x112 input (OpenCV's face_recognize.cpp, the ArcFace points).
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray = TEMPLATE) -> np.ndarray:
    """The 2x3 least-squares similarity (Umeyama 1991) taking the points `src` onto `dst`: the same
    estimate `cv2.FaceRecognizerSF.alignCrop` makes, without loading the 10 MB recognizer (about
    100 MB resident in OpenCV) into the daemon just to warp a crop."""
    src = np.asarray(src, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(axis=0).sum()
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align(frame: np.ndarray, face: Face) -> np.ndarray:
    """The face warped onto SFace's 5-point template: 112x112x3 RGB uint8, the encoder's input."""
    crop = cv2.warpAffine(_bgr(frame), similarity_transform(face.landmarks), (112, 112), flags=cv2.INTER_LINEAR)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)


def _grey(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def brightness(image: np.ndarray) -> float:
    """Mean grey level, 0..255: low when the room is dark, the lid closed or the IR emitter off."""
    return float(cv2.mean(_grey(image))[0])


def sharpness(image: np.ndarray, buffer: np.ndarray | None = None) -> float:
    """Variance of the Laplacian: low for motion blur or an out-of-focus frame. `buffer`: an int16
    array of the image's size for the Laplacian (else a new one).

    In int16 (a 3x3 Laplacian of 8-bit pixels stays within +-1020), its sum and sum of squares by
    OpenCV: the same figure as float64 and numpy's var(), at a fifteenth of the cost on every
    sample (`cv2.meanStdDev` takes a slow path for int16: two and a half times as long)."""
    laplacian = cv2.Laplacian(_grey(image), cv2.CV_16S, dst=buffer)
    n = laplacian.size
    return cv2.norm(laplacian, cv2.NORM_L2SQR) / n - (cv2.sumElems(laplacian)[0] / n) ** 2


def quality_issue(image: np.ndarray, dark_threshold: float, blur_threshold: float) -> str | None:
    """Why a frame should not be judged ("dark", "blurry"), or None when it is fine."""
    return Quality(dark_threshold, blur_threshold)(image)


class Quality:
    """`quality_issue` for a camera's frames, one every sample: the grey frame and its Laplacian
    are written into the buffers of the sample before (frames keep their size) instead of new ones.

    Given a face's box (the face the tracker follows), only the box is read: it is the face that
    must be seen to be judged, and reading a whole frame every sample costs several times as much.
    The thresholds read a face's box about as they read its frame (bench/calibrate_tracking.py)."""

    def __init__(self, dark_threshold: float, blur_threshold: float):
        self.dark_threshold = dark_threshold
        self.blur_threshold = blur_threshold
        self._grey = np.empty((0, 0), np.uint8)
        self._laplacian = np.empty((0, 0), np.int16)

    def __call__(self, image: np.ndarray, box: tuple[float, float, float, float] | None = None) -> str | None:
        if box is not None:
            x, y, w, h = box
            x0, y0 = max(0, int(x)), max(0, int(y))
            x1, y1 = min(image.shape[1], math.ceil(x + w)), min(image.shape[0], math.ceil(y + h))
            if x1 - x0 >= 3 and y1 - y0 >= 3:  # (a box off the frame: the frame is read instead)
                return self._issue(_grey(image[y0:y1, x0:x1]), None)
        if self._laplacian.shape != image.shape[:2]:
            self._grey = np.empty(image.shape[:2], np.uint8)
            self._laplacian = np.empty(image.shape[:2], np.int16)
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=self._grey)
        return self._issue(grey, self._laplacian)

    def _issue(self, grey: np.ndarray, laplacian: np.ndarray | None) -> str | None:
        if brightness(grey) < self.dark_threshold:
            return "dark"
        if sharpness(grey, laplacian) < self.blur_threshold:
            return "blurry"
        return None


MAX_PIXELS = 1 << 27  # 134 MP, above any camera's photo; decoded BGR that is 400 MB already

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as a PNG's or JPEG's header claims them, read before anything is decoded (a
    74-byte PNG may claim 100,000 x 100,000 pixels); None for other formats or no header found."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(data) and data[i] == 0xFF:
            marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in _JPEG_SOF:
                return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
            i += 2 + length
    return None


_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def read_image(path: Path) -> np.ndarray:
    """An image file as a BGR (or grey) array; UserError with a one-line reason otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; what it is, is asked of what was opened.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):
        os.close(fd)
        raise UserError(f"{path}: {_KINDS.get(stat.S_IFMT(kind), 'not a plain file')}, not an image file")
    with os.fdopen(fd, "rb") as f:
        try:
            data = np.frombuffer(f.read(), dtype=np.uint8)
        except OSError as e:
            raise UserError(f"{path}: cannot read ({e.strerror})") from None
    size = header_size(data[:65536].tobytes())
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise UserError(f"{path}: not a readable image (it claims {size[0]} x {size[1]} pixels)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error:  # OpenCV's own limits (other formats); its message is pages of C++ context
        image = None
    if image is None:
        raise UserError(f"{path}: not a readable image")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.dtype != np.uint8:  # 16-bit PNG/TIFF
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(image.max())))
    return image

