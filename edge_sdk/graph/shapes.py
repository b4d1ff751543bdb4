"""Pass `shape`: fix the input to the build's resolution (and batch), so every shape in the graph is static.

TensorRT builds its fastest kernels for static shapes, and a static graph lets constant folding remove the
remaining Shape arithmetic. Intermediate shapes are re-inferred; the outputs must come out at stride 8.
"""

from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.graph.common import to_graph, to_model
from edge_sdk.runtime.model_meta import ModelMeta


def fix_input_shape(model: onnx.ModelProto, meta: ModelMeta, width: int | None = None, height: int | None = None,
                    batch: int = 1) -> tuple[onnx.ModelProto, ModelMeta, list[str]]:
    spec = meta.input
    width, height = int(width or spec.width), int(height or spec.height)
    if width <= 0 or height <= 0 or width % meta.stride or height % meta.stride:
        raise ConfigError("input size {}x{} must be positive multiples of the model stride {} (e.g. 384x256)"
                          .format(width, height, meta.stride))
    if batch < 1:
        raise ConfigError("batch must be >= 1 (got {})".format(batch))
    graph = to_graph(model)
    inputs = [t for t in graph.inputs if t.name == spec.name] or graph.inputs[:1]
    inp = inputs[0]
    old = list(inp.shape or [])
    if len(old) != 4:
        raise ModelError("shape: input '{}' must be 4-D, got shape {}".format(inp.name, old))
    new = [batch, height, width, 3] if spec.layout == "NHWC" else [batch, 3, height, width]
    inp.shape = new
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Variable) and tensor is not inp:
            tensor.shape = None  # re-inferred below
    graph.cleanup()
    fixed = to_model(graph, model, meta)
    try:
        fixed = onnx.shape_inference.infer_shapes(fixed, strict_mode=True, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises InferenceError and others
        raise ModelError("shape: the graph does not accept a {}x{} input: {}".format(width, height, exc)) from None
    graph = to_graph(fixed)
    graph.fold_constants().cleanup().toposort()
    fixed = to_model(graph, model, meta)
    fixed = onnx.shape_inference.infer_shapes(fixed)
    map_shape = [batch, None, height // meta.stride, width // meta.stride]
    for out in fixed.graph.output:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim]
        if out.name in meta.outputs.values() and len(dims) == 4:
            spatial = dims[2:] if meta.extra.get("output_layout", "NCHW") == "NCHW" else dims[1:3]
            if spatial != map_shape[2:]:
                raise ModelError("shape: output '{}' is {} for a {}x{} input; expected maps of {}x{} (stride {})"
                                 .format(out.name, dims, width, height, width // meta.stride,
                                         height // meta.stride, meta.stride))
    spec.width, spec.height, spec.batch = width, height, batch
    return fixed, meta, ["input '{}': {} -> {}".format(inp.name, old, new)]
