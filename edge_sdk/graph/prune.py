"""Pass `prune`: drop the outputs (and the nodes that only feed them) that the runtime does not read.

Training exports every stage's heatmaps and PAFs (intermediate supervision); on the device only the final
maps named in the metadata are used, and each extra output costs a device-to-host copy per frame.
"""

from __future__ import annotations

import onnx

from edge_sdk.graph.common import check_outputs, to_graph, to_model
from edge_sdk.runtime.model_meta import ModelMeta


def prune_unused_outputs(model: onnx.ModelProto, meta: ModelMeta) -> tuple[onnx.ModelProto, ModelMeta, list[str]]:
    check_outputs(model, meta)
    keep = set(meta.outputs.values())
    graph = to_graph(model)
    dropped = [t.name for t in graph.outputs if t.name not in keep]
    graph.outputs = [t for t in graph.outputs if t.name in keep]
    graph.cleanup().toposort()
    changes = ["dropped output '{}'".format(name) for name in dropped] or ["no unused outputs"]
    return to_model(graph, model, meta), meta, changes
