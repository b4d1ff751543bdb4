"""`edge-sdk record`: keep a fleet's poses in SQLite or PostgreSQL (thin shell over edge_sdk.fleet.recorder)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "record", help="record pose messages from MQTT into SQLite or PostgreSQL (exactly once, batched)",
        description="Subscribe to the fleet's pose messages and store one row per person per frame. Several "
                    "--workers (here or on other hosts, same --group) share the stream through an MQTT v5 "
                    "shared subscription; re-deliveries and restarts never store a frame twice. Bad messages "
                    "are counted and skipped.")
    p.add_argument("--mqtt", metavar="URL", required=True, help="broker: mqtt://HOST[:1883] or mqtts://HOST[:8883]")
    p.add_argument("--to", metavar="DB", required=True,
                   help="poses.sqlite (embedded, default choice) or postgresql://USER@HOST/DB (password: "
                        "$PGPASSWORD or ~/.pgpass)")
    p.add_argument("--topic", default="edge-sdk/+/poses", help="topic filter (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this host (default: %(default)s)")
    p.add_argument("--group", default="edge-sdk-record",
                   help="shared-subscription group: workers of one group split the stream (default: %(default)s)")
    p.add_argument("--client-id", default="", help="MQTT client id prefix (default: edge-sdk-record-HOST-GROUP); "
                                                   "the worker number is appended")
    p.add_argument("--keep", metavar="DURATION", default=None, help="retention: delete frames older than this "
                                                                   "(e.g. 7d, 12h); default: keep everything")
    p.add_argument("--batch-size", type=int, default=1000, help="messages per transaction at most")
    p.add_argument("--batch-seconds", type=float, default=0.2, help="write a batch at least this often")
    from edge_sdk.runtime.mqtt import add_broker_arguments

    add_broker_arguments(p)
    stop = p.add_argument_group("when to stop (default: Ctrl-C)")
    stop.add_argument("--timeout", type=float, default=None, help="stop after S seconds")
    stop.add_argument("--idle-timeout", type=float, default=None, help="stop after S seconds without a message")
    p.add_argument("--stats", metavar="FILE.json", default=None, help="write each worker's counters to FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from edge_sdk.fleet.recorder import RecorderConfig, record
    from edge_sdk.fleet.store import parse_duration, redact_url
    from edge_sdk.runtime.mqtt import read_password

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    config = RecorderConfig(
        mqtt_url=args.mqtt, store_url=args.to, topic=args.topic, group=args.group, client_id=args.client_id,
        batch_size=args.batch_size, batch_seconds=args.batch_seconds,
        keep_s=parse_duration(args.keep) if args.keep else None, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
        tls_key=args.tls_key, username=args.mqtt_username, password=read_password(args.mqtt_password_file),
        idle_timeout_s=args.idle_timeout, timeout_s=args.timeout)

    def ready():
        print("recording {} into {} with {} worker(s) (group {})".format(
            args.topic, redact_url(args.to), args.workers, args.group), file=sys.stderr, flush=True)

    stats = record(config, workers=args.workers, on_ready=ready)
    for s in stats:
        print("worker {worker}: {received} received, {stored} stored, {duplicates} duplicates, {bad} bad, "
              "{messages_per_s} msg/s".format(**s), file=sys.stderr)
    if args.stats:
        with open(args.stats, "w") as f:
            json.dump(stats, f, indent=2)
    return 0
