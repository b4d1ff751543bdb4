"""`edge-sdk dashboard`: a live web page of the fleet (thin shell over edge_sdk.fleet.dashboard)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dashboard", help="serve a live web page of the fleet: skeletons per camera, fps, latency, drops, status",
        description="Subscribe to the fleet and serve one page (no CDN, works offline) that shows each camera's "
                    "latest skeletons, fps, latency, drops and online/offline (from the retained status), "
                    "updated live over a WebSocket. Read-only, no login: it listens on 127.0.0.1 by default.")
    p.add_argument("--mqtt", metavar="URL", required=True, help="broker: mqtt://HOST[:1883] or mqtts://HOST[:8883]")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0 = all)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default: %(default)s)")
    p.add_argument("--topic-prefix", default="edge-sdk", help="topics PREFIX/DEVICE/... (default: %(default)s)")
    p.add_argument("--push-interval", type=float, default=0.2, help="seconds between updates to the page")
    from edge_sdk.runtime.mqtt import add_broker_arguments

    add_broker_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from edge_sdk.fleet.dashboard import run_dashboard
    from edge_sdk.runtime.mqtt import read_password

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)

    def started(port):
        print("dashboard: http://{}:{}/ (fleet from {})".format(args.host, port, args.mqtt), file=sys.stderr,
              flush=True)

    run_dashboard(args.mqtt, host=args.host, port=args.port, prefix=args.topic_prefix,
                  push_interval=args.push_interval, started=started, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                  tls_key=args.tls_key, username=args.mqtt_username,
                  password=read_password(args.mqtt_password_file))
    return 0
