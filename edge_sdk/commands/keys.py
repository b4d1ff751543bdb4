"""`edge-sdk keys generate -o keys/`: an Ed25519 key pair for signing bundles (see docs/flash.md)."""


def register(subparsers):
    p = subparsers.add_parser("keys", help="make the Ed25519 key pair that signs bundles",
                              description="Bundle signing keys. `generate` writes NAME.key (private, mode 0600: keep "
                                          "it on the build machine) and NAME.pub (list it in the fleet file's "
                                          "trusted_keys).")
    sub = p.add_subparsers(dest="keys_action", metavar="ACTION")
    gen = sub.add_parser("generate", help="write a new signing key pair")
    gen.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for the key files")
    gen.add_argument("--name", default="signing", help="file name stem (default %(default)s)")
    p.set_defaults(func=run_keys)


def run_keys(args):
    from edge_sdk.errors import ConfigError
    from edge_sdk.runtime.ids import check_device_id
    from edge_sdk.signing import generate_keys

    if args.keys_action != "generate":
        raise ConfigError("say what to do: `edge-sdk keys generate -o keys/`")
    check_device_id(args.name, "--name")  # a file name: no '/', no '..'
    private, public, kid = generate_keys(args.output, args.name)
    print("signing key {} (keep it secret, mode 0600)\npublic key  {} (key id {}; add it to trusted_keys)".format(
        private, public, kid))
    return 0
