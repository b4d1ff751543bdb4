"""`edge-sdk broker-config`: Mosquitto config, password file and ACL for a fleet (edge_sdk.broker_config)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "broker-config", help="write a Mosquitto config (TLS, per-device passwords, ACL) for a fleet",
        description="Read the fleet file (the one `edge-sdk flash --inventory` reads) and write mosquitto.conf, "
                    "passwd, acl, persistence/ and credentials/ into DIR. Each device may publish only under "
                    "PREFIX/ID/#, subscribers may only read, anonymous clients are refused, client ids are the "
                    "user names.")
    p.add_argument("--devices", "--inventory", dest="devices", metavar="fleet.toml", required=True,
                   help="the fleet file (see docs/mqtt.md)")
    p.add_argument("-o", "--output", metavar="DIR", required=True, help="directory to write into")
    p.add_argument("--install-dir", metavar="DIR", default=None,
                   help="where the files will live on the broker host (paths in mosquitto.conf; default: DIR)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a password listener without TLS on a non-loopback address (passwords in clear text)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from edge_sdk.broker_config import write_broker_config

    result = write_broker_config(args.devices, args.output, install_dir=args.install_dir, insecure=args.insecure)
    for warning in result.warnings:
        print("WARNING: {}".format(warning), file=sys.stderr)
    print("wrote {} (passwords hashed with {})".format(result.conf, result.hashed_with))
    print("      {}\n      {}".format(result.password_file, result.acl_file))
    print("device credentials (give each device its file as --mqtt-password-file; keep them off the broker):")
    for name, path in result.credentials.items():
        print("  {:<20} {}".format(name, path))
    print("start the broker: mosquitto -c {}".format(result.conf))
    return 0
