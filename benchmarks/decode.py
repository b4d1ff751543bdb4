"""Our PAF decoder vs HyperPose 2.2.0's Python PostProcessor on the same maps, like for like; and our decoder
against its own budget at 1, 5 and 20 people.

    python benchmarks/decode.py [--rounds 5] [--noise 0.02] [--data tests/data]     # -> results/decode*.json

Frames: the real photos of coco_mini (maps at stride 8 of each photo's size) and the real crowd layouts of
coco_layouts (640x640 canvas). Maps are rendered from the annotations, then made realistic
(``edge_sdk.eval.oracle.degrade_maps``: uneven peak heights, blur, noise; ``--noise 0`` keeps exact maps),
with one seed, so both decoders get the very same maps. Like for like: both decode on the stride-8 grid;
HyperPose runs with our thresholds (peak 0.1, PAF sample 0.05, 8 of 10 samples, 3 parts, person score 0.2);
its maps have the background channel zeroed (neither decoder reads it for people; HyperPose would otherwise
search it for peaks, and a flat background makes every cell one). Rounds interleave the decoders
(benchmarks/runner.py); AP is pycocotools OKS of each decoder's people.

Baseline: ``hyperpose.Model.openpose.processor.PostProcessor`` of hyperpose 2.2.0, unmodified. Needs
``pip install --no-deps hyperpose==2.2.0 scipy`` plus tensorflow and opencv (the ``[train]`` extra). Its
package ``__init__`` files load its training code (tensorlayer, easydict, ...) that the post-processor never
uses, so this script loads only the three modules the post-processor lives in (processor.py, human.py,
define.py) and gives ``processor.py`` a stand-in for the training helpers module it imports names from;
``np.int`` (removed in numpy 1.24, used by its PAF sampling) is aliased to ``int``. Without hyperpose the
script still measures our decoder and its budget, and says that the comparison was skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import runner  # noqa: E402
from edge_sdk.eval import evaluate_keypoints, gt_from_results, load_coco_json  # noqa: E402
from edge_sdk.eval.coco import poses_to_results  # noqa: E402
from edge_sdk.eval.oracle import OracleFrame, degrade_maps, oracle_frames  # noqa: E402
from edge_sdk.runtime.decode import DEFAULT_CONFIG, decode_poses  # noqa: E402
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
    """HyperPose's PostProcessor on our maps: PAF channels reordered to its limb order (same directions), the
    background channel zeroed, and our decoder's thresholds."""

    def __init__(self, grid="map", config=DEFAULT_CONFIG):
        self.grid = grid
        post_processor, parts, limbs = load_hyperpose()
        ours = {tuple(limb): i for i, limb in enumerate(LIMBS)}
        order = [ours[(int(a), int(b))] for a, b in limbs]  # every HyperPose limb is one of ours
        self.paf_channels = np.array([[2 * i, 2 * i + 1] for i in order]).reshape(-1)
        self.thresholds = equal_thresholds(config)
        self.processor = post_processor(parts, limbs, hin=0, win=0, hout=0, wout=0, **self.thresholds)

    def __call__(self, heatmaps, pafs, width, height):
        if self.grid == "map":  # no resize: peaks and PAF sampling on the stride-8 grid
            height, width = heatmaps.shape[1:]
        conf = heatmaps.copy()
        conf[NUM_PARTS:] = 0.0  # no background peaks (see the module docstring)
        humans = self.processor.process(conf, pafs[self.paf_channels].copy(), height, width)
        keypoints = np.zeros((len(humans), NUM_PARTS, 3), np.float32)
        for person, human in zip(keypoints, humans):
            for part, body_part in human.body_parts.items():
                person[part] = (body_part.x, body_part.y, body_part.score)
        if self.grid == "map":
            keypoints[..., :2] = map_to_image(keypoints[..., :2])
            keypoints[keypoints[..., 2] <= 0] = 0
        return coco18_to_coco17(keypoints), np.array([h.score for h in humans], np.float32)


def equal_thresholds(config) -> dict:
    """HyperPose PostProcessor arguments equal to our DecodeConfig's thresholds."""
    return {"thresh_conf": config.peak_threshold, "thresh_vec": config.paf_sample_threshold,
            "step_paf": config.paf_samples,
            # HyperPose keeps a limb when more than thresh_vec_cnt samples agree; we need a fraction of them
            "thresh_vec_cnt": math.ceil(config.paf_min_fraction * config.paf_samples) - 1,
            "thresh_criterion2": config.min_limb_score, "thresh_part_cnt": config.min_parts,
            "thresh_human_score": config.min_person_score}


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


