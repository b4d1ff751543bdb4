"""`edge-sdk rewrite IN.onnx -o OUT.onnx --passes a,b,c`: run graph rewrite passes alone and print what each
changed (nodes before/after)."""

# the same list as edge_sdk.graph.DEFAULT_PASSES; not imported here because the CLI loads every command
# module on the device too (Python 3.6), and edge_sdk.graph is host code
_DEFAULT = ("fold", "transposes", "prune", "normalize", "shape", "fold")


def register(subparsers):
    parser = subparsers.add_parser(
        "rewrite", help="apply ONNX graph rewrite passes to a model",
        description="Apply rewrite passes (fold, transposes, normalize, shape, prune, peaks, instancenorm, "
                    "chanpad) and print what each changed. Passes run in the order given.")
    parser.add_argument("model", help="input .onnx")
    parser.add_argument("-o", "--output", required=True, help="output .onnx")
    parser.add_argument("--passes", default=",".join(_DEFAULT),
                        help="comma-separated passes (default: %(default)s)")
    parser.add_argument("--input", metavar="WxH", help="input size for the 'shape' pass, e.g. 384x256")
    parser.add_argument("--batch", type=int, default=1, help="static batch size for the 'shape' pass")
    parser.add_argument("--peaks", type=int, default=10, metavar="K", help="top-K candidates per part ('peaks')")
    parser.add_argument("--peak-threshold", type=float, default=0.1, help="peak score threshold ('peaks')")
    parser.add_argument("--raw-dtype", choices=["uint8", "float32"], default="uint8",
                        help="pixel type the device feeds after 'normalize'")
    parser.add_argument("--raw-layout", choices=["NHWC", "NCHW"], default="NHWC")
    parser.add_argument("--raw-color", choices=["BGR", "RGB"], default="BGR")
    parser.set_defaults(func=run)


def parse_size(text):
    """'384x256' -> (384, 256); ConfigError on anything else."""
    from edge_sdk.errors import ConfigError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except (ValueError, AttributeError):
        raise ConfigError("--input must look like WIDTHxHEIGHT, e.g. 384x256 (got {!r})".format(text)) from None
    return w, h


def run(args):
    from edge_sdk.graph.rewrite import rewrite_file

    size = parse_size(args.input) if args.input else (None, None)
    options = {
        "shape": {"width": size[0], "height": size[1], "batch": args.batch},
        "peaks": {"k": args.peaks, "threshold": args.peak_threshold},
        "normalize": {"dtype": args.raw_dtype, "layout": args.raw_layout, "color": args.raw_color},
    }
    rewrite_file(args.model, args.output, args.passes, options, echo=print)
    return 0
