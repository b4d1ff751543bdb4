"""`edge-sdk eval`: COCO keypoint AP/AR of a bundle or model with pycocotools, per-stage time, and sweeps of
decoder settings."""

import json


def register(subparsers):
    p = subparsers.add_parser("eval", help="COCO keypoint AP/AR of a bundle or model on a COCO-format image set")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--bundle", help="bundle directory or .tar.gz")
    what.add_argument("--model", help="ONNX model")
    p.add_argument("--coco", required=True, help="COCO keypoints annotation file (person_keypoints_*.json)")
    p.add_argument("--images", required=True, help="folder with the images named in the annotation file")
    p.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime"))
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    p.add_argument("--sweep", action="append", metavar="NAME=V1,V2",
                   help="evaluate each value of a decoder setting (e.g. peak_threshold=0.05,0.1) and print a "
                        "table; repeat for a grid. Inference runs once per image")
    p.add_argument("--results", help="write the COCO results (detections) JSON here")
    p.add_argument("-o", "--output", help="write the report (stats, per-image counts) as JSON here")
    from edge_sdk.runtime.decoder_settings import add_decoder_arguments, add_fit_argument

    add_fit_argument(p)
    add_decoder_arguments(p)
    p.set_defaults(func=run)


def run(args):
    from edge_sdk.errors import ConfigError
    from edge_sdk.eval.dataset import evaluate_dataset, format_summary, format_sweep, parse_sweep
    from edge_sdk.runtime.decoder_settings import check_fit, settings_from_args

    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    if args.threads is not None and not 1 <= args.threads <= 256:
        raise ConfigError("--threads must be in [1, 256], got {}".format(args.threads))
    sweep = parse_sweep(args.sweep)
    report = evaluate_dataset(args.coco, args.images, model=args.model, bundle=args.bundle, prefer=args.backend,
                              limit=args.limit, results_path=args.results, threads=args.threads,
                              fit=check_fit(args.fit), decoder_settings=settings_from_args(args), sweep=sweep)
    print(format_summary(report))
    if sweep:
        print(format_sweep(report))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)
        print("wrote {}".format(args.output))
    return 0
