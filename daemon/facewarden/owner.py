"""The owner model: enrollment, training (TensorFlow/Keras), threshold calibration, export.

Enrollment keeps aligned 112x112 face crops (PNG, 0600 in a 0700 `enroll/`), named by their content
hash, so enrolling again only ever adds. Training turns them into `models/owner.h5`: the ported
SFace encoder (frozen) and its L2-normalised embedding, then a cosine-to-templates head (imprinted
from the enrolled faces, each averaged with its mirror image, refined by a short fit on augmented
views) whose maximum is the score. Standard Keras layers only, so the file
loads with plain `keras.models.load_model(path, compile=False)`. `models/owner.tflite` is the same
model for the daemon (`runtime`), `models/owner.json` its threshold and provenance.

Only the training functions import TensorFlow (lazily); enrollment and the metadata reader do not.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from . import assets, paths, vision
from .verifier import face_problem
from .errors import UserError

INPUT_SIZE = 112
MIN_ENROLLED = 3
# Enrollment is stricter than the detector's own cut: a template must be a clear frontal face.
MIN_ENROLL_SCORE = 0.8

# The shipped decision thresholds (cosine of a frame's unit embedding to the nearest template).
# Calibrated once, for a stated target, on large impostor sets that are not the owner's (see
# THRESHOLD_METHOD and bench/bench_accuracy.py); frames from an IR/grey camera get their own,
# because grey faces crowd together and strangers score higher there.
TARGET_FAR = 1e-3
THRESHOLD_COLOUR = 0.45
THRESHOLD_GREY = 0.48
THRESHOLD_METHOD = (
    "fixed, not tuned per owner: for <= 0.1% false accepts per frame, the 99.9th percentile of "
    "impostor scores plus a 0.05 margin for people and conditions never seen. Colour: owner models "
    "of the 10 LFW people with most images (5 faces enrolled each) against one image of each of "
    "2,677 other people: 99.9th percentile 0.394 -> 0.45. Grey (IR, night): the same world in grey "
    "(0.408) and ORL, 40 grey subjects (0.425) -> 0.48. bench/bench_accuracy.py measures both."
)


# --- enrollment ----------------------------------------------------------------------------------


@dataclass
class EnrollResult:
    added: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, why)
    total: int = 0  # crops enrolled after this run


def single_face(frame: np.ndarray, detector: vision.Detector) -> tuple[np.ndarray | None, str | None]:
    """The aligned RGB crop of the one usable face in `frame`, or None and why not."""
    faces = detector(frame)
    if not faces:
        return None, "no face found"
    if len(faces) > 1:
        return None, f"{len(faces)} faces (need exactly one)"
    problem = face_problem(faces[0], MIN_ENROLL_SCORE)
    if problem:
        return None, problem
    return vision.align(frame, faces[0]), None


def enrolled(p: paths.Paths) -> list[Path]:
    return sorted(p.enroll_dir.glob("*.png")) if p.enroll_dir.is_dir() else []


def _store(crop_rgb: np.ndarray, p: paths.Paths) -> Path | None:
    """Store one crop under its content hash; None when that very crop is already enrolled."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise UserError("could not encode a face crop as PNG")
    target = p.enroll_dir / f"{hashlib.sha256(png.tobytes()).hexdigest()[:16]}.png"
    if target.exists():
        return None
    paths.private_dir(p.enroll_dir)
    return paths.write_private(target, png.tobytes())


