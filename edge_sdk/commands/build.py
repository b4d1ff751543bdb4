"""`edge-sdk build MODEL.onnx --target T [--fp16|--int8|--best] ... -o OUT`: make a deployable bundle.
On the device: `edge-sdk build --bundle B` builds the TensorRT engine the bundle asks for."""

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build", help="rewrite, calibrate and compile a model into a deployable bundle for a target",
        description="Make a bundle (directory + .tar.gz) for a target device. The TensorRT engine is built here "
                    "when this machine has TensorRT and the target's GPU, else on the device at first start.")
    parser.add_argument("model", nargs="?", help="ONNX model exported by training")
    parser.add_argument("--target", "-t", help="target profile (`edge-sdk targets` lists them)")
    parser.add_argument("--jetpack", metavar="X.Y",
                        help="the JetPack release the device runs (default: the newest the target lists)")
    parser.add_argument("-o", "--output", help="bundle directory to write (OUT and OUT.tar.gz)")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="FP16 engine")
    precision.add_argument("--int8", dest="precision", action="store_const", const="int8",
                           help="INT8 engine (needs --calib; FP16 on GPUs without fast INT8)")
    precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32", help="FP32 engine")
    precision.add_argument("--best", dest="precision", action="store_const", const="best",
                           help="the fastest precision the target supports with the data given")
    parser.add_argument("--calib", metavar="DIR", help="calibration images (folder or video) for INT8")
    parser.add_argument("--calib-method", default="entropy", choices=["entropy", "percentile", "minmax"])
    parser.add_argument("--calib-count", type=int, default=500, metavar="N", help="calibration frames")
    parser.add_argument("--dla", type=int, metavar="N", help="run on DLA core N (GPU fallback for other layers)")
    parser.add_argument("--workspace", type=int, metavar="MB", help="TensorRT workspace (default: the target's)")
    parser.add_argument("--input", metavar="WxH", help="input size (default: the target's), e.g. 384x256")
    parser.add_argument("--batch", type=int, default=1, help="static batch size (default 1)")
    parser.add_argument("--peaks", type=int, metavar="K", help="append GPU peak extraction with top-K per part")
    parser.add_argument("--peak-threshold", type=float, default=0.1, help="heatmap peak threshold (with --peaks)")
    parser.add_argument("--limbs", action="store_true",
                        help="with --peaks: score every candidate limb in the engine too (output [19, K, K] "
                             "limb scores instead of the PAFs)")
    parser.add_argument("--strict", action="store_true",
                        help="fail instead of falling back to another precision than requested")
    parser.add_argument("--engine", choices=["auto", "device", "local"], default="auto",
                        help="where the engine is built: auto (here if possible), device, local (must be here)")
    parser.add_argument("--no-archive", action="store_true", help="skip the .tar.gz")
    parser.add_argument("--sign", metavar="KEY", help="sign the bundle with this Ed25519 key (`edge-sdk keys "
                        "generate`): manifest.sig, checked by the device before it installs the bundle")
    parser.add_argument("--version-compatible", action="store_true",
                        help="engine a later TensorRT of the same major version can run (TensorRT 8.6+)")
    parser.add_argument("--hardware-compatible", action="store_true",
                        help="engine for any Ampere-or-later discrete GPU (TensorRT 8.6+, not JetPack)")
    parser.add_argument("--bundle", metavar="B", help="on the device: build the engine of bundle B")
    parser.add_argument("--skip-target-check", action="store_true",
                        help="with --bundle: build even if this device does not look like the bundle's target")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_sdk.errors import ConfigError

    if args.bundle:  # on the device: Python 3.6 code path (no host dependencies)
        from edge_sdk.runtime.engine_on_device import build_on_device

        build_on_device(args.bundle, skip_target_check=args.skip_target_check)
        return 0
    missing = [flag for flag, value in (("MODEL.onnx", args.model), ("--target", args.target),
                                        ("-o OUT", args.output)) if not value]
    if args.limbs and not args.peaks:
        raise ConfigError("--limbs needs --peaks K: limbs are scored between the engine's top-K peaks")
    if missing:
        raise ConfigError("edge-sdk build needs {}: e.g. `edge-sdk build model.onnx --target jetson-orin-nano "
                          "--fp16 -o bundles/orin`".format(", ".join(missing)))
    try:  # host package (edge-sdk); a device has the runtime only
        from edge_sdk.commands.rewrite import parse_size
        from edge_sdk.engine.build import BuildRequest, build
    except ImportError as exc:
        raise ConfigError("`edge-sdk build MODEL.onnx` runs on a workstation with the host package ({}); on a "
                          "device, `edge-sdk build --bundle B` builds a bundle's engine".format(exc)) from None

    if args.sign:  # a missing or unreadable key fails now, not after a long build
        from edge_sdk.signing import load_private_key

        load_private_key(args.sign)
    result = build(BuildRequest(
        model=args.model, target=args.target, output=args.output, precision=args.precision, calib=args.calib,
        calib_method=args.calib_method, calib_count=args.calib_count, dla_core=args.dla,
        workspace_mb=args.workspace, input_size=parse_size(args.input) if args.input else None, batch=args.batch,
        peaks=args.peaks, peak_threshold=args.peak_threshold, limbs=args.limbs, strict=args.strict,
        engine=args.engine, jetpack=args.jetpack, version_compatible=args.version_compatible,
        hardware_compatible=args.hardware_compatible,
        archive=not args.no_archive))
    if args.sign:
        from edge_sdk.signing import sign_bundle

        print("signed with key {}".format(sign_bundle(result.bundle_dir, args.sign)))
    return 0
