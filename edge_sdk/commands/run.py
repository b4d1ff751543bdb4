"""`edge-sdk run`: run a pose model over a video, camera, stream or image folder; publish/save poses."""

import argparse
import socket
import sys


def _has_option(parser, option):
    return option in parser._option_string_actions


def _add_mqtt_arguments(parser):
    """The MQTT options from edge_sdk.runtime.mqtt when it is installed, else the basic pair."""
    try:
        from edge_sdk.runtime.mqtt import add_mqtt_arguments
    except ImportError:
        add_mqtt_arguments = None
    if add_mqtt_arguments is not None:
        add_mqtt_arguments(parser)
    if not _has_option(parser, "--mqtt"):
        parser.add_argument("--mqtt", metavar="URL", help="publish poses to this broker (mqtt://host:1883)")
    if not _has_option(parser, "--device-id"):
        parser.add_argument("--device-id", default=None,
                            help="device name in messages and MQTT topics (default: the hostname)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run a pose model on a video/camera/stream/images and publish the poses",
        description="Run a pose model (ONNX file or bundle) over a source; publish one JSON message per frame "
                    "(MQTT and/or JSON lines). Ctrl-C stops cleanly.")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", metavar="M.onnx", help="an ONNX pose model (ONNX Runtime backend)")
    model.add_argument("--bundle", metavar="DIR", help="a bundle made by `edge-sdk build` (dir or .tar.gz)")
    parser.add_argument("--source", required=True,
                        help="video file, image folder, camera index (0), csi://0 (Jetson CSI), rtsp:// or "
                             "http:// URL, or synthetic[:live][?w=320&h=240&fps=30&frames=100]")
    parser.add_argument("--save", metavar="poses.jsonl", help="write every pose message as a JSON line")
    _add_mqtt_arguments(parser)
    parser.add_argument("--workers", type=int, default=2, help="post-processing threads (default 2)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many source frames")
    parser.add_argument("--max-in-flight", type=str, metavar="N", default=None,
                        help="frames admitted into the pipeline at once (default 2): fewer is lower latency, "
                             "more can be more fps")
    parser.add_argument("--sequential", action="store_true",
                        help="no pipelining: capture, preprocess, infer, decode, publish one after another")
    parser.add_argument("--health-file", metavar="F", help="rewrite this JSON health document every second")
    parser.add_argument("--backend", choices=("auto", "onnxruntime", "tensorrt"), default="auto",
                        help="inference backend (auto: TensorRT for a GPU-target bundle when TensorRT is "
                             "installed, else ONNX Runtime)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--quiet", action="store_true", help="no summary at the end")
    from edge_sdk.runtime.decoder_settings import add_decoder_arguments, add_fit_argument

    add_fit_argument(parser)
    add_decoder_arguments(parser)
    parser.set_defaults(func=run_command)


def _announce(pipeline):
    source = pipeline.source
    print("running {} | source {} ({}) | {} | {} decode worker(s) | device id {}".format(
        pipeline.backend.describe(), getattr(source, "name", source), "live" if pipeline.live else "file",
        "sequential" if pipeline.sequential else "pipelined", pipeline.workers, pipeline.device_id), file=sys.stderr)


def run_command(args: argparse.Namespace) -> int:
    from edge_sdk.errors import ConfigError
    from edge_sdk.runtime.pipeline import run_pipeline

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError("--max-frames must be at least 1")
    if args.max_in_flight is not None:
        from edge_sdk.runtime.pipeline import check_max_in_flight

        args.max_in_flight = check_max_in_flight(args.max_in_flight)
    from edge_sdk.runtime.decoder_settings import check_fit, settings_from_args

    decoder_settings = settings_from_args(args)
    check_fit(args.fit)
    device_id = args.device_id or socket.gethostname().split(".")[0]
    args.device_id = device_id
    sinks = []
    metrics_interval = 5.0
    if args.mqtt:
        try:  # only when MQTT is asked for
            from edge_sdk.runtime.mqtt import publisher_from_args
        except ImportError as exc:
            raise ConfigError("--mqtt needs MQTT support ({}): `pip install paho-mqtt`".format(exc)) from exc

        publisher = publisher_from_args(args)  # connects: an unreachable broker is an error before the model loads
        # one metrics schedule: the pipeline's, which adds its capture/drop counters to the publisher's own
        metrics_interval = getattr(publisher, "metrics_interval", metrics_interval)  # 0: no metrics
        publisher.metrics_interval = 0
        sinks.append(publisher)
    if not args.save and not sinks:
        print("note: no --save or --mqtt given: poses are computed and counted only", file=sys.stderr)
    try:
        stats = run_pipeline(model=args.model, bundle=args.bundle, source=args.source, save=args.save, sinks=sinks,
                             prefer=args.backend, workers=args.workers, max_frames=args.max_frames,
                             sequential=args.sequential, health_file=args.health_file, device_id=device_id,
                             threads=args.threads, on_start=None if args.quiet else _announce,
                             metrics_interval=metrics_interval, decoder_settings=decoder_settings, fit=args.fit,
                             max_in_flight=args.max_in_flight)
    except Exception as exc:
        stats = getattr(exc, "stats", None)
        if stats is not None and not args.quiet:
            print(stats.summary(), file=sys.stderr)
        raise
    if not args.quiet:  # with --save - the messages own stdout
        print(stats.summary(), file=sys.stderr if args.save == "-" else sys.stdout)
    for sink in sinks:  # losses are shown on the device, even with --quiet
        if hasattr(sink, "delivery_summary"):
            print(sink.delivery_summary(), file=sys.stderr)
    import signal

    return 130 if stats.stop_signal == signal.SIGINT else 0  # SIGTERM (service stop) is a normal end
