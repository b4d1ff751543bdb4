"""Explicit quantisation for TensorRT: insert QuantizeLinear/DequantizeLinear pairs with our ranges.

ONNX Runtime's QDQ quantiser places the nodes; we give it our activation ranges and the options TensorRT
wants: symmetric INT8 with zero point 0; per-channel weights (axis 0 = output channels for Conv), kept in
float behind a Q/DQ pair; per-tensor activations; Q/DQ only on the inputs of Conv / ConvTranspose / MatMul /
Gemm (where TensorRT fuses them), never on their outputs; bias left in float; one dedicated pair per
consumer; opset >= 13. Nodes named in ``float_nodes`` stay in float (mixed precision).
"""

from __future__ import annotations

import numpy as np

from edge_sdk.errors import ModelError

QUANTIZED_OP_TYPES = ("Conv", "ConvTranspose", "MatMul", "Gemm")
QUANT_NODE_TYPES = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                    "MatMulInteger", "DynamicQuantizeLinear", "QLinearAdd", "QGemm")
MIN_OPSET = 13


def check_not_quantized(model, where="model"):
    """Refuse a model that already holds quantisation nodes: calibrate the FP32 model instead."""
    found = sorted({n.op_type for n in model.graph.node if n.op_type in QUANT_NODE_TYPES})
    if found:
        count = sum(1 for n in model.graph.node if n.op_type in QUANT_NODE_TYPES)
        raise ModelError("{} is already quantised ({} {} nodes); calibrate the FP32 model it was made from "
                         "(e.g. model.onnx, not model.int8.onnx)".format(where, count, "/".join(found)))


def name_nodes(model):
    """Give every unnamed node a stable name (``<op>_<index>``) so nodes can be excluded by name."""
    taken = {n.name for n in model.graph.node if n.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = "{}_{}".format(node.op_type, index)
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    return model


def quantizable_nodes(model) -> list[str]:
    """Names of the nodes whose inputs get Q/DQ (graph order)."""
    initializers = {i.name for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OP_TYPES:
            if node.op_type in ("MatMul", "Gemm") and not any(i in initializers for i in node.input[:2]):
                pass  # activation x activation: still quantised (TensorRT runs it in INT8)
            names.append(node.name)
    return names


def prepare(model):
    """Named nodes, opset >= 13, shapes inferred: the form the quantiser needs (returns a new model)."""
    import onnx

    model = name_nodes(_copy(model))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
            raise ModelError("model opset {} < {} and could not be converted ({}); export with opset >= 13".format(
                opset, MIN_OPSET, exc)) from exc
    return onnx.shape_inference.infer_shapes(model)


def _copy(model):
    import onnx

    clone = onnx.ModelProto()
    clone.CopyFrom(model)
    return clone


def build_qdq_model(prepared, amax: dict, float_nodes=(), per_channel: bool = True, style: str = "tensorrt"):
    """The Q/DQ model (ModelProto) for ``prepared`` (see :func:`prepare`) with activation ranges ``amax``.

    ``style="onnxruntime"`` instead quantises every op ONNX Runtime has integer kernels for, outputs
    included, so its CPU provider can fuse DQ -> Conv -> Q into QLinearConv (for the CPU target and the
    benchmark; TensorRT wants the default).
    """
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    model = _copy(prepared)
    ranges = TensorsData(CalibrationMethod.MinMax, {
        name: (np.array(-a, dtype=np.float32), np.array(a, dtype=np.float32)) for name, a in amax.items()})
    if style == "tensorrt":
        op_types = list(QUANTIZED_OP_TYPES)
        options = {
            "ActivationSymmetric": True, "WeightSymmetric": True, "AddQDQPairToWeight": True,
            "QuantizeBias": False, "DedicatedQDQPair": True,
            "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OP_TYPES), "ForceQuantizeNoInputCheck": False,
        }
    elif style == "onnxruntime":
        from onnxruntime.quantization.registry import QDQRegistry

        op_types = sorted(QDQRegistry)
        options = {"ActivationSymmetric": True, "WeightSymmetric": True}
    else:
        raise ValueError("style must be 'tensorrt' or 'onnxruntime', got {!r}".format(style))
    quantizer = QDQQuantizer(model, per_channel, False, QuantType.QInt8, QuantType.QInt8, ranges, [],
                             list(float_nodes), op_types, options)
    quantized = quantizer.quantize_model()
    _restore_float_inputs(quantized, set(float_nodes))
    return _sorted(quantized)


def _restore_float_inputs(model, float_nodes):
    """A float node whose input ONNX Runtime routed through a shared Q/DQ pair gets the float tensor back."""
    if not float_nodes:
        return
    producers = {o: n for n in model.graph.node for o in n.output}
    initializers = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        if node.name not in float_nodes:
            continue
        for k, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in initializers:
                node.input[k] = q.input[0]
    _drop_dead_nodes(model)


def _drop_dead_nodes(model):
    """Remove Q/DQ nodes whose outputs nobody reads any more (and their scale/zero-point initializers)."""
    while True:
        read = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
        dead = [n for n in model.graph.node
                if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in read for o in n.output)]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    read = {i for n in model.graph.node for i in n.input}
    for init in [i for i in model.graph.initializer if i.name not in read]:
        model.graph.initializer.remove(init)


def _sorted(model):
    """Nodes in topological order (the quantiser appends Q/DQ nodes after their consumers)."""
    from onnxruntime.quantization.onnx_model import ONNXModel

    wrapper = ONNXModel(model)
    wrapper.topological_sort()
    return wrapper.model


def float_nodes_of(qdq_model, candidates) -> list[str]:
    """Which of ``candidates`` run in float in ``qdq_model`` (no input comes from a DequantizeLinear)."""
    producers = {o: n.op_type for n in qdq_model.graph.node for o in n.output}
    by_name = {n.name: n for n in qdq_model.graph.node}
    return [name for name in candidates if name in by_name and not any(
        producers.get(i) == "DequantizeLinear" for i in by_name[name].input)]
