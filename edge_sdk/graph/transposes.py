"""Pass `transposes`: remove the NHWC<->NCHW Transposes tf2onnx leaves at the input and the outputs.

A Keras model is NHWC; tf2onnx converts the convolutions to NCHW and leaves a Transpose(0,3,1,2) after an
NHWC input and Transpose(0,2,3,1) in front of each output. The rewritten model takes NCHW input and gives
NCHW maps (the layout of the model I/O contract), and the metadata says so. Pairs of inverse Transposes
inside the graph are cancelled too.
"""

from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs

from edge_sdk.graph.common import to_graph, to_model
from edge_sdk.runtime.model_meta import ModelMeta

TO_NCHW = [0, 3, 1, 2]
TO_NHWC = [0, 2, 3, 1]


def _perm(node: gs.Node) -> list[int] | None:
    return list(node.attrs.get("perm", [])) if node.op == "Transpose" else None


def _inverse(p: list[int]) -> list[int]:
    inv = [0] * len(p)
    for i, axis in enumerate(p):
        inv[axis] = i
    return inv


def _replace_uses(old: gs.Variable, new: gs.Tensor) -> None:
    for consumer in list(old.outputs):
        for i, tensor in enumerate(consumer.inputs):
            if tensor is old:
                consumer.inputs[i] = new


def remove_layout_transposes(model: onnx.ModelProto, meta: ModelMeta) -> tuple[onnx.ModelProto, ModelMeta,
                                                                                list[str]]:
    """The pass: input side, output side, inverse pairs inside; ``changes`` says what each step did."""
    graph = to_graph(model)
    changes: list[str] = []
    changes += _input_to_nchw(graph, meta)
    changes += _outputs_to_nchw(graph, meta)
    changes += _cancel_inverse_pairs(graph)
    graph.cleanup().toposort()
    if not changes:
        changes.append("no layout Transposes found")
    return to_model(graph, model, meta), meta, changes


def _input_to_nchw(graph: gs.Graph, meta: ModelMeta) -> list[str]:
    """An NHWC input whose every consumer is Transpose(0,3,1,2) becomes an NCHW input without them."""
    changes = []
    for inp in graph.inputs:
        consumers = list(inp.outputs)
        if len(inp.shape or []) != 4 or not consumers or any(_perm(c) != TO_NCHW for c in consumers):
            continue
        n, h, w, c = inp.shape
        for node in consumers:
            _replace_uses(node.outputs[0], inp)
            node.outputs.clear()
            node.inputs.clear()
        inp.shape = [n, c, h, w]
        changes.append("input '{}': NHWC -> NCHW, removed {} Transpose".format(inp.name, len(consumers)))
        if inp.name == meta.input.name:
            meta.input.layout = "NCHW"
    return changes


def _ends_in_nhwc_transpose(graph: gs.Graph, out: gs.Variable) -> bool:
    """The output is made by Transpose(0,2,3,1) from an inner NCHW tensor."""
    producer = out.inputs[0] if out.inputs else None
    return producer is not None and _perm(producer) == TO_NHWC and producer.inputs[0] not in graph.inputs \
        and producer.inputs[0] not in graph.outputs


def _outputs_to_nchw(graph: gs.Graph, meta: ModelMeta) -> list[str]:
    """Outputs made by Transpose(0,2,3,1) give the NCHW tensor instead. The maps the runtime reads
    (meta.outputs) change layout together or not at all, so the metadata stays true for all of them."""
    changes = []
    roles = set(meta.outputs.values())
    role_outputs = [t for t in graph.outputs if t.name in roles]
    roles_convertible = bool(role_outputs) and all(_ends_in_nhwc_transpose(graph, t) for t in role_outputs)
    if role_outputs and not roles_convertible and any(_ends_in_nhwc_transpose(graph, t) for t in role_outputs):
        changes.append("outputs {} kept as they are: not all of them end in an NCHW->NHWC Transpose".format(
            ", ".join(t.name for t in role_outputs)))
    for index, out in enumerate(list(graph.outputs)):
        if not _ends_in_nhwc_transpose(graph, out) or (out.name in roles and not roles_convertible):
            continue
        graph.outputs[index] = _drop_output_transpose(out)
        changes.append("output '{}': NHWC -> NCHW, removed Transpose".format(graph.outputs[index].name))
    if roles_convertible:
        meta.extra["output_layout"] = "NCHW"
    return changes


def _drop_output_transpose(out: gs.Variable) -> gs.Variable:
    """Detach the output's Transpose; its NCHW input takes the output's name and dtype. Returns it."""
    producer = out.inputs[0]
    src = producer.inputs[0]
    producer.outputs.clear()
    producer.inputs.clear()
    name, dtype = out.name, out.dtype
    out.name = name + "__nhwc_removed"
    src.name = name
    src.dtype = dtype
    n, h, w, c = out.shape if out.shape and len(out.shape) == 4 else (None,) * 4
    src.shape = [n, c, h, w] if out.shape else None
    return src


def _cancel_inverse_pairs(graph: gs.Graph) -> list[str]:
    """Transpose(p) followed only by Transpose(inverse p) inside the graph: both go."""
    cancelled = 0
    for node in list(graph.nodes):
        p = _perm(node)
        if not p or not node.outputs or not node.inputs:
            continue
        mid = node.outputs[0]
        if mid in graph.outputs or not mid.outputs or any(_perm(c) != _inverse(p) for c in mid.outputs):
            continue
        for second in list(mid.outputs):
            out = second.outputs[0]
            if out in graph.outputs:
                continue
            _replace_uses(out, node.inputs[0])
            second.outputs.clear()
            cancelled += 1
    return ["cancelled {} inverse Transpose pair(s)".format(cancelled)] if cancelled else []
