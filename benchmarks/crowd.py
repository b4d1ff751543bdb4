"""The crowd decoder against today's decoder (same run): OKS AP, the perfect-assignment ceiling, time/frame.

    python benchmarks/crowd.py [--set held-out|tuning|both] [--noise 0.02] [--repeat 3]
    python benchmarks/crowd.py --cost            # decode time vs people count (1, 5, 20, 50) and a noise frame

Scenes: ``edge_sdk.eval.crowd_scenes`` (8-20 real COCO poses per 640x480 frame, overlapping, crossing, cut
by the border, several scales), rendered to oracle maps. Two disjoint seed sets: ``tuning`` (the decoder's
settings were chosen on it) and ``held-out`` (the figures quoted in docs/decoder.md).

Baseline: ``edge_sdk/runtime/decode.py`` as it is on ``main`` at this branch's fork point (``git merge-base
main HEAD``, or ``--baseline-ref``), loaded from git into a temporary module, so the package keeps no dead copy.
Both decoders get the same maps of each frame in turns (interleaved; the fastest of ``--repeat`` runs counts).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_sdk.eval import evaluate_keypoints  # noqa: E402
from edge_sdk.eval.coco import poses_to_results  # noqa: E402
from edge_sdk.eval.crowd_scenes import (  # noqa: E402
    HELD_OUT_SEEDS,
    TUNING_SEEDS,
    ceiling_results,
    crowd_set,
    pose_templates,
    scene_people,
)
from edge_sdk.eval.oracle import OracleFrame, degrade_maps  # noqa: E402
from edge_sdk.runtime import decode as current  # noqa: E402
from edge_sdk.runtime.maps import render_maps  # noqa: E402
from edge_sdk.runtime.skeleton import coco17_to_coco18  # noqa: E402

LAYOUTS = REPO / "tests" / "data" / "coco_layouts" / "person_keypoints_val2014_fakekeypoints100_results.json"
CLOCK = time.thread_time
"""CPU time of this thread: on a shared machine (other jobs' load) it is what one core spends decoding, where
wall time also counts the time the scheduler gave to others. ``--wall`` measures wall time instead."""


def load_baseline(ref: str | None):
    """(module, commit): edge_sdk/runtime/decode.py at ``ref`` (default: the fork point from main)."""
    if ref is None:
        ref = subprocess.run(["git", "merge-base", "main", "HEAD"], cwd=REPO, check=True, capture_output=True,
                             text=True).stdout.strip()
    source = subprocess.run(["git", "show", "{}:edge_sdk/runtime/decode.py".format(ref)], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    folder = Path(tempfile.mkdtemp(prefix="baseline_decode_"))
    path = folder / "baseline_decode.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_decode", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, ref[:12]


def parse_config(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = ast.literal_eval(value)  # a number, None, True/False or a quoted string
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def measure(frames, decoders, repeat):
    """{name: (times [F] s, results)} with decoders interleaved frame by frame."""
    from tqdm import tqdm

    times = {name: [] for name in decoders}
    results = {name: [] for name in decoders}
    for frame in tqdm(frames, desc="decoding", unit="frame", leave=False):
        for name, decode in decoders.items():
            best = None
            for _ in range(repeat):
                start = CLOCK()
                poses = decode(frame.heatmaps, frame.pafs)
                elapsed = CLOCK() - start
                best = elapsed if best is None else min(best, elapsed)
            times[name].append(best)
            kp17, scores = poses.to_frame(None)
            results[name] += poses_to_results(kp17, scores, frame.image_id)
    return {name: (np.array(times[name]), results[name]) for name in decoders}


def accuracy(args, baseline, tag):
    config = current.DecodeConfig(**parse_config(args.config))
    decoders = {tag: lambda h, p: baseline.decode_poses(h, p),
                "edge-sdk (this branch)": lambda h, p: current.decode_poses(h, p, config)}
    sets = {"tuning": TUNING_SEEDS, "held-out": HELD_OUT_SEEDS}
    chosen = list(sets) if args.set == "both" else [args.set]
    print("decoder config: {}".format(config))
    print("{:<34} {:<9} {:>6} {:>7} {:>7} {:>7} {:>9} {:>9}".format(
        "decoder", "set", "people", "AP", "AP50", "AR", "ms p50", "ms p99"))
    for set_name in chosen:
        scenes = crowd_set(sets[set_name], LAYOUTS)
        frames = scenes.frames
        if args.noise > 0:
            rng = np.random.default_rng(0)
            frames = [OracleFrame(f.image_id, f.width, f.height, *degrade_maps(f.heatmaps, f.pafs, rng, args.noise))
                      for f in frames]
        ceiling = []
        for frame in frames:
            ceiling += ceiling_results(scenes.people[frame.image_id], current.find_peaks(frame.heatmaps),
                                       frame.image_id)
        report = measure(frames, decoders, args.repeat)
        ceil = evaluate_keypoints(scenes.gt, ceiling)
        print("{:<34} {:<9} {:>6} {:>7.3f} {:>7.3f} {:>7.3f}".format(
            "ceiling (perfect assignment)", set_name, scenes.num_people, ceil["AP"], ceil["AP50"], ceil["AR"]))
        aps = {}
        for name, (times, results) in report.items():
            stats = evaluate_keypoints(scenes.gt, results)
            aps[name] = stats["AP"]
            print("{:<34} {:<9} {:>6} {:>7.3f} {:>7.3f} {:>7.3f} {:>9.2f} {:>9.2f}".format(
                name, set_name, scenes.num_people, stats["AP"], stats["AP50"], stats["AR"],
                1000 * np.percentile(times, 50), 1000 * np.percentile(times, 99)))
        ours = "edge-sdk (this branch)"
        taken = report[ours][0] / report[tag][0]  # per frame: this branch's time / the baseline's
        print("  {}: AP {:.3f} vs {:.3f} ({:.2f}x, {:.0%} of the ceiling {:.3f}); time per frame: this branch "
              "takes {:.2f}x the baseline's (median of per-frame ratios; range {:.2f}x-{:.2f}x)".format(
                  set_name, aps[ours], aps[tag], aps[ours] / max(aps[tag], 1e-9), aps[ours] / max(ceil["AP"], 1e-9),
                  ceil["AP"], float(np.median(taken)), float(np.min(taken)), float(np.max(taken))))


def cost_frames(count: int, seeds: range, templates) -> list[tuple[np.ndarray, np.ndarray]]:
    """Maps of scenes with exactly ``count`` people (640x480; 50 people: a 1280x960 frame, same density)."""
    size = (640, 480) if count <= 20 else (1280, 960)
    out = []
    for seed in seeds:
        people = scene_people(seed, templates, size, (count, count))
        out.append(render_maps(coco17_to_coco18(people), size[1], size[0]))
    return out


def noise_frame(rng, size=(640, 480)):
    """The worst case: uniform noise everywhere (every 3x3 maximum above threshold is a candidate)."""
    h, w = size[1] // 8, size[0] // 8
    return (rng.uniform(0, 1, (19, h, w)).astype(np.float32), rng.uniform(-1, 1, (38, h, w)).astype(np.float32))


def engine_outputs(heatmaps, pafs, k):
    """(peaks [18, K, 3], limb_scores [19, K, K]) of the maps, computed by ONNX Runtime with the `peaks` and
    `limbs` graph passes appended to a model whose outputs are these maps (what the engine would return)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from edge_sdk.graph import run_passes

    h, w = heatmaps.shape[1:]
    graph = helper.make_graph(
        [helper.make_node("Add", ["image", "maps_h"], ["heatmaps"]),
         helper.make_node("Add", ["image", "maps_p"], ["pafs"])],
        "maps", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 1, 1])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 19, h, w]),
         helper.make_tensor_value_info("pafs", TensorProto.FLOAT, [1, 38, h, w])],
        initializer=[helper.make_tensor("maps_h", TensorProto.FLOAT, [1, 19, h, w], heatmaps.ravel()),
                     helper.make_tensor("maps_p", TensorProto.FLOAT, [1, 38, h, w], pafs.ravel())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    model, _, _ = run_passes(model, ["peaks", "limbs"], {"peaks": {"k": k}})
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    peaks, scores = session.run(["peaks", "limb_scores"], {"image": np.zeros((1, 1, 1, 1), np.float32)})
    return peaks[0], scores[0]


def cost(args, baseline, tag):
    """Time per frame vs people count, p50/p99 over frames x repeats, one thread, decoders interleaved:
    the baseline and this branch on full maps, and this branch on engine peaks + engine limb scores."""
    from tqdm import tqdm

    templates = pose_templates(LAYOUTS)
    rng = np.random.default_rng(0)
    cases = [("{} people".format(n), cost_frames(n, range(100 * n, 100 * n + args.cost_frames), templates),
              32 if n <= 20 else 64) for n in (1, 5, 20, 50)]
    cases.append(("noise 640x480", [noise_frame(rng) for _ in range(3)], 100))
    cases.append(("noise 1280x960", [noise_frame(rng, (1280, 960)) for _ in range(2)], 100))
    ours, scored = "edge-sdk (this branch)", "edge-sdk, limbs in engine"
    decoders = {tag: lambda h, p, e: baseline.decode_poses(h, p),
                ours: lambda h, p, e: current.decode_poses(h, p),
                scored: lambda h, p, e: current.decode_limbs(e[0], e[1], map_shape=p.shape[1:])}
    print("{:<16} {:<34} {:>9} {:>9} {:>8} {:>10} {:>12}".format(
        "frames", "decoder", "ms p50", "ms p99", "people", "capped", "bytes back"))
    print("(capped: the most part candidates / fragments one frame left out, Poses.capped; bytes back: what the "
          "engine returns per frame)")
    for label, frames, k in cases:
        maps = [(h, p, engine_outputs(h, p, k)) for h, p in tqdm(frames, desc=label + ": engine outputs",
                                                                   leave=False)]
        times = {name: [] for name in decoders}
        found = {name: 0 for name in decoders}
        capped = {name: {"peaks": 0, "fragments": 0} for name in decoders}
        for heatmaps, pafs, engine in maps:
            for _ in range(args.repeat):
                for name, decode in decoders.items():
                    start = CLOCK()
                    poses = decode(heatmaps, pafs, engine)
                    times[name].append(CLOCK() - start)
                    found[name] = len(poses)
                    if hasattr(poses, "capped"):
                        capped[name] = {c: max(v, poses.capped[c]) for c, v in capped[name].items()}
        h, w = maps[0][0].shape[1:]
        sizes = {tag: (19 + 38) * h * w * 4, ours: (19 + 38) * h * w * 4, scored: (18 * k * 3 + 19 * k * k) * 4}
        for name in decoders:
            t = 1000 * np.array(times[name])
            print("{:<16} {:<34} {:>9.2f} {:>9.2f} {:>8} {:>10} {:>12,}".format(
                label, name + (" (K={})".format(k) if name == scored else ""), np.percentile(t, 50),
                np.percentile(t, 99), found[name], "-" if name == tag else "{peaks}/{fragments}".format(**capped[name]),
                sizes[name]))
        for name in (ours, scored):
            ratio = np.array(times[tag]) / np.array(times[name])
            print("  {}: {} is {:.2f}x as fast as the baseline (median of paired ratios; range {:.2f}x-{:.2f}x)"
                  .format(label, name, float(np.median(ratio)), float(np.min(ratio)), float(np.max(ratio))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=["held-out", "tuning", "both"], default="held-out")
    parser.add_argument("--noise", type=float, default=0.0, help="degrade the maps first (edge_sdk.eval.oracle)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per frame and decoder")
    parser.add_argument("--baseline-ref", default=None, help="git ref of the baseline decoder (default: fork point)")
    parser.add_argument("--config", nargs="*", default=[], help="DecodeConfig overrides for this branch, k=v")
    parser.add_argument("--cost", action="store_true", help="time per frame vs people count instead of AP")
    parser.add_argument("--cost-frames", type=int, default=10, help="frames per people count (--cost)")
    parser.add_argument("--wall", action="store_true", help="time with the wall clock instead of thread CPU time")
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.perf_counter if args.wall else time.thread_time
    baseline, ref = load_baseline(args.baseline_ref)
    tag = "baseline (main {})".format(ref)
    print("baseline: edge_sdk/runtime/decode.py at {}; one thread, timed by {}; map noise {}".format(
        ref, "wall clock" if args.wall else "thread CPU time", args.noise or "none (exact oracle maps)"))
    if args.cost:
        cost(args, baseline, tag)
    else:
        accuracy(args, baseline, tag)


if __name__ == "__main__":
    main()
