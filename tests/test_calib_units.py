"""Calibration building blocks: TensorRT's entropy algorithm, the calib.cache format, Q/DQ placement,
calibration data (folders, video, COCO, bad input) and the pose-agreement metric (real pycocotools)."""

import re
import warnings
from collections import Counter

import cv2
import numpy as np
import onnx
import pytest
from conftest import COCO_MINI, VIDEOS
from edge_sdk.calibration import hadamard_model
from edge_sdk.calibration.accuracy import pose_agreement_ap
from edge_sdk.calibration.data import CalibrationSource, CalibrationWarning, load_frames, parse_source
from edge_sdk.calibration.qdq import build_qdq_model, check_not_quantized, prepare, quantizable_nodes
from edge_sdk.calibration.ranges import entropy_amax, percentile_amax
from edge_sdk.calibration.trt_cache import (
    CalibrationCache,
    hex_to_scale,
    read_cache,
    retarget_cache,
    scale_to_hex,
    trt_version_code,
    write_cache,
)

from edge_sdk.errors import ConfigError, ModelError, SourceError
from edge_sdk.runtime.model_meta import InputSpec


def reference_entropy_amax(hist, edges, num_levels=128, start_bin=128):
    """Direct port of the loop in NVIDIA's pytorch-quantization ``_compute_amax_entropy`` (TensorRT's
    EntropyCalibrator2 algorithm) -- slow, kept here to check the vectorised version."""
    bins = np.asarray(hist, dtype=np.float64).copy()
    bins[0] = bins[1]
    divergences = []
    for i in range(start_bin, len(bins) + 1):
        space = np.linspace(0, i, num=num_levels + 1)
        digitized = np.digitize(range(i), space) - 1
        digitized[bins[:i] == 0] = -1
        level_sum = np.zeros(num_levels)
        for idx, d in enumerate(digitized):
            if d != -1:
                level_sum[d] += bins[idx]
        for key, val in Counter(digitized).items():
            if key != -1:
                level_sum[key] /= val
        candidate = np.array([level_sum[d] if d != -1 else 0.0 for d in digitized])
        reference = bins[:i].copy()
        reference[-1] += bins[i:].sum()
        p, q = reference / reference.sum(), candidate / candidate.sum()
        mask = p > 0
        divergences.append(np.inf if np.any(q[mask] == 0) else float(np.sum(p[mask] * np.log(p[mask] / q[mask]))))
    divergences = np.array(divergences)
    return edges[len(divergences) - 1 - int(np.argmin(divergences[::-1])) + start_bin]


@pytest.mark.parametrize("kind", ["gauss+outliers", "relu-like", "sparse"])
def test_entropy_matches_reference_algorithm(kind):
    rng = np.random.default_rng(3)
    if kind == "gauss+outliers":
        x = np.abs(np.concatenate([rng.normal(0, 1, 20000), rng.uniform(6, 12, 30)]))
    elif kind == "relu-like":
        x = np.maximum(rng.normal(0, 1, 20000), 0)
    else:
        x = np.round(np.abs(rng.normal(0, 4, 3000)))
    hist, edges = np.histogram(x, bins=512, range=(0, x.max()))
    amax = entropy_amax(hist, edges)
    assert amax == reference_entropy_amax(hist, edges)


def test_entropy_clips_rare_outliers_keeps_the_bulk():
    rng = np.random.default_rng(0)
    x = np.abs(np.concatenate([rng.normal(0, 1, 100000), np.full(10, 50.0)]))
    hist, edges = np.histogram(x, bins=2048, range=(0, x.max()))
    amax = entropy_amax(hist, edges)
    assert np.percentile(x, 99.9) < amax < 10.0


def test_percentile_amax():
    x = np.linspace(0, 100, 100001)
    hist, edges = np.histogram(x, bins=2048, range=(0, 100))
    assert abs(percentile_amax(hist, edges, 99.0) - 99.0) < 0.1
    assert percentile_amax(hist, edges, 100.0) == pytest.approx(100.0)


