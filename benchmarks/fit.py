"""Letterbox vs stretch: COCO AP and per-stage time of one model on real photos, in one run.

    python benchmarks/fit.py --model MODEL.onnx [--rounds 3] [--threads 1] [--peak-threshold 0.05]
        [--coco tests/data/coco_mini/person_keypoints.json --images tests/data/coco_mini/images]

Each round evaluates the model with ``--fit letterbox`` then ``--fit stretch`` (interleaved, so machine
load hits both alike) through ``edge_sdk.eval.evaluate_dataset``: the runtime's own preprocess, ONNX
Runtime inference and decoder. AP is the same every round (the pipeline is deterministic); times are the
median over rounds of each round's mean ms per image, with the range. Baseline: ``letterbox`` (the
default); ratios are stretch / letterbox.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_sdk.eval.dataset import evaluate_dataset  # noqa: E402

FITS = ("letterbox", "stretch")
STAGES = ("preprocess", "infer", "decode")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an ONNX pose model with edge_sdk metadata")
    parser.add_argument("--coco", default=str(REPO / "tests/data/coco_mini/person_keypoints.json"))
    parser.add_argument("--images", default=str(REPO / "tests/data/coco_mini/images"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--peak-threshold", type=float, default=None)
    args = parser.parse_args(argv)
    settings = {"peak_threshold": args.peak_threshold} if args.peak_threshold is not None else None
    ap, times = {}, {fit: {stage: [] for stage in STAGES} for fit in FITS}
    for _ in range(max(1, args.rounds)):
        for fit in FITS:
            report = evaluate_dataset(args.coco, args.images, model=args.model, fit=fit, threads=args.threads,
                                      decoder_settings=settings, progress=False)
            ap[fit] = (report["stats"]["AP"], report["stats"]["AP50"], report["detections"])
            for stage in STAGES:
                times[fit][stage].append(report["stage_ms"][stage]["mean"])
    print(f"{args.model} on {report['images']} images, {args.threads} thread(s), {args.rounds} interleaved rounds")
    print(f"{'fit':<10} {'AP':>6} {'AP50':>6} {'people':>6}  " + "  ".join(f"{s + ' ms (range)':>22}" for s in STAGES))
    for fit in FITS:
        cells = "  ".join(f"{statistics.median(v):8.2f} ({min(v):.2f}-{max(v):.2f})".rjust(22)
                          for v in (times[fit][s] for s in STAGES))
        print(f"{fit:<10} {ap[fit][0]:6.3f} {ap[fit][1]:6.3f} {ap[fit][2]:6d}  {cells}")
    for stage in STAGES:
        base = statistics.median(times["letterbox"][stage])
        if base > 0:
            print(f"{stage}: stretch / letterbox = {statistics.median(times['stretch'][stage]) / base:.2f}x")
    print(f"AP: stretch - letterbox = {ap['stretch'][0] - ap['letterbox'][0]:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
