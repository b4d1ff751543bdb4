"""`edge-sdk subscribe`: watch, record or render the poses of a fleet (thin shell over edge_sdk.subscriber)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "subscribe", help="receive pose messages over MQTT: live table, JSON lines, recording, skeleton overlays",
        description="Subscribe to the pose messages of one or many devices. Default output: a live table on a "
                    "terminal, one line per message otherwise. Malformed messages are skipped with a warning; "
                    "QoS 1 re-deliveries are dropped by (device, seq).")
    p.add_argument("--mqtt", metavar="URL", required=True, help="broker: mqtt://HOST[:1883] or mqtts://HOST[:8883]")
    p.add_argument("--topic", action="append", default=None,
                   help="topic filter, repeatable (default: edge-sdk/+/poses = every device)")
    p.add_argument("--qos", type=int, choices=(0, 1), default=1, help="subscription QoS (default: %(default)s)")
    from edge_sdk.runtime.mqtt import add_broker_arguments

    add_broker_arguments(p)
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="one JSON line per message on stdout")
    out.add_argument("--table", action="store_true", help="live table even when stdout is not a terminal")
    out.add_argument("--save", metavar="FILE.jsonl", help="append every message as a JSON line to FILE")
    out.add_argument("--render", metavar="DIR|FILE.mp4",
                     help="draw skeleton overlays: PNGs in DIR/DEVICE/, or a video per device")
    out.add_argument("--frames", metavar="VIDEO|DIR", help="draw on these frames (message seq = frame index) "
                                                          "instead of a blank canvas")
    stop = p.add_argument_group("when to stop")
    stop.add_argument("--count", type=int, default=None, help="stop after N messages")
    stop.add_argument("--timeout", type=float, default=None, help="stop after S seconds")
    stop.add_argument("--idle-timeout", type=float, default=None, help="stop after S seconds without a message")
    p.add_argument("--max-payload", type=int, default=1 << 20, help="skip larger payloads (bytes)")
    p.add_argument("--client-id", default="", help="fixed MQTT client id (needed with --persistent-session)")
    p.add_argument("--persistent-session", action="store_true",
                   help="keep the broker-side session: QoS 1 messages sent while this subscriber is away wait")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from edge_sdk.runtime.mqtt import read_password
    from edge_sdk.subscriber import watch

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    sub = watch(args.mqtt, topics=args.topic, json_lines=args.json, table=True if args.table else None,
                save=args.save, render=args.render, frames=args.frames, qos=args.qos, tls_ca=args.tls_ca,
                tls_cert=args.tls_cert, tls_key=args.tls_key, username=args.mqtt_username,
                password=read_password(args.mqtt_password_file), count=args.count, timeout=args.timeout,
                idle_timeout=args.idle_timeout, max_payload=args.max_payload, client_id=args.client_id,
                persistent_session=args.persistent_session)
    if args.count is not None and sub.yielded < args.count:
        print("received {} of {} messages before the timeout".format(sub.yielded, args.count), file=sys.stderr)
        return 1
    return 0
