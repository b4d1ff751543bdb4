"""Pass `chanpad`: zero-pad a Concat's channels to a multiple of 16 where only convolutions read it.

ONNX Runtime's CPU provider runs a convolution in its fast blocked layout (NCHWc, 8 or 16 channels a block)
only when the input channels fill whole blocks; otherwise it falls back to im2col + GEMM, and a depthwise
convolution then costs about ten times as much. tf-pose-estimation's refinement stages read
concat(pafs 38, heatmaps 19, features 64) = 121 channels with a depthwise 3x3 and then a pointwise 1x1
(10 of each): the slowest convolutions of the whole model. Appending 7 zero channels to the Concat, 7
zero filters to each depthwise convolution (group 128) and 7 zero input columns to the pointwise one it
feeds changes no output: the extra channels are 0 and are multiplied by 0. The pass fires only where every
reader of the Concat is such a convolution (depthwise -> group-1 convolution, or a group-1 convolution),
every weight is a constant and the shapes are static.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edge_sdk.graph.common import to_graph, to_model
from edge_sdk.runtime.model_meta import ModelMeta

BLOCK = 16  # AVX-512's NCHWc block; a multiple of AVX2's 8


def _attr(node: gs.Node, name: str, default):
    return node.attrs.get(name, default)


def _conv_weight(node: gs.Node) -> np.ndarray | None:
    if node.op != "Conv" or len(node.inputs) < 2 or not isinstance(node.inputs[1], gs.Constant):
        return None
    if len(node.inputs) > 2 and not isinstance(node.inputs[2], gs.Constant):
        return None
    return np.asarray(node.inputs[1].values)


def _dense_reader(node: gs.Node, channels: int) -> bool:
    """A group-1 Conv with constant weights that reads ``channels`` channels."""
    w = _conv_weight(node)
    return w is not None and w.ndim == 4 and int(_attr(node, "group", 1)) == 1 and w.shape[1] == channels


def _depthwise_then_dense(node: gs.Node, channels: int) -> bool:
    """A depthwise Conv over ``channels`` whose every reader is a group-1 Conv (and not a graph output)."""
    w = _conv_weight(node)
    if w is None or w.ndim != 4 or int(_attr(node, "group", 1)) != channels or w.shape[:2] != (channels, 1):
        return False
    return bool(node.outputs[0].outputs)


def _pad_axis(values: np.ndarray, axis: int, extra: int) -> np.ndarray:
    widths = [(0, 0)] * values.ndim
    widths[axis] = (0, extra)
    return np.pad(values, widths)


def _plan(concat: gs.Node, outputs: set[str]):
    """(channels, extra, depthwise readers, dense readers) if the Concat can be padded, else None."""
    out = concat.outputs[0]
    if int(_attr(concat, "axis", 0)) not in (1, -3) or out.name in outputs or not out.outputs:
        return None
    shape = out.shape
    if not (shape and len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape)):
        return None
    channels = shape[1]
    extra = -channels % BLOCK
    if extra == 0:
        return None
    depthwise, dense = [], []
    for reader in out.outputs:
        if _dense_reader(reader, channels):
            dense.append(reader)
        elif _depthwise_then_dense(reader, channels) and reader.outputs[0].name not in outputs \
                and all(_dense_reader(r, channels) for r in reader.outputs[0].outputs):
            depthwise.append(reader)
        else:
            return None
    return channels, extra, depthwise, dense


class _Padder:
    """Zero-padded copies of constants, one per (constant, axis, extra): a weight shared by two convolutions
    stays shared."""

    def __init__(self):
        self.done: dict[tuple, gs.Constant] = {}

    def __call__(self, node: gs.Node, index: int, axis: int, extra: int) -> None:
        const = node.inputs[index]
        key = (const.name, axis, extra)
        if key not in self.done:
            self.done[key] = gs.Constant("{}/chanpad{}".format(const.name, axis),
                                         _pad_axis(np.asarray(const.values), axis, extra))
        node.inputs[index] = self.done[key]


def pad_concat_channels(model: onnx.ModelProto, meta: ModelMeta) -> tuple[onnx.ModelProto, ModelMeta, list[str]]:
    graph = to_graph(onnx.shape_inference.infer_shapes(model))
    outputs = {t.name for t in graph.outputs}
    zeros: dict[tuple, gs.Constant] = {}
    pad = _Padder()
    padded, convs = [], 0
    for concat in [n for n in graph.nodes if n.op == "Concat"]:
        plan = _plan(concat, outputs)
        if plan is None:
            continue
        channels, extra, depthwise, dense = plan
        n, _, h, w = concat.outputs[0].shape
        dtype = np.asarray(concat.inputs[0].values).dtype if isinstance(concat.inputs[0], gs.Constant) \
            else np.dtype(concat.outputs[0].dtype or np.float32)
        key = (n, extra, h, w, dtype.str)
        if key not in zeros:
            zeros[key] = gs.Constant("chanpad/zeros_{}x{}x{}x{}".format(n, extra, h, w),
                                     np.zeros((n, extra, h, w), dtype=dtype))
        concat.inputs.append(zeros[key])
        concat.outputs[0].shape = [n, channels + extra, h, w]
        for conv in dense:
            pad(conv, 1, 1, extra)
        for conv in depthwise:
            pad(conv, 1, 0, extra)
            if len(conv.inputs) > 2:
                pad(conv, 2, 0, extra)
            conv.attrs["group"] = channels + extra
            mid = conv.outputs[0]
            if mid.shape and len(mid.shape) == 4:
                mid.shape = [mid.shape[0], channels + extra, *mid.shape[2:]]
            for reader in mid.outputs:
                pad(reader, 1, 1, extra)
        convs += len(dense) + sum(1 + len(c.outputs[0].outputs) for c in depthwise)
        padded.append("{} {}->{}".format(concat.name or concat.outputs[0].name, channels, channels + extra))
    if not padded:
        return model, meta, ["no Concat to pad (channels already whole blocks, or read by more than convolutions)"]
    graph.cleanup().toposort()
    return to_model(graph, model, meta), meta, [
        "{} Concat(s) zero-padded to a multiple of {} channels ({}), {} convolutions widened with zero weights"
        .format(len(padded), BLOCK, ", ".join(padded) if len(padded) <= 2 else padded[0] + ", ...", convs)]
