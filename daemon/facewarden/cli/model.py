"""The owner-model commands: enroll, people, forget, train, score, embed, evaluate. Only train,
embed and evaluate import TensorFlow."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import paths
from ..errors import UserError
from ..recognition import vision
from ..config import OWNER
from ..model.enroll import (MIN_ENROLLED, Subject, check_name, enroll_dir, enroll_frames, enrolled_when, own_folder,
                            person_dir)
from ..model.enroll import forget as forget_person
from ..model.enroll import people as enrolled_people
from ..recognition.vision import read_image

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
    from .. import config

    return config.load(paths.paths().config_file)


def _err(*args, **kwargs) -> None:
    print(*args, file=sys.stderr, flush=True, **kwargs)


def _bar(done: int, want: int, got: Subject) -> None:
    """The progress line: how many faces, whom it is taking (the face's box) and what to do next."""
    width = 30
    filled = width * done // max(1, want)
    if got.face is not None:
        x, y, w, h = (round(v) for v in got.face.box)
        seen = f"face at x={x} y={y} {w}x{h}" + (f", {got.ignored} smaller ignored" if got.ignored else "")
    else:
        seen = got.why or ""
    # Poses: frontal first, then turned, so the templates cover how the user really sits.
    hint = "look at the camera" if done < want // 3 else "now turn your head slowly left and right"
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{want} faces; {seen[:48]:<48} {hint}\033[K")
    sys.stderr.flush()


def _camera_frames(cfg, limit: int):
    """Frames from camera.source, paced so consecutive captures differ a little."""
    from ..service.camera import Camera, ReplayEnded

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


def enroll(args) -> int:
    cfg = _config()
    p = paths.paths()
    person = check_name(args.person)
    who = "" if person == OWNER else f" of {person}"
    if args.camera:
        if args.count < 1:
            raise UserError("--count must be at least 1")
        detector = vision.Detector(cfg.model.detect_width, cfg.model.min_detection_score)
        _err(f"capturing {args.count} faces{who}: look at the camera, then turn your head a little, vary the light")
        _bar(0, args.count, Subject(None))
        result = enroll_frames(_camera_frames(cfg, args.count * 30), args.count, p, detector, _bar, person)
        _err()
        if not result.added:
            raise UserError("no usable face seen by the camera: one face, well lit, close enough")
    else:
        from ..model.evaluate import STILL_DETECT_WIDTH

        detector = vision.Detector(STILL_DETECT_WIDTH, cfg.model.min_detection_score)
        result = enroll_dir(Path(args.source).expanduser(), p, detector, person)
        for source, why in result.skipped:
            print(f"skipped {source}: {why}")
        if not result.added and not any(why == "already enrolled" for _, why in result.skipped):
            raise UserError(f"{args.source}: no image with one clear, usable face")
    for source, n in result.ignored:
        print(f"enrolled {source}: the largest, most central face; ignored {n} smaller face(s) in the background")
    print(f"enrolled {len(result.added)} new face(s){who}; {result.total} in {person_dir(p, person)}")
    if result.total < MIN_ENROLLED:
        print(f"training needs at least {MIN_ENROLLED}: enroll more")
    return 0


def people(args) -> int:
    """Who is enrolled or adapted: faces, adapted faces, role, when, and whether the current model knows them."""
    from ..model import adapt
    from ..recognition import ownerfile

    p = paths.paths()
    cfg = _config()
    everyone = enrolled_people(p)
    adapted = adapt.people(p)
    if not everyone and not adapted:
        print(f"nobody is enrolled in {p.enroll_dir}: run `facewarden enroll`")
        return 0
    try:
        in_model = set(ownerfile.read_meta(p).people)
    except UserError:
        in_model = set()
    print(f"{'person':<20} {'role':<8} {'faces':>5} {'adapted':>7}  {'enrolled (UTC)':<35} in model")
    for person in [*everyone, *sorted(set(adapted) - set(everyone))]:
        files = everyone.get(person, [])
        first, last = enrolled_when(files) if files else ("-", "-")
        span = first if first == last else f"{first} .. {last}"
        known = "yes" if person in in_model else "no: run `facewarden train`" if files else "no: not enrolled"
        print(f"{person:<20} {cfg.people.role(person):<8} {len(files):>5} {len(adapted.get(person, [])):>7}  "
              f"{span:<35} {known}")
    if adapted:
        print("adapted: faces kept by adapt.enabled for the next `train` (or added by the last); "
              "`facewarden forget NAME --adapted` deletes them")
    return 0


def forget(args) -> int:
    """Delete every face kept of a person, whatever made it (enroll or adaptation); only adapted ones with --adapted."""
    from ..model import adapt

    p = paths.paths()
    person = check_name(args.person)
    folders = (person_dir(p, person), adapt.adapt_dir(p, person))
    for folder in folders:  # a link at either refuses the whole command, before anything is deleted
        own_folder(p, folder)
    removed, left = (0, []) if args.adapted else forget_person(p, person)
    adapted, left_adapted = adapt.forget(p, person)
    if not removed and not adapted:
        if args.adapted:
            raise UserError(f"no adapted faces of {person!r} are kept (`facewarden people` lists them)")
        raise UserError(f"nobody called {person!r} is enrolled or adapted (`facewarden people` lists who is)")
    print(f"forgot {person}: {removed} enrolled face(s) deleted, {adapted} adapted; run `facewarden train` to take "
          "them out of the model (until then it still knows them)")
    for folder, names in zip(folders, (left, left_adapted)):
        if names:
            print(f"kept {folder}: it holds what facewarden did not write ({', '.join(names[:5])}"
                  f"{f' and {len(names) - 5} more' if names[5:] else ''})")
    return 0


def train(args) -> int:
    from ..model import train as training

    _quiet_tensorflow()
    p = paths.paths()
    meta = training.train(p, say=_err, verbose=2)
    faces = ", ".join(f"{person} {n}" for person, n in meta["enrolled_per_person"].items())
    print(
        f"owner model written to {p.models_dir} as version {meta['version']} (owner.h5, owner.tflite, owner.json) "
        f"from {meta['enrolled']} faces ({faces}); threshold {meta['threshold']} (grey frames {meta['threshold_grey']})"
    )
    for person, files in meta["adapted_files"].items():
        print(f"{person}: {len(files)} adapted face(s) added as templates"
              + (f" ({', '.join(str(f) for f in files)})" if files else ""))
    print(_daemon_switch(meta["version"]))
    return 0


def history(args) -> int:
    """Every published model version, oldest first; the current one starred."""
    from ..recognition import ownerfile

    p = paths.paths()
    versions = ownerfile.versions(p)
    if not versions:
        print(f"no published model versions in {p.models_dir}: run `facewarden train`")
        return 0
    for v in versions:
        try:
            meta = ownerfile.meta_of(v.path)
            about = f"{', '.join(meta.people)}; {meta.enrolled or '?'} faces"
        except UserError as e:
            about = f"unusable: {e}"
        print(f"{'*' if v.current else ' '} {v.name}  {about}")
    return 0


def rollback(args) -> int:
    """Make an earlier version current (default: the one before the current); a running daemon follows."""
    from ..recognition import ownerfile

    p = paths.paths()
    names = [v.name for v in ownerfile.versions(p)]
    current = ownerfile.current_version(p)
    if args.version is None:
        earlier = names[: names.index(current)] if current in names else []
        if not earlier:
            raise UserError("no earlier model version to roll back to (`facewarden model history` lists them)")
        target = earlier[-1]
    else:
        target = args.version
    ownerfile.activate(p, target)
    print(f"model {target} is current (was {current or 'none'})")
    print(_daemon_switch(target))
    return 0


SWITCH_WAIT_S = 15.0  # the daemon loads a model as it is published (within 5 s where it cannot watch the link)


def _daemon_switch(version: str) -> str:
    """Whether the running daemon took the model just published, said plainly."""
    from ..service import control

    status = control.poll()
    if status is None:
        return "no daemon is running; `facewarden run` starts with this model"
    deadline = time.monotonic() + SWITCH_WAIT_S
    while status is not None and status.get("model") != version and time.monotonic() < deadline:
        time.sleep(0.5)
        status = control.poll()
    if status is not None and status.get("model") == version:
        return f"the running daemon switched to model {version}"
    return (f"the running daemon has NOT switched to model {version} (its log says why); "
            "`facewarden reload` tries again")


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


def score(args) -> int:
    from ..recognition.verifier import Verifier

    verifier = Verifier.from_config(_config(), paths.paths())
    unreadable: list[str] = []
    for name, image in _readable(args.images, unreadable):
        verdict = verifier.score_image(image)
        if verdict is not None and verdict.score is not None and not math.isfinite(verdict.score):
            # A cosine is in [-1, 1]: anything else is a damaged model file, not a verdict (NaN is not even JSON).
            raise UserError(f"{name}: the owner model gives a non-finite score ({verdict.score}); it is damaged: "
                            "re-create the model with facewarden train")
        score = None if verdict is None or verdict.score is None else round(verdict.score, 6)
        _emit({"path": name, "face": verdict is not None, "score": score, "owner": bool(verdict and verdict.owner),
               "person": verdict.person if verdict is not None else None})
    return 2 if unreadable else 0


def embed(args) -> int:
    from ..model import encoder as enc
    from ..model.evaluate import STILL_DETECT_WIDTH, STILL_MIN_SCORE, still_crop
    from ..model.train import embed_batches, unit_embedding_model

    _quiet_tensorflow()
    detector = vision.Detector(STILL_DETECT_WIDTH, STILL_MIN_SCORE)
    embedder = None
    unreadable: list[str] = []
    for name, image in _readable(args.images, unreadable):
        crop = still_crop(image, detector)
        if crop is None:
            _emit({"path": name, "face": False, "embedding": None})
            continue
        embedder = embedder or unit_embedding_model(enc.load_encoder())
        vector = embed_batches(embedder, crop[None])[0]
        _emit({"path": name, "face": True, "embedding": [round(float(v), 6) for v in vector]})
    return 2 if unreadable else 0


def evaluate(args) -> int:
    from ..model.evaluate import evaluate_pairs

    _quiet_tensorflow()
    result = evaluate_pairs(Path(args.pairs), Path(args.images), Path(args.roc),
                            progress=lambda done, total: _err(f"\rdetecting faces: {done}/{total}",
                                                              end="\n" if done == total else ""))
    print(json.dumps(result))
    return 0
