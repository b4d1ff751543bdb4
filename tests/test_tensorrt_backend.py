"""TensorRT backend against the recorded-call TensorRT double (8.2 / 8.6 / 10) on a simulated GPU.

The double "runs" the engine by reading the bound input address and writing the bound output addresses
(tests/tensorrt_double.py), so correct outputs prove the right buffers, copies and stream order.
"""

import os
import sys
import types

import numpy as np
import pytest

from edge_sdk.errors import BundleError, ModelError
from edge_sdk.runtime.backends.tensorrt_backend import (
    TensorRTBackend,
    engine_cache_key,
    load_bundle_backend,
)
from edge_sdk.runtime.cuda import CudaDevice
from edge_sdk.runtime.model_meta import InputSpec, ModelMeta
from tests.cuda_double import SimCudaApi
from tests.tensorrt_double import DEFAULT_IO, FLAVOURS, install_tensorrt_double, plan_bytes

SMALL_IO = [("image", "input", (1, 3, 16, 24), "float32"), ("heatmaps", "output", (1, 19, 2, 3), "float32"),
            ("pafs", "output", (1, 38, 2, 3), "float32")]
SMALL_META = ModelMeta(InputSpec(height=16, width=24))


@pytest.fixture(params=sorted(FLAVOURS))
def trt(request, monkeypatch):
    return install_tensorrt_double(monkeypatch, request.param)


@pytest.fixture(params=[True, False], ids=["jetson-zero-copy", "discrete"])
def sim(request):
    return SimCudaApi(integrated=request.param)


def make_backend(trt, sim, io=SMALL_IO, meta=SMALL_META, **kwargs):
    trt.memory = sim
    return TensorRTBackend(plan_bytes(trt.flavour, io=io), meta=meta, device=CudaDevice(0, api=sim), **kwargs)


def expected(batch):
    flat = batch.astype(np.float64).ravel()
    return {"heatmaps": np.resize(flat, 19 * 6).reshape(1, 19, 2, 3).astype(np.float32),
            "pafs": np.resize(flat * 2.0, 38 * 6).reshape(1, 38, 2, 3).astype(np.float32)}


def test_infer_binds_the_right_addresses_with_the_versions_api(trt, sim):
    backend = make_backend(trt, sim)
    buffer = backend.new_input_buffer()
    buffer[...] = np.random.default_rng(1).random(buffer.shape, dtype=np.float32)
    outputs = backend.infer(buffer)
    for name, value in expected(buffer).items():
        np.testing.assert_array_equal(outputs[name], value)

    input_tb = backend._inputs[buffer.ctypes.data]
    names = trt.call_names()
    if trt.flavour == "8.2":
        assert not backend.tensor_api
        (call,) = trt.calls_named("IExecutionContext.execute_async_v2")
        bindings, stream = call.args
        assert bindings[0] == input_tb.device_ptr and stream == backend.stream.handle
        assert "IExecutionContext.set_tensor_address" not in names
    else:
        assert backend.tensor_api
        (call,) = trt.calls_named("IExecutionContext.execute_async_v3")
        assert call.args == (backend.stream.handle,)
        bound = dict(c.args for c in trt.calls_named("IExecutionContext.set_tensor_address"))
        assert set(bound) == {"image", "heatmaps", "pafs"} and bound["image"] == input_tb.device_ptr
        assert "IExecutionContext.execute_async_v2" not in names
    assert trt.deprecated_uses == []  # the modern API wherever the version has one
    if sim.integrated:  # zero-copy: the engine reads the very memory the CPU wrote
        assert input_tb.device_ptr == buffer.ctypes.data
        assert "memcpy_async" not in sim.names()
    else:
        kinds = [c.args[3] for c in sim.calls if c.name == "memcpy_async"]
        assert kinds.count("htod") == 1 and kinds.count("dtoh") == 2
        assert "stream_wait_event" in sim.names()  # compute waits for the copy stream
    backend.close()
    assert sim.allocations == {}  # everything freed


def test_foreign_arrays_are_copied_into_a_staging_buffer(trt, sim):
    backend = make_backend(trt, sim)
    batch = np.random.default_rng(2).random((1, 3, 16, 24)).astype(np.float32)
    outputs = backend.infer(batch)
    np.testing.assert_array_equal(outputs["pafs"], expected(batch)["pafs"])
    with pytest.raises(ModelError, match="shape"):
        backend.infer(np.zeros((1, 3, 8, 8), np.float32))
    backend.close()


