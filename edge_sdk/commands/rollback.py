"""`edge-sdk rollback --device ...`: go back to the previous healthy version on devices."""

from edge_sdk.deploy.cli_args import add_device_selection


def register(subparsers):
    p = subparsers.add_parser("rollback", help="switch devices back to their previous version",
                              description="Switch `current` back to the previous healthy version kept on each "
                                          "device (or --to VERSION), restart the runtime and wait for health.")
    add_device_selection(p)
    p.add_argument("--to", metavar="VERSION", help="a specific version kept on the device (see `devices status`)")
    p.add_argument("--health-timeout", type=float, help="seconds to wait for the health signal (default 90)")
    p.set_defaults(func=run_rollback)


def run_rollback(args):
    from edge_sdk.deploy import fleet
    from edge_sdk.deploy.cli_args import flash_options, select_devices
    from edge_sdk.deploy.progress import ConsoleReporter, format_table

    devices = select_devices(args, {"health_timeout": args.health_timeout})
    results = fleet.rollback(devices, flash_options(args), ConsoleReporter(), to=args.to)
    print(format_table(results))
    return 0 if all(r.ok for r in results) else 1
