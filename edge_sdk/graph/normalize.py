"""Pass `normalize`: fold the input normalisation into the first convolution(s) so the device feeds raw pixels.

The model was trained on ``(pixel * scale - mean[c]) / std[c]`` in RGB order. Instead of computing that on
the device CPU for every pixel of every frame, the per-channel factor ``scale / std[c]`` is multiplied into
the first convolution's weights and the channel order is folded into the weight order, so the input becomes
the camera frame as OpenCV delivers it: BGR, HWC, raw 0..255 values (uint8 where TensorRT accepts uint8 I/O,
i.e. TensorRT >= 8.5; float32 raw pixels otherwise). ``preprocess_frame`` then only letterboxes: no
normalisation, no float conversion, no HWC->CHW transpose, and 4x fewer bytes to copy for uint8.

The mean: with no padding it folds into the bias exactly. A padded convolution sees zeros at the border,
which in the trained domain means "the mean colour"; to stay exact there the mean is subtracted by one
small per-channel Sub in front of the convolution (on the GPU) instead of being folded into the bias.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edge_sdk.errors import ModelError
from edge_sdk.graph.common import to_graph, to_model
from edge_sdk.runtime.model_meta import ModelMeta


def _has_padding(conv: gs.Node) -> bool:
    auto_pad = conv.attrs.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return True
    return any(int(p) != 0 for p in conv.attrs.get("pads", []))


def _is_spatial_zero_pad(node: gs.Node) -> bool:
    """A constant-mode Pad of the H/W axes with value 0 (Keras ZeroPadding2D in front of a 'valid' conv)."""
    mode = node.attrs.get("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if mode != "constant":
        return False
    if len(node.inputs) > 1:  # opset >= 11: pads (and value) are inputs
        if not isinstance(node.inputs[1], gs.Constant) or (len(node.inputs) > 3 and node.inputs[3] is not None
                                                           and getattr(node.inputs[3], "name", "")):
            return False
        pads = [int(v) for v in node.inputs[1].values]
        value = node.inputs[2] if len(node.inputs) > 2 else None
        if value is not None and getattr(value, "name", ""):
            if not isinstance(value, gs.Constant) or float(np.asarray(value.values).ravel()[0]) != 0.0:
                return False
    else:
        pads = [int(v) for v in node.attrs.get("pads", [])]
        if float(node.attrs.get("value", 0.0)) != 0.0:
            return False
    return len(pads) == 8 and pads[0] == pads[1] == pads[4] == pads[5] == 0


def fold_input_normalization(model: onnx.ModelProto, meta: ModelMeta, dtype: str = "uint8", layout: str = "NHWC",
                             color: str = "BGR", on_unsupported: str = "error"
                             ) -> tuple[onnx.ModelProto, ModelMeta, list[str]]:
    """``dtype``: uint8 | float32 raw pixels; ``layout``: NHWC | NCHW of the new input; ``color``: BGR | RGB.
    ``on_unsupported``: "error" (ModelError) or "skip" (model unchanged, the reason in the changes) when the
    input does not feed convolutions the normalisation can fold into."""
    try:
        return _fold(model, meta, dtype, layout, color)
    except ModelError as exc:
        if on_unsupported != "skip":
            raise
        return model, meta, ["skipped, the CPU keeps normalising frames: {}".format(
            str(exc).split(": ", 1)[-1])]


PREFIX = "edge_sdk_raw"


def _fold(model: onnx.ModelProto, meta: ModelMeta, dtype: str, layout: str, color: str
          ) -> tuple[onnx.ModelProto, ModelMeta, list[str]]:
    """The steps: check, find the convolutions, make the raw input, fold into each conv, say so in the metadata."""
    _check_options(dtype, layout, color)
    spec = meta.input
    if spec.dtype == "uint8" or meta.extra.get("normalization_folded"):
        return model, meta, ["input already takes raw pixels; nothing to fold"]
    graph = to_graph(model)
    inp = _normalised_input(graph, spec)
    paths = _conv_paths(inp)
    order = [2, 1, 0] if color != spec.color else [0, 1, 2]  # raw channel i = trained channel order[i]
    gain = (np.float32(spec.scale) / np.asarray(spec.std, dtype=np.float32))[order]
    raw_mean = (np.asarray(spec.mean, dtype=np.float32) / np.float32(spec.scale))[order]  # the zero point, raw
    raw, x = _raw_input(graph, spec.name, inp.shape, dtype, layout)
    centred = _mean_subtracted(graph, x, raw_mean, inp.shape) \
        if any(pad is not None or _has_padding(conv) for conv, pad in paths) else None
    changes = [_fold_into_conv(conv, pad, x, centred, order, gain, raw_mean) for conv, pad in paths]
    inp.outputs.clear()
    graph.inputs = [raw if t is inp else t for t in graph.inputs]
    graph.cleanup().toposort()
    changes.insert(0, "input '{}': {} {} raw pixels ({}), was float32 NCHW {} normalised".format(
        spec.name, dtype, layout, color, spec.color))
    _record_in_meta(meta, dtype, layout, color)
    return to_model(graph, model, meta), meta, changes


def _check_options(dtype: str, layout: str, color: str) -> None:
    if dtype not in ("uint8", "float32") or layout not in ("NHWC", "NCHW") or color not in ("BGR", "RGB"):
        raise ModelError("normalize: dtype must be uint8|float32, layout NHWC|NCHW, color BGR|RGB "
                         "(got {}, {}, {})".format(dtype, layout, color))


def _normalised_input(graph: gs.Graph, spec) -> gs.Variable:
    inputs = [t for t in graph.inputs if t.name == spec.name] or graph.inputs[:1]
    inp = inputs[0]
    if spec.layout != "NCHW" or len(inp.shape or []) != 4 or inp.shape[1] != 3:
        raise ModelError("normalize: the input '{}' must be NCHW [N,3,H,W] (got {} {}); run the 'transposes' "
                         "pass first".format(inp.name, spec.layout, inp.shape))
    return inp


def _conv_paths(inp: gs.Variable) -> list[tuple[gs.Node, gs.Node | None]]:
    """(conv, the zero Pad in front of it or None) for every consumer of the input; refuses anything else."""
    paths = []
    for node in list(inp.outputs):
        if node.op == "Pad" and _is_spatial_zero_pad(node):
            paths += [(conv, node) for conv in node.outputs[0].outputs]
        else:
            paths.append((node, None))
    for node, _pad in paths:
        if node.op != "Conv" or not isinstance(node.inputs[1], gs.Constant) or int(node.attrs.get("group", 1)) != 1 \
                or (len(node.inputs) > 2 and not isinstance(node.inputs[2], gs.Constant)):
            raise ModelError("normalize: input '{}' feeds a {} node '{}', not a plain Conv with constant weights; "
                             "cannot fold the normalisation (run 'fold' first, or leave out 'normalize')"
                             .format(inp.name, node.op, node.name))
    return paths


def _raw_input(graph: gs.Graph, name: str, shape: list, dtype: str, layout: str) -> tuple[gs.Variable, gs.Tensor]:
    """The new raw-pixel input and the float32 NCHW tensor made from it (a Cast and a Transpose as needed)."""
    n, _, h, w = shape
    raw = gs.Variable(name, dtype=np.uint8 if dtype == "uint8" else np.float32,
                      shape=[n, h, w, 3] if layout == "NHWC" else [n, 3, h, w])
    x: gs.Tensor = raw
    if dtype == "uint8":  # cast first: TensorRT takes UINT8 I/O only into a cast (IIdentityLayer)
        as_float = gs.Variable(PREFIX + "_float", dtype=np.float32, shape=list(raw.shape))
        graph.nodes.append(gs.Node("Cast", PREFIX + "_cast", {"to": onnx.TensorProto.FLOAT}, [x], [as_float]))
        x = as_float
    if layout == "NHWC":
        nchw = gs.Variable(PREFIX + "_nchw", dtype=np.float32, shape=[n, 3, h, w])
        graph.nodes.append(gs.Node("Transpose", PREFIX + "_transpose", {"perm": [0, 3, 1, 2]}, [x], [nchw]))
        x = nchw
    return raw, x


def _mean_subtracted(graph: gs.Graph, x: gs.Tensor, raw_mean: np.ndarray, shape: list) -> gs.Variable:
    """One Sub of the mean, shared by every padded convolution."""
    n, _, h, w = shape
    centred = gs.Variable(PREFIX + "_centred", dtype=np.float32, shape=[n, 3, h, w])
    graph.nodes.append(gs.Node("Sub", PREFIX + "_sub_mean", inputs=[
        x, gs.Constant(PREFIX + "_mean", raw_mean.reshape(1, 3, 1, 1).astype(np.float32))], outputs=[centred]))
    return centred


def _fold_into_conv(node: gs.Node, pad: gs.Node | None, x: gs.Tensor, centred: gs.Variable | None,
                    order: list[int], gain: np.ndarray, raw_mean: np.ndarray) -> str:
    """Scale one conv's weights (channel order folded in); the mean goes into its bias, or, for a padded conv,
    the shared Sub feeds it. Returns the change line."""
    weight = node.inputs[1].values.astype(np.float32)[:, order]
    bias = node.inputs[2].values.astype(np.float32) if len(node.inputs) > 2 else \
        np.zeros(weight.shape[0], np.float32)
    new_w = weight * gain[None, :, None, None]
    if pad is not None or _has_padding(node):
        conv_in, new_b = centred, bias
        how = "weights scaled, mean subtracted by one Sub (padded conv)"
        if pad is not None:
            pad.inputs[0] = centred  # the zero Pad now pads centred pixels, as in training
            conv_in = node.inputs[0]
            how += " in front of its zero Pad"
    else:
        conv_in = x
        new_b = bias - (new_w * raw_mean[None, :, None, None]).sum(axis=(1, 2, 3))
        how = "weights scaled, mean folded into the bias"
    node.inputs[0] = conv_in
    node.inputs[1] = gs.Constant(node.inputs[1].name + "_raw", new_w.astype(np.float32))
    bias_const = gs.Constant(node.name + "_bias_raw", new_b.astype(np.float32))
    if len(node.inputs) > 2:
        node.inputs[2] = bias_const
    else:
        node.inputs.append(bias_const)
    return "Conv '{}': {}".format(node.name, how)


def _record_in_meta(meta: ModelMeta, dtype: str, layout: str, color: str) -> None:
    """The input now takes raw pixels; what was folded is kept so the change can be explained and checked."""
    spec = meta.input
    meta.extra["normalization_folded"] = {"scale": spec.scale, "mean": list(spec.mean), "std": list(spec.std),
                                          "color": spec.color}
    spec.dtype, spec.layout, spec.color = dtype, layout, color
    spec.scale, spec.mean, spec.std = 1.0, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
