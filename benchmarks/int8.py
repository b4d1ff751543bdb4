"""INT8 vs FP32 on ONNX Runtime CPU: latency of the same model, in one run, and what INT8 costs in accuracy.

    python benchmarks/int8.py [--model model.onnx] [--images DIR] [--count 64] [--iters 40]

Calibrates the model (entropy by default), then times FP32 and the Q/DQ model alternately on the same input
(ORT_ENABLE_ALL, so ONNX Runtime may fuse Q/DQ into integer kernels) and prints the median latencies, the
speed ratio and the pose agreement (OKS AP of INT8 poses against FP32 poses; map agreement without a
decoder). Without --model it uses models/demo/*.onnx when present, else calibration.synthetic's model;
without --images it draws synthetic frames (edge_sdk.synthetic's figures for a trained model).
Note: the Q/DQ placement targets TensorRT (no Q/DQ on Conv outputs), so ORT CPU speed says little about
Jetson INT8 speed; the accuracy half carries over.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def pick_model(arg, workdir: Path) -> Path:
    if arg:
        return Path(arg)
    demos = sorted((REPO / "models" / "demo").glob("*.onnx"))
    demos = [d for d in demos if ".int8" not in d.name]
    if demos:
        return demos[0]
    from calibration import synthetic

    path = workdir / "synthetic_pose.onnx"
    synthetic.build_model(path)
    return path


def write_people_frames(folder: Path, count: int, spec):
    """Frames of edge_sdk.synthetic's figures (what the demo model was trained on), when no --images."""
    import cv2

    from edge_sdk.synthetic import SyntheticPeople

    folder.mkdir(parents=True, exist_ok=True)
    people = SyntheticPeople(width=spec.width, height=spec.height, seed=12345)
    for i in range(count):
        cv2.imwrite(str(folder / "people_{:04d}.png".format(i)), people.sample(i).image)


def time_session(session, feed, iters):
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        session.run(None, feed)
        samples.append(time.perf_counter() - start)
    return samples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--images")
    parser.add_argument("--method", default="entropy", choices=("entropy", "percentile", "minmax"))
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads for timing (default 1)")
    args = parser.parse_args(argv)

    import numpy as np
    import onnxruntime as ort

    from calibration import calibrate, synthetic
    from calibration.api import model_meta

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model_path = pick_model(args.model, workdir)
        import onnx

        meta = model_meta(onnx.load(str(model_path)))
        images = args.images
        if not images:
            images = workdir / "frames"
            if meta.model.startswith("synthetic-hadamard"):
                synthetic.write_frames(images, args.count + 16, seed=0, spec=meta.input)
            else:
                write_people_frames(images, args.count + 16, meta.input)
        result = calibrate(model_path, images, workdir / "out", method=args.method, count=args.count,
                           cache_dir=False, plot=False, progress=False)
        report = result["report_data"]

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        fp32 = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        int8 = ort.InferenceSession(result["qdq_model"], options, providers=["CPUExecutionProvider"])
        feed = {fp32.get_inputs()[0].name: np.random.default_rng(0).random(meta.input.shape, dtype=np.float32)}
        for session in (fp32, int8):
            time_session(session, feed, 5)
        fp32_times, int8_times = [], []
        for _ in range(4):  # alternate so both see the same machine load
            fp32_times += time_session(fp32, feed, args.iters // 4)
            int8_times += time_session(int8, feed, args.iters // 4)
        fp32_ms = 1000 * statistics.median(fp32_times)
        int8_ms = 1000 * statistics.median(int8_times)
        final = report["accuracy"]["final"]
        print("model: {} (input {})".format(model_path.name, "x".join(map(str, meta.input.shape))))
        print("calibration: {} on {} frames; float nodes: {}".format(
            args.method, report["frames"]["calibration"], ", ".join(report["float_nodes"]) or "none"))
        print("ORT CPU latency ({} thread{}): FP32 {:.2f} ms, INT8 Q/DQ {:.2f} ms -> INT8/FP32 ratio {:.2f} "
              "(speed-up x{:.2f})".format(args.threads, "" if args.threads == 1 else "s", fp32_ms, int8_ms,
                                          int8_ms / fp32_ms, fp32_ms / int8_ms))
        print("{}: {:.3f} (all-INT8: {:.3f})".format(report["accuracy"]["metric"], final["agreement"],
                                                      report["accuracy"]["int8"]["agreement"]))
        for name, err in final["map_errors"].items():
            print("  {}: mean |err| {:.4f}, relative L2 {:.4f}".format(name, err["mean_abs"], err["rel_l2"]))
        if report["accuracy"].get("note"):
            print("note: " + report["accuracy"]["note"])


if __name__ == "__main__":
    main()
