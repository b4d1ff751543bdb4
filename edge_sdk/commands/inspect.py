"""`edge-sdk inspect BUNDLE`: verify a bundle (directory or .tar.gz) and print its manifest."""

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inspect", help="verify a bundle and print what is in it",
                                   description="Verify every file's sha256 and print the bundle manifest.")
    parser.add_argument("bundle", help="bundle directory or .tar.gz made by `edge-sdk build`")
    parser.add_argument("--json", action="store_true", help="print the raw manifest as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from edge_sdk.runtime.bundle import open_bundle

    if args.json:
        with open_bundle(args.bundle) as bundle:
            print(json.dumps(bundle.manifest, indent=2, sort_keys=True))
        return 0
    try:
        from edge_sdk.bundle_writer import describe_bundle  # host package (edge-sdk); a device has the runtime only
    except ImportError:
        print(json.dumps(open_bundle(args.bundle).manifest, indent=2, sort_keys=True))
        return 0
    print(describe_bundle(args.bundle))
    return 0
