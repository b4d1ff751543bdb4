"""A small two-stage OpenPose-style ONNX model shaped like tf2onnx's export of a Keras model.

Used by tests, benchmarks and demos of the rewrite passes when no trained model is at hand. It has what
tf2onnx leaves behind: an NHWC input followed by a Transpose to NCHW, NCHW->NHWC Transposes in front of
the outputs, constant sub-graphs (a transposed kernel, Identity, Shape->Gather->Reshape on a weight), a
symbolic batch/height/width, and stage-1 outputs next to the final ones. Weights are random but fixed by
``seed``; heatmaps go through a Sigmoid so peaks look like peaks.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_sdk.runtime.model_meta import METADATA_KEY, InputSpec, ModelMeta
from edge_sdk.runtime.skeleton import NUM_HEATMAPS, NUM_PAFS


def make_pose_model(channels: int = 16, height: int | None = None, width: int | None = None,
                    nhwc: bool = True, nhwc_outputs: bool = True, stage1_outputs: bool = True,
                    depth: int = 1, seed: int = 0, opset: int = 13, first_kernel: int = 3, zero_pad_first: bool = False,
                    meta_height: int = 64, meta_width: int = 96) -> onnx.ModelProto:
    """Build the model. ``height``/``width`` None -> symbolic dims (as tf2onnx exports Input(None, None, 3)).
    ``depth`` adds 3x3 conv layers per stride level (a heavier backbone for benchmarks); ``first_kernel`` 1
    gives an unpadded first convolution; ``zero_pad_first`` puts its padding in an explicit zero Pad."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    counter = [0]

    def name(prefix):
        counter[0] += 1
        return "{}_{}".format(prefix, counter[0])

    def const(array, prefix="const"):
        tensor = numpy_helper.from_array(np.asarray(array), name(prefix))
        inits.append(tensor)
        return tensor.name

    def conv(x, cin, cout, k=3, stride=1, relu=True, tf_kernel=False, explicit_pad=False):
        w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        if tf_kernel:  # tf2onnx may leave the HWIO kernel + a Transpose to OIHW
            w_name = name("kernel_oihw")
            nodes.append(helper.make_node("Transpose", [const(w.transpose(2, 3, 1, 0), "kernel_hwio")], [w_name],
                                          perm=[3, 2, 0, 1], name=name("Transpose_kernel")))
        else:
            w_name = const(w, "W")
        out = name("conv")
        pad = k // 2
        if explicit_pad and pad:  # Keras ZeroPadding2D + Conv2D(padding="valid")
            padded = name("zero_padded")
            nodes.append(helper.make_node("Pad", [x, const(np.array([0, 0, pad, pad, 0, 0, pad, pad], np.int64),
                                                           "pads")], [padded], mode="constant", name=name("Pad")))
            x, pad = padded, 0
        nodes.append(helper.make_node("Conv", [x, w_name, const(b, "B")], [out], kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[pad, pad, pad, pad], name=name("Conv")))
        if relu:
            r = name("relu")
            nodes.append(helper.make_node("Relu", [out], [r], name=name("Relu")))
            return r
        return out

    n_dim = "N"
    h_dim, w_dim = (height or "H"), (width or "W")
    if nhwc:
        image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [n_dim, h_dim, w_dim, 3])
        x = name("image_nchw")
        nodes.append(helper.make_node("Transpose", ["image"], [x], perm=[0, 3, 1, 2], name=name("Transpose_in")))
    else:
        image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [n_dim, 3, h_dim, w_dim])
        x = "image"
    # backbone: stride 8 in three stride-2 convs; the first kernel comes as HWIO + Transpose
    x = conv(x, 3, channels, k=first_kernel, tf_kernel=True, explicit_pad=zero_pad_first)
    cin = channels
    for _level in range(3):
        x = conv(x, cin, channels, stride=2)
        for _ in range(depth - 1):
            x = conv(x, channels, channels)
    ident = name("features")
    nodes.append(helper.make_node("Identity", [x], [ident], name=name("Identity")))
    features = ident

    # a constant sub-graph: the bias of the stage-1 heatmap head is reshaped by a Shape-derived shape
    def head(x, cin, cout, sigmoid):
        y = conv(x, cin, channels, relu=True)
        w = (rng.standard_normal((cout, channels, 1, 1)) * 0.3).astype(np.float32)
        b = (rng.standard_normal((1, cout)) * 0.3).astype(np.float32)
        b_name = const(b, "bias2d")
        shape_name, flat = name("bshape"), name("bias1d")
        nodes.append(helper.make_node("Shape", [const(np.zeros(cout, np.float32), "like")], [shape_name],
                                      name=name("Shape")))
        nodes.append(helper.make_node("Reshape", [b_name, shape_name], [flat], name=name("Reshape")))
        out = name("head")
        nodes.append(helper.make_node("Conv", [y, const(w, "W1x1"), flat], [out], kernel_shape=[1, 1],
                                      name=name("Conv")))
        if sigmoid:
            s = name("sigmoid")
            nodes.append(helper.make_node("Sigmoid", [out], [s], name=name("Sigmoid")))
            return s
        return out

    hm1 = head(features, channels, NUM_HEATMAPS, True)
    paf1 = head(features, channels, NUM_PAFS, False)
    cat = name("concat")
    nodes.append(helper.make_node("Concat", [features, hm1, paf1], [cat], axis=1, name=name("Concat")))
    x2 = conv(cat, channels + NUM_HEATMAPS + NUM_PAFS, channels)
    hm2 = head(x2, channels, NUM_HEATMAPS, True)
    paf2 = head(x2, channels, NUM_PAFS, False)

    outputs = []
    map_h = None if height is None else height // 8
    map_w = None if width is None else width // 8

    def emit(tensor, out_name, c):
        if nhwc_outputs:
            nodes.append(helper.make_node("Transpose", [tensor], [out_name], perm=[0, 2, 3, 1],
                                          name=name("Transpose_out")))
            shape = [n_dim, map_h or "h8", map_w or "w8", c]
        else:
            nodes.append(helper.make_node("Identity", [tensor], [out_name], name=name("Identity_out")))
            shape = [n_dim, c, map_h or "h8", map_w or "w8"]
        outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, shape))

    emit(hm2, "heatmaps", NUM_HEATMAPS)
    emit(paf2, "pafs", NUM_PAFS)
    if stage1_outputs:
        emit(hm1, "stage1_heatmaps", NUM_HEATMAPS)
        emit(paf1, "stage1_pafs", NUM_PAFS)

    graph = helper.make_graph(nodes, "tiny_openpose", [image], outputs, initializer=inits)
    model = helper.make_model(graph, producer_name="tf2onnx", opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    meta = ModelMeta(InputSpec(height=height or meta_height, width=width or meta_width,
                               layout="NHWC" if nhwc else "NCHW"), model="synthetic-tiny-openpose",
                     extra={"output_layout": "NHWC" if nhwc_outputs else "NCHW"})
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    return model
