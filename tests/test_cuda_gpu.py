"""edge_sdk.runtime.cuda on a real NVIDIA GPU (marker ``gpu``; skipped without a GPU or cuda-python).

Run on the GPU machine: ``python -m pytest -m gpu tests/test_cuda_gpu.py``. Checks behaviour only:
data seen by the GPU without a transfer, copy/event ordering, the pool's in-flight guard, no leaks.
"""

import sys

import numpy as np
import pytest

from edge_sdk.runtime.cuda import CudaDevice, get_api

pytestmark = pytest.mark.gpu


def _binding_or_skip(name):
    import importlib

    modules = {"cuda-python": ("cuda.bindings.runtime", "cuda.cudart"), "pycuda": ("pycuda.driver",)}[name]
    for module in modules:
        try:
            importlib.import_module(module)
            return
        except ImportError:
            continue
    pytest.skip("{} is not installed".format(name))


@pytest.fixture(scope="module", params=["cuda-python", "pycuda"])
def device(request):
    _binding_or_skip(request.param)
    try:
        dev = CudaDevice(0, api=get_api(0, request.param))
    except Exception as exc:  # noqa: BLE001 - no driver / no GPU: skip, do not fail
        pytest.skip("no usable CUDA GPU: {}".format(exc))
    if not dev.info["can_map_host_memory"]:
        pytest.skip("this GPU cannot map host memory")
    return dev


def cupy_view(ptr, shape, dtype):
    """A CuPy array over device-visible memory at ``ptr`` (no copy), or skip without CuPy."""
    cp = pytest.importorskip("cupy")
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    memory = cp.cuda.UnownedMemory(ptr, nbytes, None, 0)
    return cp.ndarray(shape, dtype, cp.cuda.MemoryPointer(memory, 0))


def test_mapped_host_buffer_is_read_by_the_gpu_without_a_transfer(device):
    rng = np.random.default_rng(0)
    mapped = device.tensor((1, 3, 256, 384), np.float32, zero_copy=True)
    result = device.tensor((1, 3, 256, 384), np.float32, zero_copy=False)
    mapped.host[...] = rng.random(mapped.host.shape, dtype=np.float32)
    result.host[...] = -1.0  # poison
    api = device.api
    # the GPU copies FROM the mapped device pointer: no host->device transfer was issued by us
    api.memcpy(result.device_ptr, mapped.device_ptr, mapped.nbytes, "default")
    api.memcpy(result.host_ptr, result.device_ptr, result.nbytes, "dtoh")
    np.testing.assert_array_equal(result.host, mapped.host)
    mapped.free()
    result.free()


def test_a_kernel_reads_and_writes_mapped_buffers_in_place(device):
    cp = pytest.importorskip("cupy")
    kernel = cp.RawKernel(r'''
    extern "C" __global__ void affine(const float* x, float* y, int n) {
        int i = blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) y[i] = 2.0f * x[i] + 1.0f;
    }''', "affine")
    rng = np.random.default_rng(1)
    source = device.tensor((3, 64, 96), np.float32, zero_copy=True)
    target = device.tensor((3, 64, 96), np.float32, zero_copy=True)
    source.host[...] = rng.random(source.host.shape, dtype=np.float32)
    target.host[...] = np.nan  # poison: every element must be written by the GPU
    n = source.host.size
    stream = device.stream()
    with cp.cuda.ExternalStream(stream.handle):
        kernel(((n + 255) // 256,), (256,), (cupy_view(source.device_ptr, (n,), np.float32),
                                              cupy_view(target.device_ptr, (n,), np.float32), np.int32(n)))
    stream.synchronize()
    np.testing.assert_allclose(target.host, 2.0 * source.host + 1.0, rtol=1e-6)
    for buffer in (source, target):
        buffer.free()
    stream.close()


