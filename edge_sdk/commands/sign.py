"""`edge-sdk sign BUNDLE --key KEY`: sign an existing bundle's manifest.json (Ed25519, manifest.sig)."""


def register(subparsers):
    p = subparsers.add_parser("sign", help="sign a bundle (directory or .tar.gz) with an Ed25519 key",
                              description="Verify the bundle's hashes, then write manifest.sig, a detached Ed25519 "
                                          "signature of manifest.json (which hashes every file). A directory's "
                                          "sibling DIR.tar.gz is rewritten with it.")
    p.add_argument("bundle", help="bundle directory or .tar.gz")
    p.add_argument("--key", required=True, help="private key from `edge-sdk keys generate`")
    p.set_defaults(func=run_sign)


def run_sign(args):
    from edge_sdk.signing import sign_bundle

    kid = sign_bundle(args.bundle, args.key)
    print("signed {} with key {}".format(args.bundle, kid))
    return 0
