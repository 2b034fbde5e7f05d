"""Would a fully int8 encoder pay? SFace with every activation in int8, its PReLUs re-expressed as
alpha * x + (1 - alpha) * relu(x) (a multiply, a ReLU, a multiply and an add, which TFLite quantises:
a PReLU in int8 is left out of XNNPACK), against the encoder as `model/encoder.export_tflite` makes
it (int8 weights, float activations).

Calibrated on aligned faces of 300 LFW people, measured on 300 others: CPU ms a face with one
thread (warm, median of 120 runs), how many XNNPACK partitions the graph splits into, and the
cosine of each embedding to the float32 model's (1 is the same embedding).

    .venv/bin/python bench/int8_encoder.py
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from facewarden.model import encoder
from facewarden.recognition import vision

REPO = Path(__file__).resolve().parent.parent
FACES = Path(os.environ.get("FACEWARDEN_FACES", REPO.parent / "shared" / "data" / "faces"))


def aligned(people: list[Path], detector: vision.Detector) -> np.ndarray:
    """Each person's first photo, its subject aligned as the daemon aligns faces (RGB, float32)."""
    crops = []
    for person in people:
        image = cv2.imread(str(sorted(person.glob("*.jpg"))[0]))
        face = vision.nearest_centre(detector(image), image.shape)
        if face is not None:
            crops.append(vision.align(image, face))
    return np.stack(crops).astype(np.float32)


def re_expressed(model):
    """The same network, each PReLU as alpha * x + (1 - alpha) * relu(x) (SFace is one chain of layers)."""
    import keras

    class Mix(keras.layers.Layer):
        def __init__(self, alpha: np.ndarray, **kwargs):
            super().__init__(**kwargs)
            self.alpha = np.asarray(alpha, np.float32).reshape(1, 1, 1, -1)

        def call(self, x):
            return x * self.alpha + keras.ops.relu(x) * (1.0 - self.alpha)

    inputs = keras.Input(model.input_shape[1:])
    x = inputs
    for layer in model.layers[1:]:
        x = Mix(layer.get_weights()[0], name=f"{layer.name}_mix")(x) if isinstance(layer, keras.layers.PReLU) else layer(x)
    return keras.Model(inputs, x)


def full_int8(model, calibration: np.ndarray) -> bytes:
    """The model as a .tflite with int8 weights and activations (float32 in and out)."""
    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved_model:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda x: model(x, training=False),
                             input_signature=[tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)])
        archive.write_out(saved_model, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calibration[i:i + 1]] for i in range(len(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.float32
        return converter.convert()


def measured(flatbuffer: bytes, faces: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Embeddings of `faces`, median CPU ms a face (one thread, warm) and XNNPACK partitions."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
    interpreter.allocate_tensors()
    into, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def embed(face: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(into, face[None])
        interpreter.invoke()
        return interpreter.get_tensor(out)[0].copy()

    embeddings = np.stack([embed(f) for f in faces])
    times = []
    for _ in range(3):
        for face in faces[:40]:
            started = time.process_time()
            embed(face)
            times.append(time.process_time() - started)
    ops = collections.Counter(op["op_name"] for op in interpreter._get_ops_details())
    return embeddings, float(np.median(times)) * 1e3, ops["DELEGATE"]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main() -> int:
    people = sorted(p for p in (FACES / "lfw-dev").glob("*") if p.is_dir())
    if len(people) < 600:
        sys.exit(f"needs the shared LFW faces at {FACES}")
    detector = vision.Detector()
    calibration, faces = aligned(people[:300], detector), aligned(people[300:600], detector)
    model = encoder.load_encoder()
    reference = encoder.embed(model, faces)
    mixed = re_expressed(model)
    print(f"{len(calibration)} faces to calibrate, {len(faces)} others measured; the re-expressed float model "
          f"differs from SFace by at most {np.abs(encoder.embed(mixed, faces) - reference).max():.1e}")
    shipped = encoder.tflite_bytes(model, (1, *model.input_shape[1:]), int8_weights=True)
    for name, flatbuffer in (("int8 weights (as shipped)", shipped), ("fully int8, PReLU re-expressed", full_int8(mixed, calibration))):
        embeddings, ms, partitions = measured(flatbuffer, faces)
        c = cosine(embeddings, reference)
        print(f"{name:31s}: {ms:6.2f} CPU-ms a face, {partitions} XNNPACK partition(s); cosine to float32: "
              f"min {c.min():.4f}, 1st percentile {np.percentile(c, 1):.4f}, median {np.median(c):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
