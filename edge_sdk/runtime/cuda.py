"""CUDA memory, streams and events for the on-device runtime, with no copy that can be avoided.

* Jetson (integrated GPU, one DRAM shared by CPU and GPU): input and output buffers are pinned host
  memory mapped into the GPU address space (``cudaHostAlloc(cudaHostAllocMapped)`` +
  ``cudaHostGetDevicePointer``). The CPU writes a frame through a numpy view, TensorRT reads it at the
  mapped device pointer: zero copies.
* Discrete GPU: pinned host buffers + device buffers, asynchronous copies on a stream.

:class:`TensorBuffer` hides the difference (``to_device`` / ``to_host`` are no-ops when mapped);
:class:`BufferPool` hands out sets of buffers for double buffering and never one that is still in flight
(each slot carries an event recorded after its last GPU work).

Two backends behind one small API (:class:`CudaApi`): cuda-python (``cuda.bindings.runtime``, or the older
``cuda.cudart``) and pycuda (JetPack 4.6 has no cuda-python). Python 3.6 syntax; imports nothing but
numpy at import time.
"""

import contextlib
import ctypes
import threading
from typing import Any, List, Optional, Sequence

import numpy as np

from edge_sdk.errors import EdgeSdkError

_HINTS = {
    "cudaErrorNoDevice": "no CUDA GPU is visible: check `nvidia-smi` (or `tegrastats` on Jetson), "
                         "CUDA_VISIBLE_DEVICES, and that your user is in the `video` group",
    "cudaErrorInsufficientDriver": "the NVIDIA driver is older than the CUDA runtime: update the driver "
                                   "(on Jetson, flash the JetPack that matches the runtime)",
    "cudaErrorMemoryAllocation": "out of memory: close other GPU programs, or use a smaller input size / batch",
    "cudaErrorInvalidValue": "a CUDA call got a bad argument (size 0, freed pointer?): please report this bug",
    "cudaErrorInvalidDevice": "no such GPU index: use 0 on Jetson, or check `nvidia-smi -L`",
    "cudaErrorInitializationError": "CUDA could not start: check the driver with `nvidia-smi`, and that no "
                                    "other process holds the GPU in exclusive mode",
    "cudaErrorLaunchFailure": "a GPU kernel crashed: run with CUDA_LAUNCH_BLOCKING=1 to locate it",
    "cudaErrorIllegalAddress": "a GPU kernel read or wrote out of bounds (wrong tensor address or size?)",
}


class CudaError(EdgeSdkError):
    """A CUDA call failed: says which call, the CUDA error name, and what to do."""

    def __init__(self, call, error_name, detail=""):
        self.call = call
        self.error_name = error_name
        hint = _HINTS.get(error_name, "see the CUDA documentation for {}".format(error_name))
        message = "{} failed: {}{}; {}".format(call, error_name, " ({})".format(detail) if detail else "", hint)
        EdgeSdkError.__init__(self, message)


class CudaUnavailable(EdgeSdkError):
    """Neither cuda-python nor pycuda can be imported (or no GPU)."""


# -- the API seam -------------------------------------------------------------------------------------------

class CudaApi(object):
    """What the runtime needs from CUDA; pointers and stream/event handles are plain ints/objects.

    Implementations: :class:`CudaPythonApi`, :class:`PyCudaApi` (and a simulated one in the tests).
    """

    name = "abstract"

    def device_info(self, device):
        """{name, compute_capability (major, minor), integrated, can_map_host_memory, total_memory}."""
        raise NotImplementedError

    def versions(self):
        """{driver: 'X.Y', runtime: 'X.Y'}."""
        raise NotImplementedError

    @contextlib.contextmanager
    def activated(self):
        """The device's context is current inside (for dropping pycuda objects); nothing to do by default."""
        yield