def test_async_copies_and_events_keep_their_order_across_streams(device):
    shape = (16, 1024, 1024)  # 64 MiB: long enough that a missing dependency would show
    rng = np.random.default_rng(2)
    first = device.tensor(shape, np.float32, zero_copy=False)
    second = device.tensor(shape, np.float32, zero_copy=False)
    copy_stream, compute_stream = device.stream(), device.stream()
    copied = device.event()
    for round_ in range(3):
        first.host[...] = rng.random(shape, dtype=np.float32) + round_
        second.host[...] = np.nan
        first.to_device(copy_stream)
        copied.record(copy_stream)
        compute_stream.wait(copied)  # the d2d copy below must see the finished h2d copy
        device.api.memcpy_async(second.device_buffer.ptr, first.device_buffer.ptr, first.nbytes, "dtod",
                                compute_stream.raw)
        second.to_host(compute_stream)
        done = device.event()
        done.record(compute_stream)
        done.synchronize()
        assert done.done()
        np.testing.assert_array_equal(second.host, first.host)
        done.close()
    copied.close()
    for item in (first, second, copy_stream, compute_stream):
        (item.free if hasattr(item, "free") else item.close)()


def test_pool_never_hands_out_a_slot_still_in_flight(device):
    cp = pytest.importorskip("cupy")
    # a kernel that keeps the stream busy for ~50 ms, so the slot is surely in flight when we ask again
    spin = cp.RawKernel(r'''
    extern "C" __global__ void spin(long long cycles) {
        long long start = clock64();
        while (clock64() - start < cycles) { }
    }''', "spin")
    shape = (4, 1024, 1024)  # 16 MiB per tensor
    pool = device.pool({"in": (shape, np.float32), "out": (shape, np.float32)}, depth=2, zero_copy=False)
    stream = device.stream()
    last_value = {}
    for frame in range(6):
        slot = pool.acquire()
        assert slot.event.done(), "acquire() returned a slot whose GPU work has not finished"
        if slot.index in last_value:  # the previous round trip of this slot must be complete, all of it
            assert np.all(slot["out"].host == last_value[slot.index])
        slot["in"].host[...] = float(frame)
        slot["out"].host[...] = np.nan
        with cp.cuda.ExternalStream(stream.handle):
            spin((1,), (1,), (np.int64(100 * 1000 * 1000),))  # ~50 ms at ~2 GHz
        slot["in"].to_device(stream)
        device.api.memcpy_async(slot["out"].device_buffer.ptr, slot["in"].device_buffer.ptr, slot["in"].nbytes,
                                "dtod", stream.raw)
        slot["out"].to_host(stream)
        slot.mark_in_flight(stream)
        pool.release(slot)
        assert not slot.event.done()  # still spinning: this slot is in flight now
        last_value[slot.index] = float(frame)
    assert pool.waits >= 4  # from frame 2 on, the slot asked for was in flight: the pool waited, not handed out
    pool.free()
    stream.close()


def test_no_leak_over_10k_frames(device):
    import gc

    shape = (1, 3, 256, 384)  # the runtime's default input
    gc.collect()
    device.api.synchronize()
    free_before, _ = device.mem_get_info()
    stream = device.stream()
    pool = device.pool({"image": (shape, np.float32), "heatmaps": ((1, 19, 32, 48), np.float32)}, depth=2,
                       zero_copy=False)
    frame_value = np.float32(0)
    for frame in range(10000):
        slot = pool.acquire()
        if frame % 2500 == 0:
            slot["image"].host[...] = frame_value
        slot["image"].to_device(stream)
        slot["heatmaps"].to_host(stream)
        slot.mark_in_flight(stream)
        pool.release(slot)
    stream.synchronize()
    pool.free()
    stream.close()
    for _ in range(100):  # buffers made and freed per use must give everything back too
        device.tensor(shape, np.float32, zero_copy=True).free()
        device.tensor(shape, np.float32, zero_copy=False).free()
    gc.collect()
    device.api.synchronize()
    free_after, _ = device.mem_get_info()
    assert abs(free_before - free_after) <= (2 << 20), "device memory changed by {} bytes".format(
        free_before - free_after)


