"""The pipeline on the real TensorRT backend code, against the recorded-call TensorRT double on a simulated
Jetson (zero-copy) or discrete GPU: two inferences in flight through ``infer_async``, input buffers from
``new_input_buffer`` (pinned / GPU-mapped), and every frame's outputs computed from that frame's own input.

The double's engine writes ``heatmaps = resize(input)``, ``pafs = resize(2 * input)``
(tests/tensorrt_double.py), so a buffer recycled too early or outputs given to the wrong frame show up.
"""

import numpy as np
import pytest

from edge_sdk.runtime.backends.tensorrt_backend import TensorRTBackend
from edge_sdk.runtime.cuda import CudaDevice
from edge_sdk.runtime.model_meta import InputSpec, ModelMeta
from edge_sdk.runtime.pipeline import Pipeline
from edge_sdk.runtime.preprocess import preprocess_frame
from edge_sdk.runtime.sinks import MemorySink
from edge_sdk.runtime.sources import open_source
from edge_sdk.testing import oracle_frame, write_oracle_images
from tests.cuda_double import SimCudaApi
from tests.tensorrt_double import install_tensorrt_double, plan_bytes

IO = [("image", "input", (1, 3, 16, 24), "float32"), ("heatmaps", "output", (1, 19, 2, 3), "float32"),
      ("pafs", "output", (1, 38, 2, 3), "float32")]
META = ModelMeta(InputSpec(height=16, width=24))
FRAMES = 12


OFFSET = 50.0  # keypoints are clipped to the frame (no negative coordinates): the values ride on an offset


def fingerprint(maps, letterbox, stride):
    """A 'decoder' that reports the first 17 values of each map as keypoints (x: heatmaps, y: pafs), + OFFSET."""
    keypoints = np.ones((1, 17, 3), np.float32)
    keypoints[0, :, 0] = maps["heatmaps"].reshape(-1)[:17] + OFFSET
    keypoints[0, :, 1] = maps["pafs"].reshape(-1)[:17] + OFFSET
    return keypoints, np.ones(1, np.float32)


def watch_outstanding(backend):
    """Count the inferences queued with infer_async whose result was not collected yet (max seen)."""
    seen = {"now": 0, "max": 0}
    queue = backend.infer_async

    def infer_async(batch):
        pending = queue(batch)
        seen["now"] += 1
        seen["max"] = max(seen["max"], seen["now"])
        collect = pending.result

        def result():
            seen["now"] -= 1
            return collect()

        pending.result = result
        return pending

    backend.infer_async = infer_async
    original_infer = backend.infer

    def infer(batch):  # sequential mode: one at a time
        seen["max"] = max(seen["max"], 1)
        return original_infer(batch)

    backend.infer = infer
    return seen


@pytest.mark.parametrize("flavour", ["8.2", "10"])
@pytest.mark.parametrize("integrated", [True, False], ids=["jetson-zero-copy", "discrete"])
def test_pipeline_with_async_tensorrt_backend(monkeypatch, tmp_path, flavour, integrated):
    trt = install_tensorrt_double(monkeypatch, flavour)
    sim = SimCudaApi(integrated=integrated)
    trt.memory = sim
    folder = write_oracle_images(tmp_path / "frames", FRAMES, 240, 160)  # each frame a different colour
    for sequential in (False, True):
        backend = TensorRTBackend(plan_bytes(flavour, io=IO), meta=META, device=CudaDevice(0, api=sim))
        outstanding = watch_outstanding(backend)
        sink = MemorySink()
        stats = Pipeline(backend, open_source(str(folder)), [sink], workers=3, decoder=fingerprint,
                         sequential=sequential).run()
        assert stats.error is None and stats.frames == FRAMES
        assert [m["seq"] for m in sink.messages] == list(range(FRAMES))
        for message in sink.messages:
            pixels = preprocess_frame(oracle_frame(message["seq"], 240, 160), META.input)[0].ravel()[:17]
            got = np.array(message["people"][0]["keypoints"], np.float32)
            np.testing.assert_allclose(got[:, 0] - OFFSET, pixels, atol=0.051)  # messages round to 0.1
            np.testing.assert_allclose(got[:, 1] - OFFSET, 2 * pixels, atol=0.051)
        assert backend.reclaims == 0, "the pipeline must collect a batch before a third is queued"
        assert outstanding["max"] == (1 if sequential else 2)
        backend.close()
    assert sim.allocations == {}  # every pinned / device buffer the pipeline asked for was freed
