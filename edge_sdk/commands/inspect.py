"""`edge-sdk inspect BUNDLE`: verify a bundle (directory or .tar.gz) and print its manifest."""


def register(subparsers):
    parser = subparsers.add_parser("inspect", help="verify a bundle and print what is in it",
                                   description="Verify every file's sha256 and print the bundle manifest.")
    parser.add_argument("bundle", help="bundle directory or .tar.gz made by `edge-sdk build`")
    parser.add_argument("--json", action="store_true", help="print the raw manifest as JSON")
    parser.set_defaults(func=run)


def run(args):
    import json

    from edge_sdk.runtime.bundle import open_bundle

    if args.json:
        with open_bundle(args.bundle) as bundle:
            print(json.dumps(bundle.manifest, indent=2, sort_keys=True))
        return 0
    from edge_sdk.bundle import describe_bundle

    print(describe_bundle(args.bundle))
    return 0