def compare(datasets, decoders, rounds):
    """Both decoders over every frame of every dataset, interleaved round by round -> (Rounds, results)."""
    results = {}

    def side(name, decode):
        def measure():
            metrics = {}
            for data_name, (_gt, frames) in datasets.items():
                times, found = [], []
                for frame in frames:
                    start = time.perf_counter()
                    kp17, scores = decode(frame.heatmaps, frame.pafs, frame.width, frame.height)
                    times.append(time.perf_counter() - start)
                    found += poses_to_results(kp17, scores, frame.image_id)
                metrics[data_name + " ms/frame"] = 1000 * statistics.median(times)
                results[(name, data_name)] = found
            return metrics
        return measure

    measured = runner.interleave({name: side(name, d) for name, d in decoders.items()}, rounds, warmup=1,
                                 progress=lambda line: print("  decode:", line, flush=True))
    return measured, results


def crowd_frames(people, count, input_hw, noise, seed=0):
    """``count`` frames of maps with ``people`` people side by side (one per grid cell), at the model input
    size ``input_hw``, made realistic like the comparison's maps."""
    from edge_sdk.runtime.maps import render_maps
    from edge_sdk.runtime.skeleton import coco17_to_coco18
    from edge_sdk.runtime.sources import synthetic_people

    height, width = input_hw
    cols = max(1, math.ceil(math.sqrt(people * width / height)))
    rows = math.ceil(people / cols)
    cell_w, cell_h = width / cols, height / rows
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(count):
        kps = []
        for p in range(people):
            person = synthetic_people(index, int(cell_w), int(cell_h), 1, seed=seed * 1000 + p)
            person[..., 0] += (p % cols) * cell_w
            person[..., 1] += (p // cols) * cell_h
            kps.append(person)
        heatmaps, pafs = render_maps(coco17_to_coco18(np.concatenate(kps)), height, width)
        if noise > 0:
            heatmaps, pafs = degrade_maps(heatmaps, pafs, rng, noise)
        frames.append((heatmaps, pafs))
    return frames


def budget(counts, frames_per_count, input_hw, noise, rounds, budget_ms):
    """Our decoder alone at each crowd size, interleaved; ms per frame against ``budget_ms``."""
    sets = {n: crowd_frames(n, frames_per_count, input_hw, noise, seed=n) for n in counts}

    def side(frames):
        def measure():
            times = []
            for heatmaps, pafs in frames:
                start = time.perf_counter()
                decode_poses(heatmaps, pafs)
                times.append(time.perf_counter() - start)
            return {"ms/frame": 1000 * statistics.median(times)}
        return measure

    label = {n: "{} {}".format(n, "person" if n == 1 else "people") for n in counts}
    measured = runner.interleave({label[n]: side(sets[n]) for n in counts}, rounds, warmup=1)
    found = {n: statistics.mean(len(decode_poses(h, p).to_frame(None)[1]) for h, p in sets[n]) for n in counts}
    rows = [{"label": "edge-sdk, " + label[n], "metrics": {"ms/frame": measured.metric(label[n], "ms/frame"),
                                                          "people found": runner.summary([found[n]])}}
            for n in counts]
    ratios = [{"label": "budget {:g} ms / edge-sdk ms, {}".format(budget_ms, label[n]),
               "summary": runner.summary([budget_ms / v for v in measured.values[label[n]]["ms/frame"]]),
               "goal": ">= 1x"} for n in counts]
    return measured, rows, ratios


def load_datasets(data, noise, max_frames):
    mini_gt = load_coco_json(data / "coco_mini" / "person_keypoints.json")
    layouts_gt = gt_from_results(data / "coco_layouts" / "person_keypoints_val2014_fakekeypoints100_results.json",
                                 image_size=(640, 640))
    datasets = {"coco_mini": (mini_gt, list(oracle_frames(mini_gt))[:max_frames]),
                "coco_layouts": (layouts_gt, list(oracle_frames(layouts_gt))[:max_frames])}
    if noise > 0:
        rng = np.random.default_rng(0)
        for _, frames in datasets.values():
            frames[:] = [OracleFrame(f.image_id, f.width, f.height, *degrade_maps(f.heatmaps, f.pafs, rng, noise))
                         for f in frames]
    for gt, frames in datasets.values():  # AP over the frames decoded
        ids = {frame.image_id for frame in frames}
        gt["images"] = [im for im in gt["images"] if im["id"] in ids]
        gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in ids]
    return datasets


