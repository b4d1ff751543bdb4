"""The TensorRT builder against the recorded-call double of TensorRT 8.2 / 8.6 / 10 / 11: per target and flavour,
the network flags, workspace limit, precision flags, DLA settings, calibrator, optimisation profile and
timing cache our code asks for are the ones that target needs, through the API that version has."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from edge_sdk.targets import get_target

from edge_sdk.engine.tensorrt_builder import (
    EngineBuildError,
    EngineOptions,
    build_serialized_engine,
    prefers_explicit_quantization,
)
from tests.tensorrt_double import install_tensorrt_double, make_tensorrt_double

MIB = 1 << 20


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"an onnx file (the double only checks it is not empty)")
    return str(path)


def flag_names(trt):
    return sorted(c.args[0].name for c in trt.calls_named("IBuilderConfig.set_flag"))


@pytest.mark.parametrize("flavour, target_name, precision, dla, expect_flags", [
    ("8.2", "jetson-nano", "fp16", None, ["FP16"]),
    ("8.2", "jetson-tx2", "fp32", None, []),
    ("8.6", "jetson-xavier-nx", "int8", 1, ["FP16", "GPU_FALLBACK", "INT8"]),
    ("8.6", "jetson-agx-xavier", "fp16", 0, ["FP16", "GPU_FALLBACK"]),
    ("10", "jetson-orin-nano", "int8", None, ["FP16", "INT8"]),
    ("10", "jetson-agx-orin", "fp16", 1, ["FP16", "GPU_FALLBACK"]),
    ("10", "jetson-thor", "fp16", None, ["FP16"]),
    ("10", "x86-gpu", "int8", None, ["FP16", "INT8"]),
    ("11", "jetson-agx-orin", "int8", None, []),  # strongly typed: INT8 from Q/DQ, no precision flags
    ("11", "jetson-thor", "fp16", None, []),  # FP16 from the FP16 model
    ("11", "x86-gpu", "int8", None, []),
    ("11", "jetson-agx-orin", "fp16", 0, ["GPU_FALLBACK"]),
])
def test_builder_asks_for_what_the_target_needs(monkeypatch, tmp_path, onnx_file, flavour, target_name, precision,
                                                dla, expect_flags):
    target = get_target(target_name)
    trt = install_tensorrt_double(monkeypatch, flavour, num_dla_cores=target.dla_cores)
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-8500-EntropyCalibration2\nimage: 3c010a14\n")
    # GPU INT8 builds from the Q/DQ model; DLA from the cache before TensorRT 11
    qdq = precision == "int8" and prefers_explicit_quantization(trt.__version__, dla is not None)
    options = EngineOptions(precision=precision, workspace_mb=target.default_workspace_mb, dla_core=dla,
                            timing_cache=str(tmp_path / "timing.cache"), calib_cache=str(cache),
                            explicit_quantization=qdq, fp16_model=flavour == "11")
    plan, info = build_serialized_engine(onnx_file, options)

    # network: EXPLICIT_BATCH before TensorRT 10, no flag (deprecated) on 10, none (always strongly typed) on 11
    flags = trt.calls_named("Builder.create_network")[0].args[0]
    if flavour in ("10", "11"):
        assert flags == 0
    else:
        assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    # workspace: memory pool API where it exists, max_workspace_size on 8.2
    if flavour == "8.2":
        assert trt.calls_named("IBuilderConfig.max_workspace_size=")[0].args == (target.default_workspace_mb * MIB,)
        assert not trt.calls_named("IBuilderConfig.set_memory_pool_limit")
    else:
        assert trt.calls_named("IBuilderConfig.set_memory_pool_limit")[0].args == (
            trt.MemoryPoolType.WORKSPACE, target.default_workspace_mb * MIB)
        assert not trt.calls_named("IBuilderConfig.max_workspace_size=")
    assert flag_names(trt) == expect_flags
    # DLA only when asked, with core and fallback
    dla_sets = trt.calls_named("IBuilderConfig.default_device_type=")
    if dla is None:
        assert not dla_sets and not trt.calls_named("IBuilderConfig.DLA_core=")
    else:
        assert dla_sets[0].args == (trt.DeviceType.DLA,)
        assert trt.calls_named("IBuilderConfig.DLA_core=")[0].args == (dla,)
    # INT8: a Q/DQ model needs no calibrator; implicit INT8 replays the host's calibration cache
    calibrators = trt.calls_named("IBuilderConfig.int8_calibrator=")
    if precision == "int8" and not qdq:
        assert calibrators[0].args[0].read_calibration_cache() == cache.read_bytes()
        assert calibrators[0].args[0].get_batch(["image"]) is None
    else:
        assert not calibrators
    # static shapes: no optimisation profile; timing cache loaded and written back
    assert not trt.calls_named("IBuilderConfig.add_optimization_profile")
    assert trt.calls_named("IBuilderConfig.set_timing_cache") and (tmp_path / "timing.cache").exists()
    assert info["build_api"] == "build_serialized_network" and not trt.calls_named("Builder.build_engine")
    assert not trt.deprecated_uses  # the modern API of each version, never its deprecated one
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan)
    assert engine is not None and engine.plan["dla_core"] == (-1 if dla is None else dla)


def test_dla_int8_on_tensorrt_10_replays_the_cache_through_the_deprecated_calibrator(monkeypatch, tmp_path,
                                                                                      onnx_file):
    """JetPack 6 (TensorRT 10.3) DLA INT8 still needs the calibration scales: the only call our code makes
    that TensorRT 10 deprecates, and it is the documented exception (prefers_explicit_quantization)."""
    trt = install_tensorrt_double(monkeypatch, "10", num_dla_cores=2)
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-100300-EntropyCalibration2\nimage: 3c010a14\n")
    assert not prefers_explicit_quantization(trt.__version__, dla=True)
    plan, _ = build_serialized_engine(onnx_file, EngineOptions("int8", 256, dla_core=0, calib_cache=str(cache)))
    assert sorted(trt.deprecated_uses) == ["IBuilderConfig.int8_calibrator", "IInt8EntropyCalibrator2.__init__"]
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan).plan["calibration"] == "cache"


def test_tensorrt_11_int8_needs_qdq_and_fp16_needs_an_fp16_model(monkeypatch, onnx_file, tmp_path):
    trt = install_tensorrt_double(monkeypatch, "11")
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-110400-EntropyCalibration2\n")
    with pytest.raises(EngineBuildError, match="without implicit INT8 calibration.*Q/DQ"):
        build_serialized_engine(onnx_file, EngineOptions("int8", 256, calib_cache=str(cache)))
    with pytest.raises(EngineBuildError, match="strongly typed.*FP16 model"):
        build_serialized_engine(onnx_file, EngineOptions("fp16", 256))
    plan, info = build_serialized_engine(onnx_file, EngineOptions("int8", 256, explicit_quantization=True))
    assert info["precision_api"] == "strongly-typed" and not trt.deprecated_uses
    assert not trt.calls_named("IBuilderConfig.set_flag") and not trt.calls_named("IBuilderConfig.int8_calibrator=")


@pytest.mark.parametrize("flavour, allowed", [("8.2", False), ("8.6", True), ("10", True), ("11", True)])
def test_version_and_hardware_compatible_engines_where_the_release_has_them(monkeypatch, onnx_file, flavour,
                                                                            allowed):
    trt = install_tensorrt_double(monkeypatch, flavour)
    options = EngineOptions("fp32", 256, version_compatible=True, hardware_compatibility="ampere_plus")
    if not allowed:
        with pytest.raises(EngineBuildError, match="version-compatible engines"):
            build_serialized_engine(onnx_file, options)
        return
    plan, info = build_serialized_engine(onnx_file, options)
    assert info["compatibility"] == ["VERSION_COMPATIBLE", "AMPERE_PLUS"]
    built = trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan).plan
    assert built["flags"] == ["VERSION_COMPATIBLE"] and built["hardware_compatibility_level"] == "AMPERE_PLUS"


@pytest.mark.parametrize("flavour", ["8.2", "8.6", "10", "11"])
def test_dynamic_batch_gets_an_optimisation_profile(monkeypatch, onnx_file, flavour):
    trt = install_tensorrt_double(monkeypatch, flavour, io=[("image", "input", (-1, 3, 64, 96), "float32"),
                                                            ("heatmaps", "output", (-1, 19, 8, 12), "float32"),
                                                            ("pafs", "output", (-1, 38, 8, 12), "float32")])
    build_serialized_engine(onnx_file, EngineOptions("fp16", 256, input_shape=(1, 3, 64, 96), max_batch=4,
                                                     fp16_model=flavour == "11"))
    profile = trt.calls_named("IBuilderConfig.add_optimization_profile")[0].args[0]
    assert profile.shapes["image"] == ((1, 3, 64, 96), (4, 3, 64, 96), (4, 3, 64, 96))


def test_timing_cache_is_reused(monkeypatch, tmp_path, onnx_file):
    cache = tmp_path / "timing.cache"
    for _ in range(2):
        trt = install_tensorrt_double(monkeypatch, "10")
        build_serialized_engine(onnx_file, EngineOptions("fp16", 256, timing_cache=str(cache)))
    created = trt.calls_named("IBuilderConfig.create_timing_cache")[0].args[0]
    assert created == cache.read_bytes()[:len(created)] and len(created) > 0  # second build read the first's


def test_parse_and_build_failures_are_clear(monkeypatch, onnx_file):
    trt = install_tensorrt_double(monkeypatch, "8.6")
    trt.parser_errors = ["No importer registered for op: FancyOp"]
    with pytest.raises(EngineBuildError, match="could not parse .*FancyOp"):
        build_serialized_engine(onnx_file, EngineOptions("fp16", 256))
    trt = install_tensorrt_double(monkeypatch, "8.6")
    trt.build_fails = True
    with pytest.raises(EngineBuildError, match="failed to build"):
        build_serialized_engine(onnx_file, EngineOptions("fp16", 256))
    install_tensorrt_double(monkeypatch, "8.6", num_dla_cores=0)
    with pytest.raises(EngineBuildError, match="DLA core 0 requested but this device has 0"):
        build_serialized_engine(onnx_file, EngineOptions("fp16", 256, dla_core=0))
    install_tensorrt_double(monkeypatch, "10")
    with pytest.raises(EngineBuildError, match="calibration cache"):
        build_serialized_engine(onnx_file, EngineOptions("int8", 256, calib_cache="/nonexistent/calib.cache"))


def test_builder_is_python36_syntax():
    """The device runs the builder at first start, on JetPack 4.6's Python 3.6 (and the CLI imports every
    command module there)."""
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    proc = subprocess.run([vermin, "--target=3.6-", "--no-tips", "--violations", "--eval-annotations",
                           "edge_sdk/engine/tensorrt_builder.py", "edge_sdk/runtime/bundle.py", "edge_sdk/errors.py",
                           "edge_sdk/commands/build.py", "edge_sdk/commands/rewrite.py", "edge_sdk/commands/inspect.py",
                           "edge_sdk/commands/targets.py"],
                          capture_output=True, text=True, cwd=str(Path(__file__).resolve().parent.parent))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("qdq", [False, True])
def test_first_start_entry_point_for_the_tensorrt_backend(monkeypatch, tmp_path, qdq):
    """``build_engine_from_onnx`` (what the runtime's TensorRT backend calls): INT8 from a Q/DQ file builds
    with explicit quantisation; from a float file it replays the calibration cache; -1 means no DLA."""
    from edge_sdk.engine.tensorrt_builder import build_engine_from_onnx

    trt = install_tensorrt_double(monkeypatch, "8.2")
    model = tmp_path / "model.onnx"
    model.write_bytes(b"graph with QuantizeLinear nodes" if qdq else b"float graph")
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-8201-EntropyCalibration2\n")
    plan = build_engine_from_onnx(str(model), "int8", 300, -1, str(tmp_path / "timing.cache"), str(cache))
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan).plan["flags"] == ["FP16", "INT8"]
    assert bool(trt.calls_named("IBuilderConfig.int8_calibrator=")) == (not qdq)
    assert trt.calls_named("IBuilderConfig.max_workspace_size=")[0].args == (300 * MIB,)
    assert not trt.calls_named("IBuilderConfig.default_device_type=")


@pytest.mark.parametrize("header, expected", [
    (b"TRT-8201-EntropyCalibration2\nimage: 3c010a14\n", "IInt8EntropyCalibrator2"),
    (b"TRT-100300-MinMaxCalibration\nimage: 3c010a14\n", "IInt8MinMaxCalibrator"),
    (b"TRT-8601-EntropyCalibration\n", "IInt8EntropyCalibrator"),
])
def test_cache_calibrator_class_follows_the_cache_header(header, expected):
    from edge_sdk.engine.tensorrt_builder import make_cache_calibrator

    trt = make_tensorrt_double("8.6")
    calibrator = make_cache_calibrator(trt, header)
    assert isinstance(calibrator, getattr(trt, expected)) and isinstance(calibrator, trt.IInt8Calibrator)
    assert calibrator.read_calibration_cache() == header
    assert calibrator.get_batch_size() == 1 and calibrator.get_batch(["image"]) is None
