"""`edge-sdk build` + bundles: precision decisions from the target, what the bundle holds, and that the
runtime's open_bundle refuses tampered, incomplete or foreign bundles."""

import json
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from edge_sdk.targets import get_target

from edge_sdk.engine.build import BuildRequest, build
from edge_sdk.engine.precision import decide_precision
from edge_sdk.errors import BundleError, ConfigError, ModelError
from edge_sdk.graph.common import get_meta
from edge_sdk.graph.synthetic_model import make_pose_model
from edge_sdk.runtime.bundle import open_bundle
from edge_sdk.runtime.preprocess import preprocess_frame
from tests.tensorrt_double import install_tensorrt_double

SIZE = (96, 64)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "pose.onnx"
    onnx.save(make_pose_model(seed=7), str(path))
    return path


def quiet_build(**kwargs):
    lines = []
    kwargs.setdefault("input_size", SIZE)
    result = build(BuildRequest(**kwargs), echo=lines.append)
    return result, "\n".join(lines)


@pytest.fixture(scope="module")
def tx2_bundle(model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "tx2"
    result, _ = quiet_build(model=str(model_path), target="jetson-tx2", output=str(out), precision="int8",
                            peaks=5, engine="device")
    return result


def test_cli_tx2_int8_builds_fp16_and_says_why(model_path, tmp_path, edge_sdk_cli):
    out = tmp_path / "tx2"
    proc = edge_sdk_cli("build", model_path, "--target", "jetson-tx2", "--int8", "--input", "96x64", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "precision FP16 (requested int8)" in proc.stdout and "no fast INT8" in proc.stdout
    device_lines = [line for line in proc.stdout.splitlines() if "built on the device at first start" in line]
    assert len(device_lines) == 1 and "specific to one GPU" in device_lines[0]  # one line, says why
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"]["requested"] == "int8" and manifest["precision"]["used"] == "fp16"
    assert "no fast INT8" in manifest["precision"]["reason"]
    assert manifest["engine"]["status"] == "build-on-device" and manifest["engine"]["options"]["precision"] == "fp16"
    assert manifest["engine"]["options"]["workspace_mb"] == get_target("jetson-tx2").default_workspace_mb
    for line in ("fold", "normalize", "precision", "model.onnx", "manifest.json"):
        assert line in proc.stdout.split("\n\n")[-1]  # the summary table
    shown = edge_sdk_cli("inspect", str(out) + ".tar.gz")
    assert shown.returncode == 0 and "jetson-tx2" in shown.stdout and "fp16 (requested int8)" in shown.stdout


def test_bundle_contents_and_manifest(tx2_bundle):
    m = tx2_bundle.manifest
    assert m["format"] == 1 and m["kind"] == "edge-sdk-bundle" and m["target"] == "jetson-tx2"
    assert m["target_profile"]["compute_capability"] == "6.2"
    # TensorRT 8.2 has no UINT8 I/O: raw float32 pixels, BGR, HWC -- preprocess only letterboxes
    assert (m["input"]["dtype"], m["input"]["layout"], m["input"]["color"]) == ("float32", "NHWC", "BGR")
    assert m["outputs"] == {"peaks": "peaks", "pafs": "pafs"} and m["model_meta"]["extra"]["peaks"]["k"] == 5
    assert len(m["skeleton"]["limbs"]) == 19 and len(m["skeleton"]["parts"]) == 18
    assert [p["name"] for p in m["graph"]["passes"]][-1] == "peaks"
    assert m["toolchain"]["onnx"] == onnx.__version__ and m["created"].endswith("Z")
    for name, entry in m["files"].items():
        path = tx2_bundle.bundle_dir / name
        assert path.stat().st_size == entry["size"] and len(entry["sha256"]) == 64
    bundle = open_bundle(str(tx2_bundle.archive), expected_target="jetson-tx2")
    assert bundle.needs_engine_build and bundle.engine_path is None and bundle.precision == "fp16"
    assert bundle.meta.outputs["peaks"] == "peaks" and os.path.isfile(bundle.model_path)


def _copy(bundle_dir, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(bundle_dir, dst)
    return dst


def test_tampered_missing_and_foreign_bundles_are_refused(tx2_bundle, tmp_path):
    copy = _copy(tx2_bundle.bundle_dir, tmp_path)
    model = copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 of 'model.onnx' does not match"):
        open_bundle(str(copy))
    model.write_bytes(bytes(data[:-10]))
    with pytest.raises(BundleError, match="'model.onnx' is .* bytes, the manifest says"):
        open_bundle(str(copy))
    model.unlink()
    with pytest.raises(BundleError, match="missing 'model.onnx'"):
        open_bundle(str(copy))
    with pytest.raises(BundleError, match="built for target 'jetson-tx2'.*--target jetson-nano"):
        open_bundle(str(tx2_bundle.bundle_dir), expected_target="jetson-nano")
    (tmp_path / "not_a_bundle").mkdir()
    with pytest.raises(BundleError, match="no manifest.json"):
        open_bundle(str(tmp_path / "not_a_bundle"))


def test_cpu_bundle_runs_and_matches_original(model_path, tmp_path):
    """The bundle's model, fed by the runtime's preprocess from the bundle's metadata, gives the original maps."""
    result, text = quiet_build(model=str(model_path), target="cpu", output=str(tmp_path / "cpu"))
    m = result.manifest
    assert m["engine"]["status"] == "none" and m["onnxruntime"]["providers"] == ["CPUExecutionProvider"]
    assert m["precision"]["used"] == "fp32" and "engine: none" in text
    bundle = open_bundle(str(result.archive), expected_target="cpu")
    assert bundle.meta.input.dtype == "uint8"
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    original = onnx.load(str(model_path))
    x0, _ = preprocess_frame(frame, get_meta(original).input)
    x1, _ = preprocess_frame(frame, bundle.meta.input)
    s0 = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    s1 = ort.InferenceSession(bundle.model_path, providers=["CPUExecutionProvider"])
    ref = dict(zip([o.name for o in s0.get_outputs()], s0.run(None, {"image": x0[None]})))
    got = dict(zip([o.name for o in s1.get_outputs()], s1.run(None, {"image": x1[None]})))
    assert set(got) == {"heatmaps", "pafs"}
    np.testing.assert_allclose(got["heatmaps"], ref["heatmaps"].transpose(0, 3, 1, 2), atol=1e-4)


@pytest.mark.parametrize("target, requested, calib, strict, dla, used, error", [
    ("jetson-nano", "int8", False, False, None, "fp16", None),
    ("jetson-nano", "int8", False, True, None, None, "--strict"),
    ("jetson-xavier-nx", "int8", False, False, None, None, "--calib DIR"),
    ("jetson-xavier-nx", "int8", True, False, 1, "int8", None),
    ("jetson-xavier-nx", "best", False, False, None, "fp16", None),
    ("jetson-orin-nano", "fp16", False, False, 0, None, "no DLA cores"),
    ("jetson-agx-orin", "fp16", False, False, 2, None, "DLA cores 0..1"),
    ("jetson-agx-orin", "fp32", False, False, 0, None, "FP16 or INT8 only"),
    ("jetson-thor", None, False, False, None, "fp16", None),
    ("cpu", "int8", False, True, None, None, "CPU in FP32"),
])
def test_precision_decisions(target, requested, calib, strict, dla, used, error):
    if error:
        with pytest.raises(ConfigError, match=error.replace(".", r"\.")):
            decide_precision(get_target(target), requested, have_calibration=calib, strict=strict, dla_core=dla)
        return
    decision = decide_precision(get_target(target), requested, have_calibration=calib, strict=strict, dla_core=dla)
    assert decision.used == used and decision.dla_core == dla
    assert (decision.reason is not None) == (used != (requested or used))


def test_bad_inputs(model_path, tmp_path, edge_sdk_cli):
    with pytest.raises(ConfigError, match="unknown target 'jetson-tx3'; known: jetson-tx2"):
        quiet_build(model=str(model_path), target="jetson-tx3", output=str(tmp_path / "a"))
    junk = tmp_path / "junk.onnx"
    junk.write_text("definitely not protobuf \x00\x01")
    with pytest.raises(ModelError, match="not an ONNX model"):
        quiet_build(model=str(junk), target="cpu", output=str(tmp_path / "b"))
    no_maps = make_pose_model(seed=0)
    for output in no_maps.graph.output:
        output.name = output.name.replace("heatmaps", "maps")
    for node in no_maps.graph.node:
        node.output[:] = [o.replace("heatmaps", "maps") for o in node.output]
    onnx.save(no_maps, str(tmp_path / "nomaps.onnx"))
    with pytest.raises(ModelError, match="no output for heatmaps"):
        quiet_build(model=str(tmp_path / "nomaps.onnx"), target="cpu", output=str(tmp_path / "c"))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="cannot write the bundle"):
        quiet_build(model=str(model_path), target="cpu", output=str(tmp_path / "afile" / "out"))
    with pytest.raises(ConfigError, match="cannot write the bundle"):
        quiet_build(model=str(model_path), target="cpu", output="/proc/edge-sdk-test/out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "precious.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not empty and is not a bundle"):
        quiet_build(model=str(model_path), target="cpu", output=str(tmp_path / "full"))
    proc = edge_sdk_cli("build", junk, "--target", "jetson-nano", "-o", tmp_path / "d")
    assert proc.returncode == 2 and "not an ONNX model" in proc.stderr and "Traceback" not in proc.stderr


def test_local_engine_build_with_tensorrt_double(model_path, tmp_path, monkeypatch):
    """A host that is the target (faked: TensorRT double + device detection) builds the engine into the bundle."""
    trt = install_tensorrt_double(monkeypatch, "10", io=[("image", "input", (1, 64, 96, 3), "uint8"),
                                                        ("peaks", "output", (1, 18, 5, 3), "float32"),
                                                        ("pafs", "output", (1, 38, 8, 12), "float32")])
    target = get_target("jetson-orin-nano")
    monkeypatch.setattr("edge_sdk.engine.build.detect_local_target", lambda: target)
    result, text = quiet_build(model=str(model_path), target="jetson-orin-nano", output=str(tmp_path / "orin"),
                               precision="fp16", peaks=5, workspace_mb=700)
    m = result.manifest
    assert m["engine"]["status"] == "built" and m["engine"]["file"] == "engine.plan"
    assert m["engine"]["built"]["tensorrt"] == trt.__version__ and "timing.cache" in m["files"]
    assert m["input"]["dtype"] == "uint8"  # TensorRT 10 takes uint8 frames
    limits = trt.calls_named("IBuilderConfig.set_memory_pool_limit")
    assert limits[0].args == (trt.MemoryPoolType.WORKSPACE, 700 << 20)
    bundle = open_bundle(str(result.bundle_dir), expected_target="jetson-orin-nano")
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(open(bundle.engine_path, "rb").read())
    assert engine is not None and engine.plan["flags"] == ["FP16"]
    assert not trt.deprecated_uses  # the TensorRT 10 API only
    assert "building with TensorRT on this machine" in text


def sim_device():
    from edge_sdk.runtime.cuda import CudaDevice
    from tests.cuda_double import SimCudaApi

    return CudaDevice(0, api=SimCudaApi(integrated=True))


def test_first_start_build_on_device(tx2_bundle, tmp_path, monkeypatch):
    """`build --bundle` builds the engine exactly as the first start does: into the cache for this GPU and
    TensorRT version, recorded in the manifest; the bundle's hashed files stay as they were and it verifies."""
    from edge_sdk.engine.build import build_on_device
    from edge_sdk.runtime.backends.tensorrt_backend import _cached_engine_ok, cached_engine_path

    copy = _copy(tx2_bundle.bundle_dir, tmp_path)
    files_before = json.loads((copy / "manifest.json").read_text())["files"]
    trt = install_tensorrt_double(monkeypatch, "8.2")
    monkeypatch.setattr("edge_sdk.engine.build.detect_local_target", lambda: get_target("jetson-tx2"))
    lines = []
    path = build_on_device(str(copy), echo=lines.append, device=sim_device())
    assert os.path.dirname(path) == str(copy) + ".engines" and os.path.isfile(path + ".sha256")
    bundle = open_bundle(str(copy), expected_target="jetson-tx2")
    assert bundle.manifest["files"] == files_before
    (key, record), = bundle.manifest["engine"]["built_on_device"].items()
    assert key in path and record["tensorrt"] == trt.__version__ and record["size"] == os.path.getsize(path)
    assert trt.calls_named("IBuilderConfig.max_workspace_size=")[0].args == (512 << 20,)  # TX2 default, 8.2 API
    assert [c.args[0].name for c in trt.calls_named("IBuilderConfig.set_flag")] == ["FP16"]
    builds = len(trt.calls_named("Builder.build_serialized_network"))
    assert build_on_device(str(copy), echo=lines.append, device=sim_device()) == path
    assert len(trt.calls_named("Builder.build_serialized_network")) == builds  # built once
    assert cached_engine_path(str(copy), key) == path and _cached_engine_ok(path)  # where the first start looks
    monkeypatch.setattr("edge_sdk.engine.build.detect_local_target", lambda: get_target("jetson-nano"))
    with pytest.raises(BundleError, match="built for target 'jetson-tx2'"):
        build_on_device(str(copy), echo=lines.append, device=sim_device())


@pytest.fixture(scope="module")
def calibration_case(tmp_path_factory):
    """The calibration stage's own synthetic pose model (quantises cleanly) and frames drawn for it."""
    from edge_sdk.calibration.hadamard_model import build_model, write_frames

    root = tmp_path_factory.mktemp("calib")
    build_model(str(root / "pose.onnx"))
    write_frames(root / "frames", 24, seed=0)
    return root


@pytest.mark.parametrize("dla", [None, 1])
def test_xavier_nx_int8_with_calibration(calibration_case, tmp_path, monkeypatch, dla):
    """--int8 --calib on a fast-INT8 target: Q/DQ model + cache + report in the bundle; the device then builds
    from the Q/DQ model (GPU, explicit quantisation) or from the float model + cache (DLA)."""
    from edge_sdk.engine.build import build_on_device

    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "nx"
    result, text = quiet_build(model=str(calibration_case / "pose.onnx"), target="jetson-xavier-nx",
                               output=str(out), precision="int8", calib=str(calibration_case / "frames"),
                               calib_count=8, peaks=4, dla_core=dla, input_size=None, engine="device")
    m = result.manifest
    assert m["precision"] == {"requested": "int8", "used": "int8", "reason": None}
    assert {"model.qdq.onnx", "calib.cache", "calib_report.json", "calib_report.txt"} <= set(m["files"])
    assert "calibrate INT8" in text and m["graph"]["calibration_summary"]
    options = m["engine"]["options"]
    assert options["precision"] == "int8" and options["dla_core"] == dla and m["engine"]["dla_core"] == dla
    # TensorRT 8.5 (JetPack 5.1) builds INT8 from the calibration cache; the Q/DQ model ships for 10.1+ stacks
    assert options["explicit_quantization"] is False and m["engine"]["source_model"] == "model.onnx"
    assert m["software"]["tensorrt"] == "8.5" and m["software"]["jetpack"] == "5.1"
    qdq = onnx.load(str(out / "model.qdq.onnx"))
    assert "QuantizeLinear" in [n.op_type for n in qdq.graph.node]
    assert [o.name for o in qdq.graph.output] == ["peaks", "pafs"]  # peaks appended after calibration
    assert "QuantizeLinear" not in [n.op_type for n in qdq.graph.node if n.name.startswith("peaks")]
    bundle = open_bundle(str(out))
    frame = np.random.default_rng(1).integers(0, 256, (128, 192, 3), dtype=np.uint8)
    x, _ = preprocess_frame(frame, bundle.meta.input)
    peaks = ort.InferenceSession(str(out / "model.qdq.onnx"), providers=["CPUExecutionProvider"]).run(
        ["peaks"], {"image": x[None]})[0]
    assert peaks.shape == (1, 18, 4, 3)

    # JetPack 5.1's TensorRT 8.5.2: the 8.6 flavour's API (the same for what we call), at 8.5's version
    trt = install_tensorrt_double(monkeypatch, "8.6", num_dla_cores=2, version="8.5.2.2")
    monkeypatch.setattr("edge_sdk.engine.build.detect_local_target", lambda: get_target("jetson-xavier-nx"))
    build_on_device(str(out), echo=lambda line: None, device=sim_device())
    flags = sorted(c.args[0].name for c in trt.calls_named("IBuilderConfig.set_flag"))
    calibrators = trt.calls_named("IBuilderConfig.int8_calibrator=")
    if dla is None:
        assert flags == ["FP16", "INT8"]
        assert calibrators[0].args[0].read_calibration_cache() == (out / "calib.cache").read_bytes()
    else:
        assert flags == ["FP16", "GPU_FALLBACK", "INT8"]
        assert calibrators[0].args[0].read_calibration_cache() == (out / "calib.cache").read_bytes()
        assert trt.calls_named("IBuilderConfig.DLA_core=")[0].args == (1,)
    assert len(open_bundle(str(out), expected_target="jetson-xavier-nx").manifest["engine"]["built_on_device"]) == 1


def test_flash_agent_accepts_our_bundles_and_hints(tx2_bundle, tmp_path):
    """The deploy agent (edge_sdk/deploy) verifies bundles and matches devices with the same manifest keys and
    [detect] hints this stage writes."""
    from edge_sdk.deploy.agent import AgentError, check_target, hints_from_manifest, verify_bundle
    from edge_sdk.deploy.release import target_hints

    manifest = verify_bundle(str(tx2_bundle.bundle_dir))
    assert manifest["target"] == "jetson-tx2"
    hints = hints_from_manifest(manifest)
    software = {"jetpack": "4.6", "l4t": "R32.7", "tensorrt": "8.2", "cuda": "10.2", "python": "3.6"}
    assert hints == {"model": ["Jetson TX2", "quill", "lanai"], "tegra_release": ["R32"], "l4t_major": [32],
                     "kind": "jetson", "software": software,
                     "stacks": [dict(software, sources=manifest["target_profile"]["stacks"][0]["sources"])]}
    device = {"model": "NVIDIA Jetson TX2 Developer Kit", "l4t": "32.7.1", "nv_tegra_release": "# R32 (release)",
              "tensorrt": "8.2.1.8"}
    assert "matches" in check_target("jetson-tx2", target_hints(manifest), device)
    assert "built for JetPack 4.6 (TensorRT 8.2)" in check_target("jetson-tx2", hints, device)
    with pytest.raises(AgentError, match=r"built for JetPack 4.6 \(TensorRT 8.2\).*runs L4T R32.6.1 \(needs R32.7\)"):
        check_target("jetson-tx2", hints, dict(device, l4t="32.6.1", tensorrt="8.0.1.6"))
    with pytest.raises(AgentError, match="needs L4T R32"):
        check_target("jetson-tx2", hints, dict(device, l4t="35.4.1"))
    thor = {"model": "NVIDIA Jetson AGX Thor Developer Kit", "l4t": "38.2.0"}
    thor_hints = target_hints({"target": "jetson-thor"})
    assert "matches" in check_target("jetson-thor", thor_hints, thor)
    with pytest.raises(AgentError, match="looks like jetson-orin-nano"):
        check_target("jetson-nano", target_hints({"target": "jetson-nano"}),
                     {"model": "NVIDIA Jetson Orin Nano Developer Kit", "l4t": "36.4.3"})
    copy = _copy(tx2_bundle.bundle_dir, tmp_path)
    (copy / "stray.bin").write_bytes(b"x")
    with pytest.raises(AgentError, match="not listed"):
        verify_bundle(str(copy))


def test_ops_tensorrt8_cannot_import_are_reported(tmp_path):
    """A layer TensorRT 8 has no importer for (Mod) is reported for a TRT 8 target, not for TRT 10 or CPU."""
    from onnx import helper

    model = make_pose_model(seed=0)
    last = next(n for n in model.graph.node if n.output[0] == "pafs")  # the output Transpose of pafs
    model.graph.node.insert(list(model.graph.node).index(last), helper.make_node(
        "Mod", [last.input[0], last.input[0]], ["pafs_mod"], fmod=1))
    last.input[0] = "pafs_mod"
    path = tmp_path / "mod.onnx"
    onnx.save(model, str(path))
    _, text = quiet_build(model=str(path), target="jetson-nano", output=str(tmp_path / "nano"), engine="device")
    assert "warning: the model uses Mod which TensorRT 8.2 cannot import" in text
    with pytest.raises(ConfigError, match="Mod.*--strict"):
        quiet_build(model=str(path), target="jetson-nano", output=str(tmp_path / "nano2"), strict=True)
    _, text = quiet_build(model=str(path), target="jetson-orin-nano", output=str(tmp_path / "orin"), engine="device")
    assert "cannot import" not in text


def test_a_bundle_is_never_loaded_by_another_tensorrt(tx2_bundle, tmp_path, monkeypatch):
    """The TX2 bundle is built for JetPack 4.6 / TensorRT 8.2: a device with TensorRT 10 refuses it, naming both
    versions and what to do, before any engine is built or loaded."""
    from edge_sdk.errors import BundleError
    from edge_sdk.runtime.backends.tensorrt_backend import load_bundle_backend
    from edge_sdk.runtime.cuda import CudaDevice
    from tests.cuda_double import SimCudaApi

    bundle = open_bundle(str(_copy(tx2_bundle.bundle_dir, tmp_path)), expected_target="jetson-tx2")
    trt = install_tensorrt_double(monkeypatch, "10")
    with pytest.raises(BundleError, match=r"built for JetPack 4.6 \(TensorRT 8.2, L4T R32.7\) but this device runs "
                                          r"TensorRT 10.3.0.30.*--target jetson-tx2 --jetpack"):
        load_bundle_backend(bundle, device=CudaDevice(0, api=SimCudaApi(integrated=True)))
    from edge_sdk.runtime.engine_on_device import build_on_device as device_build

    with pytest.raises(BundleError, match="TensorRT 10.3.0.30"):
        device_build(str(bundle.dir), log=lambda line: None, skip_target_check=True)
    assert not trt.calls_named("Builder.build_serialized_network") and not trt.calls_named("Runtime")


@pytest.mark.parametrize("flavour", ["8.2"])
def test_runtime_tensorrt_backend_builds_our_bundle_at_first_start(tx2_bundle, tmp_path, monkeypatch, flavour):
    """End to end across stages: a bundle from `build` (engine left to the device) -> open_bundle -> the
    runtime's TensorRT backend -> this stage's real builder (TensorRT double, simulated Jetson GPU) -> infer."""
    from edge_sdk.runtime.backends.tensorrt_backend import load_bundle_backend
    from edge_sdk.runtime.cuda import CudaDevice
    from tests.cuda_double import SimCudaApi

    bundle = open_bundle(str(_copy(tx2_bundle.bundle_dir, tmp_path)), expected_target="jetson-tx2")
    spec = bundle.meta.input
    io = [("image", "input", spec.shape, spec.dtype), ("peaks", "output", (1, 18, 5, 3), "float32"),
          ("pafs", "output", (1, 38, 8, 12), "float32")]
    trt = install_tensorrt_double(monkeypatch, flavour, io=io)
    trt.memory = SimCudaApi(integrated=True)
    messages = []
    backend = load_bundle_backend(bundle, device=CudaDevice(0, api=trt.memory), progress=messages.append)
    try:
        workspace = 512 << 20  # jetson-tx2's default, through the API this TensorRT has
        if flavour == "8.2":
            assert trt.calls_named("IBuilderConfig.max_workspace_size=")[0].args == (workspace,)
        else:
            assert trt.calls_named("IBuilderConfig.set_memory_pool_limit")[0].args[1] == workspace
        assert [c.args[0].name for c in trt.calls_named("IBuilderConfig.set_flag")] == ["FP16"]
        assert not trt.deprecated_uses
        frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
        buffer = backend.new_input_buffer()
        preprocess_frame(frame, spec, out=buffer[0])
        outputs = backend.infer(buffer)
        assert outputs["peaks"].shape == (1, 18, 5, 3) and outputs["pafs"].shape == (1, 38, 8, 12)
    finally:
        backend.close()
    # recorded as `build --bundle` records it (test_first_start_build_on_device): same place, same fields
    reopened = open_bundle(bundle.dir, expected_target="jetson-tx2")
    (key, record), = reopened.manifest["engine"]["built_on_device"].items()
    assert sorted(record) == ["file", "seconds", "sha256", "size", "tensorrt"] and record["tensorrt"] == trt.__version__
    assert os.path.isfile(os.path.join(bundle.dir, record["file"])) and key in record["file"]


def test_where_the_engine_is_built(monkeypatch):
    """Build here only with TensorRT and the target's own GPU; otherwise say why (the one line on screen)."""
    import sys

    from edge_sdk.engine import build as build_module

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails: no TensorRT on this host
    assert build_module.local_build_check(get_target("x86-gpu")) == (False, "this host has no TensorRT")
    install_tensorrt_double(monkeypatch, "10")
    monkeypatch.setattr(build_module, "detect_local_target", lambda: None)
    assert build_module.local_build_check(get_target("jetson-orin-nano")) == (
        False, "this host is not a Jetson, not a jetson-orin-nano")
    monkeypatch.setattr(build_module, "detect_local_target", lambda: get_target("jetson-nano"))
    assert build_module.local_build_check(get_target("jetson-orin-nano"))[1] == \
        "this host is jetson-nano, not a jetson-orin-nano"
    monkeypatch.setattr(build_module, "detect_local_target", lambda: get_target("x86-gpu"))
    monkeypatch.setattr(build_module, "local_compute_capability", lambda: "8.6")
    assert build_module.local_build_check(get_target("x86-gpu")) == (True, "")
    monkeypatch.setattr(build_module, "local_compute_capability", lambda: "6.1")
    assert build_module.local_build_check(get_target("x86-gpu")) == (False, "this host's GPU is sm_61 (< sm_75)")
    assert build_module.local_build_check(get_target("cpu"))[0] is False


def test_input_size_choice(tmp_path):
    """--input wins; a static export keeps the size it was trained at; a size-agnostic one gets the target's."""
    from edge_sdk.engine.build import choose_input_size

    dynamic = make_pose_model(seed=0)
    static = make_pose_model(seed=0, height=64, width=96)
    nano = get_target("jetson-nano")
    assert choose_input_size(dynamic, get_meta(dynamic), nano, (320, 240))[:2] == (320, 240)
    assert choose_input_size(static, get_meta(static), nano, None)[:2] == (96, 64)
    assert choose_input_size(dynamic, get_meta(dynamic), nano, None)[:2] == (nano.input_width, nano.input_height)
