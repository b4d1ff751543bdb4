"""Our PAF decoder vs HyperPose's Python post-processor on identical oracle maps: time per frame and COCO AP.

    python benchmarks/decode.py [--repeat 5] [--data tests/data]

Frames: the real photos of coco_mini (maps at stride 8 of each photo's size) and the real crowd layouts of
coco_layouts (640x640 canvas). Both decoders get the same [19|38, H/8, W/8] maps of each frame, in turns
(interleaved, so machine load hits both alike); AP is pycocotools OKS of each decoder's people.

Baseline: ``hyperpose.Model.openpose.processor.PostProcessor`` of hyperpose 2.2.0, unmodified, run as its
own evaluation runs it (maps resized to the image size, then peaks and PAF scoring on that grid). Needs
``pip install --no-deps hyperpose==2.2.0`` plus tensorflow, opencv, scipy. Its package ``__init__`` files load
its training code (tensorlayer, easydict, ...) that the post-processor never uses, so this script loads
only the three modules the post-processor lives in (processor.py, human.py, define.py) and gives
``processor.py`` a stand-in for the training helpers module it imports names from; ``np.int`` (removed in
numpy 1.24, used by its PAF sampling) is aliased to ``int``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_sdk.eval import evaluate_keypoints, gt_from_results, load_coco_json  # noqa: E402
from edge_sdk.eval.coco import poses_to_results  # noqa: E402
from edge_sdk.eval.oracle import OracleFrame, degrade_maps, oracle_frames  # noqa: E402
from edge_sdk.runtime.decode import decode_poses  # noqa: E402
from edge_sdk.runtime.skeleton import LIMBS, NUM_PARTS, coco18_to_coco17, map_to_image  # noqa: E402


def load_hyperpose():
    """(PostProcessor class, CocoPart, CocoLimb) of the installed hyperpose, without its training imports."""
    spec = importlib.util.find_spec("hyperpose")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("hyperpose is not installed: pip install --no-deps hyperpose==2.2.0 "
                         "(it also needs tensorflow, opencv-python and scipy)")
    root = Path(list(spec.submodule_search_locations)[0])
    if not hasattr(np, "int"):
        np.int = int  # its get_paf_vectors uses the alias numpy removed in 1.24
    for name, folder in (("hyperpose", root), ("hyperpose.Model", root / "Model"),
                         ("hyperpose.Model.openpose", root / "Model" / "openpose")):
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    stand_in = types.ModuleType("hyperpose.Model.openpose.utils")  # PreProcessor's training target helpers
    stand_in.get_heatmap = stand_in.get_vectormap = None
    sys.modules[stand_in.__name__] = stand_in

    def load(name, path):
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module

    load("hyperpose.Model.human", root / "Model" / "human.py")
    define = load("hyperpose.Model.openpose.define", root / "Model" / "openpose" / "define.py")
    processor = load("hyperpose.Model.openpose.processor", root / "Model" / "openpose" / "processor.py")
    return processor.PostProcessor, define.CocoPart, define.CocoLimb


class HyperPoseDecoder:
    """HyperPose's PostProcessor on our maps: PAF channels reordered to its limb order (same directions)."""

    def __init__(self, grid="image"):
        self.grid = grid
        post_processor, parts, limbs = load_hyperpose()
        ours = {tuple(limb): i for i, limb in enumerate(LIMBS)}
        order = [ours[(int(a), int(b))] for a, b in limbs]  # every HyperPose limb is one of ours
        self.paf_channels = np.array([[2 * i, 2 * i + 1] for i in order]).reshape(-1)
        self.processor = post_processor(parts, limbs, hin=0, win=0, hout=0, wout=0)

    def __call__(self, heatmaps, pafs, width, height):
        if self.grid == "map":  # no resize: peaks and PAF sampling on the stride-8 grid
            height, width = heatmaps.shape[1:]
        humans = self.processor.process(heatmaps.copy(), pafs[self.paf_channels].copy(), height, width)
        keypoints = np.zeros((len(humans), NUM_PARTS, 3), np.float32)
        for person, human in zip(keypoints, humans):
            for part, body_part in human.body_parts.items():
                person[part] = (body_part.x, body_part.y, body_part.score)
        if self.grid == "map":
            keypoints[..., :2] = map_to_image(keypoints[..., :2])
            keypoints[keypoints[..., 2] <= 0] = 0
        return coco18_to_coco17(keypoints), np.array([h.score for h in humans], np.float32)


def ours(heatmaps, pafs, width, height):
    return decode_poses(heatmaps, pafs).to_frame(None)


