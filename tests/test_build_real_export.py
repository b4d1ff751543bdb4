"""The rewrite passes and `build` on a real export: a Keras OpenPose model from training/, converted by
edge_sdk.training.export.keras_to_onnx (tf2onnx), untrained but real in structure (backbone, stages, heads)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge_sdk.engine.build import BuildRequest, build
from edge_sdk.graph.common import get_meta
from edge_sdk.runtime.bundle import open_bundle
from edge_sdk.runtime.decode import DecodeConfig, find_peaks
from edge_sdk.runtime.model_meta import METADATA_KEY, InputSpec, ModelMeta
from edge_sdk.runtime.preprocess import preprocess_frame

pytestmark = pytest.mark.slow
H, W = 64, 96


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    from edge_sdk.training.export import keras_to_onnx
    from edge_sdk.training.models.openpose import ModelConfig, build_model

    config = ModelConfig(backbone="resnet18", input_height=H, input_width=W, width=0.25, stages=2,
                         stage_width=16, refine_depth=2).resolved()
    model, _ = keras_to_onnx(build_model(config), H, W)
    meta = ModelMeta(InputSpec(height=H, width=W), model="resnet18")
    onnx.helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    path = tmp_path_factory.mktemp("export") / "resnet18.onnx"
    onnx.save(model, str(path))
    return path


def run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x})))


def test_build_of_a_real_export_is_equivalent(exported, tmp_path):
    lines = []
    result = build(BuildRequest(model=str(exported), target="cpu", output=str(tmp_path / "cpu"), peaks=8,
                                peak_threshold=0.01, input_size=(W, H)), echo=lines.append)
    bundle = open_bundle(str(result.archive), expected_target="cpu")
    passes = {r.name: r for r in result.reports}
    assert passes["normalize"].nodes_after > passes["normalize"].nodes_before  # Cast + Transpose (+ Sub)
    assert bundle.meta.input.dtype == "uint8" and bundle.meta.outputs == {"peaks": "peaks", "pafs": "pafs"}
    frame = np.random.default_rng(0).integers(0, 256, (120, 170, 3), dtype=np.uint8)
    x0, _ = preprocess_frame(frame, get_meta(onnx.load(str(exported))).input)
    x1, _ = preprocess_frame(frame, bundle.meta.input)
    ref, got = run(exported, x0[None]), run(bundle.model_path, x1[None])
    np.testing.assert_allclose(got["pafs"], ref["pafs"], atol=1e-4, rtol=1e-3)
    host = find_peaks(ref["heatmaps"][0], DecodeConfig(peak_threshold=0.01, max_peaks_per_part=8))
    expected = np.zeros((18, 8, 3), np.float32)
    expected[:, :host.shape[1]] = host
    scored = expected[..., 2] > 0
    assert scored.any()
    np.testing.assert_allclose(got["peaks"][0][..., 2], expected[..., 2], atol=1e-4)
    np.testing.assert_allclose(got["peaks"][0][scored], expected[scored], atol=1e-3)
