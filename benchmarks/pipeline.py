"""Pipelined runtime vs. a plain sequential loop vs. pure inference, on one model, source and decoder.

    python benchmarks/pipeline.py [--frames 100] [--rounds 5] [--workers 2] [--threads N] [--size 256x384]

The model is a small real conv net (built here with onnx.helper: 5 strided/plain 3x3 convolutions, then
heatmaps + PAF heads) whose outputs also carry rendered people, so the decoder does real work on every
frame. Frames are rendered once and replayed from memory, so the source costs the same in every mode.
Printed and written to benchmarks/results/ (benchmarks/runner.py): frames/s of each mode, pipeline /
sequential, and pipeline / pure inference (goal: >= 0.9, the pre- and post-processing hidden behind
inference), as medians and ranges over interleaved rounds. The decoder is always the real PAF decoder
(``edge_sdk.runtime.decode``); if it cannot be made, the benchmark stops. On a CPU-only host
the inference itself uses the cores that pre/post-processing need, so ``--threads`` (ONNX Runtime intra-op
threads) below the core count models a device where the GPU runs inference (Jetson).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import runner  # noqa: E402
from edge_sdk.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from edge_sdk.runtime.maps import render_maps  # noqa: E402
from edge_sdk.runtime.model_meta import METADATA_KEY, InputSpec, ModelMeta  # noqa: E402
from edge_sdk.runtime.pipeline import Pipeline, default_decoder  # noqa: E402
from edge_sdk.runtime.preprocess import letterbox_params, preprocess_frame  # noqa: E402
from edge_sdk.runtime.sinks import MemorySink  # noqa: E402
from edge_sdk.runtime.skeleton import coco17_to_coco18  # noqa: E402
from edge_sdk.runtime.sources import Source, SyntheticSource, synthetic_people  # noqa: E402


def build_conv_model(path: str, height: int, width: int, people18_input: np.ndarray, width_mult: int = 32):
    """A small conv net [1, 3, H, W] -> heatmaps [1, 19, H/8, W/8], pafs [1, 38, H/8, W/8].

    The net's own output is scaled down and added to maps rendered from ``people18_input`` (input pixels),
    so the decoder finds real people while the convolutions cost what a small backbone costs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(0)
    layers = [(3, width_mult, 2), (width_mult, 2 * width_mult, 2), (2 * width_mult, 3 * width_mult, 2),
              (3 * width_mult, 3 * width_mult, 1), (3 * width_mult, 3 * width_mult, 1)]
    nodes, inits, x = [], [], "image"
    for i, (cin, cout, stride) in enumerate(layers):
        w = rng.normal(0, np.sqrt(2.0 / (9 * cin)), (cout, cin, 3, 3)).astype(np.float32)
        inits += [numpy_helper.from_array(w, "w%d" % i), numpy_helper.from_array(np.zeros(cout, np.float32), "b%d" % i)]
        nodes += [helper.make_node("Conv", [x, "w%d" % i, "b%d" % i], ["c%d" % i], pads=[1, 1, 1, 1],
                                   strides=[stride, stride]),
                  helper.make_node("Relu", ["c%d" % i], ["r%d" % i])]
        x = "r%d" % i
    heatmaps, pafs = render_maps(people18_input, height, width)
    for name, channels, rendered in (("heatmaps", 19, heatmaps), ("pafs", 38, pafs)):
        w = rng.normal(0, 0.01, (channels, 3 * width_mult, 1, 1)).astype(np.float32)
        inits += [numpy_helper.from_array(w, name + "_w"), numpy_helper.from_array(rendered[None], name + "_r"),
                  numpy_helper.from_array(np.float32(0.02), name + "_s")]
        nodes += [helper.make_node("Conv", [x, name + "_w"], [name + "_c"]),
                  helper.make_node("Tanh", [name + "_c"], [name + "_t"]),
                  helper.make_node("Mul", [name + "_t", name + "_s"], [name + "_m"]),
                  helper.make_node("Add", [name + "_m", name + "_r"], [name])]
    h8, w8 = height // 8, width // 8
    graph = helper.make_graph(
        nodes, "bench_net", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 19, h8, w8]),
         helper.make_tensor_value_info("pafs", TensorProto.FLOAT, [1, 38, h8, w8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = ModelMeta(InputSpec(height=height, width=width), model="bench-convnet")
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, path)


class ReplaySource(Source):
    """Pre-rendered frames replayed from memory (a file-like source: never dropped)."""

    name = "replay"

    def __init__(self, images):
        self.images = images

    def frames(self):
        yield from enumerate(self.images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100, help="frames per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (after one warm-up round)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--size", default="256x384", help="model input HxW")
    parser.add_argument("--frame-size", default="480x640", help="source frame HxW")
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--width-mult", type=int, default=32, help="conv channels (compute per frame)")
    parser.add_argument("--out", type=str, default=None, help="result JSON (default benchmarks/results/pipeline"
                                                             "[-threadsN].json)")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    frame_h, frame_w = (int(v) for v in args.frame_size.lower().split("x"))

    people17 = synthetic_people(0, frame_w, frame_h, args.people, seed=1)
    box, _ = letterbox_params(frame_h, frame_w, height, width)
    people18 = coco17_to_coco18(people17)
    people18[..., :2] = box.frame_to_input(people18[..., :2])
    synthetic = SyntheticSource(width=frame_w, height=frame_h, people=args.people, seed=1)
    images = [synthetic.render(k) for k in range(args.frames)]

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.onnx")
        build_conv_model(path, height, width, people18, args.width_mult)
        backend = OnnxRuntimeBackend(path, threads=args.threads)
        decoder = default_decoder(backend.meta)  # the real PAF decoder; any failure here stops the benchmark
        buffer = backend.new_input_buffer()
        preprocess_frame(images[0], backend.input_spec, out=buffer[0])
        people_found = {}

        def pure_inference():  # the backend alone on one preprocessed buffer
            start = time.perf_counter()
            for _ in range(args.frames):
                backend.infer(buffer)
            return {"fps": args.frames / (time.perf_counter() - start)}

        def runtime(mode):
            def measure():
                sink = MemorySink()
                stats = Pipeline(backend, ReplaySource(images), [sink], workers=args.workers, decoder=decoder,
                                 sequential=mode == "sequential", device_id="bench").run()
                if stats.frames != args.frames or stats.error is not None:
                    raise SystemExit("the {} run failed: {}".format(mode, stats.to_dict()))
                people_found[mode] = float(np.mean([len(m["people"]) for m in sink.messages]))
                return {"fps": stats.fps, "people/frame": people_found[mode]}
            return measure

        measured = runner.interleave({"pure inference": pure_inference, "sequential loop": runtime("sequential"),
                                      "pipelined runtime": runtime("pipelined")}, args.rounds, warmup=1)
    rows = [{"label": side, "metrics": {k: measured.metric(side, k) for k in measured.values[side]}}
            for side in measured.sides]
    ratios = [{"label": "pipelined / sequential fps", "summary": measured.ratio("pipelined runtime",
                                                                               "sequential loop", "fps")},
              {"label": "pipelined / pure inference fps", "goal": ">= 0.9",
               "summary": measured.ratio("pipelined runtime", "pure inference", "fps")}]
    name = "pipeline" if args.threads is None else "pipeline-threads{}".format(args.threads)
    doc = runner.result(
        name, "The pipelined runtime ({} ONNX Runtime threads)".format(args.threads or "default"),
        "the plain sequential loop and pure inference of the same backend, decoder edge_sdk.runtime.decode",
        measured, rows, ratios,
        {"model": "conv net {}x{} (width {})".format(height, width, args.width_mult), "frames": args.frames,
         "frame size": "{}x{}".format(frame_w, frame_h), "people": args.people, "workers": args.workers,
         "onnxruntime threads": args.threads or "default", "rounds": args.rounds})
    runner.print_result(doc)
    print("wrote", runner.write(doc, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
