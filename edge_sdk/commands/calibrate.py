"""`edge-sdk calibrate`: INT8 calibration -> Q/DQ ONNX + TensorRT calibration cache + accuracy report."""

import sys
import warnings


def register(subparsers):
    parser = subparsers.add_parser(
        "calibrate", help="INT8-calibrate a model: Q/DQ ONNX, TensorRT calib.cache and an accuracy report",
        description="Measure activation ranges on representative frames, write a Q/DQ (explicitly quantised) "
                    "ONNX model for TensorRT, a TensorRT calibration cache, and report how much accuracy INT8 "
                    "costs compared with FP32 on held-out frames; keep the most sensitive layers in float if the "
                    "drop is above --threshold.")
    parser.add_argument("model", help="FP32 ONNX model (with edge_sdk metadata, or the default input spec)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="folder of calibration images")
    source.add_argument("--video", metavar="FILE", help="video file; every Nth frame is used (see --every)")
    source.add_argument("--coco", metavar="JSON:IMAGES", help="COCO annotation file and its images folder")
    parser.add_argument("--every", type=int, default=None, metavar="N",
                        help="with --video: use every Nth frame (default: spread --count frames over the video)")
    parser.add_argument("--method", choices=("entropy", "percentile", "minmax"), default="entropy",
                        help="range calibrator (default: entropy, TensorRT's EntropyCalibration2)")
    parser.add_argument("--percentile", type=float, default=99.99, help="with --method percentile (default 99.99)")
    parser.add_argument("--count", type=int, default=500, help="calibration frames (default 500)")
    parser.add_argument("--holdout", type=int, default=16, help="held-out frames for the accuracy report (16)")
    parser.add_argument("--seed", type=int, default=0, help="frame selection seed (default 0)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="largest accepted drop of agreement with FP32 (default 0.1: pose AP vs FP32 >= 0.90)")
    parser.add_argument("--no-fallback", action="store_true",
                        help="do not keep sensitive layers in float when the drop is above the threshold")
    parser.add_argument("--trt-version", default=None,
                        help="TensorRT version written in calib.cache's header (default 8.2.1, JetPack 4.6)")
    parser.add_argument("-o", "--output", default=None,
                        help="Q/DQ model path (default: MODEL.int8.onnx next to MODEL); cache and report go "
                             "into the same folder")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when the accuracy check fails")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print("warning: {}".format(message), file=sys.stderr)


def run(args):
    from pathlib import Path

    from edge_sdk.calibration import DEFAULT_THRESHOLD, calibrate
    from edge_sdk.calibration.data import CalibrationSource, parse_source
    from edge_sdk.calibration.trt_cache import DEFAULT_TRT_VERSION
    from edge_sdk.errors import ConfigError

    if args.images:
        source = CalibrationSource("images", args.images)
    elif args.video:
        source = CalibrationSource("video", args.video, every=args.every)
    else:
        if ":" not in args.coco and not args.coco.endswith(".json"):
            raise ConfigError("--coco takes ANNOTATIONS.json:IMAGES_DIR, got {!r}".format(args.coco))
        source = parse_source(args.coco)
    model = Path(args.model)
    output = Path(args.output) if args.output else model.with_name(model.stem + ".int8.onnx")
    warnings.showwarning = _show_warning
    result = calibrate(
        model, source, output.parent, method=args.method, count=args.count, seed=args.seed,
        threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold, percentile=args.percentile,
        holdout=args.holdout, trt_version=args.trt_version or DEFAULT_TRT_VERSION, output_name=output.name,
        fallback=not args.no_fallback, progress=not args.no_progress and sys.stderr.isatty())
    print(result["summary"])
    return 1 if args.strict and not result["passed"] else 0
