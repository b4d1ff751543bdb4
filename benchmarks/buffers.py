"""Per-frame cost of getting the runtime's input to the GPU: mapped zero-copy vs pinned+async vs pageable.

Each strategy ends with the GPU having consumed the frame (a kernel reads every element and writes a
device buffer, as the first layer of the engine would), so the three are compared on equal terms:

* pageable:        numpy array -> cudaMemcpy (synchronous, staged by the driver) -> kernel on device memory
* pinned + async:  pinned host buffer -> cudaMemcpyAsync on a stream -> kernel on device memory
* mapped zero-copy: the kernel reads the pinned, GPU-mapped host buffer directly (no copy at all)

Prints milliseconds per frame (median of repeats) and RATIOS against the pageable baseline measured in the
same run. On Jetson (integrated GPU, shared DRAM) zero-copy skips a DRAM->DRAM copy; on a discrete GPU the
kernel reads host memory over PCIe/NVLink-C2C, which is about what the copy costs.

    python benchmarks/buffers.py [--height 256 --width 384 --frames 300 --repeats 7]

Needs cuda-python and CuPy (for the tiny consumer kernel).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_sdk.runtime.cuda import CudaDevice  # noqa: E402

KERNEL = r'''
extern "C" __global__ void consume(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] * 0.5f + 0.25f;
}'''


def cupy_view(cp, ptr, n):
    memory = cp.cuda.UnownedMemory(ptr, n * 4, None, 0)
    return cp.ndarray((n,), np.float32, cp.cuda.MemoryPointer(memory, 0))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--frames", type=int, default=300, help="frames per timed run")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per strategy (median reported)")
    args = parser.parse_args(argv)

    import cupy as cp

    device = CudaDevice(0)
    api = device.api
    shape = (1, 3, args.height, args.width)
    n = int(np.prod(shape))
    kernel = cp.RawKernel(KERNEL, "consume")
    grid, block = ((n + 255) // 256,), (256,)
    stream = device.stream()
    ext = cp.cuda.ExternalStream(stream.handle)

    rng = np.random.default_rng(0)
    frame = rng.random(shape, dtype=np.float32)
    pageable = frame.copy()
    pinned = device.tensor(shape, np.float32, zero_copy=False)  # pinned host + device buffer
    mapped = device.tensor(shape, np.float32, zero_copy=True)   # pinned host mapped into the GPU
    pinned.host[...] = frame
    mapped.host[...] = frame
    out = device.tensor(shape, np.float32, zero_copy=False)
    out_view = cupy_view(cp, out.device_ptr, n)
    dev_in_view = cupy_view(cp, pinned.device_ptr, n)
    mapped_view = cupy_view(cp, mapped.device_ptr, n)

    def run_pageable():
        api.memcpy(pinned.device_ptr, pageable.ctypes.data, pinned.nbytes, "htod")
        with ext:
            kernel(grid, block, (dev_in_view, out_view, np.int32(n)))
        stream.synchronize()

    def run_pinned():
        pinned.to_device(stream)
        with ext:
            kernel(grid, block, (dev_in_view, out_view, np.int32(n)))
        stream.synchronize()

    def run_mapped():
        with ext:
            kernel(grid, block, (mapped_view, out_view, np.int32(n)))
        stream.synchronize()

    strategies = [("pageable copy", run_pageable), ("pinned + async copy", run_pinned),
                  ("mapped zero-copy", run_mapped)]
    expected = frame.ravel() * 0.5 + 0.25
    for name, run in strategies:  # correctness first: every strategy must produce the same output
        out.host[...] = np.nan
        with ext:
            out_view.fill(np.nan)
        stream.synchronize()
        run()
        out.to_host(stream)
        stream.synchronize()
        if not np.allclose(out.host.ravel(), expected, rtol=1e-6):
            print("FAILED: {} gave wrong data".format(name))
            return 1

    timings = {name: [] for name, _ in strategies}
    for _ in range(2):  # warm-up
        for _, run in strategies:
            run()
    for _ in range(args.repeats):  # interleaved, so drift hits all strategies alike
        for name, run in strategies:
            t0 = time.perf_counter()
            for _ in range(args.frames):
                run()
            timings[name].append((time.perf_counter() - t0) * 1000.0 / args.frames)

    base = statistics.median(timings["pageable copy"])
    mb = pinned.nbytes / 1e6
    print("device: {} | input {} float32 = {:.2f} MB | {} frames x {} repeats".format(
        device.describe(), shape, mb, args.frames, args.repeats))
    print("{:<22} {:>10} {:>10} {:>12}".format("strategy", "ms/frame", "spread", "vs pageable"))
    for name, _ in strategies:
        values = timings[name]
        median = statistics.median(values)
        print("{:<22} {:>10.4f} {:>10.4f} {:>11.2f}x".format(name, median, max(values) - min(values),
                                                             base / median))
    for buffer in (pinned, mapped, out):
        buffer.free()
    stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
