"""Pass `instancenorm`: BatchNorm that normalises with the batch's own statistics -> InstanceNormalization.

A TF1 graph frozen with its BatchNorm layers still in training mode (tf-pose-estimation's MobileNetV2: 39
of them) normalises each feature map with the mean and variance of the current batch. tf2onnx writes that
as a chain per layer (ReduceMean, Sub, ReduceSumSquare, Shape, Gather, ReduceProd, Cast, Div, Squeeze) in
front of BatchNormalization; ONNX Runtime and TensorRT run it as a dozen small kernels. With one image per
batch the batch statistics over (N, H, W) are exactly the per-channel statistics over (H, W), i.e.
InstanceNormalization(x, gamma, beta, epsilon): one fused op. The pass only fires where that holds: a
static batch of 1 and a chain it can prove computes the mean and biased variance of the same tensor.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edge_sdk.graph.common import to_graph, to_model
from edge_sdk.runtime.model_meta import ModelMeta

_BATCH_AXES = [0, 2, 3]
_PASS_THROUGH = ("Cast", "Squeeze", "Unsqueeze", "Identity", "Reshape")


def _producer(tensor: gs.Tensor) -> gs.Node | None:
    return tensor.inputs[0] if isinstance(tensor, gs.Variable) and len(tensor.inputs) == 1 else None


def _strip(tensor: gs.Tensor) -> gs.Tensor:
    """Follow shape-only ops (Squeeze, Cast, ...) back to the tensor that carries the values."""
    node = _producer(tensor)
    while node is not None and node.op in _PASS_THROUGH and node.inputs:
        tensor = node.inputs[0]
        node = _producer(tensor)
    return tensor


def _reduce_axes(node: gs.Node) -> list[int] | None:
    """The axes of a Reduce* node (attribute before opset 18, second input from then on)."""
    if "axes" in node.attrs:
        return sorted(int(a) for a in node.attrs["axes"])
    if len(node.inputs) > 1 and isinstance(node.inputs[1], gs.Constant):
        return sorted(int(a) for a in np.asarray(node.inputs[1].values).ravel())
    return None


def _is_batch_mean_of(tensor: gs.Tensor, x: gs.Tensor) -> gs.Node | None:
    """The ReduceMean node if ``tensor`` is mean(x) over (N, H, W)."""
    node = _producer(_strip(tensor))
    if node is not None and node.op == "ReduceMean" and node.inputs[0] is x and _reduce_axes(node) == _BATCH_AXES:
        return node
    return None


def _counts_elements_of(tensor: gs.Tensor, x: gs.Tensor) -> bool:
    """``tensor`` is N*H*W of x: a constant of that value, or a chain that starts at Shape(x)."""
    tensor = _strip(tensor)
    if isinstance(tensor, gs.Constant):
        shape = x.shape or []
        known = len(shape) == 4 and all(isinstance(d, int) for d in shape)
        return known and float(np.asarray(tensor.values).ravel()[0]) == float(shape[0] * shape[2] * shape[3]) \
            and np.asarray(tensor.values).size == 1
    seen, frontier = 0, [_producer(tensor)]
    while frontier and seen < 8:
        node = frontier.pop()
        seen += 1
        if node is None:
            continue
        if node.op == "Shape":
            return node.inputs[0] is x
        if node.op in ("Gather", "ReduceProd", "Cast", "Mul", "Squeeze", "Unsqueeze", "Reshape"):
            frontier.append(_producer(node.inputs[0]))
    return False


def _is_batch_variance_of(tensor: gs.Tensor, x: gs.Tensor, mean_node: gs.Node) -> bool:
    """``tensor`` is the biased variance of x over (N, H, W): ReduceSumSquare(x - mean) / count, or
    ReduceMean((x - mean)^2)."""
    node = _producer(_strip(tensor))
    if node is None:
        return False

    def centred(t: gs.Tensor) -> bool:
        sub = _producer(t)
        return sub is not None and sub.op == "Sub" and sub.inputs[0] is x and _producer(sub.inputs[1]) is mean_node

    if node.op == "Div" and len(node.inputs) == 2:
        rss = _producer(node.inputs[0])
        return rss is not None and rss.op == "ReduceSumSquare" and _reduce_axes(rss) == _BATCH_AXES \
            and centred(rss.inputs[0]) and _counts_elements_of(node.inputs[1], x)
    if node.op == "ReduceMean" and _reduce_axes(node) == _BATCH_AXES:
        square = _producer(node.inputs[0])
        if square is not None and square.op == "Mul" and square.inputs[0] is square.inputs[1]:
            return centred(square.inputs[0])
        if square is not None and square.op == "Pow" and isinstance(square.inputs[1], gs.Constant) \
                and float(np.asarray(square.inputs[1].values).ravel()[0]) == 2.0:
            return centred(square.inputs[0])
    return False


def batch_stats_to_instance_norm(model: onnx.ModelProto, meta: ModelMeta) -> tuple[onnx.ModelProto, ModelMeta,
                                                                                    list[str]]:
    # the batch size must be known at every BatchNorm: infer the intermediate shapes tf2onnx does not write
    graph = to_graph(onnx.shape_inference.infer_shapes(model))
    replaced, skipped_batch = 0, 0
    for node in list(graph.nodes):
        if node.op != "BatchNormalization" or len(node.inputs) != 5 or len(node.outputs) != 1:
            continue
        x, gamma, beta, mean, var = node.inputs
        if isinstance(mean, gs.Constant) and isinstance(var, gs.Constant):
            continue  # inference-mode BatchNorm: a per-channel affine, the fold pass's business
        mean_node = _is_batch_mean_of(mean, x)
        if mean_node is None or not _is_batch_variance_of(var, x, mean_node):
            continue
        if not (x.shape and len(x.shape) == 4 and x.shape[0] == 1):
            skipped_batch += 1  # exact only for one image per batch
            continue
        out = node.outputs[0]
        node.outputs.clear()
        graph.nodes.append(gs.Node("InstanceNormalization", name=(node.name or "bn") + "/instancenorm",
                                   attrs={"epsilon": float(node.attrs.get("epsilon", 1e-5))},
                                   inputs=[x, gamma, beta], outputs=[out]))
        replaced += 1
    graph.cleanup().toposort()
    changes = []
    if replaced:
        changes.append("{} batch-statistics BatchNorm -> InstanceNormalization".format(replaced))
    if skipped_batch:
        changes.append("{} batch-statistics BatchNorm kept: the batch is not a static 1".format(skipped_batch))
    return to_model(graph, model, meta), meta, changes or ["no batch-statistics BatchNorm found"]