def test_double_buffering_never_reuses_a_slot_in_flight(trt, sim):
    backend = make_backend(trt, sim)
    rng = np.random.default_rng(3)
    buffers = [backend.new_input_buffer() for _ in range(3)]
    for b in buffers:
        b[...] = rng.random(b.shape, dtype=np.float32)
    first = backend.infer_async(buffers[0])
    second = backend.infer_async(buffers[1])
    assert sim.in_flight() > 0 and not first.done() and not second.done()
    third = backend.infer_async(buffers[2])  # both slots busy: the oldest frame is finished first
    assert backend.reclaims == 1 and first.done() and not third.done()
    for pending, b in ((first, buffers[0]), (second, buffers[1]), (third, buffers[2])):
        np.testing.assert_array_equal(pending.result()["heatmaps"], expected(b)["heatmaps"])
    backend.close()


def test_dynamic_batch_is_set_from_the_model_input(trt, sim):
    io = [("image", "input", (-1, 3, 16, 24), "float32")] + SMALL_IO[1:]
    backend = make_backend(trt, sim, io=io)
    if trt.flavour == "8.2":
        assert trt.calls_named("IExecutionContext.set_binding_shape")[0].args == (0, (1, 3, 16, 24))
    else:
        assert trt.calls_named("IExecutionContext.set_input_shape")[0].args == ("image", (1, 3, 16, 24))
    assert backend.input_tensor.shape == (1, 3, 16, 24)
    backend.close()


def test_mismatched_engines_are_refused_with_a_fix(trt, sim):
    trt.memory = sim
    device = CudaDevice(0, api=sim)
    with pytest.raises(ModelError, match="rebuild it on this device"):
        TensorRTBackend(plan_bytes(trt.flavour, version="7.1.3"), meta=SMALL_META, device=device)
    meta = ModelMeta(InputSpec(height=16, width=24), outputs={"heatmaps": "hm", "pafs": "pafs"})
    with pytest.raises(ModelError, match="no output 'hm'.*heatmaps, pafs"):
        TensorRTBackend(plan_bytes(trt.flavour, io=SMALL_IO), meta=meta, device=device)
    with pytest.raises(ModelError, match="metadata says"):
        TensorRTBackend(plan_bytes(trt.flavour, io=DEFAULT_IO), meta=SMALL_META, device=device)


class FakeBundle:
    """The attributes of edge_sdk.runtime.bundle.Bundle that the backend uses."""

    def __init__(self, directory, manifest, engine_path=None):
        self.dir = str(directory)
        self.manifest = manifest
        self.meta = SMALL_META
        self.model_path = os.path.join(self.dir, "model.onnx")
        self.engine_path = engine_path

    def file_path(self, name):
        return os.path.join(self.dir, name)

    def listed_path(self, name):  # optional files are used only when the manifest lists (hashes) them
        return self.file_path(name) if name in (self.manifest.get("files") or {}) else None


