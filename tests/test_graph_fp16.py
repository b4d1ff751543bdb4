"""Pass `fp16`: the FP16 model a strongly typed TensorRT 11 build takes, checked with ONNX Runtime."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge_sdk.errors import ModelError
from edge_sdk.graph import run_passes
from edge_sdk.graph.common import get_meta
from edge_sdk.graph.fp16 import convert_to_fp16, output_error
from edge_sdk.graph.synthetic_model import make_pose_model
from edge_sdk.runtime.preprocess import preprocess_frame

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo" / "demo.onnx"
PREPARE = ["fold", "transposes", "prune", "normalize", "shape", "fold"]


def deployment_graph(model, width=96, height=64):
    """What `edge-sdk build` hands the fp16 pass: the rewritten graph with a raw uint8 NHWC input."""
    options = {"shape": {"width": width, "height": height, "batch": 1},
               "normalize": {"dtype": "uint8", "layout": "NHWC", "color": "BGR", "on_unsupported": "skip"}}
    model, meta, _ = run_passes(model, PREPARE, options, meta=get_meta(model))
    return model, meta


def run(model, meta, frame):
    x, _ = preprocess_frame(frame, meta.input)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(list(meta.outputs.values()), {meta.input.name: x[None]})


def final_conv_weights(model):
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    found = []
    for output in model.graph.output:
        node = producers[output.name]
        while node.op_type != "Conv":
            node = producers[node.input[0]]
        found.append(inits[node.input[1]].data_type)
    return found


@pytest.mark.parametrize("source", ["synthetic", "demo"])
def test_fp16_model_matches_fp32_on_a_real_photo(source):
    model = make_pose_model(seed=7) if source == "synthetic" else onnx.load(str(DEMO))
    model, meta = deployment_graph(model, *((96, 64) if source == "synthetic" else (192, 128)))
    half, meta16, changes = convert_to_fp16(model, meta)
    onnx.checker.check_model(half)
    weights = [i for i in half.graph.initializer if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert sum(i.data_type == onnx.TensorProto.FLOAT16 for i in weights) > len(weights) // 2
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [onnx.TensorProto.UINT8]  # I/O unchanged
    assert {o.type.tensor_type.elem_type for o in half.graph.output} == {onnx.TensorProto.FLOAT}
    assert changes and "max error" in changes[0]
    photo = sorted((Path(__file__).parent / "data" / "coco_mini").rglob("*.jpg"))[0]
    import cv2

    frame = cv2.resize(cv2.imread(str(photo)), (meta.input.width, meta.input.height))
    for want, got in zip(run(model, meta, frame), run(half, meta16, frame)):
        span = float(want.max() - want.min())
        assert float(np.abs(got - want).max()) <= 0.02 * span


def test_final_layers_stay_fp32_when_asked_or_when_fp16_is_not_accurate_enough():
    model, meta = deployment_graph(make_pose_model(seed=7))
    kept, _, changes = convert_to_fp16(model, meta, keep_final="always")
    assert final_conv_weights(kept) == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]
    assert "final layers FP32" in changes[0]
    full, _, _ = convert_to_fp16(model, meta, keep_final="never")
    assert final_conv_weights(full) == [onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT16]
    # "auto" picks FP32 final layers once the all-FP16 error exceeds the tolerance
    all_fp16 = max(output_error(model, full, meta).values())
    with_final = max(output_error(model, kept, meta).values())
    if with_final < all_fp16:
        between = (with_final + all_fp16) / 2
        _, _, auto = convert_to_fp16(model, meta, tolerance=between)
        assert [c.split(":")[0] for c in auto] == ["all FP16", "final layers FP32"]


def test_fp16_that_is_never_accurate_enough_is_refused():
    model, meta = deployment_graph(make_pose_model(seed=7))
    with pytest.raises(ModelError, match="build this model in FP32"):
        convert_to_fp16(model, meta, tolerance=1e-9)
    with pytest.raises(ModelError, match="keep_final"):
        convert_to_fp16(model, meta, keep_final="sometimes")