def _version_string(v):
    return "{}.{}".format(v // 1000, (v % 1000) // 10)


API_METHODS = ("device_info", "versions", "host_alloc", "host_device_pointer", "free_host", "malloc", "free",
               "memcpy_async", "memcpy", "stream_create", "stream_handle", "stream_synchronize", "stream_destroy",
               "stream_wait_event", "event_create", "event_record", "event_query", "event_synchronize",
               "event_elapsed_ms", "event_destroy", "mem_get_info", "synchronize")


def _per_thread(cls):
    """Make every API method first call ``cls._enter_thread`` once per calling thread: the pipeline calls
    CUDA from its inference thread, not the thread that made the device (pycuda's context is per thread;
    the runtime API's current device is too)."""
    def wrap(method):
        def call(self, *args, **kwargs):
            local = self._thread
            if not getattr(local, "ready", False):
                self._enter_thread()
                local.ready = True
            return method(self, *args, **kwargs)
        call.__name__ = method.__name__
        call.__doc__ = method.__doc__
        return call

    for name in API_METHODS:
        setattr(cls, name, wrap(getattr(cls, name)))
    return cls


def _text(value):
    """bytes (a C string from the CUDA API) or str -> str."""
    return str(value, "utf-8", "replace") if isinstance(value, bytes) else str(value)


@_per_thread
class CudaPythonApi(CudaApi):
    """cuda-python: ``from cuda.bindings import runtime`` (12.x+) or ``from cuda import cudart`` (11.x)."""

    name = "cuda-python"

    def __init__(self, device=0):
        try:
            from cuda.bindings import runtime as rt
            self.layout = "cuda.bindings.runtime"
        except ImportError:
            from cuda import cudart as rt  # noqa: I001 -- cuda-python < 12.6 layout
            self.layout = "cuda.cudart"
        self.rt = rt
        self._success = rt.cudaError_t.cudaSuccess
        self._not_ready = rt.cudaError_t.cudaErrorNotReady
        self.device = device
        self._thread = threading.local()
        self._enter_thread()
        self._thread.ready = True

    def _enter_thread(self):
        self._call("cudaSetDevice", self.rt.cudaSetDevice(self.device))

    def _error_name(self, err):
        try:
            result = self.rt.cudaGetErrorName(err)
            name = result[1]
            return _text(name)
        except Exception:  # noqa: BLE001 - naming the error must never hide it
            return getattr(err, "name", str(err))

    def _call(self, what, result):
        """Check a cuda-python result tuple ``(err, *values)``; return the values (one, several or None)."""
        err = result[0] if isinstance(result, tuple) else result
        if err != self._success:
            raise CudaError(what, self._error_name(err))
        values = result[1:] if isinstance(result, tuple) else ()
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def device_info(self, device):
        prop = self._call("cudaGetDeviceProperties", self.rt.cudaGetDeviceProperties(device))
        name = prop.name
        if isinstance(name, bytes):
            name = _text(name.split(b"\0", 1)[0])
        return {"name": name, "compute_capability": (int(prop.major), int(prop.minor)),
                "integrated": bool(prop.integrated), "can_map_host_memory": bool(prop.canMapHostMemory),
                "total_memory": int(prop.totalGlobalMem)}

    def versions(self):
        return {"driver": _version_string(self._call("cudaDriverGetVersion", self.rt.cudaDriverGetVersion())),
                "runtime": _version_string(self._call("cudaRuntimeGetVersion", self.rt.cudaRuntimeGetVersion()))}

    def host_alloc(self, nbytes, mapped):
        flags = self.rt.cudaHostAllocMapped if mapped else self.rt.cudaHostAllocDefault
        return int(self._call("cudaHostAlloc({} bytes)".format(nbytes), self.rt.cudaHostAlloc(nbytes, flags)))

    def host_device_pointer(self, host_ptr):
        return int(self._call("cudaHostGetDevicePointer", self.rt.cudaHostGetDevicePointer(host_ptr, 0)))

    def free_host(self, host_ptr):
        self._call("cudaFreeHost", self.rt.cudaFreeHost(host_ptr))

    def malloc(self, nbytes):
        return int(self._call("cudaMalloc({} bytes)".format(nbytes), self.rt.cudaMalloc(nbytes)))

    def free(self, ptr):
        self._call("cudaFree", self.rt.cudaFree(ptr))

    def _kind(self, kind):
        return getattr(self.rt.cudaMemcpyKind, {"htod": "cudaMemcpyHostToDevice", "dtoh": "cudaMemcpyDeviceToHost",
                                                "dtod": "cudaMemcpyDeviceToDevice",
                                                "default": "cudaMemcpyDefault"}[kind])

    def memcpy_async(self, dst, src, nbytes, kind, stream):
        self._call("cudaMemcpyAsync({})".format(kind),
                   self.rt.cudaMemcpyAsync(dst, src, nbytes, self._kind(kind), stream))

    def memcpy(self, dst, src, nbytes, kind):
        self._call("cudaMemcpy({})".format(kind), self.rt.cudaMemcpy(dst, src, nbytes, self._kind(kind)))

    def stream_create(self):
        return self._call("cudaStreamCreateWithFlags",
                          self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking))

    def stream_handle(self, stream):
        return int(stream)

    def stream_synchronize(self, stream):
        self._call("cudaStreamSynchronize", self.rt.cudaStreamSynchronize(stream))

    def stream_destroy(self, stream):
        self._call("cudaStreamDestroy", self.rt.cudaStreamDestroy(stream))

    def stream_wait_event(self, stream, event):
        self._call("cudaStreamWaitEvent", self.rt.cudaStreamWaitEvent(stream, event, 0))

    def event_create(self, timing=False):
        flags = self.rt.cudaEventDefault if timing else self.rt.cudaEventDisableTiming
        return self._call("cudaEventCreateWithFlags", self.rt.cudaEventCreateWithFlags(flags))

    def event_record(self, event, stream):
        self._call("cudaEventRecord", self.rt.cudaEventRecord(event, stream))

    def event_query(self, event):
        result = self.rt.cudaEventQuery(event)
        err = result[0] if isinstance(result, tuple) else result
        if err == self._not_ready:
            return False
        self._call("cudaEventQuery", result)
        return True

    def event_synchronize(self, event):
        self._call("cudaEventSynchronize", self.rt.cudaEventSynchronize(event))

    def event_elapsed_ms(self, start, end):
        return float(self._call("cudaEventElapsedTime", self.rt.cudaEventElapsedTime(start, end)))

    def event_destroy(self, event):
        self._call("cudaEventDestroy", self.rt.cudaEventDestroy(event))

    def mem_get_info(self):
        free, total = self._call("cudaMemGetInfo", self.rt.cudaMemGetInfo())
        return int(free), int(total)

    def synchronize(self):
        self._call("cudaDeviceSynchronize", self.rt.cudaDeviceSynchronize())


