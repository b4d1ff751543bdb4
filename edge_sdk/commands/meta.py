"""`edge-sdk meta show|set MODEL.onnx`: read and edit a model's edge_sdk metadata (preprocessing, outputs,
decoder settings)."""


def register(subparsers):
    parser = subparsers.add_parser(
        "meta", help="show or edit a model's metadata (preprocessing, outputs, decoder settings)",
        description="Show or edit the edge_sdk metadata of an ONNX model: how frames are fed to it and which "
                    "decoder settings suit it. A model without metadata starts from what the runtime assumes.")
    actions = parser.add_subparsers(dest="meta_action", metavar="ACTION")
    show = actions.add_parser("show", help="print the metadata (or what the runtime assumes)")
    show.add_argument("model", metavar="MODEL.onnx")
    show.add_argument("--json", action="store_true", help="print the metadata as JSON")
    show.set_defaults(func=show_command)

    edit = actions.add_parser("set", help="change the metadata (in place, or into -o OUT.onnx)")
    edit.add_argument("model", metavar="MODEL.onnx")
    edit.add_argument("-o", "--output", metavar="OUT.onnx", help="write the result here (default: in place)")
    edit.add_argument("--color", help="channel order the model takes: rgb or bgr")
    edit.add_argument("--scale", help="pixel multiplier before the mean, e.g. 1/255 or 1")
    edit.add_argument("--mean", metavar="R,G,B", help="per-channel mean subtracted after --scale")
    edit.add_argument("--std", metavar="R,G,B", help="per-channel divisor after the mean")
    edit.add_argument("--imagenet", action="store_true", help="ImageNet mean/std")
    edit.add_argument("--input", metavar="WxH", help="input size (only where the graph's size is not fixed)")
    edit.add_argument("--fit", help="frame fit: letterbox (keep aspect, pad) or stretch")
    edit.add_argument("--heatmaps", metavar="TENSOR", help="output tensor holding the heatmaps")
    edit.add_argument("--pafs", metavar="TENSOR", help="output tensor holding the PAFs")
    edit.add_argument("--peaks", metavar="TENSOR", help="output tensor holding GPU-extracted peaks")
    edit.add_argument("--stride", type=int, help="output stride (default 8)")
    edit.add_argument("--skeleton", metavar="NAME|JSON",
                      help="the keypoint topology: coco18-openpose (default), trt_pose-18, body25-openpose, or a JSON "
                           "object (or file) with parts, limbs, coco17 [, paf_channels, background, joins_only]")
    edit.add_argument("--name", dest="model_name", help="the model's display name")
    edit.add_argument("--json", metavar="JSON|FILE", help="replace the whole metadata with this JSON")
    edit.add_argument("--reset-decoder", metavar="NAME", action="append",
                      help="remove a decoder setting (back to the default); repeatable")
    from edge_sdk.runtime.decoder_settings import add_decoder_arguments

    add_decoder_arguments(edit, "decoder settings stored in the model")
    edit.set_defaults(func=set_command)
    parser.set_defaults(func=lambda _args: parser.print_help() or 1)


def show_command(args):
    import json

    from edge_sdk.meta import format_meta, read_meta

    meta = read_meta(args.model)
    print(json.dumps(meta.to_dict(), indent=2, sort_keys=True) if args.json else format_meta(meta, args.model))
    return 0


def set_command(args):
    from edge_sdk.errors import ConfigError
    from edge_sdk.meta import format_meta, update_meta
    from edge_sdk.runtime.decoder_settings import NAMES, settings_from_args

    for name in args.reset_decoder or []:
        if name.replace("-", "_") not in NAMES:
            raise ConfigError(f"--reset-decoder {name}: unknown decoder setting; known: {', '.join(NAMES)}")
    changes = {"color": args.color, "scale": args.scale, "mean": args.mean, "std": args.std, "input": args.input,
               "fit": args.fit, "heatmaps": args.heatmaps, "pafs": args.pafs, "peaks": args.peaks,
               "stride": args.stride, "model": args.model_name, "json": args.json, "skeleton": args.skeleton,
               "imagenet": args.imagenet or None, "decoder": settings_from_args(args) or None,
               "reset_decoder": [n.replace("-", "_") for n in args.reset_decoder or []] or None}
    if not any(v is not None for v in changes.values()):
        raise ConfigError("meta set: nothing to change; give e.g. --color bgr, --peak-threshold 0.05 or --json")
    meta = update_meta(args.model, changes, args.output)
    print(format_meta(meta, args.output or args.model))
    return 0
