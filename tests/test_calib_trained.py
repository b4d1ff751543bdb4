"""Calibration of a model from the training code: tinyvgg trained for a few real TensorFlow steps on
synthetic people and exported by edge_sdk.training.export (tf2onnx), calibrated on frames of the same generator."""

import numpy as np
import onnx
import pytest

tf = pytest.importorskip("tensorflow")

from edge_sdk.calibration import calibrate, read_cache  # noqa: E402
from edge_sdk.calibration.accuracy import run_outputs  # noqa: E402
from edge_sdk.calibration.qdq import float_nodes_of, quantizable_nodes  # noqa: E402
from edge_sdk.calibration.ranges import activation_tensors  # noqa: E402

HEIGHT, WIDTH = 96, 128


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import cv2
    from edge_sdk.training.augment import AugmentConfig
    from edge_sdk.training.config import TrainConfig
    from edge_sdk.training.data.sample_sources import SyntheticSource
    from edge_sdk.training.export import export_onnx
    from edge_sdk.training.loop import train
    from edge_sdk.training.models import ModelConfig

    root = tmp_path_factory.mktemp("trained")
    source = SyntheticSource(count=4, height=HEIGHT, width=WIDTH, seed=5, people=(1, 2))
    config = TrainConfig(output=str(root / "run"), model=ModelConfig(
        backbone="tinyvgg", input_height=HEIGHT, input_width=WIDTH, width=0.25, stages=2, stage_width=32),
        steps=8, batch=4, learning_rate=2e-3, warmup_steps=2, schedule="constant", augment=AugmentConfig.none(),
        progress=False, checkpoint_every=10 ** 6, seed=0)
    train(config, source=source)
    export_onnx(root / "run", root / "pose.onnx", log=lambda _msg: None)
    frames = root / "frames"
    frames.mkdir()
    generator = SyntheticSource(count=16, height=HEIGHT, width=WIDTH, seed=9, people=(1, 3)).generator
    for i in range(16):
        cv2.imwrite(str(frames / "f{:02d}.png".format(i)), generator.sample(i).image)
    return root


def test_trained_model_calibrates(trained):
    result = calibrate(trained / "pose.onnx", trained / "frames", trained / "out", method="minmax", count=12,
                       holdout=4, cache_dir=False, progress=False, plot=False)
    report = result["report_data"]
    fp32 = onnx.load(trained / "pose.onnx")
    qdq = onnx.load(result["qdq_model"])
    convs = quantizable_nodes(fp32)
    assert len(convs) > 20 and report["quantized_nodes"] + report["float_nodes"] != []
    # the fallback kept exactly the reported nodes in float, and the result meets the threshold
    assert sorted(float_nodes_of(qdq, convs)) == sorted(result["float_nodes"])
    assert result["passed"] and report["accuracy"]["final"]["drop"] <= report["threshold"]
    # every activation tensor of the exported graph has a TensorRT scale, equal to the Q/DQ one
    cache = read_cache(result["cache"])
    assert set(cache.scales) == set(activation_tensors(fp32)) and len(cache.scales) > 50
    # the Q/DQ model runs in ONNX Runtime and stays close to FP32
    frames = np.random.default_rng(0).normal(0, 1, (2, 3, HEIGHT, WIDTH)).astype(np.float32)
    a = run_outputs(fp32, frames, ["heatmaps", "pafs"])
    b = run_outputs(qdq, frames, ["heatmaps", "pafs"])
    assert a["heatmaps"].shape == b["heatmaps"].shape == (2, 19, HEIGHT // 8, WIDTH // 8)
    assert np.abs(a["heatmaps"] - b["heatmaps"]).mean() < 0.1 * np.abs(a["heatmaps"]).mean() + 1e-3


def test_trained_model_strict_threshold_falls_back(trained):
    result = calibrate(trained / "pose.onnx", trained / "frames", trained / "out_strict", method="entropy", count=12,
                       holdout=4, threshold=0.002, cache_dir=False, progress=False, plot=False)
    report = result["report_data"]
    assert report["accuracy"]["int8"]["drop"] > 0.002  # all-INT8 misses the strict threshold ...
    assert result["passed"] and result["float_nodes"]  # ... so the most sensitive layers went back to float
    assert report["accuracy"]["final"]["drop"] < report["accuracy"]["int8"]["drop"]
    ranked = [name for name, _ in report["sensitivity"]]
    assert result["float_nodes"] == ranked[:len(result["float_nodes"])]
    qdq = onnx.load(result["qdq_model"])
    assert sorted(float_nodes_of(qdq, ranked)) == sorted(result["float_nodes"])
    assert sorted(float_nodes_of(qdq, ranked) + report["quantized_nodes"]) == sorted(ranked)
