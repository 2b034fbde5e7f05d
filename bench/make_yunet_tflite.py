"""Make the face detector file that ships in the package (daemon/facewarden/data/yunet.tflite).

YuNet (OpenCV model zoo, `assets.YUNET`, int8 block-quantized ONNX) rebuilt from standard Keras
layers with the weights dequantized to float32 (as `model/encoder.py` ports SFace), and exported to
a float32 .tflite that LiteRT runs with XNNPACK: the same detections as OpenCV's FaceDetectorYN (the
test suite compares them on real faces), for about two thirds of its CPU time. Dynamic-range int8
weights were tried: no faster here, and boxes up to 4 px off on small inputs.

Layout: input (1, H, W, 3) float32 BGR 0..255, H and W free multiples of 32; output (1, anchors, 16):
per anchor [cls, obj, bbox(4), kps(10)], strides 8, 16 and 32 in turn, each row-major over its grid
(`vision.YuNet` decodes it).

    python bench/make_yunet_tflite.py            # build, check against OpenCV, print the sha256
    python bench/make_yunet_tflite.py --write    # and write it into the package (then set assets.YUNET_LITE's sha256)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))

import numpy as np  # noqa: E402

from facewarden.model.encoder import OnnxGraph, tflite_bytes  # noqa: E402
from facewarden.recognition import assets, vision  # noqa: E402

HEADS = (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))


def build():
    """YuNet as a Keras model: one layer per ONNX node, the four heads of each stride concatenated."""
    import keras
    import tensorflow as tf
    from keras import layers

    graph = OnnxGraph(assets.path(assets.YUNET))
    v = graph.values
    inp = keras.Input((None, None, 3), batch_size=1, name="bgr")
    t = {"input": inp}
    for node in graph.compute_nodes():
        op, name, attrs = node.op_type, node.name, graph.attrs(node)
        x = t[node.input[0]]
        if op == "Conv":
            w, b = v[node.input[1]], v[node.input[2]]  # (out, in/group, kh, kw)
            kernel, stride, pad = attrs["kernel_shape"][0], attrs["strides"][0], attrs["pads"][0]
            padding = "valid"
            if pad and stride == 1:
                padding = "same"  # a 3x3 stride-1 conv: TF pads (1, 1) as ONNX does
            elif pad:  # TF's 'same' would pad a stride-2 conv (0, 1); ONNX pads (1, 1)
                x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
            if attrs["group"] == 1:
                conv = layers.Conv2D(w.shape[0], kernel, strides=stride, padding=padding, name=name)
                conv.build(x.shape)
                conv.set_weights([w.transpose(2, 3, 1, 0), b])
            else:
                conv = layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, name=name)
                conv.build(x.shape)
                conv.set_weights([w.transpose(2, 3, 0, 1), b])
            y = conv(x)
        elif op == "Relu":
            y = layers.ReLU(name=name)(x)
        elif op == "Sigmoid":
            y = layers.Activation("sigmoid", name=name)(x)
        elif op == "MaxPool":
            y = layers.MaxPooling2D(2, name=name)(x)
        elif op == "Add":
            y = layers.Add(name=name)([x, t[node.input[1]]])
        elif op == "Resize":  # nearest x2 as channels repeated 4 times, then depth-to-space:
            # UpSampling2D lowers to run-time shape ops that XNNPACK does not take.
            channels = x.shape[-1]
            y = layers.Concatenate(name=f"{name}_repeat")([x, x, x, x])
            y = layers.Lambda(lambda z: tf.nn.depth_to_space(z, 2), output_shape=(None, None, channels), name=name)(y)
        elif op == "Transpose":  # NCHW -> NHWC before the heads' reshape: Keras is NHWC already
            y = x
        elif op == "Reshape":  # (1, -1, C), the batch fixed (Keras' Reshape computes it at run time)
            c = int(v[node.input[1]][2])
            y = layers.Lambda(lambda z, c=c: tf.reshape(z, (1, -1, c)), output_shape=(None, c), name=name)(x)
        else:
            raise SystemExit(f"make_yunet_tflite: unexpected {op} node {name}: is it YuNet 2023mar?")
        t[node.output[0]] = y
    strides = [layers.Concatenate(name=f"heads_{s}")([t[f"{k}_{s}"] for k, _ in HEADS]) for s in vision.YuNet.STRIDES]
    return keras.Model(inp, layers.Concatenate(axis=1, name="heads")(strides), name="yunet")


def check(flatbuffer: bytes) -> float:
    """The largest difference between the .tflite's heads and the ONNX file's run by OpenCV's dnn."""
    import cv2
    from ai_edge_litert.interpreter import Interpreter

    net = cv2.dnn.readNet(str(assets.path(assets.YUNET)))
    names = [f"{k}_{s}" for k, _ in HEADS for s in vision.YuNet.STRIDES]
    worst = 0.0
    for h, w in ((256, 320), (96, 96), (64, 128)):
        image = np.random.default_rng(h * w).uniform(0, 255, (h, w, 3)).astype(np.float32)
        net.setInput(cv2.dnn.blobFromImage(image))
        outs = dict(zip(names, net.forward(names)))
        expected = np.concatenate([np.concatenate([outs[f"{k}_{s}"].reshape(1, -1, c) for k, c in HEADS], -1)
                                   for s in vision.YuNet.STRIDES], 1)
        lite = Interpreter(model_content=flatbuffer, num_threads=1)
        lite.resize_tensor_input(0, [1, h, w, 3], strict=True)
        lite.allocate_tensors()
        lite.set_tensor(lite.get_input_details()[0]["index"], image[None])
        lite.invoke()
        worst = max(worst, float(np.abs(lite.get_tensor(lite.get_output_details()[0]["index"]) - expected).max()))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write it into daemon/facewarden/data/")
    args = parser.parse_args()
    flatbuffer = tflite_bytes(build(), (1, None, None, 3), int8_weights=False)
    worst = check(flatbuffer)
    print(f"yunet.tflite: {len(flatbuffer)} bytes, sha256 {hashlib.sha256(flatbuffer).hexdigest()}")
    print(f"largest difference from OpenCV's run of the ONNX file: {worst:.2e}")
    if worst > 1e-4:
        print("make_yunet_tflite: the port does not match the ONNX file", file=sys.stderr)
        return 1
    if args.write:
        target = Path(assets.__file__).resolve().parents[1] / assets.YUNET_LITE.member
        target.write_bytes(flatbuffer)
        print(f"written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
