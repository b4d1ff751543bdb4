"""Benchmark: the rewritten graph vs the training export, measured in the same process with interleaved runs.

Prints, as ratios against the original measured in this run:
  * ONNX Runtime inference latency (median) of original vs rewritten (fold, transposes, prune, normalize,
    shape, fold), and of the rewritten graph with GPU-side peak extraction appended;
  * preprocess + inference latency (what a frame costs the device CPU up to the model outputs);
  * bytes per frame copied to the model (input) and back from it (outputs), with and without peaks.

    python benchmarks/rewrite.py                       # synthetic tf2onnx-shaped model
    python benchmarks/rewrite.py --model model.onnx    # a real export from training
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from edge_sdk.graph import run_passes  # noqa: E402
from edge_sdk.graph.common import get_meta  # noqa: E402
from edge_sdk.graph.synthetic_model import make_pose_model  # noqa: E402
from edge_sdk.runtime.preprocess import preprocess_frame  # noqa: E402


def session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def output_bytes(sess: ort.InferenceSession, feed: dict) -> int:
    return sum(o.nbytes for o in sess.run(None, feed))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="ONNX export to rewrite (default: synthetic two-stage model)")
    parser.add_argument("--input", default="384x256", help="WxH input size (default 384x256)")
    parser.add_argument("--runs", type=int, default=30, help="interleaved runs per variant")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--peaks", type=int, default=10, help="top-K per part for the peaks variant")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.input.lower().split("x"))

    original = onnx.load(args.model) if args.model else make_pose_model(channels=32, depth=2, seed=0)
    meta0 = get_meta(original)
    chain = ["fold", "transposes", "prune", "normalize", "shape", "fold"]
    options = {"shape": {"width": width, "height": height}, "peaks": {"k": args.peaks}}
    rewritten, meta1, reports = run_passes(original, chain, options, meta=get_meta(original))
    with_peaks, meta2, _ = run_passes(rewritten, ["peaks"], options, meta=get_meta(rewritten))
    print("graph: {} -> {} nodes ({}); with peaks: {} nodes".format(
        len(original.graph.node), len(rewritten.graph.node), ", ".join(r.name for r in reports),
        len(with_peaks.graph.node)))

    with tempfile.TemporaryDirectory():
        sessions = {"original": session(original, args.threads), "rewritten": session(rewritten, args.threads),
                    "rewritten+peaks": session(with_peaks, args.threads)}
    metas = {"original": meta0, "rewritten": meta1, "rewritten+peaks": meta2}
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    meta0.input.height, meta0.input.width = height, width  # the export takes any size; feed the same one

    def preprocess(name):
        x, _ = preprocess_frame(frame, metas[name].input)
        return {sessions[name].get_inputs()[0].name: x[None]}

    feeds = {name: preprocess(name) for name in sessions}
    for name, sess in sessions.items():  # warm-up
        sess.run(None, feeds[name])
    infer = {name: [] for name in sessions}
    end_to_end = {name: [] for name in sessions}
    for _ in range(args.runs):
        for name, sess in sessions.items():  # interleaved: drift hits every variant alike
            t0 = time.perf_counter()
            feed = preprocess(name)
            t1 = time.perf_counter()
            sess.run(None, feed)
            t2 = time.perf_counter()
            infer[name].append(t2 - t1)
            end_to_end[name].append(t2 - t0)
    base_inf = statistics.median(infer["original"])
    base_e2e = statistics.median(end_to_end["original"])
    print("\n{:<16} {:>12} {:>14} {:>12} {:>14} {:>12} {:>12}".format(
        "variant", "infer ms", "infer ratio", "pre+inf ms", "pre+inf ratio", "bytes in", "bytes out"))
    for name, sess in sessions.items():
        inf, e2e = statistics.median(infer[name]), statistics.median(end_to_end[name])
        bytes_in = sum(v.nbytes for v in feeds[name].values())
        print("{:<16} {:>12.2f} {:>13.2f}x {:>12.2f} {:>13.2f}x {:>12,} {:>12,}".format(
            name, inf * 1e3, base_inf / inf, e2e * 1e3, base_e2e / e2e, bytes_in, output_bytes(sess, feeds[name])))
    out_maps = output_bytes(sessions["rewritten"], feeds["rewritten"])
    out_peaks = output_bytes(sessions["rewritten+peaks"], feeds["rewritten+peaks"])
    print("\nratios vs original (>1 = faster): inference {:.2f}x, preprocess+inference {:.2f}x".format(
        base_inf / statistics.median(infer["rewritten"]), base_e2e / statistics.median(end_to_end["rewritten"])))
    print("bytes copied back per frame: {:,} (heatmaps+pafs) vs {:,} (peaks+pafs) = {:.2f}x fewer; "
          "heatmaps alone {:,} -> peaks {:,}".format(
              out_maps, out_peaks, out_maps / out_peaks,
              int(np.prod(sessions["rewritten"].get_outputs()[0].shape)) * 4,
              int(np.prod(sessions["rewritten+peaks"].get_outputs()[0].shape)) * 4))
    print("bytes fed per frame: {:,} (float32 NCHW normalised) vs {:,} ({} {} raw) = {:.1f}x fewer".format(
        sum(v.nbytes for v in feeds["original"].values()), sum(v.nbytes for v in feeds["rewritten"].values()),
        meta1.input.dtype, meta1.input.layout,
        sum(v.nbytes for v in feeds["original"].values()) / sum(v.nbytes for v in feeds["rewritten"].values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