def test_trt_cache_format_and_round_trip(tmp_path):
    # "images: 3c010a14" is a line of a cache TensorRT wrote for a [0, 1] input: big-endian float32 bits
    assert hex_to_scale("3c010a14") == pytest.approx(1.0 / 127.0, rel=1e-3)
    assert scale_to_hex(hex_to_scale("3c010a14")) == "3c010a14"
    assert scale_to_hex(1.0 / 127.0) == "3c010204"
    assert trt_version_code("8.2.1") == 8201 and trt_version_code("10.3.0") == 100300
    scales = {"image": 1.0 / 127.0, "stage1/Conv_output_0": 0.0123, "model/conv2d_1/BiasAdd:0": 0.5, "tiny": 1.5e-7}
    path = write_cache(tmp_path / "calib.cache", scales, "EntropyCalibration2", "8.6.1")
    lines = path.read_text().splitlines()
    assert lines[0] == "TRT-8601-EntropyCalibration2"
    assert all(re.fullmatch(r".+: [0-9a-f]{8}", line) for line in lines[1:])
    back = read_cache(path)
    assert back.algorithm == "EntropyCalibration2" and back.version == 8601
    assert back.scales == {k: float(np.float32(v)) for k, v in scales.items()}
    retarget_cache(path, "10.3.0")
    assert read_cache(path).header == "TRT-100300-EntropyCalibration2" and read_cache(path).scales == back.scales
    with pytest.raises(ConfigError, match="header"):
        CalibrationCache.from_text("image: 3c010a14\n")
    with pytest.raises(ConfigError, match="line 2"):
        CalibrationCache.from_text("TRT-8201-MinMaxCalibration\nimage 3c010a14\n")


def test_qdq_placement_is_tensorrt_style():
    prepared = prepare(hadamard_model.build_model())
    amax = {"image": 1.0, "stage1_conv": 1.0, "stage1_relu": 1.0, "heatmaps": 1.0, "pafs": 1.0}
    model = build_qdq_model(prepared, amax)
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert qs
    for q in qs:
        zero = inits[q.input[2]]
        assert zero.dtype == np.int8 and not zero.any()  # symmetric int8, zero point 0
        assert q.output[0] not in outputs and q.input[0] not in outputs
        (dq,) = consumers[q.output[0]]
        assert dq.op_type == "DequantizeLinear"
        assert {c.op_type for c in consumers[dq.output[0]]} <= {"Conv", "ConvTranspose", "MatMul", "Gemm"}
        if q.input[0] in inits:  # weight: per output channel, axis 0
            axis = [a.i for a in q.attribute if a.name == "axis"]
            assert axis in ([], [0]) and inits[q.input[1]].shape == (inits[q.input[0]].shape[0],)
        else:  # activation: per tensor, scale = amax / 127
            assert inits[q.input[1]].shape == () and inits[q.input[1]] == pytest.approx(1.0 / 127.0)
    # bias stays float, weights stay float behind a Q/DQ pair
    assert inits["stage1.bias"].dtype == np.float32 and inits["stage1.weight"].dtype == np.float32
    assert quantizable_nodes(prepared) == ["stage1", "heatmap_head", "paf_head"]


def test_already_quantised_model_is_refused():
    prepared = prepare(hadamard_model.build_model())
    model = build_qdq_model(prepared, {"image": 1.0, "stage1_relu": 1.0})
    with pytest.raises(ModelError, match="already quantised"):
        check_not_quantized(model, "model.int8.onnx")


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    hadamard_model.write_frames(folder, 6, seed=1)
    return folder


def test_images_split_and_cache(frame_folder, tmp_path):
    spec = hadamard_model.input_spec()
    first = load_frames(frame_folder, spec, count=4, holdout=2, cache_dir=tmp_path, progress=False)
    assert first.calib.shape == (4, 3, 128, 192) and first.holdout.shape == (2, 3, 128, 192)
    assert not set(first.calib_names) & set(first.holdout_names)
    assert not first.from_cache
    again = load_frames(frame_folder, spec, count=4, holdout=2, cache_dir=tmp_path, progress=False)
    assert again.from_cache and np.array_equal(again.calib, first.calib) and again.calib_names == first.calib_names
    other = load_frames(frame_folder, spec, count=4, holdout=2, seed=5, cache_dir=tmp_path, progress=False)
    assert not other.from_cache


def test_fewer_images_than_asked_warns_and_goes_on(frame_folder):
    with pytest.warns(CalibrationWarning, match="asked for 50"):
        frames = load_frames(frame_folder, hadamard_model.input_spec(), count=50, holdout=2, cache_dir=False,
                             progress=False)
    assert len(frames.calib) == 5 and len(frames.holdout) == 1  # a fifth is held out when frames are short