def comparison_doc(args, datasets, measured, results):
    names = measured.sides
    rows, ratios = [], []
    for data_name, (gt, frames) in datasets.items():
        people = len(gt["annotations"])
        for name in names:
            ap = evaluate_keypoints(gt, results[(name, data_name)])
            rows.append({"label": "{}, {} ({} frames, {} people)".format(name, data_name, len(frames), people),
                         "metrics": {"ms/frame": measured.metric(name, data_name + " ms/frame"),
                                     "AP": runner.summary([ap["AP"]]), "AP50": runner.summary([ap["AP50"]])}})
        if len(names) > 1:
            ratios.append({"label": "{} / {} ms per frame, {}".format(names[1], names[0], data_name),
                           "summary": measured.ratio(names[1], names[0], data_name + " ms/frame"),
                           "goal": ">= 20x at equal or better AP"})
    notes = ["Maps: {}; both decoders on the {} grid; HyperPose with our thresholds {} and its background "
             "channel zeroed.".format("degraded with noise {}".format(args.noise) if args.noise else
                                      "exact oracle maps", args.hyperpose_grid, equal_thresholds(DEFAULT_CONFIG))]
    return runner.result("decode", "Post-processing: our PAF decoder vs HyperPose 2.2.0",
                         "hyperpose 2.2.0 hyperpose.Model.openpose.processor.PostProcessor (Python)", measured,
                         rows, ratios, {"rounds": args.rounds, "noise": args.noise, "grid": args.hyperpose_grid},
                         notes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "tests" / "data",
                        help="folder with coco_mini/ and coco_layouts/ (default: tests/data)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (after one warm-up round)")
    parser.add_argument("--max-frames", type=int, default=None, help="use at most this many frames of each set")
    parser.add_argument("--noise", type=float, default=0.02,
                        help="degrade the maps (uneven peaks, blur, noise of this std); 0: exact oracle maps")
    parser.add_argument("--overlays", type=Path, default=None,
                        help="save each coco_mini photo with both decoders' people drawn on it into this folder")
    parser.add_argument("--hyperpose-grid", choices=["map", "image"], default="map",
                        help="map: HyperPose decodes on the stride-8 grid like ours (default, like for like); "
                             "image: it resizes the maps to the image size first, as its own evaluation does")
    parser.add_argument("--budget-ms", type=float, default=10.0,
                        help="the decoder's budget per frame (default 10 ms: a third of a 30 fps frame period)")
    parser.add_argument("--budget-input", default="368x656", help="model input HxW of the budget frames")
    parser.add_argument("--budget-frames", type=int, default=20, help="frames per crowd size")
    parser.add_argument("--out", type=Path, default=runner.RESULTS, help="folder for the JSON results")
    args = parser.parse_args(argv)

    datasets = load_datasets(args.data, args.noise, args.max_frames)
    decoders = {"edge-sdk": ours}
    try:
        decoders["hyperpose-2.2.0"] = HyperPoseDecoder(args.hyperpose_grid)
    except SystemExit as exc:
        print("comparison skipped: {}".format(exc))
    measured, results = compare(datasets, decoders, args.rounds)
    doc = comparison_doc(args, datasets, measured, results)
    runner.print_result(doc)
    if len(decoders) > 1:
        print("wrote", runner.write(doc, args.out / "decode.json"))
    if args.overlays and len(decoders) > 1:
        save_overlays(args.overlays, datasets["coco_mini"][0], args.data / "coco_mini" / "images",
                      {name: results[(name, "coco_mini")] for name in decoders})
        print("overlays of coco_mini saved in", args.overlays)

    input_hw = tuple(int(v) for v in args.budget_input.lower().split("x"))
    measured, rows, ratios = budget([1, 5, 20], args.budget_frames, input_hw, args.noise, args.rounds,
                                    args.budget_ms)
    doc = runner.result("decode_budget", "Post-processing: our PAF decoder against its budget",
                        "the budget, {:g} ms per frame".format(args.budget_ms), measured, rows, ratios,
                        {"rounds": args.rounds, "noise": args.noise, "input": args.budget_input,
                         "frames per crowd size": args.budget_frames},
                        ["Crowds: synthetic people side by side, one per cell of a grid over the input; maps "
                         "made realistic with the same noise as the comparison."])
    runner.print_result(doc)
    print("wrote", runner.write(doc, args.out / "decode_budget.json"))


if __name__ == "__main__":
    main()
