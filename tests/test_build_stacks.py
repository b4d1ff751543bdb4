"""Every (board, JetPack) pair the target profiles list builds, and its engine is then built on the device by
the TensorRT double of that JetPack's TensorRT (whose API is checked against the real one in
test_tensorrt_api_listing.py): the calls made are the ones that release has and does not deprecate."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from edge_sdk.targets import load_targets

from edge_sdk.graph.synthetic_model import make_pose_model
from edge_sdk.runtime.bundle import open_bundle
from edge_sdk.runtime.engine_on_device import build_on_device as device_build
from edge_sdk.runtime.preprocess import preprocess_frame
from tests.tensorrt_double import PLAN_MAGIC, install_tensorrt_double
from tests.test_build_bundle import calibration_case, quiet_build, sim_device  # noqa: F401 (a fixture)

# The double flavour (API) and version of each TensorRT a JetPack ships.
FLAVOUR_OF = {"8.2": ("8.2", "8.2.1.8"), "8.5": ("8.6", "8.5.2.2"), "8.6": ("8.6", "8.6.2.3"),
              "10.3": ("10", "10.3.0.30"), "10.13": ("10", "10.13.3.9"), "11.4": ("11", "11.4.0.106")}
PAIRS = sorted((t.name, s.jetpack, s.tensorrt) for t in load_targets().values() for s in t.stacks)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "pose.onnx"
    onnx.save(make_pose_model(seed=7), str(path))
    return path


def build_on_device(bundle_path, **kwargs):
    """The one on-device build (the runtime's first start and `build --bundle`) on a simulated Jetson GPU."""
    return device_build(bundle_path, device=sim_device(), **kwargs)


def plan_of(path):
    data = open(path, "rb").read()
    assert data.startswith(PLAN_MAGIC)
    return json.loads(data[len(PLAN_MAGIC):].decode())


def test_the_profiles_list_the_pairs_the_issue_names():
    assert ("jetson-agx-orin", "5.1", "8.5") in PAIRS and ("jetson-agx-orin", "6.0", "8.6") in PAIRS
    assert ("jetson-agx-orin", "6.2", "10.3") in PAIRS and ("jetson-agx-orin", "7.2", "11.4") in PAIRS
    assert {tensorrt for _, _, tensorrt in PAIRS} <= set(FLAVOUR_OF)


@pytest.mark.parametrize("target, jetpack, tensorrt", PAIRS)
def test_every_board_and_jetpack_builds_with_its_tensorrt(model_path, tmp_path, monkeypatch, target, jetpack,
                                                          tensorrt):
    out = tmp_path / "bundle"
    result, text = quiet_build(model=str(model_path), target=target, jetpack=jetpack, output=str(out),
                               engine="device", archive=False)
    manifest = result.manifest
    assert manifest["software"]["jetpack"] == jetpack and manifest["software"]["tensorrt"] == tensorrt
    assert manifest["target_profile"]["tensorrt"] == tensorrt and "JetPack {}".format(jetpack) in text
    strongly_typed = tensorrt in ("10.13", "11.4")  # FP16/INT8 flags deprecated from 10.12, removed in 11
    assert manifest["engine"]["source_model"] == ("model.fp16.onnx" if strongly_typed else "model.onnx")

    flavour, version = FLAVOUR_OF[tensorrt]
    trt = install_tensorrt_double(monkeypatch, flavour, version=version)
    profile = load_targets()[target]
    engine = build_on_device(str(out), log=lambda line: None, device_model=profile.detect_model[0])
    built = plan_of(engine)
    assert built["version"] == version
    assert built["flags"] == ([] if strongly_typed else ["FP16"])  # strongly typed: precision is in the model
    assert trt.deprecated_uses == []
    flags = trt.calls_named("Builder.create_network")[0].args[0]
    if flavour in ("8.2", "8.6"):
        assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    elif tensorrt == "10.13":
        assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    else:
        assert flags == 0


@pytest.mark.parametrize("dla", [None, 0])
def test_tensorrt_11_int8_goes_through_qdq_and_never_a_removed_api(calibration_case, tmp_path, monkeypatch, dla):  # noqa: F811
    """AGX Orin on JetPack 7.2 (TensorRT 11.4): INT8 builds from the Q/DQ model, on the GPU and on the DLA
    (no implicit calibration exists there); the double raises AttributeError on any removed API."""
    out = tmp_path / "orin"
    result, _ = quiet_build(model=str(calibration_case / "pose.onnx"), target="jetson-agx-orin", jetpack="7.2",
                            output=str(out), precision="int8", calib=str(calibration_case / "frames"),
                            calib_count=8, dla_core=dla, input_size=None, engine="device", archive=False)
    engine = result.manifest["engine"]
    assert engine["source_model"] == "model.qdq.onnx" and engine["options"]["explicit_quantization"] is True
    trt = install_tensorrt_double(monkeypatch, "11", num_dla_cores=2)
    path = build_on_device(str(out), log=lambda line: None, device_model="NVIDIA Jetson AGX Orin Developer Kit")
    built = plan_of(path)
    assert built["calibration"] is None and built["flags"] == ([] if dla is None else ["GPU_FALLBACK"])
    assert not trt.calls_named("IBuilderConfig.int8_calibrator=") and trt.deprecated_uses == []
    # the Q/DQ model TensorRT 11 builds from runs and keeps the model's I/O
    bundle = open_bundle(str(out))
    frame = np.random.default_rng(2).integers(0, 256, (bundle.meta.input.height, bundle.meta.input.width, 3),
                                              dtype=np.uint8)
    x, _ = preprocess_frame(frame, bundle.meta.input)
    session = ort.InferenceSession(str(out / "model.qdq.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {bundle.meta.input.name: x[None]})
    assert all(np.isfinite(o).all() for o in outputs)


def test_the_same_int8_request_on_jetpack_6_replays_the_cache_only_on_the_dla(calibration_case, tmp_path):  # noqa: F811
    """TensorRT 10.3: the GPU builds from Q/DQ (calibrators are deprecated since 10.1), the DLA from the cache."""
    for dla, source in ((None, "model.qdq.onnx"), (1, "model.onnx")):
        result, _ = quiet_build(model=str(calibration_case / "pose.onnx"), target="jetson-agx-orin", jetpack="6.2",
                                output=str(tmp_path / "orin{}".format(dla)), precision="int8",
                                calib=str(calibration_case / "frames"), calib_count=8, dla_core=dla,
                                input_size=None, engine="device", archive=False)
        assert result.manifest["engine"]["source_model"] == source


def test_compatibility_options_are_recorded_and_refused_where_the_stack_lacks_them(model_path, tmp_path,
                                                                                   monkeypatch):
    from edge_sdk.errors import ConfigError

    result, _ = quiet_build(model=str(model_path), target="jetson-orin-nano", jetpack="6.2", output=str(tmp_path / "o"),
                            engine="device", archive=False, version_compatible=True)
    assert result.manifest["engine"]["options"]["version_compatible"] is True
    trt = install_tensorrt_double(monkeypatch, "10")
    plan = plan_of(build_on_device(str(tmp_path / "o"), log=lambda line: None, device_model="Orin Nano"))
    assert plan["flags"] == ["FP16", "VERSION_COMPATIBLE"] and not trt.deprecated_uses
    with pytest.raises(ConfigError, match="need TensorRT 8.6"):
        quiet_build(model=str(model_path), target="jetson-xavier-nx", output=str(tmp_path / "x"), engine="device",
                    version_compatible=True)
    with pytest.raises(ConfigError, match="not supported on JetPack"):
        quiet_build(model=str(model_path), target="jetson-agx-orin", output=str(tmp_path / "a"), engine="device",
                    hardware_compatible=True)


@pytest.mark.parametrize("flavour, flags, source", [("10", ["FP16"], "model.onnx"), ("11", [], "model.fp16.onnx")])
def test_a_gpu_host_bundle_builds_on_whichever_tensorrt_the_host_has(model_path, tmp_path, monkeypatch, flavour,
                                                                     flags, source):
    """x86-gpu: the host's TensorRT is unknown when the bundle is made elsewhere, so it is not pinned and both
    the float and the FP16 model ship; TensorRT 10 builds FP16 by flag, TensorRT 11 from the FP16 model."""
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)  # this machine has no TensorRT
    result, _ = quiet_build(model=str(model_path), target="x86-gpu", output=str(tmp_path / "gpu"), engine="device",
                            archive=False)
    manifest = result.manifest
    assert manifest["software"] is None and "model.fp16.onnx" in manifest["files"]
    assert manifest["engine"]["strongly_typed_source"] == "model.fp16.onnx"
    trt = install_tensorrt_double(monkeypatch, flavour)
    built = plan_of(build_on_device(str(tmp_path / "gpu"), log=lambda line: None))
    assert built["flags"] == flags and not trt.deprecated_uses
    assert [c.args[0] for c in trt.calls_named("OnnxParser.parse_from_file")][0].endswith(source)
