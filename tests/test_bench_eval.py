"""`edge-sdk bench` and `edge-sdk eval` on the CPU target with real ONNX Runtime sessions and pycocotools."""

import json
import struct

import cv2
import numpy as np
import pytest
from conftest import COCO_MINI

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.model_meta import InputSpec
from edge_sdk.testing.oracle_model import build_oracle_model, make_oracle, stamp_frame_code

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    return make_oracle(tmp_path_factory.mktemp("oracle"), num_frames=8, people=2, video=None)


def png_size(path):
    data = open(path, "rb").read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", data[16:24])


def test_bench_json_fields_percentiles_and_plot(oracle, tmp_path, edge_sdk_cli):
    out, plot, page = tmp_path / "bench.json", tmp_path / "bench.png", tmp_path / "benchmarks.md"
    proc = edge_sdk_cli("bench", "--model", oracle.model_path, "--source", "synthetic?w=320&h=240", "--frames", 40,
                        "--warmup", 5, "--mode", "both", "-o", out, "--plot", plot, "--markdown", page, check=True)
    assert "pipelined / sequential fps" in proc.stdout
    result = json.loads(out.read_text())
    assert result["schema"] == "edge-sdk-bench/1"
    for key in ("created", "command", "device", "software", "settings", "runs", "ratios", "system"):
        assert key in result, key
    assert {r["mode"] for r in result["runs"]} == {"pipelined", "sequential"}
    for run in result["runs"]:
        assert run["frames"] == 40
        assert run["fps"] > 0
        assert len(run["fps_over_time"]) >= 2, "nothing to plot in the fps-over-time panel"
        assert "onnxruntime" in run["backend"].lower()
        lat = run["latency_ms"]
        for stage in ("preprocess", "infer", "decode", "end_to_end"):
            s = lat[stage]
            assert s["count"] == 40
            assert s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"], (stage, s)
        stage_means = sum(lat[s]["mean"] for s in lat if s != "end_to_end")
        assert stage_means <= lat["end_to_end"]["mean"] + 0.05, (stage_means, lat["end_to_end"])
    assert result["system"]["samples"], "the system sampler recorded nothing"
    assert "rss_mb" in result["system"]["summary"]
    width, height = png_size(plot)
    assert width > 400 and height > 200
    assert cv2.imread(str(plot)) is not None
    assert "| run | backend |" in page.read_text()


def test_bench_compare_interleaves_two_bundles(oracle, tmp_path, edge_sdk_cli):
    bundles = []
    for name in ("a", "b"):
        edge_sdk_cli("build", oracle.model_path, "--target", "cpu", "-o", tmp_path / name, check=True)
        bundles.append(tmp_path / name)
    out = tmp_path / "compare.json"
    edge_sdk_cli("bench", "--compare", *bundles, "--frames", 20, "--warmup", 2, "--mode", "pipelined",
                 "--rounds", 4, "-o", out, check=True)
    result = json.loads(out.read_text())
    assert [r["name"] for r in result["runs"]] == ["a", "b"]
    assert all(r["frames"] == 20 for r in result["runs"])
    assert result["settings"]["rounds"] == 4
    assert list(result["ratios"]) == ["b / a fps"]


def test_bench_bad_input(tmp_path, edge_sdk_cli):
    proc = edge_sdk_cli("bench", "--model", tmp_path / "missing.onnx", "--frames", 5)
    assert proc.returncode != 0
    assert "missing.onnx" in proc.stderr and "Traceback" not in proc.stderr


def _coco_mini_oracle(tmp_path, spec, empty=False):
    """Photos of coco_mini stamped with their oracle code + an oracle model with maps from their annotations."""
    gt = json.loads((COCO_MINI / "person_keypoints.json").read_text())
    folder = tmp_path / "images"
    folder.mkdir(parents=True)
    expected, widths, heights = [], [], []
    for k, image in enumerate(sorted(gt["images"], key=lambda im: im["id"])):
        photo = cv2.imread(str(COCO_MINI / "images" / image["file_name"]))
        image["file_name"] = image["file_name"].rsplit(".", 1)[0] + ".png"
        cv2.imwrite(str(folder / image["file_name"]), stamp_frame_code(photo, k, spec))
        people = [np.asarray(a["keypoints"], np.float32).reshape(17, 3) for a in gt["annotations"]
                  if a["image_id"] == image["id"] and a.get("num_keypoints", 0) > 0 and not empty]
        expected.append(np.stack(people) if people else np.zeros((0, 17, 3), np.float32))
        widths.append(image["width"])
        heights.append(image["height"])
    import onnx

    model_path = tmp_path / ("empty.onnx" if empty else "oracle.onnx")
    onnx.save(build_oracle_model(expected, widths, heights, spec), str(model_path))
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    return gt_path, folder, model_path, gt


