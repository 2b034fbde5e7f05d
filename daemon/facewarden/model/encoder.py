"""The SFace face encoder, ported from its ONNX file to a Keras 3 functional model, built once and cached.

SFace (OpenCV model zoo, `assets.SFACE`) is a MobileNetV1 trained on faces: a 3x3 conv, 13
depthwise-separable blocks to 7x7x1024, then BN, Flatten, Dense(128), BN. The zoo ships it as int8
block-quantized weights; we read the graph with the `onnx` package, dequantize with numpy and rebuild
it from standard Keras layers only, so the model (and any owner model on top of it) reloads with
plain `keras.models.load_model(path, compile=False)`, no custom objects.

Input: (N, 112, 112, 3) RGB 0..255 as `vision.align` gives it; output: the unnormalised 128-d embedding.
This module imports TensorFlow/Keras: the daemon never imports it (it runs the exported .tflite
through `runtime`).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import numpy as np

from .. import paths
from ..errors import UserError
from ..recognition import assets

INPUT_SIZE = 112
EMBEDDING_SIZE = 128


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int, block_size: int) -> np.ndarray:
    """ONNX opset-21 DequantizeLinear with blocked quantization: one scale and zero point per
    `block_size` consecutive elements along `axis` (the last block may be short)."""
    n = q.shape[axis]
    scale = np.repeat(scale, block_size, axis=axis).take(np.arange(n), axis=axis)
    zero_point = np.repeat(zero_point, block_size, axis=axis).take(np.arange(n), axis=axis)
    return ((q.astype(np.float32) - zero_point.astype(np.float32)) * scale).astype(np.float32)


class OnnxGraph:
    """The ONNX graph's constants, with every DequantizeLinear/Reshape weight chain folded to float32."""

    def __init__(self, onnx_path: Path):
        import onnx
        from onnx import numpy_helper

        try:
            model = onnx.load(str(onnx_path))
        except Exception as e:  # onnx raises DecodeError and friends for a damaged file
            raise UserError(f"cannot read the encoder model {onnx_path}: {e}") from None
        self.nodes = list(model.graph.node)
        self.values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for node in self.nodes:
            if node.op_type == "DequantizeLinear":
                q, scale, zero_point = (self.values[i] for i in node.input)
                attrs = self.attrs(node)
                self.values[node.output[0]] = dequantize(q, scale, zero_point, attrs["axis"], attrs["block_size"])
            elif node.op_type == "Reshape" and node.input[0] in self.values:
                data, shape = (self.values[i] for i in node.input)
                self.values[node.output[0]] = data.reshape(shape)
            elif node.op_type == "Constant":
                self.values[node.output[0]] = numpy_helper.to_array(self.attrs(node)["value"])

    @staticmethod
    def attrs(node) -> dict:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def compute_nodes(self):
        """The nodes that act on activations (the weight-folding ones are done)."""
        return [n for n in self.nodes if n.output[0] not in self.values]


def build(onnx_path: Path | None = None):
    """Build the Keras port of SFace from its (checked) ONNX file."""
    import keras
    from keras import layers

    graph = OnnxGraph(onnx_path or assets.path(assets.SFACE))
    v = graph.values
    inp = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="rgb")
    x = inp
    for node in graph.compute_nodes():
        op, name, attrs = node.op_type, node.name, graph.attrs(node)
        if op == "Sub":  # (x - 127.5) * 0.0078125, folded into one Rescaling: x * s + (-127.5 * s)
            mean = float(v[node.input[1]][0])
        elif op == "Mul":
            scale = float(v[node.input[1]][0])
            x = layers.Rescaling(scale, offset=-mean * scale, name="normalise")(x)
        elif op == "Conv":
            w = v[node.input[1]]  # (out, in/group, kh, kw)
            stride = attrs["strides"][0]
            kernel = attrs["kernel_shape"][0]
            pad = attrs["pads"][0]
            # TF's 'same' pads stride-2 convs asymmetrically (0 before, 1 after); ONNX pads 1 on
            # both sides, so pad explicitly and convolve 'valid'.
            if pad:
                x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
            if attrs["group"] == 1:
                conv = layers.Conv2D(w.shape[0], kernel, strides=stride, padding="valid", use_bias=False, name=name)
                conv.build(x.shape)
                conv.set_weights([w.transpose(2, 3, 1, 0)])
            else:
                conv = layers.DepthwiseConv2D(kernel, strides=stride, padding="valid", use_bias=False, name=name)
                conv.build(x.shape)
                conv.set_weights([w.transpose(2, 3, 0, 1)])
            x = conv(x)
        elif op == "BatchNormalization":
            # epsilons differ: 1e-3 in the backbone, 2e-5 in the head; take each node's own.
            bn = layers.BatchNormalization(epsilon=attrs["epsilon"], momentum=attrs["momentum"], name=name)
            bn.build(x.shape)
            bn.set_weights([v[i] for i in node.input[1:]])
            x = bn(x)
        elif op == "PRelu":
            prelu = layers.PReLU(shared_axes=[1, 2], name=name)
            prelu.build(x.shape)
            prelu.set_weights([v[node.input[1]].reshape(1, 1, -1)])
            x = prelu(x)
        elif op == "Dropout":
            # Identity at inference. Left out on purpose: a frozen encoder under an owner head that is
            # being trained would otherwise drop features at random.
            pass
        elif op == "Flatten":
            flat_hwc = tuple(x.shape[1:])
            x = layers.Flatten(name=name)(x)
        elif op == "Gemm":
            w, b = v[node.input[1]], v[node.input[2]]  # transB=1: w is (out, C*H*W) in NCHW order
            h, wd, c = flat_hwc
            # Our Flatten runs over NHWC: reorder the rows of the kernel to match.
            kernel = w.reshape(-1, c, h, wd).transpose(2, 3, 1, 0).reshape(h * wd * c, -1)
            dense = layers.Dense(w.shape[0], name=name)
            dense.build(x.shape)
            dense.set_weights([kernel, b])
            x = dense(x)
        else:
            raise UserError(f"the encoder model has an unexpected {op} node ({name}): is it SFace?")
    return keras.Model(inp, x, name="sface")


