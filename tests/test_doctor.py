"""`edge-sdk doctor` and backend selection on this CPU machine (no TensorRT, no GPU): ONNX Runtime, said clearly."""

import json
import os
import re

import pytest

from edge_sdk.runtime.backends.selection import select_backend
from edge_sdk.runtime.doctor import collect, format_report, parse_nv_tegra_release, probe_jetson
from tests.tensorrt_double import install_tensorrt_double

SAMPLES = [
    ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, DATE: Sat Feb 19 17:05:08 "
     "UTC 2022", "32.7.1", "4.6.1", "t210ref"),
    ("# R32 (release), REVISION: 6.1, GCID: 27863751, BOARD: t186ref, EABI: aarch64, DATE: Mon Jul 26 19:36:31 "
     "UTC 2021", "32.6.1", "4.6", "t186ref"),
    ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 "
     "UTC 2023", "35.4.1", "5.1.2", "t186ref"),
    ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 "
     "UTC 2025", "36.4.3", "6.2", "generic"),
    ("# R36 (release), REVISION: 9.9, BOARD: generic", "36.9.9", None, "generic"),  # future release
]


@pytest.mark.parametrize("text,l4t,jetpack,board", SAMPLES)
def test_nv_tegra_release_parser(text, l4t, jetpack, board):
    info = parse_nv_tegra_release(text)
    assert (info["l4t"], info["jetpack"], info["board"]) == (l4t, jetpack, board)


@pytest.mark.parametrize("text", ["", "Ubuntu 22.04", "# R32 release REVISION 7.1"])
def test_nv_tegra_release_parser_rejects_other_text(text):
    assert parse_nv_tegra_release(text) is None


