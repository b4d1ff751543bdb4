"""`edge-sdk export`: a training run -> a checked ONNX model (NCHW `image` -> `heatmaps`, `pafs`)."""

from __future__ import annotations

from edge_sdk.errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a training run to ONNX (checked against Keras with ONNX Runtime)",
        description="Export the latest checkpoint of RUN_DIR to ONNX (opset >= 13, NCHW float32 input "
                    "'image', outputs 'heatmaps' and 'pafs', model metadata under metadata_props 'edge_sdk'). "
                    "Nothing is written unless ONNX Runtime reproduces the Keras outputs.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the -o directory of `edge-sdk train`")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset (>= 13)")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                   help="a Python file that registers the backbone the run used")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        from edge_sdk.commands.train import load_plugins
        from edge_sdk.training.export import export_onnx
    except ImportError as exc:
        raise ConfigError("export needs the [train] extra ({}); run: pip install -e '.[train]'".format(
            exc)) from None
    load_plugins(args.plugin)
    export_onnx(args.run_dir, args.output, opset=args.opset)
    return 0