class PyCudaApi(CudaApi):
    """pycuda (JetPack 4.6 / CUDA 10.2): the device's primary context, so TensorRT shares it."""

    name = "pycuda"

    def __init__(self, device=0):
        import pycuda.driver as drv

        self.drv = drv
        self.layout = "pycuda.driver"
        try:
            drv.init()
            self.dev = drv.Device(device)
            self.context = self.dev.retain_primary_context()
        except drv.Error as exc:
            raise self._error("cuInit/primary context", exc) from exc
        self._host = {}    # host ptr -> pycuda HostAllocation (keeps it alive)
        self._device = {}  # device ptr -> DeviceAllocation

    def _error(self, what, exc):
        text = str(exc)
        name = text.split(":")[0].strip() if ":" in text else type(exc).__name__
        mapping = {"cuInit failed": "cudaErrorNoDevice", "out of memory": "cudaErrorMemoryAllocation"}
        for key, value in mapping.items():
            if key in text:
                name = value
        return CudaError(what, name, text)

    @contextlib.contextmanager
    def activated(self):
        drv = self.drv
        pushed = drv.Context.get_current() is None
        if pushed:
            self.context.push()
        try:
            yield
        finally:
            if pushed:
                drv.Context.pop()

    def _guard(self, what, fn, *args):
        """Run one pycuda call with the device's primary context current (the one TensorRT and the runtime
        API use). Pushed and popped around the call when the calling thread has none: pycuda aborts the
        process if a thread ends with a context left on its stack, and the pipeline infers on a worker thread."""
        drv = self.drv
        pushed = False
        try:
            if drv.Context.get_current() is None:
                self.context.push()
                pushed = True
            return fn(*args)
        except drv.Error as exc:
            raise self._error(what, exc) from exc
        finally:
            if pushed:
                drv.Context.pop()

    def device_info(self, device):
        dev = self.drv.Device(device)
        attr = self.drv.device_attribute
        return {"name": dev.name(), "compute_capability": tuple(dev.compute_capability()),
                "integrated": bool(dev.get_attribute(attr.INTEGRATED)),
                "can_map_host_memory": bool(dev.get_attribute(attr.CAN_MAP_HOST_MEMORY)),
                "total_memory": int(dev.total_memory())}

    def versions(self):
        runtime = self.drv.get_version()
        return {"driver": _version_string(self.drv.get_driver_version()),
                "runtime": "{}.{}".format(runtime[0], runtime[1])}

    def host_alloc(self, nbytes, mapped):
        flags = self.drv.host_alloc_flags.DEVICEMAP if mapped else 0
        alloc = self._guard("cuMemHostAlloc({} bytes)".format(nbytes), self.drv.pagelocked_empty,
                            (nbytes,), np.uint8, "C", flags)
        ptr = int(alloc.ctypes.data)
        self._host[ptr] = alloc
        return ptr

    def host_device_pointer(self, host_ptr):
        return int(self._guard("cuMemHostGetDevicePointer", self._host[host_ptr].base.get_device_pointer))

    def free_host(self, host_ptr):
        alloc = self._host.pop(host_ptr)
        self._guard("cuMemFreeHost", alloc.base.free)

    def malloc(self, nbytes):
        alloc = self._guard("cuMemAlloc({} bytes)".format(nbytes), self.drv.mem_alloc, nbytes)
        self._device[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr):
        self._guard("cuMemFree", self._device.pop(ptr).free)

    def memcpy_async(self, dst, src, nbytes, kind, stream):
        drv = self.drv
        if kind == "htod":
            self._guard("cuMemcpyHtoDAsync", drv.memcpy_htod_async, dst, _host_bytes(src, nbytes), stream)
        elif kind == "dtoh":
            self._guard("cuMemcpyDtoHAsync", drv.memcpy_dtoh_async, _host_bytes(dst, nbytes), src, stream)
        else:
            self._guard("cuMemcpyDtoDAsync", drv.memcpy_dtod_async, dst, src, nbytes, stream)

    def memcpy(self, dst, src, nbytes, kind):
        drv = self.drv
        if kind == "htod":
            self._guard("cuMemcpyHtoD", drv.memcpy_htod, dst, _host_bytes(src, nbytes))
        elif kind == "dtoh":
            self._guard("cuMemcpyDtoH", drv.memcpy_dtoh, _host_bytes(dst, nbytes), src)
        else:
            self._guard("cuMemcpyDtoD", drv.memcpy_dtod, dst, src, nbytes)

    def stream_create(self):
        return self._guard("cuStreamCreate", self.drv.Stream)

    def stream_handle(self, stream):
        return int(stream.handle)

    def stream_synchronize(self, stream):
        self._guard("cuStreamSynchronize", stream.synchronize)

    def stream_destroy(self, stream):
        pass  # freed by pycuda when the object goes

    def stream_wait_event(self, stream, event):
        self._guard("cuStreamWaitEvent", stream.wait_for_event, event)

    def event_create(self, timing=False):
        flags = 0 if timing else self.drv.event_flags.DISABLE_TIMING
        return self._guard("cuEventCreate", self.drv.Event, flags)

    def event_record(self, event, stream):
        self._guard("cuEventRecord", event.record, stream)

    def event_query(self, event):
        return bool(self._guard("cuEventQuery", event.query))

    def event_synchronize(self, event):
        self._guard("cuEventSynchronize", event.synchronize)

    def event_elapsed_ms(self, start, end):
        return float(self._guard("cuEventElapsedTime", end.time_since, start))

    def event_destroy(self, event):
        pass

    def mem_get_info(self):
        free, total = self._guard("cuMemGetInfo", self.drv.mem_get_info)
        return int(free), int(total)

    def synchronize(self):
        self._guard("cuCtxSynchronize", self.drv.Context.synchronize)


