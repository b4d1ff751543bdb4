"""End to end: calibrate() and `edge-sdk calibrate` on a real ONNX pose model, run in real ONNX Runtime.

The model is edge_sdk.calibration.hadamard_model's hand-built 2-stage conv net, whose FP32 outputs are the
oracle maps of the people drawn in its frames (so agreement numbers mean something); ``outlier=True`` gives it
a hot channel that no per-tensor INT8 range survives, so the sensitive-layer fallback must act.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from edge_sdk.calibration import calibrate, hadamard_model, read_cache
from edge_sdk.calibration.accuracy import load_decoder, run_outputs
from edge_sdk.calibration.qdq import float_nodes_of

from edge_sdk.errors import ModelError


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    hadamard_model.build_model(root / "pose.onnx")
    hadamard_model.build_model(root / "pose_hot.onnx", outlier=True)
    hadamard_model.write_frames(root / "frames", 28, seed=7)
    return root


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def entropy_run(workdir):
    return calibrate(workdir / "pose.onnx", workdir / "frames", workdir / "out_a", method="entropy", count=20,
                     cache_dir=workdir / "cache", progress=False)


def test_qdq_model_runs_and_agrees_with_fp32(entropy_run, workdir):
    result = entropy_run
    assert result["passed"] and result["float_nodes"] == []
    assert {"qdq_model", "cache", "report", "summary", "passed", "ranges"} <= set(result)
    report = json.loads(Path(result["report"]).read_text())
    final = report["accuracy"]["final"]
    assert final["drop"] <= report["threshold"]
    assert report["frames"] == {"requested": 20, "calibration": 20, "holdout": 8, "from_cache": False}
    # the INT8 model really is INT8 on every Conv, and really runs in ONNX Runtime
    qdq = onnx.load(result["qdq_model"])
    assert float_nodes_of(qdq, ["stage1", "heatmap_head", "paf_head"]) == []
    people = hadamard_model.random_people(np.random.default_rng(1), 128, 192)
    frames = np.stack([hadamard_model.draw_frame(people, 128, 192)[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)
                       / 255.0])
    fp32 = run_outputs(onnx.load(workdir / "pose.onnx"), frames, ["heatmaps", "pafs"])
    int8 = run_outputs(qdq, frames, ["heatmaps", "pafs"])
    assert not np.array_equal(fp32["heatmaps"], int8["heatmaps"])  # quantisation happened
    assert np.abs(fp32["heatmaps"] - int8["heatmaps"]).mean() < 0.02
    meta = json.loads({p.key: p.value for p in qdq.metadata_props}["edge_sdk"])
    assert meta["extra"]["quantization"]["method"] == "entropy" and meta["input"]["height"] == 128
    if load_decoder() is None:
        assert "decoder not available" in report["accuracy"]["note"]
    else:
        assert final["pose_ap"] is not None and final["pose_ap"] >= 1.0 - report["threshold"]
    assert "PASS" in result["summary"] and Path(report["files"]["report_text"]).is_file()


def test_cache_parses_back_to_the_same_scales(entropy_run, workdir):
    cache = read_cache(entropy_run["cache"])
    lines = Path(entropy_run["cache"]).read_text().splitlines()
    assert lines[0] == "TRT-8201-EntropyCalibration2" == cache.header
    tensors = {"image", "stage1_conv", "stage1_relu", "heatmaps", "pafs"}
    assert set(cache.scales) == tensors == set(entropy_run["ranges"])
    for name, amax in entropy_run["ranges"].items():
        assert cache.scales[name] == float(np.float32(amax / 127.0))
    # the Q/DQ model uses the same activation scales as the cache
    qdq = onnx.load(entropy_run["qdq_model"])
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in qdq.graph.initializer}
    assert float(inits["stage1_relu_scale"]) == pytest.approx(cache.scales["stage1_relu"], rel=1e-6)


def test_deterministic(entropy_run, workdir):
    again = calibrate(workdir / "pose.onnx", workdir / "frames", workdir / "out_b", method="entropy", count=20,
                      cache_dir=False, progress=False, plot=False)
    assert again["ranges"] == entropy_run["ranges"]
    assert sha256(again["qdq_model"]) == sha256(entropy_run["qdq_model"])
    assert sha256(again["cache"]) == sha256(entropy_run["cache"])


def test_sensitive_layers_fall_back_to_float(workdir):
    result = calibrate(workdir / "pose_hot.onnx", workdir / "frames", workdir / "out_hot", method="minmax",
                       count=20, cache_dir=workdir / "cache", progress=False, plot=False)
    report = result["report_data"]
    assert report["accuracy"]["int8"]["drop"] > report["threshold"]  # all-INT8 is broken by the hot channel
    assert result["passed"] and report["accuracy"]["final"]["drop"] <= report["threshold"]
    assert sorted(result["float_nodes"]) == ["heatmap_head", "paf_head"]
    assert [name for name, _ in report["sensitivity"]][:2] == result["float_nodes"]
    qdq = onnx.load(result["qdq_model"])
    assert sorted(float_nodes_of(qdq, ["stage1", "heatmap_head", "paf_head"])) == sorted(result["float_nodes"])
    assert report["quantized_nodes"] == ["stage1"]
    assert "kept in float (mixed precision, 2 of 3 layers): heatmap_head, paf_head" in result["summary"]
    meta = json.loads({p.key: p.value for p in qdq.metadata_props}["edge_sdk"])
    assert meta["extra"]["quantization"]["float_nodes"] == result["float_nodes"]
    assert Path(result["cache"]).read_text().startswith("TRT-8201-MinMaxCalibration\n")


def test_already_quantised_model(entropy_run, workdir):
    with pytest.raises(ModelError, match="already quantised"):
        calibrate(entropy_run["qdq_model"], workdir / "frames", workdir / "out_c", count=4, progress=False)


def test_cli(edge_sdk_cli, workdir, tmp_path):
    out = tmp_path / "cli" / "pose.int8.onnx"
    proc = edge_sdk_cli("calibrate", workdir / "pose.onnx", "--images", workdir / "frames", "--method",
                        "percentile", "--count", "40", "--trt-version", "8.6.1", "-o", out,
                        env={"EDGE_SDK_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "INT8 calibration of pose.onnx: percentile on 23 frames" in proc.stdout  # 28 frames, 5 held out
    assert "warning: asked for 40 calibration frames" in proc.stderr and "Traceback" not in proc.stderr
    assert out.is_file() and read_cache(out.parent / "calib.cache").header == "TRT-8601-EntropyCalibration2"
    bad = edge_sdk_cli("calibrate", workdir / "pose.onnx", "--images", tmp_path / "nothing-here")
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_rewritten_uint8_nhwc_model(workdir, tmp_path):
    """After `edge-sdk rewrite` folded the normalisation (uint8 NHWC input), frames follow the new spec."""
    from edge_sdk.graph.common import get_meta
    from edge_sdk.graph.normalize import fold_input_normalization

    model = onnx.load(workdir / "pose.onnx")
    folded, meta, _notes = fold_input_normalization(model, get_meta(model))
    assert meta.input.dtype == "uint8" and meta.input.layout == "NHWC"
    onnx.save(folded, tmp_path / "pose_u8.onnx")
    result = calibrate(tmp_path / "pose_u8.onnx", workdir / "frames", tmp_path / "out", count=12, cache_dir=False,
                       progress=False, plot=False)
    assert result["passed"] and "image" not in result["ranges"]  # a uint8 input needs no scale
    qdq = onnx.load(result["qdq_model"])
    assert qdq.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert float_nodes_of(qdq, ["stage1", "heatmap_head", "paf_head"]) == []