def cache_file() -> Path:
    """Where the built encoder is cached; keyed by the ONNX file's sha256 so an update rebuilds it."""
    return paths.paths().cache_dir / "encoder" / f"sface-{assets.SFACE.sha256[:16]}.h5"


def save_private(model, path: Path) -> Path:
    """Save a Keras model as .h5, 0600 in a 0700 directory, atomically (never a half-written model)."""
    paths.private_dir(path.parent)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.h5")
    try:
        model.save(tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _load_cached(path: Path):
    """The cached encoder, or None when the file is missing, damaged or not our encoder."""
    import keras

    if not path.is_file():
        return None
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception:  # truncated or foreign file: h5py/keras raise many kinds; we just rebuild
        return None
    if tuple(model.input_shape[1:]) != (INPUT_SIZE, INPUT_SIZE, 3) or model.output_shape[-1] != EMBEDDING_SIZE:
        return None
    return model


@cache
def load_encoder():
    """The Keras port of SFace, once per process: read from the cache file, or built (~10 s) and
    cached there first. Later calls return the same model even if FACEWARDEN_HOME changed (tests)."""
    path = cache_file()
    model = _load_cached(path)
    if model is None:
        model = build()
        save_private(model, path)
    return model


def embed(model, faces_rgb: np.ndarray) -> np.ndarray:
    """Embeddings (N, 128) of aligned 112x112 RGB faces (N, 112, 112, 3), through a Keras model."""
    return np.asarray(model.predict_on_batch(np.asarray(faces_rgb, dtype=np.float32)), dtype=np.float32)


def export_tflite(model, path: Path) -> Path:
    """Convert a Keras model to a .tflite file that `runtime.TFLiteModel` runs without TensorFlow,
    written 0600 in a 0700 directory.

    With int8 weights (dynamic range: activations stay float, PReLU too) where XNNPACK runs them
    (`_float_depthwise`): the encoder runs faster than in float32 on a CPU with VNNI
    (bench/bench_speed.py), its packed weights take a quarter of the memory, and the embeddings
    keep float32's accuracy (tests/test_encoder.py, bench/bench_accuracy.py). The batch dimension
    stays free (the file runs a batch of one by default; `runtime.TFLiteModel` resizes for more).
    """
    flatbuffer = tflite_bytes(model, (None, *model.input_shape[1:]), int8_weights=True)
    return paths.write_private(Path(path), flatbuffer)


def tflite_bytes(model, input_shape: tuple[int | None, ...], int8_weights: bool) -> bytes:
    """A Keras model as a .tflite flatbuffer taking float32 input of `input_shape` (None: free), its
    weights int8 (dynamic range, no representative data) or float32."""
    import tempfile

    import keras
    import tensorflow as tf

    # Keras 3's own route (keras.export.ExportArchive -> SavedModel -> converter), but builtin ops
    # only: LiteRT in the daemon has no TensorFlow "flex" ops to fall back on.
    with tempfile.TemporaryDirectory() as saved_model:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda x: model(x, training=False),
                             input_signature=[tf.TensorSpec(input_shape, tf.float32)])
        archive.write_out(saved_model, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if int8_weights:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            return _float_depthwise(converter.convert())
        return converter.convert()


def _float_depthwise(flatbuffer: bytes) -> bytes:
    """The flatbuffer with its depthwise convolutions' int8 weights back in float32 (the same values).

    XNNPACK runs dynamic-range int8 CONV_2D and FULLY_CONNECTED, but not DEPTHWISE_CONV_2D: an int8
    depthwise kernel is left to TFLite's own hybrid kernel and splits the graph into XNNPACK
    partitions around it. Their weights are small: in float32 the whole graph runs in XNNPACK."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    for graph in model.subgraphs:
        for op in graph.operators:
            if codes[op.opcodeIndex] != schema.BuiltinOperator.DEPTHWISE_CONV_2D:
                continue
            weights = graph.tensors[op.inputs[1]]
            if weights.type != schema.TensorType.INT8:
                continue
            q, buffer = weights.quantization, model.buffers[weights.buffer]
            axis = [1] * len(weights.shape)
            axis[q.quantizedDimension] = -1
            values = np.frombuffer(bytes(buffer.data), np.int8).reshape(weights.shape).astype(np.float32)
            zero, scale = (np.asarray(v, np.float32).reshape(axis) for v in (q.zeroPoint, q.scale))
            values = (values - zero) * scale
            buffer.data = np.frombuffer(values.tobytes(), np.uint8)
            weights.type, weights.quantization = schema.TensorType.FLOAT32, None
    return flatbuffer_utils.convert_object_to_bytearray(model)