def test_eval_oracle_near_one_and_nothing_is_zero(tmp_path, edge_sdk_cli):
    # Square input: the portrait OCHuman photos (heavily occluded people) keep enough map resolution.
    # At each photo's own size the decoder reaches ~0.99 (tests/test_decode.py); letterboxed into 640x640
    # (80x80 maps) the two overlapping OCHuman people of image 6 are the only real loss (AP ~0.89 overall).
    spec = InputSpec(height=640, width=640)
    gt_path, folder, oracle_path, _ = _coco_mini_oracle(tmp_path / "o", spec)
    out = tmp_path / "eval.json"
    proc = edge_sdk_cli("eval", "--model", oracle_path, "--coco", gt_path, "--images", folder, "-o", out,
                        "--results", tmp_path / "results.json", check=True)
    assert "Average Precision" in proc.stdout
    report = json.loads(out.read_text())
    assert report["images"] == 10 and not report["missing"]
    assert report["stats"]["AP"] >= 0.85, report["stats"]
    assert report["stats"]["AP50"] >= 0.9, report["stats"]
    assert len(json.loads((tmp_path / "results.json").read_text())) == report["detections"] > 20

    gt_path, folder, empty_path, _ = _coco_mini_oracle(tmp_path / "e", spec, empty=True)
    proc = edge_sdk_cli("eval", "--model", empty_path, "--coco", gt_path, "--images", folder, "-o", out, check=True)
    report = json.loads(out.read_text())
    assert report["detections"] == 0
    assert report["stats"]["AP"] == 0.0 and report["stats"]["AR"] == 0.0


def test_eval_missing_images_are_counted_and_skipped(tmp_path):
    from edge_sdk.eval.dataset import evaluate_dataset

    spec = InputSpec(height=256, width=320)
    gt_path, folder, oracle_path, gt = _coco_mini_oracle(tmp_path, spec)
    removed = sorted(gt["images"], key=lambda im: im["id"])[:3]
    for image in removed:
        (folder / image["file_name"]).unlink()
    report = evaluate_dataset(gt_path, folder, model=str(oracle_path), progress=False)
    assert sorted(report["missing"]) == sorted(im["file_name"] for im in removed)
    assert report["images"] == 7
    assert report["stats"]["AP"] > 0.5


def test_eval_rejects_coco_without_keypoints(tmp_path, edge_sdk_cli):
    gt = json.loads((COCO_MINI / "person_keypoints.json").read_text())
    for cat in gt["categories"]:
        cat.pop("keypoints")
    for ann in gt["annotations"]:
        ann.pop("keypoints")
        ann["num_keypoints"] = 0
    bad = tmp_path / "instances.json"
    bad.write_text(json.dumps(gt))
    with pytest.raises(ConfigError, match="keypoints"):
        from edge_sdk.eval.dataset import evaluate_dataset

        evaluate_dataset(bad, COCO_MINI / "images", model="unused.onnx")
    proc = edge_sdk_cli("eval", "--model", "x.onnx", "--coco", bad, "--images", COCO_MINI / "images")
    assert proc.returncode == 2 and "keypoints" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_samples_gpu_memory_from_a_cuda_backend():
    """With a backend that holds a CUDA device (the TensorRT one), each sample carries GPU memory in use."""
    import time

    from edge_sdk.bench.runner import _gpu_memory_probe
    from edge_sdk.runtime.sysmon import SystemSampler

    class Device:
        calls = 0

        def mem_get_info(self):
            Device.calls += 1
            return 6 * 1048576 * 1024, 8 * 1048576 * 1024  # 6 GiB free of 8

    class Backend:
        device = Device()

    assert _gpu_memory_probe([("cpu", object())]) is None
    with SystemSampler(0.05, extra=_gpu_memory_probe([("gpu", Backend())])) as sampler:
        time.sleep(0.3)
    assert sampler.samples and all(s["gpu_mem_used_mb"] == 2048.0 for s in sampler.samples)
    assert sampler.summary()["gpu_mem_used_mb"]["max"] == 2048.0