def test_buffers_and_streams_work_from_another_thread(device):
    """The pipeline calls CUDA from its inference thread, not the thread that opened the device."""
    import threading

    errors, results = [], []

    def work():
        try:
            tensor = device.tensor((3, 32, 48), np.float32, zero_copy=False)
            tensor.host[...] = 7.0
            stream = device.stream()
            tensor.to_device(stream)
            tensor.host[...] = 0.0
            tensor.to_host(stream)
            done = device.event()
            done.record(stream)
            done.synchronize()
            results.append(float(tensor.host.min()))
            tensor.free()
            done.close()
            stream.close()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    import gc
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thread = threading.Thread(target=work)
        thread.start()
        thread.join(60)
        gc.collect()
    assert not errors and results == [7.0]
    leaked = [str(w.message) for w in caught if "could not be cleaned up" in str(w.message)]
    assert not leaked, leaked  # pycuda could not destroy a stream/event made on another thread


@pytest.mark.parametrize("zero_copy", [True, False], ids=["jetson-style-mapped", "discrete-pinned-async"])
@pytest.mark.parametrize("flavour", ["8.2", "8.6", "10"])
def test_tensorrt_backend_moves_real_gpu_memory(device, monkeypatch, flavour, zero_copy):
    """The TensorRT backend on real CUDA memory; the TensorRT double reads/writes the bound device pointers."""
    from edge_sdk.runtime.backends.tensorrt_backend import TensorRTBackend
    from edge_sdk.runtime.model_meta import InputSpec, ModelMeta
    from tests.tensorrt_double import install_tensorrt_double, plan_bytes

    _binding_or_skip("cuda-python")
    runtime_api = get_api(0, "cuda-python")  # the fake engine's own memory access (unified addressing)

    class DeviceMemory:
        def read(self, ptr, nbytes):
            device.api.synchronize()  # the engine runs after the queued input copy
            out = np.empty(nbytes, np.uint8)
            runtime_api.memcpy(out.ctypes.data, ptr, nbytes, "default")
            return out.tobytes()

        def write(self, ptr, data):
            src = np.frombuffer(data, np.uint8).copy()
            runtime_api.memcpy(ptr, src.ctypes.data, len(data), "default")

    trt = install_tensorrt_double(monkeypatch, flavour)
    trt.memory = DeviceMemory()
    io = [("image", "input", (1, 3, 32, 48), "float32"), ("heatmaps", "output", (1, 19, 4, 6), "float32"),
          ("pafs", "output", (1, 38, 4, 6), "float32")]
    dev = CudaDevice(0, api=device.api)
    dev.info = dict(dev.info, integrated=zero_copy)  # on the H100, zero_copy=True takes the Jetson path
    backend = TensorRTBackend(plan_bytes(flavour, io=io), meta=ModelMeta(InputSpec(height=32, width=48)), device=dev)
    assert dev.zero_copy == zero_copy
    import concurrent.futures

    rng = np.random.default_rng(3)
    worker = concurrent.futures.ThreadPoolExecutor(1)  # the pipeline infers on its own thread
    for frame in range(4):
        buffer = backend.new_input_buffer()
        buffer[...] = rng.random(buffer.shape, dtype=np.float32)
        outputs = backend.infer(buffer) if frame % 2 == 0 else worker.submit(backend.infer, buffer).result(60)
        flat = buffer.astype(np.float64).ravel()
        np.testing.assert_array_equal(outputs["pafs"], np.resize(flat * 2.0, 38 * 24).reshape(1, 38, 4, 6)
                                      .astype(np.float32))
    worker.shutdown()
    backend.close()
    assert "tests.tensorrt_double" in sys.modules
