"""`edge-sdk bench`: throughput and latency of the real runtime pipeline on this device."""

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="benchmark a bundle (or several, interleaved) with the real runtime pipeline",
        description="Runs the runtime pipeline on a source and reports fps, per-stage latency percentiles, CPU, "
                    "memory and (on Jetson, from tegrastats) GPU load and power.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--bundle", help="bundle directory or .tar.gz")
    what.add_argument("--model", help="ONNX model (ONNX Runtime backend)")
    what.add_argument("--compare", nargs="+", metavar="BUNDLE", help="several bundles side by side, interleaved")
    p.add_argument("--source", default="synthetic", help="camera index, video, image folder or synthetic "
                                                         "(default: synthetic frames generated here)")
    p.add_argument("--frames", type=int, default=1000, help="measured frames per run (default 1000)")
    p.add_argument("--warmup", type=int, default=50, help="frames run first and not measured (default 50)")
    p.add_argument("--workers", type=int, default=2, help="post-processing threads (default 2)")
    p.add_argument("--mode", choices=("pipelined", "sequential", "both"), default="both",
                   help="pipelined runtime, plain sequential loop, or both to show the pipeline's gain")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 1, or 5 with --compare)")
    p.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime"))
    p.add_argument("--threads", type=int, metavar="N",
                   help="ONNX Runtime inference threads (default: all cores); leave cores to --workers")
    p.add_argument("--rate", type=float, metavar="FPS",
                   help="pace the synthetic source at FPS (a camera's rate), to measure latency at that rate")
    p.add_argument("--max-in-flight", type=str, metavar="N", default=None,
                   help="frames admitted into the pipeline at once (default 2): fewer is lower latency, more "
                        "can be more fps")
    p.add_argument("-o", "--output", help="write the JSON result here")
    p.add_argument("--plot", help="write a PNG plot (needs matplotlib)")
    p.add_argument("--markdown", help="write a Markdown results page (e.g. docs/benchmarks.md)")
    from edge_sdk.runtime.decoder_settings import add_decoder_arguments, add_fit_argument

    add_fit_argument(p)
    add_decoder_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_sdk.bench.render import markdown_report, plot_result
    from edge_sdk.bench.runner import format_table, run_bench, write_result
    from edge_sdk.runtime.decoder_settings import check_fit, settings_from_args

    bundles = args.compare or [args.bundle or args.model]
    result = run_bench(bundles, frames=args.frames, warmup=args.warmup, source=args.source, workers=args.workers,
                       mode=args.mode, prefer=args.backend, rounds=args.rounds, threads=args.threads, rate=args.rate,
                       command="edge-sdk " + " ".join(sys.argv[1:]), decoder_settings=settings_from_args(args),
                       fit=check_fit(args.fit), max_in_flight=args.max_in_flight)
    print(format_table(result))
    if args.output:
        print("wrote {}".format(write_result(result, args.output)))
    if args.plot:
        print("wrote {}".format(plot_result(result, args.plot)))
    if args.markdown:
        import os

        plot_ref = os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.markdown))) if args.plot else None
        with open(args.markdown, "w") as f:
            f.write(markdown_report(result, plot_ref))
        print("wrote {}".format(args.markdown))
    return 0
