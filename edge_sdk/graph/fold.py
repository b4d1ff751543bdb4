"""Pass `fold`: constant folding + dead-node cleanup + topological sort.

tf2onnx leaves sub-graphs that only depend on weights (transposed kernels, Shape->Reshape of constants,
Identity chains); folding them gives TensorRT and ONNX Runtime a smaller graph and static shapes to work
with. Folding is evaluated by ONNX Runtime through onnx-graphsurgeon, so results are bit-identical.
"""

from __future__ import annotations

import onnx

from edge_sdk.graph.common import to_graph, to_model
from edge_sdk.runtime.model_meta import ModelMeta


def fold_constants(model: onnx.ModelProto, meta: ModelMeta) -> tuple[onnx.ModelProto, ModelMeta, list[str]]:
    graph = to_graph(model)
    graph.fold_constants().cleanup().toposort()
    # Identity nodes between two computed tensors are pure overhead: bypass them (graph outputs stay named)
    removed = 0
    for node in list(graph.nodes):
        if node.op != "Identity" or not node.inputs or not node.outputs:
            continue
        src, dst = node.inputs[0], node.outputs[0]
        if dst in graph.outputs or src in graph.inputs:
            continue
        for consumer in list(dst.outputs):
            for i, tensor in enumerate(consumer.inputs):
                if tensor is dst:
                    consumer.inputs[i] = src
        node.outputs.clear()
        removed += 1
    graph.cleanup().toposort()
    changes = ["bypassed {} Identity node(s)".format(removed)] if removed else []
    return to_model(graph, model, meta), meta, changes
