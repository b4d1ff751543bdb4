"""`edge-sdk doctor`: report Python, packages, TensorRT, CUDA, GPU, JetPack, DLA, ONNX Runtime, and the backend."""

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check this machine for the runtime and say which backend it will use",
        description="Report Python, numpy, OpenCV, paho-mqtt, TensorRT, CUDA (driver/runtime), cuda-python or "
                    "pycuda, GPU, JetPack/L4T, DLA cores and ONNX Runtime providers, and which inference "
                    "backend `edge-sdk run` will use, and why.")
    parser.add_argument("--bundle", help="also say what the runtime would do with this bundle (dir or .tar.gz)")
    parser.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime"),
                        help="the --backend you would pass to `edge-sdk run` (default: auto)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--root", default=None,
                        help="where `edge-sdk flash` installed releases (default /opt/edge-sdk): each is listed with "
                             "the JetPack/TensorRT its bundle was built for")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_sdk.runtime.doctor import run_doctor

    run_doctor(bundle_path=args.bundle, prefer=args.backend, as_json=args.json, root=args.root)
    return 0
