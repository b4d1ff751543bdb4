"""Pass `fp16`: store and compute the model in FP16, keeping the final heatmap/PAF layers in FP32 if needed.

TensorRT 11 builds strongly typed networks: there is no FP16 builder flag any more, precision is whatever
the ONNX tensor types say. This pass is the onnxconverter-common ``convert_float_to_float16`` idea, written
for our graphs with onnx-graphsurgeon: float32 weights become float16, Cast nodes go at the FP32 I/O
(``keep_io_types``: the runtime feeds and reads the same tensors as before), and the layers that produce the
model outputs (the final heatmap and PAF convolutions and what follows them) can stay FP32.

Whether they must is measured, not assumed: ONNX Runtime runs the FP32 and the FP16 model on the same frame
and the pass compares their outputs; with ``keep_final="auto"`` the final layers stay FP32 only when the fully
FP16 model differs by more than ``tolerance`` (relative to each output's range), and the change lines say
which was chosen and what error was measured.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edge_sdk.errors import ModelError
from edge_sdk.graph.common import check_outputs, to_graph, to_model
from edge_sdk.runtime.model_meta import ModelMeta

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
FLOAT_ONLY_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}  # roi / scales: tensor(float) whatever the data type
DEFAULT_TOLERANCE = 0.02  # 2 % of an output's range: below what moves a peak or a PAF score


def final_layers(graph: gs.Graph, output_names: list[str]) -> set[int]:
    """ids of the nodes from each output back to (and including) the compute layer that makes it."""
    keep: set[int] = set()
    by_name = graph.tensors()
    for name in output_names:
        tensor = by_name.get(name)
        for _ in range(16):
            if tensor is None or not tensor.inputs:
                break
            node = tensor.inputs[0]
            keep.add(id(node))
            if node.op in COMPUTE_OPS:
                break
            produced = [t for t in node.inputs if isinstance(t, gs.Variable) and t.inputs]
            tensor = produced[0] if produced else None
    return keep


def _cast(graph: gs.Graph, tensor: gs.Variable, to: int, name: str) -> gs.Variable:
    out = gs.Variable(name, dtype=onnx.helper.tensor_dtype_to_np_dtype(to), shape=tensor.shape)
    graph.nodes.append(gs.Node("Cast", name=name, attrs={"to": to}, inputs=[tensor], outputs=[out]))
    return out


def convert(model: onnx.ModelProto, output_names: list[str], keep_final: bool) -> tuple[onnx.ModelProto, int]:
    """The FP16 model (FP32 I/O); returns it and the number of layers kept FP32."""
    graph = to_graph(onnx.shape_inference.infer_shapes(model))  # every tensor typed, so every float is seen
    keep = final_layers(graph, output_names) if keep_final else set()
    io = {id(t) for t in graph.inputs + graph.outputs}
    _halve_layers(graph, keep, io)
    _cast_inputs_to_fp16(graph, keep)
    _cast_back_to_fp32(graph, keep, io)
    graph.cleanup().toposort()
    return gs.export_onnx(graph, do_type_check=False), len(keep)


def _halve_layers(graph: gs.Graph, keep: set, io: set) -> None:
    """Every layer not kept: FP16 weights (one converted copy per constant), FP16 casts and outputs."""
    fp32, fp16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    half_constants: dict[int, gs.Constant] = {}
    for node in list(graph.nodes):
        if id(node) in keep:
            continue
        for index, tensor in enumerate(node.inputs):
            if isinstance(tensor, gs.Constant) and tensor.values.dtype == np.float32 \
                    and index not in FLOAT_ONLY_INPUTS.get(node.op, ()):
                if id(tensor) not in half_constants:
                    half_constants[id(tensor)] = gs.Constant(tensor.name + "_fp16", tensor.values.astype(np.float16))
                node.inputs[index] = half_constants[id(tensor)]
        if node.op == "Cast" and node.attrs.get("to") == fp32:
            node.attrs["to"] = fp16
        for out in node.outputs:
            if out.dtype == np.float32 and id(out) not in io:
                out.dtype = np.float16


def _cast_inputs_to_fp16(graph: gs.Graph, keep: set) -> None:
    """FP32 graph inputs feed FP16 layers through a Cast."""
    for tensor in graph.inputs:
        if tensor.dtype == np.float32:
            consumers = [n for n in tensor.outputs if id(n) not in keep]
            if consumers:
                half = _cast(graph, tensor, onnx.TensorProto.FLOAT16, tensor.name + "_to_fp16")
                for node in consumers:
                    node.inputs = [half if t is tensor else t for t in node.inputs]


def _cast_back_to_fp32(graph: gs.Graph, keep: set, io: set) -> None:
    """FP16 tensors entering a kept FP32 layer, or leaving the graph, are cast back."""
    fp32 = onnx.TensorProto.FLOAT
    for node in list(graph.nodes):
        if id(node) not in keep:
            continue
        for index, tensor in enumerate(node.inputs):
            if isinstance(tensor, gs.Variable) and tensor.dtype == np.float16 and id(tensor) not in io:
                node.inputs[index] = _cast(graph, tensor, fp32, "{}_to_fp32_{}".format(tensor.name, node.name))
    for position, tensor in enumerate(graph.outputs):
        producer = tensor.inputs[0] if tensor.inputs else None
        if tensor.dtype == np.float32 and producer is not None and id(producer) not in keep:
            half = gs.Variable(tensor.name + "_fp16", dtype=np.float16, shape=tensor.shape)
            producer.outputs = [half if t is tensor else t for t in producer.outputs]
            graph.nodes.append(gs.Node("Cast", name=tensor.name + "_to_fp32", attrs={"to": fp32}, inputs=[half],
                                       outputs=[tensor]))
            tensor.dtype = np.float32
            graph.outputs[position] = tensor


def output_error(reference: onnx.ModelProto, candidate: onnx.ModelProto, meta: ModelMeta,
                 seed: int = 0) -> dict[str, float]:
    """Per output: max |candidate - reference| / range(reference), on one seeded frame through ONNX Runtime."""
    import onnxruntime as ort

    from edge_sdk.runtime.preprocess import preprocess_frame

    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (meta.input.height, meta.input.width, 3), dtype=np.uint8)
    x, _ = preprocess_frame(frame, meta.input)
    feeds = {meta.input.name: x[None] if x.ndim == 3 else x}
    names = list(meta.outputs.values())
    results = []
    for model in (reference, candidate):
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        results.append(session.run(names, feeds))
    errors = {}
    for name, want, got in zip(names, *results):
        span = float(np.max(want) - np.min(want)) or 1.0
        errors[name] = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) / span
    return errors


def convert_to_fp16(model: onnx.ModelProto, meta: ModelMeta, keep_final: str = "auto",
                    tolerance: float = DEFAULT_TOLERANCE) -> tuple[onnx.ModelProto, ModelMeta, list[str]]:
    """``keep_final``: "auto" (FP32 final layers only if full FP16 is off by more than ``tolerance``),
    "always" or "never". Raises ModelError when even the kept-FP32 model is off by more than ``tolerance``."""
    if keep_final not in ("auto", "always", "never"):
        raise ModelError("fp16 pass: keep_final must be auto, always or never, got {!r}".format(keep_final))
    if not 0 < tolerance < 1:
        raise ModelError("fp16 pass: tolerance must be in (0, 1), got {!r}".format(tolerance))
    check_outputs(model, meta)
    outputs = list(meta.outputs.values())
    attempts = {"auto": (False, True), "always": (True,), "never": (False,)}[keep_final]
    changes: list[str] = []
    for keep in attempts:
        half, kept = convert(model, outputs, keep)
        errors = output_error(model, half, meta)
        worst = max(errors.values())
        changes.append("{}: max error {} ({} layer(s) kept FP32)".format(
            "final layers FP32" if keep else "all FP16",
            ", ".join("{} {:.2%}".format(k, v) for k, v in errors.items()), kept))
        if worst <= tolerance:
            graph = to_graph(half)
            return to_model(graph, model, meta), meta, changes
    raise ModelError("FP16 changes the outputs by more than {:.0%} of their range ({}); build this model in FP32 "
                     "(--fp32) or retrain it".format(tolerance, "; ".join(changes)))
