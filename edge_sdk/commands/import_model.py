"""`edge-sdk import MODEL -o OUT.onnx`: an OpenPose-family model from another project -> a contract ONNX."""

# the preset names of edge_sdk.importers.paf_layouts; not imported here because the CLI loads every command
# module on the device too (Python 3.6) and the importers are host code
_PRESETS = ("ours", "tfpose", "openpose")


def register(subparsers):
    p = subparsers.add_parser(
        "import", help="import a TF1 .pb, Keras/SavedModel or ONNX pose model into the edge-sdk model contract",
        description="Convert an OpenPose-family model (18 COCO parts + background, 19 limbs) into the contract "
                    "ONNX: input 'image' NCHW float32, outputs 'heatmaps' [1,19,H/8,W/8] and 'pafs' "
                    "[1,38,H/8,W/8] in edge-sdk's channel order, preprocessing facts in the 'edge_sdk' metadata. "
                    "The format is detected from the file. The result is checked against the source framework "
                    "on photos and is not written when the maps differ by more than --atol.")
    p.add_argument("model", help="frozen GraphDef .pb, .onnx, .keras/.h5 file, or SavedModel folder")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--paf-order", default="ours", metavar="PRESET",
                   help="channel layout of the source: {} (default: %(default)s); the preset also sets the "
                        "family's preprocessing defaults".format(", ".join(_PRESETS)))
    p.add_argument("--input", dest="input_name", metavar="NAME", help="input tensor (default: the only one)")
    p.add_argument("--output-name", dest="output_names", metavar="NAME[,NAME]",
                   help="output tensor(s) holding the maps (default: found from the graph)")
    p.add_argument("--input-size", metavar="WxH", help="input size for graphs that take any size "
                                                       "(default: the graph's own, else the preset's)")
    p.add_argument("--color", type=str.lower, choices=("rgb", "bgr"), help="channel order the model expects")
    p.add_argument("--scale", type=float, help="pixel scale: input = (pixel * scale - mean) / std")
    p.add_argument("--mean", metavar="M[,M,M]", help="per-channel mean, after scaling")
    p.add_argument("--std", metavar="S[,S,S]", help="per-channel std, after scaling")
    p.add_argument("--check-images", metavar="DIR",
                   help="photos to check the import on (default: synthetic people frames)")
    p.add_argument("--check-count", type=int, default=10, help="how many photos to check on (default 10)")
    p.add_argument("--atol", type=float, default=1e-2,
                   help="largest absolute difference from the source framework allowed (default 1e-2)")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset (13..21, default 13)")
    p.add_argument("--no-optimize", action="store_true",
                   help="skip the speed passes: instancenorm (batch-statistics BatchNorm -> "
                        "InstanceNormalization) and chanpad (zero channels so ONNX Runtime's blocked convolutions "
                        "apply)")
    p.add_argument("--name", help="model name in the metadata (default: the source file's name)")
    p.set_defaults(func=run)


def _numbers(text, flag):
    from edge_sdk.errors import ConfigError

    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError("--{} takes numbers separated by commas, e.g. 0.5,0.5,0.5 (got {!r})".format(
            flag, text)) from None


def run(args):
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter, before it loads
    from edge_sdk.commands.rewrite import parse_size
    from edge_sdk.errors import ConfigError

    try:
        from edge_sdk.importers import import_model
    except ImportError as exc:
        raise ConfigError("import needs the [host] extra, and TensorFlow + tf2onnx for TF models ({}); run: "
                          "pip install -e '.[host,train]'".format(exc)) from None
    size = None
    if args.input_size:
        size = parse_size(args.input_size.replace("--input", "--input-size"))
    outputs = [n.strip() for n in args.output_names.split(",") if n.strip()] if args.output_names else None
    import_model(args.model, args.output, paf_order=args.paf_order, input_name=args.input_name,
                 output_names=outputs, color=args.color, scale=args.scale, mean=_numbers(args.mean, "mean"),
                 std=_numbers(args.std, "std"), input_size=size, check_images=args.check_images,
                 check_count=args.check_count, atol=args.atol, opset=args.opset, optimize=not args.no_optimize,
                 name=args.name)
    return 0