def test_bundle_engine_is_built_once_then_cached_per_gpu_and_version(trt, tmp_path, monkeypatch):
    """First start: no engine in the bundle -> the real engine builder (on the TensorRT double) builds one,
    cached next to the bundle under GPU + SM + TensorRT version; the second start loads the cache."""
    sim = SimCudaApi(integrated=True)
    trt.memory = sim
    trt.network_io = SMALL_IO
    trt.num_dla_cores = 2
    # a bundle for TensorRT 11 carries its FP16 model (strongly typed: no FP16 builder flag there)
    source = "model.fp16.onnx" if trt.flavour == "11" else "model.onnx"
    (tmp_path / source).write_bytes(b"onnx")
    (tmp_path / "timing.cache").write_bytes(b"shipped")
    manifest = {"precision": {"used": "fp16"}, "files": {"timing.cache": {"size": 7}},
                "engine": {"status": "build-on-device", "source_model": source,
                           "options": {"precision": "fp16", "dla_core": 0, "workspace_mb": 256}}}
    device = CudaDevice(0, api=sim)
    messages = []
    backend = load_bundle_backend(FakeBundle(tmp_path, manifest), device=device, progress=messages.append)
    key = engine_cache_key("Simulated GPU", (8, 7), trt.__version__)
    cache_dir = tmp_path.parent / (tmp_path.name + ".engines")  # beside the bundle, never inside it
    plan = cache_dir / "engine.{}.plan".format(key)
    assert plan.is_file() and (cache_dir / "engine.{}.timing.cache".format(key)).is_file()
    assert (tmp_path / "timing.cache").read_bytes() == b"shipped"  # the bundle's hashed files are untouched
    first_flag = trt.BuilderFlag.GPU_FALLBACK if trt.flavour == "11" else trt.BuilderFlag.FP16
    assert trt.calls_named("IBuilderConfig.set_flag")[0].args == (first_flag,)
    assert trt.calls_named("IBuilderConfig.DLA_core=")[-1].args == (0,)
    assert trt.calls_named("Runtime.DLA_core=")[-1].args == (0,) and "building" in messages[0]
    assert "DLA core 0" in backend.describe()
    backend.close()
    builds = len(trt.calls_named("Builder.build_serialized_network"))
    again = load_bundle_backend(FakeBundle(tmp_path, manifest), device=device, progress=messages.append)
    assert len(trt.calls_named("Builder.build_serialized_network")) == builds  # the cache was used
    again.close()
    plan.write_bytes(plan.read_bytes()[:-3])  # a damaged cache is rebuilt, never loaded
    load_bundle_backend(FakeBundle(tmp_path, manifest), device=device, progress=messages.append).close()
    assert len(trt.calls_named("Builder.build_serialized_network")) == builds + 1


def test_builder_seam_build_engine_from_onnx_is_used_when_present(trt, tmp_path, monkeypatch):
    trt.memory = SimCudaApi()
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    seen = []

    def build_engine_from_onnx(onnx_path, precision, workspace_mb, dla_core, timing_cache_path, calib_cache=None):
        seen.append((os.path.basename(onnx_path), precision, workspace_mb, dla_core, calib_cache))
        return plan_bytes(trt.flavour, io=SMALL_IO)

    builder = types.ModuleType("edge_sdk.engine.tensorrt_builder")
    builder.build_engine_from_onnx = build_engine_from_onnx
    monkeypatch.setitem(sys.modules, "edge_sdk.engine.tensorrt_builder", builder)
    import edge_sdk.engine

    monkeypatch.setattr(edge_sdk.engine, "tensorrt_builder", builder, raising=False)
    manifest = {"precision": {"used": "int8"}, "engine": {"status": "build-on-device"}}
    load_bundle_backend(FakeBundle(tmp_path, manifest), device=CudaDevice(0, api=trt.memory),
                        progress=lambda m: None).close()
    assert seen == [("model.onnx", "int8", 512, None, None)]


def test_bundle_without_engine_or_onnx_says_what_to_do(trt, tmp_path, monkeypatch):
    trt.memory = SimCudaApi()
    device = CudaDevice(0, api=trt.memory)
    bundle = FakeBundle(tmp_path, {"engine": {}})
    with pytest.raises(BundleError, match="--backend onnxruntime"):
        load_bundle_backend(bundle, device=device, build=False)
    builder = types.ModuleType("edge_sdk.engine.tensorrt_builder")
    builder.build_engine_from_onnx = lambda *a, **k: pytest.fail("nothing to build from")
    monkeypatch.setitem(sys.modules, "edge_sdk.engine.tensorrt_builder", builder)
    with pytest.raises(BundleError, match="neither an engine .* nor an ONNX model.*edge-sdk build"):
        load_bundle_backend(bundle, device=device, progress=lambda m: None)
    (tmp_path / "engine.plan").write_bytes(plan_bytes("8.2" if trt.flavour != "8.2" else "10", io=SMALL_IO))
    bundle.engine_path = str(tmp_path / "engine.plan")  # built by another TensorRT: refused, reason kept
    with pytest.raises(BundleError, match="another TensorRT version"):
        load_bundle_backend(bundle, device=device, build=False)


