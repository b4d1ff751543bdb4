"""Which ONNX ops TensorRT 8.x's ONNX parser cannot import, so a build for a TensorRT 8 target (Nano, TX2,
Xavier on JetPack 4.6 / 5.1) says so on the host instead of failing at first start on the device.

Source: onnx-tensorrt docs/operators.md (TensorRT 8.4 support matrix, operators marked "N"),
https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md. TensorRT 10 imports more (e.g. Mod,
NonZero, OneHot, Reciprocal), so the check applies to TensorRT 8 targets only.
"""

from __future__ import annotations

UNSUPPORTED_TRT8 = frozenset({
    "BitShift", "Compress", "ConcatFromSequence", "ConvInteger", "Det", "DynamicQuantizeLinear", "Hardmax",
    "IsInf", "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MeanVarianceNormalization", "Mod", "Multinomial",
    "NegativeLogLikelihoodLoss", "NonZero", "OneHot", "QLinearConv", "QLinearMatMul", "RandomNormal",
    "RandomNormalLike", "Reciprocal", "RoiAlign", "SequenceAt", "SequenceConstruct", "SequenceEmpty",
    "SequenceErase", "SequenceInsert", "SequenceLength", "Shrink", "SoftmaxCrossEntropyLoss", "SplitToSequence",
    "StringNormalizer", "TfIdfVectorizer", "Unique",
})


def unsupported_ops(model, tensorrt_version: str | None) -> list[str]:
    """Op types of ``model`` (onnx.ModelProto) that the target's TensorRT cannot import (sorted)."""
    major = int(str(tensorrt_version or "10").split(".")[0] or 10)
    if major >= 10:
        return []
    return sorted({node.op_type for node in model.graph.node if node.op_type in UNSUPPORTED_TRT8})