def save_overlays(out_dir, gt, images_dir, results):
    """One JPEG per photo: each decoder's people drawn on it (ground truth thin white), side by side."""
    import cv2

    from edge_sdk.runtime.skeleton import COCO17_SKELETON

    out_dir.mkdir(parents=True, exist_ok=True)

    def draw(image, people, colour, thickness):
        for kp in people:
            kp = np.asarray(kp, dtype=np.float64).reshape(17, 3)
            for a, b in COCO17_SKELETON:
                if kp[a, 2] > 0 and kp[b, 2] > 0:
                    cv2.line(image, tuple(int(round(v)) for v in kp[a, :2]), tuple(int(round(v)) for v in kp[b, :2]),
                             colour, thickness, cv2.LINE_AA)
            for x, y, v in kp:
                if v > 0:
                    cv2.circle(image, (int(round(x)), int(round(y))), thickness + 1, colour, -1, cv2.LINE_AA)

    for image_info in gt["images"]:
        photo = cv2.imread(str(images_dir / image_info["file_name"]))
        if photo is None:
            continue
        truth = [a["keypoints"] for a in gt["annotations"] if a["image_id"] == image_info["id"]]
        panels = []
        for name, decoder_results in results.items():
            panel = photo.copy()
            draw(panel, [r["keypoints"] for r in decoder_results if r["image_id"] == image_info["id"]],
                 (60, 220, 60) if name == "edge-sdk" else (60, 60, 230), 3)
            draw(panel, truth, (255, 255, 255), 1)
            cv2.putText(panel, name, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
            panels.append(panel)
        cv2.imwrite(str(out_dir / image_info["file_name"]), np.hstack(panels))


def run(datasets, decoders, repeat):
    """{decoder: {dataset: (median ms per frame, AP stats, times, results)}}, decoders interleaved per frame."""
    from tqdm import tqdm

    report = {}
    first = next(iter(datasets.values()))[1][0]
    for decode in decoders.values():  # warm-up: imports, TensorFlow's first op, caches
        decode(first.heatmaps, first.pafs, first.width, first.height)
    for data_name, (gt, frames) in datasets.items():
        times = {name: [] for name in decoders}
        results = {name: [] for name in decoders}
        for frame in tqdm(frames, desc=data_name, unit="frame"):
            for name, decode in decoders.items():
                best = None
                for _ in range(repeat):
                    start = time.perf_counter()
                    kp17, scores = decode(frame.heatmaps, frame.pafs, frame.width, frame.height)
                    elapsed = time.perf_counter() - start
                    best = elapsed if best is None else min(best, elapsed)
                times[name].append(best)
                results[name] += poses_to_results(kp17, scores, frame.image_id)
        for name in decoders:
            stats = evaluate_keypoints(gt, results[name])
            report.setdefault(name, {})[data_name] = (1000 * statistics.median(times[name]), stats, times[name],
                                                      results[name])
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "tests" / "data",
                        help="folder with coco_mini/ and coco_layouts/ (default: tests/data)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per frame and decoder; the fastest counts")
    parser.add_argument("--max-frames", type=int, default=None, help="use at most this many frames of each set")
    parser.add_argument("--noise", type=float, default=0.0,
                        help="degrade the oracle maps first (uneven peaks, blur, noise of this std; e.g. 0.02), "
                             "the same maps for both decoders")
    parser.add_argument("--overlays", type=Path, default=None,
                        help="save each coco_mini photo with both decoders' people drawn on it into this folder")
    parser.add_argument("--hyperpose-grid", choices=["image", "map"], default="image",
                        help="image: HyperPose resizes the maps to the image size first, as its own evaluation "
                             "does (default); map: it decodes on the stride-8 grid (faster, coarser)")
    args = parser.parse_args(argv)

    mini_gt = load_coco_json(args.data / "coco_mini" / "person_keypoints.json")
    layouts_gt = gt_from_results(args.data / "coco_layouts" /
                                 "person_keypoints_val2014_fakekeypoints100_results.json", image_size=(640, 640))
    datasets = {"coco_mini": (mini_gt, list(oracle_frames(mini_gt))[:args.max_frames]),
                "coco_layouts": (layouts_gt, list(oracle_frames(layouts_gt))[:args.max_frames])}
    if args.noise > 0:
        rng = np.random.default_rng(0)
        for _, frames in datasets.values():
            frames[:] = [OracleFrame(f.image_id, f.width, f.height, *degrade_maps(f.heatmaps, f.pafs, rng, args.noise))
                         for f in frames]
    for gt, frames in datasets.values():  # AP over the frames decoded
        ids = {frame.image_id for frame in frames}
        gt["images"] = [im for im in gt["images"] if im["id"] in ids]
        gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in ids]
    decoders = {"edge-sdk": ours, "hyperpose-2.2.0": HyperPoseDecoder(args.hyperpose_grid)}
    print("baseline: hyperpose 2.2.0 PostProcessor on the {} grid; {} run(s) per frame, fastest counts; "
          "map noise {}".format(args.hyperpose_grid, args.repeat, args.noise or "none (exact oracle maps)"))
    report = run(datasets, decoders, args.repeat)

    print()
    print("{:<16} {:<13} {:>8} {:>14} {:>7} {:>7} {:>7}".format(
        "decoder", "frames", "n", "median ms/frame", "AP", "AP50", "AR"))
    for name, per_data in report.items():
        for data_name, (ms, stats, _, _) in per_data.items():
            print("{:<16} {:<13} {:>8} {:>14.2f} {:>7.3f} {:>7.3f} {:>7.3f}".format(
                name, data_name, len(datasets[data_name][1]), ms, stats["AP"], stats["AP50"], stats["AR"]))
    if args.overlays:
        save_overlays(args.overlays, datasets["coco_mini"][0], args.data / "coco_mini" / "images",
                      {name: per_data["coco_mini"][3] for name, per_data in report.items()})
        print("overlays of coco_mini saved in", args.overlays)
    print()
    for data_name in datasets:
        ours_times = np.array(report["edge-sdk"][data_name][2])
        base_times = np.array(report["hyperpose-2.2.0"][data_name][2])
        print("{}: edge-sdk is {:.0f}x faster than HyperPose (ratio of median time per frame; "
              "per-frame ratios: median {:.0f}x, min {:.0f}x); AP {:.3f} vs {:.3f}".format(
                  data_name, np.median(base_times) / np.median(ours_times),
                  np.median(base_times / ours_times), np.min(base_times / ours_times),
                  report["edge-sdk"][data_name][1]["AP"], report["hyperpose-2.2.0"][data_name][1]["AP"]))


if __name__ == "__main__":
    main()
