"""The owner model (TensorFlow/Keras): the ported SFace encoder (frozen) and its L2-normalised
embedding, then a cosine-to-templates head (imprinted from the enrolled faces, each averaged with its
mirror image, refined by a short fit on augmented views) whose maximum is the score. Standard Keras
layers only, so `models/owner.h5` loads with plain `keras.models.load_model(path, compile=False)`;
`models/owner.tflite` is the same model for the daemon, `models/owner.json` its thresholds.

Several people: one score per enrolled person, in `owner.json`'s `people` order. Each person's
templates are fitted on their own faces alone (exactly as a one-person model: the calibrated
threshold holds for each), then laid out in one Dense layer, person-minor (column g * P + p is
person p's g-th template; a person with fewer templates repeats theirs, which leaves a maximum
unchanged), so that Reshape((G, P)) and GlobalMaxPooling1D give each person's best cosine.

TensorFlow is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Callable

import numpy as np

from .. import config, paths
from ..errors import UserError
from ..recognition import assets
from ..recognition.ownerfile import INPUT_SIZE, TARGET_FAR, THRESHOLD_COLOUR, THRESHOLD_GREY, THRESHOLD_METHOD
from . import adapt
from .augment import augment
from .enroll import MIN_ENROLLED, load_crops, person_dir
from .enroll import people as enrolled_people


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


def head_layers(templates: np.ndarray, people: int = 1):
    """Unit embedding -> each person's max cosine over their templates (rows of `templates`, unit
    norm, laid out person-minor: row g * people + p is person p's g-th template).

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
    return [dense, layers.Reshape((k // people, people), name="per_template"), layers.GlobalMaxPooling1D(name="score")]


def interleave(groups: list[np.ndarray]) -> np.ndarray:
    """Each person's templates (a list of (k_p, 128)) as one person-minor (G * P, 128) matrix."""
    g = max(len(t) for t in groups)
    padded = [np.resize(t, (g, t.shape[1])) for t in groups]  # np.resize repeats the rows cyclically
    return np.stack(padded, axis=1).reshape(g * len(groups), -1)


def person_templates(model) -> np.ndarray:
    """A trained model's templates as (people, G, 128): person p's score is the max cosine over [p]."""
    people = int(model.output.shape[-1])
    kernel = np.asarray(model.get_layer("templates").get_weights()[0]).T
    return kernel.reshape(-1, people, kernel.shape[1]).transpose(1, 0, 2)


def _apply(layers_, x):
    for layer in layers_:
        x = layer(x)
    return x


def score_head(templates: np.ndarray, people: int = 1):
    import keras

    emb = keras.Input((templates.shape[1],), name="embedding")
    return keras.Model(emb, _apply(head_layers(templates, people), emb), name="owner_head")


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
# owner.tflite's scores (int8 weights) may differ from owner.h5's by this much: measured up to 0.02
# on LFW's faces; a broken export is off by far more.
EXPORT_PARITY = 0.05


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
    model, histories, _ = fit_people({config.OWNER: crops}, workdir, say, verbose, seed)
    return model, histories[config.OWNER]


def fit_people(crops: dict[str, np.ndarray], workdir: Path, say: Callable[[str], None] = print,
               verbose: int = 1, seed: int = 0, offered: dict[str, np.ndarray] | None = None):
    """The model for several people's enrolled RGB crops, one score each in `crops`' order: (model,
    {person: fit history}, {person: indices of `offered` added}). Each person is fitted on their own
    faces only, with the same seed, so a person's templates are what a model of them alone would
    hold; then the crops `offered` for them that are new yet theirs (model/adapt.py) are added as
    templates as they are, unfitted."""
    from . import encoder as enc

    embedder = unit_embedding_model(enc.load_encoder())
    groups, histories, added = [], {}, {}
    for person, faces in crops.items():
        say(f"{person}: embedding {len(faces)} enrolled faces and {VIEWS_TOTAL + VAL_VIEWS_TOTAL} augmented views")
        templates = template_embeddings(embedder, faces)
        train_views = embed_batches(embedder, _views(faces, VIEWS_TOTAL, seed))
        val_views = embed_batches(embedder, _views(faces, VAL_VIEWS_TOTAL, seed + 1))
        say(f"{person}: fitting the templates")
        head, histories[person] = fit_head(templates, train_views, val_views, workdir, verbose)
        fitted = np.asarray(head.get_layer("templates").get_weights()[0]).T
        extra = offered.get(person) if offered else None
        if extra is not None and len(extra):
            new = template_embeddings(embedder, extra)
            added[person] = adapt.select(fitted, new)
            fitted = np.concatenate([fitted, new[added[person]]])
            say(f"{person}: {len(added[person])} of {len(extra)} adapted faces added as templates")
        groups.append(fitted)
    head = score_head(interleave(groups), len(groups))
    return owner_model(embedder, head), histories, added


def train(p: paths.Paths, say: Callable[[str], None] = print, verbose: int = 1, seed: int = 0) -> dict:
    """Build owner.h5, owner.tflite and owner.json from the enrollment and publish them as one new
    model version (ownerfile.publish); returns the metadata, with the version under "version".

    The three files are written whole into a directory of their own first, so a failed training
    leaves the previous model as it was, and a reader never sees a mix of two models.
    """
    import tempfile

    from ..recognition import ownerfile, runtime
    from . import encoder as enc

    adapt.people(p)  # refuses a link at adapt/ or in it before anything is read, adaptation on or off
    everyone = enrolled_people(p)
    if not everyone:
        raise UserError(
            f"0 enrolled face(s) in {p.enroll_dir}, need at least {MIN_ENROLLED}: "
            "run `facewarden enroll --camera` or `facewarden enroll --from DIR`"
        )
    for person, files in everyone.items():
        if len(files) < MIN_ENROLLED:
            raise UserError(
                f"{len(files)} enrolled face(s) of {person} in {person_dir(p, person)}, need at least {MIN_ENROLLED}: "
                f"enroll more (`facewarden enroll --person {person} ...`) or `facewarden forget {person}`"
            )
    crops = {person: load_crops(files) for person, files in everyone.items()}
    # What the daemon's tracks offered (config adapt.enabled), oldest first.
    adapting = config.load(p.config_file).adapt.enabled
    waiting = {person: adapt.candidates(p, person) for person in crops} if adapting else {}
    offered = {person: load_crops(files) for person, files in waiting.items() if files}
    models = paths.private_dir(p.models_dir)
    with tempfile.TemporaryDirectory(dir=models, prefix=".train-") as work:
        staged = paths.private_dir(Path(work) / "model")
        model, histories, added = fit_people(crops, Path(work), say, verbose, seed, offered)
        say("saving and exporting the owner model")
        enc.save_private(model, staged / "owner.h5")
        tflite = enc.export_tflite(model, staged / "owner.tflite")
        # Same model, two runtimes: they must agree on the owner's own faces before we ship.
        probe = np.concatenate([c[:4] for c in crops.values()]).astype(np.float32)
        want = np.asarray(model.predict_on_batch(probe))
        lite = runtime.TFLiteModel(tflite, threads=1)
        got = np.stack([lite(c[None])[0].reshape(-1) for c in probe])
        parity = float(np.abs(want - got).max())
        if parity > EXPORT_PARITY:
            raise UserError(f"the exported owner.tflite disagrees with owner.h5 by {parity:.4f}; not installed")
        meta = {
            "threshold": THRESHOLD_COLOUR,
            "threshold_grey": THRESHOLD_GREY,
            "target_far_per_frame": TARGET_FAR,
            "threshold_method": THRESHOLD_METHOD,
            "score": "per person: max cosine of the face's unit SFace embedding over that person's templates",
            "people": list(crops),  # the model's outputs, in order
            "enrolled_per_person": {person: len(c) for person, c in crops.items()},
            "encoder_sha256": assets.SFACE.sha256,
            "input_size": [INPUT_SIZE, INPUT_SIZE, 3],
            "input": "face aligned on its 5 landmarks to SFace's template (vision.align), RGB, float 0..255",
            "enrolled": sum(len(c) for c in crops.values()),
            "templates": sum(len(c) for c in crops.values()),  # one per enrolled face, mirror-averaged
            "adapted_per_person": {person: len(i) for person, i in added.items()},  # templates added beside them
            "fit_epochs": max(len(h["loss"]) for h in histories.values()),
            "fit_best_val_loss": max(float(min(h["val_loss"])) for h in histories.values()),
            "tflite_max_abs_diff": parity,
            "trained": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        paths.write_private(staged / "owner.json", (json.dumps(meta, indent=2) + "\n").encode())
        version = ownerfile.publish(p, staged)
    # The bank is what the model holds now: the rest of what was offered goes (once published).
    banked = {}
    for person, files in waiting.items():
        banked[person] = [files[i] for i in added.get(person, [])]
        for f in files:
            if f not in banked[person]:
                f.unlink(missing_ok=True)
    return {**meta, "version": version, "adapted_files": banked}
