"""INT8 vs FP32 on ONNX Runtime CPU: latency of the same model, in one run, and what INT8 costs in accuracy.

    python benchmarks/int8.py [--model model.onnx] [--images DIR] [--count 64] [--iters 40]

Calibrates the model (entropy by default) into two Q/DQ models with the same scales: the TensorRT one
(what goes to a Jetson: Q/DQ only on Conv inputs) and an ONNX Runtime one (outputs quantised too, so the
CPU provider fuses QLinearConv). Times FP32 and both alternately on the same input (ORT_ENABLE_ALL) and
prints median latencies, the ratios against FP32, and each one's pose agreement with FP32 (OKS AP of INT8
poses against FP32 poses on held-out frames; map agreement without a decoder).
Without --model it uses models/demo/*.onnx when present, else edge_sdk.calibration.hadamard_model's model;
without --images it draws synthetic frames (edge_sdk.synthetic_people's figures for a trained model).
Neither CPU time says much about Jetson INT8 speed; the accuracy of the TensorRT model carries over.
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
    from edge_sdk.calibration import hadamard_model

    path = workdir / "synthetic_pose.onnx"
    hadamard_model.build_model(path)
    return path


def write_people_frames(folder: Path, count: int, spec):
    """Frames of edge_sdk.synthetic_people's figures (what the demo model was trained on), when no --images."""
    import cv2

    from edge_sdk.synthetic_people import SyntheticPeople

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
    parser.add_argument("--no-fallback", action="store_true", help="skip the mixed-precision search (faster)")
    args = parser.parse_args(argv)

    import numpy as np
    import onnxruntime as ort
    from edge_sdk.calibration import calibrate, hadamard_model
    from edge_sdk.calibration.api import model_meta

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model_path = pick_model(args.model, workdir)
        import onnx

        meta = model_meta(onnx.load(str(model_path)))
        images = args.images
        if not images:
            images = workdir / "frames"
            if meta.model.startswith("synthetic-hadamard"):
                hadamard_model.write_frames(images, args.count + 16, seed=0, spec=meta.input)
            else:
                write_people_frames(images, args.count + 16, meta.input)
        result = calibrate(model_path, images, workdir / "out", method=args.method, count=args.count,
                           cache_dir=False, plot=False, progress=False, fallback=not args.no_fallback)
        report = result["report_data"]

        from edge_sdk.calibration import accuracy, qdq
        from edge_sdk.calibration.data import load_frames

        prepared = qdq.prepare(onnx.load(str(model_path)))
        frames = load_frames(images, meta.input, count=args.count, holdout=16, cache_dir=False, progress=False)
        evaluator = accuracy.Evaluator(onnx.load(str(model_path)), frames.holdout if len(frames.holdout)
                                       else frames.calib[:16], meta.outputs, meta.stride)
        variants = {"INT8 Q/DQ for TensorRT": onnx.load(result["qdq_model"])}
        if result["float_nodes"]:
            variants["  same, all layers INT8"] = qdq.build_qdq_model(prepared, result["ranges"], [])
        variants["INT8 Q/DQ for ONNX Runtime"] = qdq.build_qdq_model(prepared, result["ranges"], result["float_nodes"],
                                                                     style="onnxruntime")
        if result["float_nodes"]:
            variants["  same, all layers INT8 "] = qdq.build_qdq_model(prepared, result["ranges"], [],
                                                                       style="onnxruntime")
        agreement = {name: evaluator.evaluate(model)["agreement"] for name, model in variants.items()}

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sessions = {"FP32": ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])}
        for name, model in variants.items():
            sessions[name] = ort.InferenceSession(model.SerializeToString(), options,
                                                  providers=["CPUExecutionProvider"])
        feed = {sessions["FP32"].get_inputs()[0].name: frames.calib[:1].astype(np.float32)}
        times = {name: [] for name in sessions}
        for session in sessions.values():
            time_session(session, feed, 3)
        for _ in range(4):  # alternate so all see the same machine load
            for name, session in sessions.items():
                times[name] += time_session(session, feed, max(1, args.iters // 4))
        median_ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
        print("model: {} (input {})".format(model_path.name, "x".join(map(str, meta.input.shape))))
        print("calibration: {} on {} frames; kept in float: {} of {} layers".format(
            args.method, report["frames"]["calibration"], len(report["float_nodes"]),
            len(report["float_nodes"]) + len(report["quantized_nodes"])))
        print("ONNX Runtime CPU, {} thread(s), median of {} runs; agreement = {}:".format(
            args.threads, len(times["FP32"]), evaluator.metric))
        for name, ms in median_ms.items():
            line = "  {:<28} {:8.2f} ms".format(name, ms)
            if name != "FP32":
                line += "   ratio vs FP32 {:.2f} (x{:.2f} speed)   agreement {:.3f}".format(
                    ms / median_ms["FP32"], median_ms["FP32"] / ms, agreement[name])
            print(line)
        if report["accuracy"].get("note"):
            print("note: " + report["accuracy"]["note"])


if __name__ == "__main__":
    main()