def read_image(path: Path) -> np.ndarray:
    """An image file as a BGR (or grey) array; UserError with a one-line reason otherwise."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise UserError(f"{path}: not a readable image")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.dtype != np.uint8:  # 16-bit PNG/TIFF
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(image.max())))
    return image


def enroll_files(files: Iterable[Path], p: paths.Paths, detector: vision.Detector) -> EnrollResult:
    result = EnrollResult()
    for file in files:
        try:
            image = read_image(file)
        except UserError as e:
            result.skipped.append((str(file), str(e).split(": ", 1)[-1]))
            continue
        crop, why = single_face(image, detector)
        if crop is None:
            result.skipped.append((str(file), why))
            continue
        stored = _store(crop, p)
        if stored is None:
            result.skipped.append((str(file), "already enrolled"))
        else:
            result.added.append(stored)
    result.total = len(enrolled(p))
    return result


def enroll_dir(source: Path, p: paths.Paths, detector: vision.Detector) -> EnrollResult:
    if not source.is_dir():
        raise UserError(f"{source}: not a directory")
    files = sorted(f for f in source.iterdir() if f.is_file() and not f.name.startswith("."))
    if not files:
        raise UserError(f"{source}: holds no files")
    return enroll_files(files, p, detector)


def enroll_frames(
    frames: Iterable[np.ndarray | None],
    count: int,
    p: paths.Paths,
    detector: vision.Detector,
    progress: Callable[[int, int], None] = lambda done, want: None,
) -> EnrollResult:
    """Enroll up to `count` frames with one usable face from a stream (the webcam)."""
    result = EnrollResult()
    for frame in frames:
        if frame is None:
            continue
        crop, _ = single_face(frame, detector)
        if crop is None:
            continue
        stored = _store(crop, p)
        if stored is not None:  # a still camera repeats frames byte for byte: those count once
            result.added.append(stored)
            progress(len(result.added), count)
        if len(result.added) >= count:
            break
    result.total = len(enrolled(p))
    return result


def load_crops(files: list[Path]) -> np.ndarray:
    """Enrolled crops as (N, 112, 112, 3) RGB uint8; a damaged file is a clear error, not a skip."""
    crops = []
    for f in files:
        image = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if image is None or image.shape[:2] != (INPUT_SIZE, INPUT_SIZE):
            raise UserError(f"{f}: damaged enrollment image; delete it and enroll again")
        crops.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return np.stack(crops) if crops else np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)


# --- augmentation (pure: a crop and a random generator in, a crop out) ---------------------------


def augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One plausible webcam view of an enrolled RGB crop: lighting (level, gamma, a side light),
    grey (IR cameras), blur, JPEG, a small rotation, a mirror image."""
    x = crop.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        angle = rng.uniform(-10, 10)
        m = cv2.getRotationMatrix2D((INPUT_SIZE / 2, INPUT_SIZE / 2), angle, rng.uniform(0.95, 1.05))
        x = cv2.warpAffine(x, m, (INPUT_SIZE, INPUT_SIZE), borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    x = x ** rng.uniform(0.7, 1.5) * rng.uniform(0.5, 1.2)
    if rng.random() < 0.3:  # light from one side
        ramp = np.linspace(1.0, rng.uniform(0.3, 0.8), INPUT_SIZE, dtype=np.float32)
        x = x * (ramp if rng.random() < 0.5 else ramp[::-1])[None, :, None]
    if rng.random() < 0.3:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    out = np.clip(x * 255.0, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.4:
        _, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        out = cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(out)


# --- the model (TensorFlow/Keras from here on, imported lazily) ----------------------------------


def unit_embedding_model(encoder=None):
    """Face (N, 112, 112, 3) RGB 0..255 -> unit 128-d embedding (what the owner model compares)."""
    import keras
    from keras import layers

    from . import encoder as enc

    encoder = encoder or enc.load_encoder()
    encoder.trainable = False
    face = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="face")
    return keras.Model(face, layers.UnitNormalization(name="embedding")(encoder(face)), name="facewarden_embedding")


def template_embeddings(embedder, crops: np.ndarray) -> np.ndarray:
    """Unit embeddings of enrolled crops, each averaged with its mirror image's.

    Mirroring the templates (free: done once at training time) rather than every frame keeps the
    daemon at one encoder pass a face; mirroring frames too measured no better (bench notes).
    """
    a = embed_batches(embedder, crops)
    b = embed_batches(embedder, crops[:, :, ::-1])
    t = a + b
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def head_layers(templates: np.ndarray):
    """Unit embedding -> max cosine over the templates (rows of `templates`, unit norm).

    The templates are the weights of a bias-free Dense layer ("imprinted"), kept unit norm by a
    standard constraint so a fit can move them but each output stays a cosine.
    """
    import keras
    from keras import layers

    k = len(templates)
    dense = layers.Dense(
        k, use_bias=False, kernel_constraint=keras.constraints.UnitNorm(axis=0), name="templates"
    )
    dense.build((None, templates.shape[1]))
    dense.set_weights([templates.T.astype(np.float32)])
    return [dense, layers.Reshape((k, 1), name="per_template"), layers.GlobalMaxPooling1D(name="score")]


def _apply(layers_, x):
    for layer in layers_:
        x = layer(x)
    return x


def score_head(templates: np.ndarray):
    import keras

    emb = keras.Input((templates.shape[1],), name="embedding")
    return keras.Model(emb, _apply(head_layers(templates), emb), name="owner_head")


def owner_model(embedder, head):
    """The whole owner model: face in, score (N, 1) out, from the embedder and the fitted head."""
    import keras

    return keras.Model(embedder.input, _apply(head.layers[1:], embedder.output), name="facewarden_owner")


def embed_batches(model, crops: np.ndarray, batch: int = 32) -> np.ndarray:
    if len(crops) == 0:
        return np.zeros((0, 128), np.float32)
    out = [model.predict_on_batch(crops[i : i + batch].astype(np.float32)) for i in range(0, len(crops), batch)]
    return np.concatenate(out).astype(np.float32)


# --- training -----------------------------------------------------------------------------------

# The fit pulls each augmented view of the owner until its best template is this far above the
# colour threshold; views already there cost nothing, so easy views do not drag templates together.
FIT_MARGIN = 0.15
VIEWS_TOTAL = 120  # augmented training views, spread over the enrolled faces
VAL_VIEWS_TOTAL = 40


def _views(crops: np.ndarray, total: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    per = max(2, -(-total // len(crops)))
    return np.stack([augment(c, rng) for c in crops for _ in range(per)])


def fit_head(templates: np.ndarray, train: np.ndarray, val: np.ndarray, workdir: Path, verbose: int = 1):
    """Refine the imprinted templates on augmented owner views (Keras fit: ModelCheckpoint keeps the
    best epoch by validation loss, EarlyStopping ends it); returns the head with the best weights."""
    import keras

    head = score_head(templates)
    target = THRESHOLD_COLOUR + FIT_MARGIN

    def shortfall(_, score):
        return keras.ops.mean(keras.ops.relu(target - score), axis=-1)

    head.compile(optimizer=keras.optimizers.Adam(5e-3), loss=shortfall)
    best = workdir / "head.weights.h5"
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(best), monitor="val_loss", save_best_only=True, save_weights_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=4),
    ]
    history = head.fit(
        train, np.zeros((len(train), 1), np.float32),
        validation_data=(val, np.zeros((len(val), 1), np.float32)),
        epochs=40, batch_size=32, shuffle=True, verbose=verbose, callbacks=callbacks,
    )
    head.load_weights(str(best))
    return head, history.history


def fit_owner(crops: np.ndarray, workdir: Path, say: Callable[[str], None] = print, verbose: int = 1, seed: int = 0):
    """The owner model for enrolled RGB crops (no files touched but `workdir`): (model, fit history)."""
    from . import encoder as enc

    say(f"embedding {len(crops)} enrolled faces and {VIEWS_TOTAL + VAL_VIEWS_TOTAL} augmented views")
    embedder = unit_embedding_model(enc.load_encoder())
    templates = template_embeddings(embedder, crops)
    train_views = embed_batches(embedder, _views(crops, VIEWS_TOTAL, seed))
    val_views = embed_batches(embedder, _views(crops, VAL_VIEWS_TOTAL, seed + 1))
    say("fitting the owner head")
    head, history = fit_head(templates, train_views, val_views, workdir, verbose)
    return owner_model(embedder, head), history


def read_meta(p: paths.Paths) -> dict:
    """models/owner.json, checked; UserError when there is no usable owner model yet."""
    file = p.models_dir / "owner.json"
    if not file.is_file():
        raise UserError(f"no owner model in {p.models_dir}: run `facewarden enroll` and `facewarden train` first")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
        float(meta["threshold"]), float(meta["threshold_grey"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{file} is damaged ({e}); run `facewarden train` again") from None
    if meta.get("encoder_sha256") != assets.SFACE.sha256:
        raise UserError(f"{file} was trained on another encoder; run `facewarden train` again")
    return meta


def train(p: paths.Paths, say: Callable[[str], None] = print, verbose: int = 1, seed: int = 0) -> dict:
    """Build models/owner.h5, owner.tflite and owner.json from the enrollment; returns the metadata.

    The three files are written next to their final names first and only then swapped in, so a
    failed training leaves the previous model whole.
    """
    import os
    import tempfile

    from . import encoder as enc
    from . import runtime

    files = enrolled(p)
    if len(files) < MIN_ENROLLED:
        raise UserError(
            f"{len(files)} enrolled face(s) in {p.enroll_dir}, need at least {MIN_ENROLLED}: "
            "run `facewarden enroll --camera` or `facewarden enroll --from DIR`"
        )
    crops = load_crops(files)
    models = paths.private_dir(p.models_dir)
    with tempfile.TemporaryDirectory(dir=models, prefix=".train-") as work:
        model, history = fit_owner(crops, Path(work), say, verbose, seed)
        say("saving and exporting the owner model")
        h5 = enc.save_private(model, Path(work) / "owner.h5")
        tflite = enc.export_tflite(model, Path(work) / "owner.tflite")
        # Same model, two runtimes: they must agree on the owner's own faces before we ship.
        probe = crops[: min(8, len(crops))].astype(np.float32)
        want = np.asarray(model.predict_on_batch(probe)).reshape(-1)
        lite = runtime.TFLiteModel(tflite, threads=1)
        got = np.array([lite(c[None])[0].reshape(-1)[0] for c in probe])
        parity = float(np.abs(want - got).max())
        if parity > 1e-3:
            raise UserError(f"the exported owner.tflite disagrees with owner.h5 by {parity:.4f}; not installed")
        meta = {
            "threshold": THRESHOLD_COLOUR,
            "threshold_grey": THRESHOLD_GREY,
            "target_far_per_frame": TARGET_FAR,
            "threshold_method": THRESHOLD_METHOD,
            "score": "max cosine of the face's unit SFace embedding over the owner templates",
            "encoder_sha256": assets.SFACE.sha256,
            "input_size": [INPUT_SIZE, INPUT_SIZE, 3],
            "input": "face aligned by cv2.FaceRecognizerSF.alignCrop, RGB, float 0..255",
            "enrolled": len(crops),
            "templates": len(crops),  # one per enrolled face, mirror-averaged
            "fit_epochs": len(history["loss"]),
            "fit_best_val_loss": float(min(history["val_loss"])),
            "tflite_max_abs_diff": parity,
            "trained": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        meta_file = paths.write_private(Path(work) / "owner.json", (json.dumps(meta, indent=2) + "\n").encode())
        for f in (h5, tflite, meta_file):
            os.replace(f, models / f.name)
    return meta


# --- pair evaluation (pure metrics) --------------------------------------------------------------


def parse_pairs(text: str, source: str = "pairs") -> list[tuple[str, int, str, int]]:
    """LFW pairs format: a first line (the count), then "name i j" (same person) or
    "name1 i name2 j" (different people), tab or space separated."""
    pairs = []
    for number, line in enumerate(text.splitlines()[1:], start=2):
        fields = line.split()
        try:
            if len(fields) == 3:
                pairs.append((fields[0], int(fields[1]), fields[0], int(fields[2])))
            elif len(fields) == 4:
                pairs.append((fields[0], int(fields[1]), fields[2], int(fields[3])))
            elif fields:
                raise ValueError
        except ValueError:
            raise UserError(f"{source}:{number}: not an LFW pair line: {line.strip()!r}") from None
    if not pairs:
        raise UserError(f"{source}: holds no pairs")
    return pairs


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> float:
    """Share of genuine scores accepted at the strictest threshold letting through at most `far`
    of the impostors (accept: score > threshold)."""
    allowed = int(np.floor(far * len(impostor)))
    threshold = np.sort(impostor)[::-1][allowed] if allowed < len(impostor) else -np.inf
    return float(np.mean(genuine > threshold))


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> float:
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    far = np.array([np.mean(impostor >= t) for t in thresholds])
    frr = np.array([np.mean(genuine < t) for t in thresholds])
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The accuracy-maximising threshold, midway between two observed scores (not on one, which
    would reject an unseen pair scoring a hair below the lowest genuine one seen)."""
    values = np.unique(scores)
    candidates = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    accuracy = [np.mean((scores >= t) == same) for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def ten_fold_accuracy(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """LFW protocol: each tenth judged at the threshold best on the other nine; (mean, std)."""
    folds = np.arange(len(scores)) % 10
    accs = []
    for k in range(10):
        test = folds == k
        t = best_threshold(scores[~test], same[~test])
        accs.append(np.mean((scores[test] >= t) == same[test]))
    return float(np.mean(accs)), float(np.std(accs))


def pair_metrics(scores: np.ndarray, same: np.ndarray) -> dict:
    scores, same = np.asarray(scores, float), np.asarray(same, bool)
    genuine, impostor = scores[same], scores[~same]
    accuracy, std = ten_fold_accuracy(scores, same)
    return {
        "pairs": int(len(scores)),
        "accuracy": round(accuracy, 4),
        "accuracy_std": round(std, 4),
        "tar_at_far_1e-2": round(tar_at_far(genuine, impostor, 1e-2), 4),
        "tar_at_far_1e-3": round(tar_at_far(genuine, impostor, 1e-3), 4),
        "eer": round(equal_error_rate(genuine, impostor), 4),
        "best_threshold": round(best_threshold(scores, same), 4),
    }


def roc_plot(scores: np.ndarray, same: np.ndarray, path: Path, label: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores, same = np.asarray(scores, float), np.asarray(same, bool)
    thresholds = np.unique(scores)[::-1]
    far = [np.mean(scores[~same] >= t) for t in thresholds]
    tar = [np.mean(scores[same] >= t) for t in thresholds]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(np.maximum(far, 1e-4), tar, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_xlim(1e-3, 1)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as e:
        raise UserError(f"{path}: cannot write the ROC plot ({e.strerror})") from None
    finally:
        plt.close(fig)
    return path


# --- the commands ---------------------------------------------------------------------------------

STILL_DETECT_WIDTH = 640  # photos: detect on more pixels than a live frame, faces may be small
STILL_MIN_SCORE = 0.5  # the pair benchmark's detector cut (YuNet's 0.9 default misses LFW faces)


def _quiet_tensorflow() -> None:
    """TensorFlow's chatter would bury our own stderr lines: its C++ start-up notes (CUDA probes,
    oneDNN), Keras calling the .h5 we are asked for "legacy" on every checkpoint, and tf.function's
    retracing advice when the last batch is smaller. Errors still print."""
    import logging
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _config():
    from . import config

    return config.load(paths.paths().config_file)


def _err(*args, **kwargs) -> None:
    import sys

    print(*args, file=sys.stderr, flush=True, **kwargs)


def _bar(done: int, want: int) -> None:
    import sys

    width = 30
    filled = width * done // max(1, want)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{want} faces")
    sys.stderr.flush()


def _camera_frames(cfg, limit: int):
    """Frames from camera.source, paced so consecutive captures differ a little."""
    import time

    from .camera import Camera, ReplayEnded

    cam = Camera(cfg.camera)
    failures = 0
    try:
        for _ in range(limit):
            try:
                frame = cam.read()
            except ReplayEnded:
                return
            failures = 0 if frame is not None else failures + 1
            if failures >= 20:
                raise UserError(f"camera {cfg.camera.source!r} gives no frames (is it in use, or absent?)")
            yield frame
            time.sleep(0.1)
    finally:
        cam.release()


def cli_enroll(args) -> int:
    cfg = _config()
    p = paths.paths()
    if args.camera:
        if args.count < 1:
            raise UserError("--count must be at least 1")
        detector = vision.Detector(cfg.model.detect_width, cfg.model.min_detection_score)
        _err(f"look at the camera; capturing {args.count} faces (turn your head a little, vary the light)")
        _bar(0, args.count)
        result = enroll_frames(_camera_frames(cfg, args.count * 30), args.count, p, detector, _bar)
        _err()
        if not result.added:
            raise UserError("no usable face seen by the camera: one face, well lit, close enough")
    else:
        detector = vision.Detector(STILL_DETECT_WIDTH, cfg.model.min_detection_score)
        result = enroll_dir(Path(args.source).expanduser(), p, detector)
        for source, why in result.skipped:
            print(f"skipped {source}: {why}")
        if not result.added and not any(why == "already enrolled" for _, why in result.skipped):
            raise UserError(f"{args.source}: no image with exactly one usable face")
    print(f"enrolled {len(result.added)} new face(s); {result.total} in {p.enroll_dir}")
    if result.total < MIN_ENROLLED:
        print(f"training needs at least {MIN_ENROLLED}: enroll more")
    return 0


def cli_train(args) -> int:
    _quiet_tensorflow()
    p = paths.paths()
    meta = train(p, say=_err, verbose=2)
    print(
        f"owner model written to {p.models_dir} (owner.h5, owner.tflite, owner.json) from {meta['enrolled']} faces; "
        f"threshold {meta['threshold']} (grey frames {meta['threshold_grey']})"
    )
    return 0


def _emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def _readable(names: list[str], unreadable: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """Each image that can be read; one that cannot gets its error line (the others still get
    theirs) and is added to `unreadable`."""
    for name in names:
        try:
            image = read_image(Path(name))
        except UserError as e:
            unreadable.append(name)
            _emit({"path": name, "error": str(e).split(": ", 1)[-1]})
            continue
        yield name, image


def cli_score(args) -> int:
    from .verifier import Verifier

    verifier = Verifier.from_config(_config(), paths.paths())
    unreadable: list[str] = []
    for name, image in _readable(args.images, unreadable):
        verdict = verifier.score_image(image)
        score = None if verdict is None or verdict.score is None else round(verdict.score, 6)
        _emit({"path": name, "face": verdict is not None, "score": score, "owner": bool(verdict and verdict.owner)})
    return 2 if unreadable else 0


def _still_crop(image: np.ndarray, detector: vision.Detector) -> np.ndarray | None:
    face = vision.nearest_centre(detector(image), image.shape)
    return None if face is None else vision.align(image, face)


def cli_embed(args) -> int:
    from . import encoder as enc

    _quiet_tensorflow()
    detector = vision.Detector(STILL_DETECT_WIDTH, STILL_MIN_SCORE)
    embedder = None
    unreadable: list[str] = []
    for name, image in _readable(args.images, unreadable):
        crop = _still_crop(image, detector)
        if crop is None:
            _emit({"path": name, "face": False, "embedding": None})
            continue
        embedder = embedder or unit_embedding_model(enc.load_encoder())
        vector = embed_batches(embedder, crop[None])[0]
        _emit({"path": name, "face": True, "embedding": [round(float(v), 6) for v in vector]})
    return 2 if unreadable else 0


def cli_evaluate(args) -> int:
    from . import encoder as enc

    _quiet_tensorflow()
    pairs_file, images = Path(args.pairs), Path(args.images)
    if not pairs_file.is_file():
        raise UserError(f"{pairs_file}: no such file")
    if not images.is_dir():
        raise UserError(f"{images}: not a directory")
    pairs = parse_pairs(pairs_file.read_text(encoding="utf-8", errors="replace"), str(pairs_file))
    names = sorted({(n, i) for a, i, b, j in pairs for n, i in ((a, i), (b, j))})
    detector = vision.Detector(STILL_DETECT_WIDTH, STILL_MIN_SCORE)
    crops: dict[tuple[str, int], np.ndarray | None] = {}
    for k, (name, i) in enumerate(names):
        crops[(name, i)] = _still_crop(read_image(images / name / f"{name}_{i:04d}.jpg"), detector)
        if k % 200 == 0:
            _err(f"\rdetecting faces: {k}/{len(names)}", end="")
    _err(f"\rdetecting faces: {len(names)}/{len(names)}")
    found = [key for key, c in crops.items() if c is not None]
    if not found:
        raise UserError(f"no face found in any image of {pairs_file}")
    embedder = unit_embedding_model(enc.load_encoder())
    # One encoder pass an image, as the daemon embeds a frame. Mirror-averaging both sides measured
    # no better on LFW's pairs (99.1% against 99.2%: one pair) for twice the passes.
    vectors = dict(zip(found, embed_batches(embedder, np.stack([crops[k] for k in found]))))
    # A pair with a missed face counts as "different people": the benchmark charges the detector too.
    scores = np.array([float(vectors[(a, i)] @ vectors[(b, j)]) if (a, i) in vectors and (b, j) in vectors else -1.0
                       for a, i, b, j in pairs])
    same = np.array([a == b for a, _, b, _ in pairs])
    result = pair_metrics(scores, same)
    result["missed_faces"] = len(names) - len(found)
    result["roc"] = str(roc_plot(scores, same, Path(args.roc), "facewarden (SFace port)"))
    print(json.dumps(result))
    return 0
