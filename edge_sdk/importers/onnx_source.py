"""ONNX from elsewhere (an OpenPose-family model exported by another project): NHWC or NCHW input, one
concatenated output or two. The graph is fixed to a static batch of 1 and the chosen input size; the
reference is ONNX Runtime on the *unmodified* file."""

from __future__ import annotations

import onnx

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.importers.source import SourceModel, first_line


def parse_onnx(data: bytes, path: str) -> onnx.ModelProto:
    """A ModelProto from bytes; ModelError when it is not an ONNX model with a graph."""
    from google.protobuf.message import DecodeError

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError("{} is not a readable ONNX model ({})".format(path, first_line(exc))) from None
    if not model.ir_version or not model.graph.node or not model.graph.output:
        raise ModelError("{} is not an ONNX model with a graph".format(path))
    return model


def _image_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def find_input(model: onnx.ModelProto, name: str | None, path: str) -> onnx.ValueInfoProto:
    inputs = _image_inputs(model)
    if name:
        match = [i for i in inputs if i.name == name]
        if not match:
            raise ConfigError("--input {!r} is not an input of {}; its inputs: {}".format(
                name, path, ", ".join(i.name for i in inputs)))
        return match[0]
    if len(inputs) != 1:
        raise ConfigError("{} has {} inputs ({}); name the image input with --input".format(
            path, len(inputs), ", ".join(i.name for i in inputs)))
    return inputs[0]


def find_outputs(model: onnx.ModelProto, names: list[str] | None, path: str) -> list[str]:
    known = [o.name for o in model.graph.output]
    if names:
        for name in names:
            if name not in known:
                raise ConfigError("--output {!r} is not an output of {}; its outputs: {}".format(
                    name, path, ", ".join(known)))
        return list(names)
    return known


def input_geometry(value: onnx.ValueInfoProto, path: str) -> tuple[str, int | None, int | None]:
    """(layout, height, width) of a 4-D image input; None for a free size."""
    if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ModelError("the input {!r} of {} is not float32; import takes float image inputs".format(
            value.name, path))
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    if len(dims) != 4 or 3 not in (dims[1], dims[3]):
        raise ModelError("the input {!r} of {} has shape {}; expected [N, 3, H, W] or [N, H, W, 3]".format(
            value.name, path, dims))
    layout = "NCHW" if dims[1] == 3 else "NHWC"
    h, w = (dims[2], dims[3]) if layout == "NCHW" else (dims[1], dims[2])
    return layout, h, w


def load_onnx(path: str, data: bytes, height: int, width: int, input_name: str, output_names: list[str],
              layout: str, threads: int | None = None) -> SourceModel:
    import onnxruntime as ort

    model = parse_onnx(data, path)
    shape = [1, 3, height, width] if layout == "NCHW" else [1, height, width, 3]
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name == input_name:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, shape):
                dim.Clear()
                dim.dim_value = size
    del fixed.graph.value_info[:]  # intermediate shapes may name the free sizes; they are re-inferred
    keep = set(output_names)
    del_outputs = [o for o in fixed.graph.output if o.name not in keep]
    for value in del_outputs:
        fixed.graph.output.remove(value)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for invalid graphs
        raise ModelError("ONNX Runtime cannot load {}: {}".format(path, first_line(exc))) from None

    def reference(x):
        return session.run(output_names, {input_name: x})

    return SourceModel("onnx", "ONNX Runtime {} (the file as given)".format(ort.__version__), fixed, input_name,
                       layout, list(output_names), reference, height, width)
