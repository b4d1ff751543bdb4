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


class FakeBundle(object):
    """The attributes of edge_sdk.runtime.bundle.Bundle that the backend uses."""

    def __init__(self, directory, manifest, engine_path=None):
        self.dir = str(directory)
        self.manifest = manifest
        self.meta = SMALL_META
        self.model_path = os.path.join(self.dir, "model.onnx")
        self.engine_path = engine_path

    def file_path(self, name):
        return os.path.join(self.dir, name)


def test_bundle_engine_is_built_once_then_cached_per_gpu_and_version(trt, tmp_path, monkeypatch):
    sim = SimCudaApi(integrated=True)
    trt.memory = sim
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    builds = []

    def build_engine_from_onnx(onnx_path, precision, workspace_mb, dla_core, timing_cache_path, calib_cache=None):
        builds.append((onnx_path, precision, workspace_mb, dla_core, timing_cache_path, calib_cache))
        return plan_bytes(trt.flavour, io=SMALL_IO, dla_core=dla_core)

    builder = types.ModuleType("edge_sdk.engine.tensorrt_builder")
    builder.build_engine_from_onnx = build_engine_from_onnx
    monkeypatch.setitem(sys.modules, "edge_sdk.engine.tensorrt_builder", builder)
    manifest = {"precision": {"used": "fp16"}, "engine": {"status": "build-on-device", "dla_core": 0,
                                                          "workspace_mb": 256}}
    device = CudaDevice(0, api=sim)
    trt.num_dla_cores = 2
    messages = []
    backend = load_bundle_backend(FakeBundle(tmp_path, manifest), device=device, progress=messages.append)
    key = engine_cache_key("Simulated GPU", (8, 7), trt.__version__)
    assert os.path.isfile(str(tmp_path / "engine.{}.plan".format(key)))
    assert builds == [(str(tmp_path / "model.onnx"), "fp16", 256, 0, str(tmp_path / "timing.cache"), None)]
    assert trt.calls_named("Runtime.DLA_core=")[-1].args == (0,) and "building" in messages[0]
    assert "DLA core 0" in backend.describe()
    backend.close()
    again = load_bundle_backend(FakeBundle(tmp_path, manifest), device=device, progress=messages.append)
    assert len(builds) == 1  # the cached engine was used
    again.close()


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
