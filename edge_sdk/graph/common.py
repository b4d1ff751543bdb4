"""Shared plumbing of the rewrite passes: load/save ONNX with clear errors, ModelMeta in metadata_props,
onnx <-> onnx-graphsurgeon round trips that keep the model's properties."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import onnx
import onnx_graphsurgeon as gs

from edge_sdk.errors import ModelError
from edge_sdk.runtime.model_meta import METADATA_KEY, ModelMeta


@dataclass
class PassReport:
    """What one pass did: node counts before/after and a line per change."""

    name: str
    nodes_before: int
    nodes_after: int
    changes: list[str] = field(default_factory=list)

    def to_dict(self):
        return {"name": self.name, "nodes_before": self.nodes_before, "nodes_after": self.nodes_after,
                "changes": list(self.changes)}


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an ONNX file; a missing or non-ONNX file raises ModelError saying what to pass instead."""
    path = str(path)
    if not os.path.isfile(path):
        raise ModelError("model {} does not exist; pass the .onnx file exported by training "
                         "(`python -m edge_sdk.training.export ...`)".format(path))
    try:
        model = onnx.load(path)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for garbage input
        raise ModelError("{} is not an ONNX model ({}: {}); pass a .onnx file".format(
            path, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")) from None
    if not model.graph.node or not model.graph.output:
        raise ModelError("{} is not an ONNX model with a graph (no nodes or no outputs); pass a .onnx file"
                         .format(path))
    return model


def get_meta(model: onnx.ModelProto) -> ModelMeta:
    """The model's ModelMeta; without one, what the runtime would assume from the graph (static input size,
    outputs by name or channel count: ``edge_sdk.meta.meta_of``), else the defaults."""
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        from edge_sdk.meta import meta_of

        try:
            return meta_of(model)
        except ModelError:
            return ModelMeta()
    try:
        return ModelMeta.from_props(props)
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelError("the model's '{}' metadata is not valid ModelMeta JSON: {}".format(METADATA_KEY, exc)) \
            from None


def set_meta(model: onnx.ModelProto, meta: ModelMeta) -> None:
    """Write ``meta`` into metadata_props, keeping every other key."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = meta.to_json()
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()


def check_outputs(model: onnx.ModelProto, meta: ModelMeta, where: str = "model") -> None:
    """The outputs the metadata promises (heatmaps + pafs, or peaks + pafs) must exist in the graph."""
    names = [o.name for o in model.graph.output]
    missing = [role for role, tensor in meta.outputs.items() if tensor not in names]
    if missing:
        raise ModelError("{} has no output for {} (expected tensors {}; the graph outputs {}); export the pose "
                         "model with outputs named 'heatmaps' [N,19,H/8,W/8] and 'pafs' [N,38,H/8,W/8], or set "
                         "'outputs' in its edge_sdk metadata".format(
                             where, ", ".join(missing), ", ".join(repr(meta.outputs[m]) for m in missing),
                             ", ".join(names) or "nothing"))


def to_graph(model: onnx.ModelProto) -> gs.Graph:
    return gs.import_onnx(model)


def to_model(graph: gs.Graph, template: onnx.ModelProto, meta: ModelMeta | None = None) -> onnx.ModelProto:
    """Export a graphsurgeon graph, keeping the template's IR version, producer and metadata."""
    model = gs.export_onnx(graph, do_type_check=False)
    model.ir_version = template.ir_version
    model.producer_name = template.producer_name
    model.producer_version = template.producer_version
    del model.metadata_props[:]
    model.metadata_props.extend(template.metadata_props)
    if meta is not None:
        set_meta(model, meta)
    return model


def count_nodes(model: onnx.ModelProto) -> int:
    return len(model.graph.node)