def test_empty_missing_and_unreadable_folders(tmp_path):
    spec = InputSpec(height=64, width=64)
    with pytest.raises(ConfigError, match="does not exist"):
        load_frames(tmp_path / "nope", spec, cache_dir=False, progress=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ConfigError, match="no images"):
        load_frames(tmp_path / "empty", spec, cache_dir=False, progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / "img{}.jpg".format(i)).write_bytes(b"this is not a jpeg")
    with pytest.raises(ConfigError, match="unreadable"):
        load_frames(bad, spec, cache_dir=False, progress=False)


def test_single_channel_images(tmp_path):
    spec = InputSpec(height=64, width=64)
    gray = tmp_path / "gray"
    gray.mkdir()
    for i in range(3):
        cv2.imwrite(str(gray / "g{}.png".format(i)), np.full((48, 80), 40 * i, np.uint8))
    with pytest.raises(ConfigError, match="single-channel.*colour"):
        load_frames(gray, spec, cache_dir=False, progress=False)
    cv2.imwrite(str(gray / "colour.png"), np.full((48, 80, 3), 99, np.uint8))
    cv2.imwrite(str(gray / "colour2.png"), np.full((48, 80, 3), 50, np.uint8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = load_frames(gray, spec, count=1, holdout=1, cache_dir=False, progress=False)
    assert any("single-channel" in str(w.message) and "colour" in str(w.message) for w in caught)
    assert len(frames.calib) == 1 and len(frames.holdout) == 1


def test_video_every_nth_frame():
    video = VIDEOS / "posetrack18_000001.mp4"
    spec = InputSpec(height=64, width=96)
    frames = load_frames(CalibrationSource("video", video, every=2), spec, count=2, holdout=1, cache_dir=False,
                         progress=False)  # the clip has 5 frames
    assert len(frames.calib) == 2 and len(frames.holdout) == 1
    indices = sorted(int(n.split("#")[1]) for n in frames.calib_names + frames.holdout_names)
    assert indices == [0, 2, 4]
    with pytest.raises(SourceError, match="cannot open"):
        bad = VIDEOS.parent / "coco_mini" / "person_keypoints.json"
        load_frames(CalibrationSource("video", bad), spec, cache_dir=False, progress=False)


def test_coco_subset():
    source = parse_source("{}:{}".format(COCO_MINI / "person_keypoints.json", COCO_MINI / "images"))
    assert source.kind == "coco"
    frames = load_frames(source, InputSpec(height=64, width=96), count=6, holdout=2, cache_dir=False,
                         progress=False)
    assert frames.calib.shape == (6, 3, 64, 96) and len(frames.holdout) == 2
    assert all(n.endswith(".jpg") for n in frames.calib_names)


def test_pose_agreement_ap_with_pycocotools():
    rng = np.random.default_rng(0)
    people = [hadamard_model.random_people(rng, 128, 192) for _ in range(4)]
    reference = [(p[:, :17].copy(), np.ones(len(p), np.float32)) for p in people]
    assert pose_agreement_ap(reference, reference) == pytest.approx(1.0)
    shaken = [(k + np.concatenate([rng.normal(0, 4, k[..., :2].shape), np.zeros(k[..., 2:].shape)], -1), s)
              for k, s in reference]
    ap = pose_agreement_ap(reference, shaken)
    assert 0.0 < ap < 1.0
    missing = [(k[:0], s[:0]) for k, s in reference]
    assert pose_agreement_ap(reference, missing) == 0.0


def test_onnxruntime_style_quantises_conv_outputs_too():
    prepared = prepare(hadamard_model.build_model())
    amax = {"image": 1.0, "stage1_conv": 1.0, "stage1_relu": 1.0, "heatmaps": 1.0, "pafs": 1.0}
    trt_style = build_qdq_model(prepared, amax)
    ort_style = build_qdq_model(prepared, amax, style="onnxruntime")
    quantised_in = {n.input[0] for n in ort_style.graph.node if n.op_type == "QuantizeLinear"}
    assert "stage1_conv" in quantised_in or "stage1_relu" in quantised_in
    assert len(ort_style.graph.node) != len(trt_style.graph.node)
    with pytest.raises(ValueError, match="style"):
        build_qdq_model(prepared, amax, style="tflite")