def _host_bytes(ptr, nbytes):
    """A writable buffer over ``nbytes`` of host memory at ``ptr`` (no copy)."""
    return (ctypes.c_uint8 * nbytes).from_address(ptr)


def host_array(ptr: int, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """A numpy array viewing host memory at ``ptr`` (no copy; the caller keeps the memory alive)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.ctypeslib.as_array(_host_bytes(ptr, max(nbytes, 1)))
    return raw[:nbytes].view(dtype).reshape(shape)


_API_LOCK = threading.Lock()
_APIS = {}


def available_backends() -> List[str]:
    """Names of the CUDA Python bindings importable here, in order of preference."""
    import importlib

    names = []
    for name, modules in (("cuda-python", ("cuda.bindings.runtime", "cuda.cudart")), ("pycuda", ("pycuda.driver",))):
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - any import failure means "not usable here"
                continue
            names.append(name)
            break
    return names


def get_api(device: int = 0, prefer: Optional[str] = None) -> CudaApi:
    """The process-wide :class:`CudaApi` (cuda-python if importable, else pycuda)."""
    with _API_LOCK:
        key = (device, prefer)
        if key in _APIS:
            return _APIS[key]
        order = [prefer] if prefer else ["cuda-python", "pycuda"]
        errors = []
        for name in order:
            cls = {"cuda-python": CudaPythonApi, "pycuda": PyCudaApi}[name]
            try:
                api = cls(device)
            except ImportError as exc:
                errors.append("{}: {}".format(name, exc))
                continue
            _APIS[key] = api
            return api
        raise CudaUnavailable(
            "no CUDA Python bindings could be loaded ({}); install cuda-python (`pip install cuda-python`, "
            "JetPack 5+) or pycuda (`pip3 install pycuda`, JetPack 4.6), or use the ONNX Runtime backend "
            "(`--backend onnxruntime`)".format("; ".join(errors)))


# -- streams, events, buffers -------------------------------------------------------------------------------

class Stream(object):
    """A non-blocking CUDA stream. ``handle`` is the int TensorRT's execute calls take."""

    def __init__(self, api):
        self.api = api
        self.raw = api.stream_create()
        self.handle = api.stream_handle(self.raw)

    def synchronize(self):
        self.api.stream_synchronize(self.raw)

    def wait(self, event):
        """Later work on this stream waits for ``event`` (no host blocking)."""
        self.api.stream_wait_event(self.raw, event.raw)

    def close(self):
        if self.raw is not None:
            with self.api.activated():  # pycuda destroys the stream when the last reference goes: here
                self.api.stream_destroy(self.raw)
                self.raw = None


class Event(object):
    """A CUDA event: marks a point in a stream; ``done()`` asks without blocking."""

    def __init__(self, api, timing=False):
        self.api = api
        self.raw = api.event_create(timing)
        self.recorded = False

    def record(self, stream):
        self.api.event_record(self.raw, stream.raw)
        self.recorded = True

    def done(self):
        return (not self.recorded) or self.api.event_query(self.raw)

    def synchronize(self):
        if self.recorded:
            self.api.event_synchronize(self.raw)

    def elapsed_ms(self, since):
        return self.api.event_elapsed_ms(since.raw, self.raw)

    def close(self):
        if self.raw is not None:
            with self.api.activated():
                self.api.event_destroy(self.raw)
                self.raw = None


class HostBuffer(object):
    """Pinned host memory with a numpy view; ``mapped`` also gives the GPU a pointer to it."""

    def __init__(self, api, shape, dtype, mapped=False):
        self.api = api
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = max(int(np.prod(self.shape)) * self.dtype.itemsize, 1)
        self.mapped = mapped
        self.host_ptr = api.host_alloc(self.nbytes, mapped)
        self.device_ptr = api.host_device_pointer(self.host_ptr) if mapped else None
        self.array = host_array(self.host_ptr, self.shape, self.dtype)

    def free(self):
        if self.host_ptr is not None:
            self.array = None
            self.api.free_host(self.host_ptr)
            self.host_ptr = None


class DeviceBuffer(object):
    """Device memory (cudaMalloc)."""

    def __init__(self, api, nbytes):
        self.api = api
        self.nbytes = max(int(nbytes), 1)
        self.ptr = api.malloc(self.nbytes)

    def free(self):
        if self.ptr is not None:
            self.api.free(self.ptr)
            self.ptr = None


class TensorBuffer(object):
    """One tensor's memory: a host numpy view (``host``) and the pointer the GPU uses (``device_ptr``).

    ``zero_copy`` (Jetson): one mapped pinned buffer, ``device_ptr`` points at the same DRAM, and
    ``to_device``/``to_host`` do nothing. Otherwise: pinned host + device memory, async copies on a stream.
    """

    def __init__(self, api, shape, dtype, zero_copy):
        self.api = api
        self.zero_copy = zero_copy
        self.host_buffer = HostBuffer(api, shape, dtype, mapped=zero_copy)
        self.device_buffer = None if zero_copy else DeviceBuffer(api, self.host_buffer.nbytes)

    @property
    def host(self):
        return self.host_buffer.array

    @property
    def host_ptr(self):
        return self.host_buffer.host_ptr

    @property
    def device_ptr(self):
        return self.host_buffer.device_ptr if self.zero_copy else self.device_buffer.ptr

    @property
    def nbytes(self):
        return self.host_buffer.nbytes

    def to_device(self, stream):
        if not self.zero_copy:
            self.api.memcpy_async(self.device_buffer.ptr, self.host_buffer.host_ptr, self.nbytes, "htod", stream.raw)

    def to_host(self, stream):
        if not self.zero_copy:
            self.api.memcpy_async(self.host_buffer.host_ptr, self.device_buffer.ptr, self.nbytes, "dtoh", stream.raw)

    def free(self):
        self.host_buffer.free()
        if self.device_buffer is not None:
            self.device_buffer.free()


class Slot(object):
    """One set of tensors (by name) plus the event that says when the GPU is done with them."""

    def __init__(self, index, tensors, event):
        self.index = index
        self.tensors = tensors
        self.event = event
        self.held = False

    def __getitem__(self, name):
        return self.tensors[name]

    def mark_in_flight(self, stream):
        """Record the slot's event after the work just queued on ``stream`` (call before releasing)."""
        self.event.record(stream)


class BufferPool(object):
    """``depth`` slots of tensor buffers for double (or deeper) buffering.

    ``acquire()`` returns a slot that nobody holds and whose GPU work has finished: it never hands out a
    buffer still in flight (it waits on the slot's event instead). ``waits`` counts those waits.
    """

    def __init__(self, api, specs, depth=2, zero_copy=False):
        """``specs``: {name: (shape, dtype)}."""
        if depth < 1:
            raise ValueError("pool depth must be >= 1")
        self.api = api
        self.zero_copy = zero_copy
        self.slots = []
        self.waits = 0
        self._next = 0
        self._cond = threading.Condition()
        for index in range(depth):
            tensors = dict((name, TensorBuffer(api, shape, dtype, zero_copy)) for name, (shape, dtype) in specs.items())
            self.slots.append(Slot(index, tensors, Event(api)))

    def acquire(self, timeout=None):
        """A free slot (round-robin). Blocks while all are held; waits for the GPU if its event is pending."""
        with self._cond:
            while all(s.held for s in self.slots):
                if not self._cond.wait(timeout):
                    raise EdgeSdkError("no free buffer slot after {} s: every slot is held; release() slots "
                                       "after their results were read".format(timeout))
            for k in range(len(self.slots)):
                slot = self.slots[(self._next + k) % len(self.slots)]
                if not slot.held:
                    break
            self._next = (slot.index + 1) % len(self.slots)
            slot.held = True
        if not slot.event.done():
            self.waits += 1
            slot.event.synchronize()
        return slot

    def release(self, slot):
        with self._cond:
            slot.held = False
            self._cond.notify()

    def find_host(self, array, name):
        """The slot whose tensor ``name`` has its host memory at ``array``'s data pointer, else None."""
        ptr = array.ctypes.data
        for slot in self.slots:
            if slot.tensors[name].host_ptr == ptr:
                return slot
        return None

    def free(self):
        for slot in self.slots:
            slot.event.synchronize()
            for tensor in slot.tensors.values():
                tensor.free()
            slot.event.close()
        self.slots = []


class CudaDevice(object):
    """One GPU as the runtime sees it: its facts, whether zero-copy applies, and factories."""

    def __init__(self, device=0, api=None, prefer=None):
        self.api = api or get_api(device, prefer)
        self.index = device
        self.info = self.api.device_info(device)
        self.name = self.info["name"]
        self.compute_capability = tuple(self.info["compute_capability"])
        self.integrated = self.info["integrated"]

    @property
    def zero_copy(self):
        """True on an integrated GPU that can map host memory (Jetson): the CPU's DRAM is the GPU's."""
        return bool(self.info["integrated"] and self.info["can_map_host_memory"])

    def stream(self):
        return Stream(self.api)

    def event(self, timing=False):
        return Event(self.api, timing)

    def tensor(self, shape, dtype, zero_copy=None):
        return TensorBuffer(self.api, shape, dtype, self.zero_copy if zero_copy is None else zero_copy)

    def pool(self, specs, depth=2, zero_copy=None):
        return BufferPool(self.api, specs, depth, self.zero_copy if zero_copy is None else zero_copy)

    def mem_get_info(self):
        return self.api.mem_get_info()

    def describe(self):
        return "{} (sm_{}{}, {}, {})".format(self.name, self.compute_capability[0], self.compute_capability[1],
                                             "integrated, zero-copy" if self.zero_copy else "discrete",
                                             self.api.name)