@pytest.fixture(scope="module")
def orin_bundle(tmp_path_factory):
    """A real bundle (edge-sdk build) for a Jetson target whose engine is to be built on the device."""
    import onnx

    from edge_sdk.engine.build import BuildRequest, build
    from edge_sdk.graph.synthetic_model import make_pose_model

    root = tmp_path_factory.mktemp("bundle")
    onnx.save(make_pose_model(seed=3), str(root / "pose.onnx"))
    result = build(BuildRequest(model=str(root / "pose.onnx"), target="jetson-orin-nano", output=str(root / "b"),
                                precision="fp16", input_size=(96, 64), engine="device", archive=False),
                   echo=lambda line: None)
    return result.bundle_dir


def test_loader_auto_picks_onnxruntime_here_and_says_why(orin_bundle):
    from edge_sdk.runtime.backends.loader import load_backend

    said = []
    backend = load_backend(bundle=orin_bundle, say=said.append)
    assert backend.name == "onnxruntime"
    assert said == [said[0]] and said[0].startswith("backend: onnxruntime (TensorRT is not importable")
    backend.close()


def test_loader_auto_picks_tensorrt_builds_on_first_start_and_infers(orin_bundle, tmp_path, monkeypatch):
    """auto + TensorRT (double) + a CUDA binding (simulated GPU): the loader picks TensorRT, the engine is
    built from the bundle's ONNX by the real engine builder, cached, and the backend infers."""
    import shutil

    import edge_sdk.runtime.backends.selection as selection
    import edge_sdk.runtime.cuda as cuda
    from edge_sdk.runtime.backends.loader import load_backend
    from edge_sdk.runtime.bundle import open_bundle

    bundle_dir = tmp_path / "bundle"
    shutil.copytree(str(orin_bundle), str(bundle_dir))
    meta = open_bundle(str(bundle_dir)).meta
    trt = install_tensorrt_double(monkeypatch, "10")
    h, w = meta.input.height // 8, meta.input.width // 8
    trt.network_io = [(meta.input.name, "input", meta.input.shape, meta.input.dtype)] + [
        (name, "output", (1, 19 if role == "heatmaps" else 38, h, w), "float32") for role, name in meta.outputs.items()]
    sim = SimCudaApi(integrated=True)
    trt.memory = sim
    monkeypatch.setattr(selection, "probe_cuda_binding", lambda: ("cuda-python", ""))
    monkeypatch.setattr(cuda, "get_api", lambda device=0, prefer=None: sim)
    said = []
    backend = load_backend(bundle=str(bundle_dir), say=said.append)
    assert backend.name == "tensorrt" and "first start" in said[0]
    assert list((tmp_path / "bundle.engines").glob("engine.simulated-gpu_sm87_trt10.3.0.30.plan"))
    assert open_bundle(str(bundle_dir)).meta.to_dict() == meta.to_dict()  # still verifies after first start
    from edge_sdk.deploy.agent import verify_bundle

    verify_bundle(str(bundle_dir))  # and the flash agent still accepts it (no unlisted files inside)
    buffer = backend.new_input_buffer()
    assert buffer.shape == meta.input.shape and buffer.dtype == np.dtype(meta.input.dtype)
    buffer[...] = 1
    outputs = backend.infer(buffer)
    assert set(outputs) == set(meta.outputs.values())
    assert "execute_async_v3" in backend.describe() and not trt.deprecated_uses
    backend.close()
    open_bundle(str(bundle_dir))  # the bundle still verifies: its hashed files were not touched


def test_the_documented_engine_cache_path_is_the_one_the_code_uses(tmp_path):
    """docs/tensorrt.md gives an example cache path; it must be what cached_engine_path produces."""
    from pathlib import Path

    from edge_sdk.runtime.backends.tensorrt_backend import cached_engine_path, engine_cache_key

    (tmp_path / "bundles" / "orin").mkdir(parents=True)
    path = cached_engine_path(str(tmp_path / "bundles" / "orin"), engine_cache_key("Orin", (8, 7), "10.3.0.30"))
    example = os.path.relpath(path, str(tmp_path))
    docs = (Path(__file__).resolve().parents[1] / "docs" / "tensorrt.md").read_text()
    assert "`{}`".format(example) in docs
    assert "`<bundle>.engines/engine.<gpu-name>_sm<cc>_trt<version>.plan`" in docs
