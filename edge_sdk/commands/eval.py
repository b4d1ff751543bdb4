"""`edge-sdk eval`: COCO keypoint AP/AR of a bundle or model with pycocotools."""

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
    p.add_argument("--results", help="write the COCO results (detections) JSON here")
    p.add_argument("-o", "--output", help="write the report (stats, per-image counts) as JSON here")
    p.set_defaults(func=run)


def run(args):
    from edge_sdk.eval.dataset import evaluate_dataset, format_summary

    report = evaluate_dataset(args.coco, args.images, model=args.model, bundle=args.bundle, prefer=args.backend,
                              limit=args.limit, results_path=args.results)
    print(format_summary(report))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)
        print("wrote {}".format(args.output))
    return 0