def test_probe_jetson_reads_the_release_and_model_files(tmp_path):
    (tmp_path / "rel").write_text(SAMPLES[2][0] + "\n")
    (tmp_path / "model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\0")
    info = probe_jetson(str(tmp_path / "rel"), str(tmp_path / "model"))
    assert info["is_jetson"] and info["jetpack"] == "5.1.2" and info["model"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert probe_jetson(str(tmp_path / "missing")) == {"is_jetson": False}


def test_doctor_cli_reports_and_chooses_onnxruntime(edge_sdk_cli):
    text = edge_sdk_cli("doctor", check=True).stdout
    for label in ("Python", "numpy", "OpenCV", "paho-mqtt", "TensorRT", "CUDA driver", "Jetson", "ONNX Runtime"):
        assert label in text
    assert "CPUExecutionProvider" in text
    assert "The runtime will use: onnxruntime because TensorRT is not importable" in text
    report = json.loads(edge_sdk_cli("doctor", "--json", check=True).stdout)
    assert report["runtime_will_use"]["backend"] == "onnxruntime"
    assert report["tensorrt"]["version"] is None and "tensorrt" in report["tensorrt"]["error"]
    assert report["packages"]["numpy"][0].isdigit() and report["package_errors"] == {}


def test_doctor_with_tensorrt_but_no_cuda_binding_says_so(monkeypatch):
    import sys

    trt = install_tensorrt_double(monkeypatch, "8.2", num_dla_cores=2)
    monkeypatch.setitem(sys.modules, "paho", None)  # a device without paho-mqtt: reported, not raised
    monkeypatch.setitem(sys.modules, "paho.mqtt", None)
    report = collect()
    assert report["packages"]["paho-mqtt"] is None
    assert re.search(r"paho-mqtt\s+not available \(ModuleNotFoundError", format_report(report))
    assert report["tensorrt"] == {"version": trt.__version__, "error": "", "dla_cores": 2}
    assert report["runtime_will_use"]["backend"] == "onnxruntime"
    assert "neither cuda-python nor pycuda" in report["runtime_will_use"]["because"]
    assert re.search(r"DLA cores\s+2\n", format_report(report))


class Opened:
    def __init__(self, directory, engine=None, model=None):
        self.dir = str(directory)
        self.engine_path = engine
        self.model_path = model


def test_selection_rules(tmp_path):
    trt_ok = lambda: ("10.3.0", "")  # noqa: E731
    trt_missing = lambda: (None, "TensorRT is not importable (ModuleNotFoundError)")  # noqa: E731
    cuda_ok = lambda: ("cuda-python", "")  # noqa: E731
    engine = tmp_path / "engine.plan"
    engine.write_bytes(b"plan")
    with_engine = Opened(tmp_path, engine=str(engine))
    assert select_backend("auto", with_engine, trt_ok, cuda_ok) == (
        "tensorrt", "TensorRT 10.3.0 with cuda-python runs the bundle's engine")
    name, why = select_backend("auto", with_engine, trt_missing, cuda_ok)
    assert name == "onnxruntime" and "python3-libnvinfer" in why
    name, why = select_backend("auto", Opened(tmp_path), trt_ok, cuda_ok)
    assert name == "onnxruntime" and "no engine" in why
    name, why = select_backend("auto", None, trt_ok, cuda_ok)
    assert name == "onnxruntime" and "run a bundle" in why
    assert select_backend("onnxruntime", with_engine, trt_ok, cuda_ok)[0] == "onnxruntime"
    assert select_backend("tensorrt", None, trt_missing, cuda_ok)[0] == "tensorrt"  # the loader then explains
    assert os.path.isfile(str(engine))


def test_selection_follows_the_bundles_target(tmp_path):
    trt_ok = lambda: ("10.3.0", "")  # noqa: E731
    cuda_ok = lambda: ("cuda-python", "")  # noqa: E731
    engine = tmp_path / "engine.plan"
    engine.write_bytes(b"plan")
    cpu = Opened(tmp_path, engine=str(engine))
    cpu.manifest = {"backend": "onnxruntime", "target": "cpu"}
    assert select_backend("auto", cpu, trt_ok, cuda_ok) == (
        "onnxruntime", "the bundle was made for target cpu (onnxruntime backend)")
    gpu = Opened(tmp_path, engine=str(engine))
    gpu.manifest = {"backend": "tensorrt", "target": "jetson-orin-nano"}
    assert select_backend("auto", gpu, trt_ok, cuda_ok)[0] == "tensorrt"


def test_doctor_judges_a_bundle(tmp_path, edge_sdk_cli):
    import onnx

    from edge_sdk.engine.build import BuildRequest, build
    from edge_sdk.graph.synthetic_model import make_pose_model

    onnx.save(make_pose_model(seed=5), str(tmp_path / "pose.onnx"))
    request = BuildRequest(model=str(tmp_path / "pose.onnx"), target="jetson-orin-nano", output=str(tmp_path / "b"),
                           precision="fp16", input_size=(96, 64), engine="device", archive=False)
    result = build(request, echo=lambda line: None)
    proc = edge_sdk_cli("doctor", "--json", "--bundle", str(result.bundle_dir), check=True)
    report = json.loads(proc.stdout)
    assert report["bundle"] == str(result.bundle_dir)
    assert report["runtime_will_use"]["backend"] == "onnxruntime"
    assert "TensorRT is not importable" in report["runtime_will_use"]["because"]
    stack = report["bundle_software"]
    assert stack["built_for"] == "JetPack 6.2 (TensorRT 10.3, L4T R36.4)"
    assert stack["verdict"] == "this machine has no TensorRT"
    text = edge_sdk_cli("doctor", "--bundle", str(result.bundle_dir), check=True).stdout
    assert "Built for     JetPack 6.2 (TensorRT 10.3, L4T R36.4): this machine has no TensorRT" in text
    bad = edge_sdk_cli("doctor", "--bundle", str(tmp_path / "missing"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("device_version, verdict", [
    ("10.3.0.30", "matches this TensorRT 10.3.0.30"),
    ("8.6.2.3", "does NOT match this TensorRT 8.6.2.3: rebuild with --jetpack for this device"),
])
def test_doctor_says_whether_the_bundle_stack_is_this_devices(device_version, verdict):
    from edge_sdk.runtime.doctor import bundle_stack

    bundle = type("B", (), {"manifest": {"software": {"jetpack": "6.2", "l4t": "R36.4", "tensorrt": "10.3"}}})()
    assert bundle_stack(bundle, device_version)["verdict"] == verdict
    assert bundle_stack(None, device_version) is None


def test_doctor_lists_the_stacks_its_installed_bundles_were_built_for(tmp_path, edge_sdk_cli):
    """A device flashed twice: doctor names each release, the JetPack/TensorRT its bundle was built for, and
    whether this machine runs it (here: no TensorRT at all)."""
    for version, jetpack, tensorrt in (("v1", "6.0", "8.6"), ("v2", "6.2", "10.3")):
        bundle = tmp_path / "versions" / version / "bundle" / "orin"
        bundle.mkdir(parents=True)
        (bundle / "manifest.json").write_text(json.dumps({"target": "jetson-agx-orin", "software": {
            "jetpack": jetpack, "l4t": None, "tensorrt": tensorrt}}))
    (tmp_path / "current").symlink_to("versions/v2")
    report = json.loads(edge_sdk_cli("doctor", "--json", "--root", str(tmp_path), check=True).stdout)
    assert report["installed"] == [
        {"version": "v1", "current": False, "target": "jetson-agx-orin", "built_for": "JetPack 6.0 (TensorRT 8.6)",
         "verdict": "this machine has no TensorRT"},
        {"version": "v2", "current": True, "target": "jetson-agx-orin", "built_for": "JetPack 6.2 (TensorRT 10.3)",
         "verdict": "this machine has no TensorRT"}]
    text = edge_sdk_cli("doctor", "--root", str(tmp_path), check=True).stdout
    assert "v2 (current) jetson-agx-orin, built for JetPack 6.2 (TensorRT 10.3)" in text
