"""`edge-sdk devices status`: version, runtime state, health and last seen of every device."""

from edge_sdk.deploy.cli_args import add_device_selection


def register(subparsers):
    p = subparsers.add_parser("devices", help="inspect deployed devices (status over SSH and MQTT)")
    sub = p.add_subparsers(dest="devices_command", metavar="SUBCOMMAND")
    status = sub.add_parser("status", help="version, health and last seen of each device",
                            description="Ask each device's agent over SSH for the current version, whether the "
                                        "runtime runs and what its health file says; with --mqtt also read the "
                                        "retained {prefix}/{device_id}/status messages.")
    add_device_selection(status)
    status.add_argument("--mqtt", metavar="URL", help="broker to read retained status from, e.g. mqtt://host:1883")
    status.add_argument("--mqtt-prefix", default="edge-sdk", help="topic prefix (default %(default)s)")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(func=run_status)
    p.set_defaults(func=lambda args: p.print_help() or 1)


def run_status(args):
    import dataclasses
    import json

    from edge_sdk.deploy import fleet
    from edge_sdk.deploy.cli_args import flash_options, select_devices

    devices = select_devices(args)
    rows = fleet.status(devices, flash_options(args))
    seen = None
    if args.mqtt:
        from edge_sdk.deploy.mqtt_status import read_retained_status

        seen = read_retained_status(args.mqtt, args.mqtt_prefix, [d.device_id or d.name for d in devices])
        by_id = {d.device_id or d.name: d.name for d in devices}
        seen = {by_id[k]: v for k, v in seen.items() if k in by_id}
    if args.json:
        out = [dataclasses.asdict(r) for r in rows]
        if seen is not None:
            for item in out:
                item["mqtt_status"] = seen.get(item["device"])
        print(json.dumps(out, indent=2))
    else:
        print(fleet.format_status(rows, seen))
    return 0 if all(r.reachable for r in rows) else 1
