"""A simulated GPU behind edge_sdk.runtime.cuda's CudaApi seam, for tests on machines without CUDA.

"Device" memory is host memory (ctypes buffers) so copies and the TensorRT double's fake engine can
really move bytes; every call is recorded in ``calls``; pointers outside a live allocation raise. Work
queued on a stream (async copies, engine runs, event records) stays pending until the stream or an event
is synchronized, or ``run_pending()`` is called -- unless ``eager`` is set -- so tests can see in-flight
buffers, and ordering bugs (reading a result before the copy ran) show up as wrong data.
"""

import ctypes
from collections import namedtuple

from edge_sdk.runtime.cuda import CudaApi, CudaError

Call = namedtuple("Call", "name args")


class SimEvent:
    def __init__(self, timing):
        self.complete = True
        self.timing = timing


class SimStream:
    def __init__(self, handle):
        self.handle = handle
        self.pending = []


class SimCudaApi(CudaApi):
    name = "simulated"

    def __init__(self, integrated=False, can_map_host_memory=True, eager=False, total_memory=8 << 30):
        self.integrated = integrated
        self.can_map = can_map_host_memory
        self.eager = eager
        self.total = total_memory
        self.calls = []
        self.allocations = {}  # ptr -> (ctypes buffer, kind)
        self.streams = {}
        self._next_stream = 0x5000

    # recording + memory checks
    def _rec(self, name, *args):
        self.calls.append(Call(name, args))

    def names(self):
        return [c.name for c in self.calls]

    def _alloc(self, nbytes, kind):
        buf = (ctypes.c_uint8 * nbytes)()
        ptr = ctypes.addressof(buf)
        self.allocations[ptr] = (buf, kind)
        return ptr

    def _check_range(self, ptr, nbytes):
        for base, (buf, _) in self.allocations.items():
            if base <= ptr and ptr + nbytes <= base + len(buf):
                return
        raise CudaError("simulated access", "cudaErrorIllegalAddress", "0x{:x} + {}".format(ptr, nbytes))

    def read(self, ptr, nbytes):
        self._check_range(ptr, nbytes)
        return ctypes.string_at(ptr, nbytes)

    def write(self, ptr, data):
        self._check_range(ptr, len(data))
        ctypes.memmove(ptr, data, len(data))

    def enqueue(self, stream_handle, fn):
        stream = self.streams.get(stream_handle)
        if stream is None:
            raise CudaError("simulated enqueue", "cudaErrorInvalidResourceHandle", "stream {!r}".format(stream_handle))
        stream.pending.append(fn)
        if self.eager:
            self._flush(stream)

    def _flush(self, stream, until=None):
        """Run ``stream``'s queued work in order: all of it, or up to and including ``until``."""
        if until is not None and until not in stream.pending:
            return  # already ran
        while stream.pending:
            fn = stream.pending.pop(0)
            fn()
            if until is not None and fn is until:
                return

    def run_pending(self):
        for stream in self.streams.values():
            self._flush(stream)

    def in_flight(self):
        return sum(len(s.pending) for s in self.streams.values())

    # CudaApi
    def device_info(self, device):
        return {"name": "Simulated GPU", "compute_capability": (8, 7) if self.integrated else (9, 0),
                "integrated": self.integrated, "can_map_host_memory": self.can_map, "total_memory": self.total}

    def versions(self):
        return {"driver": "12.2", "runtime": "12.2"}

    def host_alloc(self, nbytes, mapped):
        self._rec("host_alloc", nbytes, mapped)
        return self._alloc(nbytes, "mapped" if mapped else "pinned")

    def host_device_pointer(self, host_ptr):
        self._rec("host_device_pointer", host_ptr)
        if self.allocations[host_ptr][1] != "mapped":
            raise CudaError("cudaHostGetDevicePointer", "cudaErrorInvalidValue", "not a mapped allocation")
        return host_ptr  # unified addressing: the same address

    def free_host(self, host_ptr):
        self._rec("free_host", host_ptr)
        del self.allocations[host_ptr]

    def malloc(self, nbytes):
        self._rec("malloc", nbytes)
        return self._alloc(nbytes, "device")

    def free(self, ptr):
        self._rec("free", ptr)
        del self.allocations[ptr]

    def memcpy_async(self, dst, src, nbytes, kind, stream):
        self._rec("memcpy_async", dst, src, nbytes, kind, stream.handle)
        self._check_range(dst, nbytes)
        self._check_range(src, nbytes)
        self.enqueue(stream.handle, lambda: ctypes.memmove(dst, src, nbytes))

    def memcpy(self, dst, src, nbytes, kind):
        self._rec("memcpy", dst, src, nbytes, kind)
        self.run_pending()
        self.write(dst, self.read(src, nbytes))

    def stream_create(self):
        self._next_stream += 16
        stream = SimStream(self._next_stream)
        self.streams[stream.handle] = stream
        self._rec("stream_create", stream.handle)
        return stream

    def stream_handle(self, stream):
        return stream.handle

    def stream_synchronize(self, stream):
        self._rec("stream_synchronize", stream.handle)
        self._flush(stream)

    def stream_destroy(self, stream):
        self._rec("stream_destroy", stream.handle)
        self._flush(stream)
        del self.streams[stream.handle]

    def stream_wait_event(self, stream, event):
        self._rec("stream_wait_event", stream.handle)
        if event.complete:
            return
        other, marker = event.stream, event.marker
        # work queued on ``stream`` from now on runs only after ``other`` reached the event's latest record
        self.enqueue(stream.handle, lambda: self._flush(other, until=marker))

    def event_create(self, timing=False):
        self._rec("event_create", timing)
        return SimEvent(timing)

    def event_record(self, event, stream):
        self._rec("event_record", stream.handle)
        event.complete = False
        event.stream = stream

        def mark():
            if event.marker is mark:  # an older record of a re-recorded event completes nothing
                event.complete = True

        event.marker = mark
        self.enqueue(stream.handle, mark)

    def event_query(self, event):
        self._rec("event_query")
        return event.complete

    def event_synchronize(self, event):
        self._rec("event_synchronize")
        if not event.complete:
            self._flush(event.stream, until=event.marker)

    def event_elapsed_ms(self, start, end):
        return 0.0

    def event_destroy(self, event):
        self._rec("event_destroy")

    def mem_get_info(self):
        used = sum(len(buf) for buf, kind in self.allocations.values() if kind == "device")
        return self.total - used, self.total

    def synchronize(self):
        self.run_pending()
