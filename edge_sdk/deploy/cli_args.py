"""Command-line options shared by `edge-sdk flash`, `edge-sdk devices` and `edge-sdk rollback`."""

from __future__ import annotations

import argparse

from edge_sdk.errors import ConfigError


def add_device_selection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("devices")
    group.add_argument("--device", action="append", default=[], metavar="[USER@]HOST[:PORT]",
                       help="a device to work on (repeatable); or a device name from --inventory")
    group.add_argument("--inventory", metavar="TOML", help="inventory file with [devices.NAME] and [groups.NAME]")
    group.add_argument("--group", action="append", default=[], help="only the devices of this inventory group "
                       "(repeatable)")
    group.add_argument("--parallel", type=int, default=8, help="devices worked on at the same time (default 8)")
    ssh = parser.add_argument_group("ssh (key authentication only; host keys checked against known_hosts)")
    ssh.add_argument("--known-hosts", default="~/.ssh/known_hosts", help="known_hosts file (default %(default)s)")
    ssh.add_argument("--trust-on-first-use", action="store_true",
                     help="accept and record the host key of a device not yet in known_hosts (a CHANGED key is "
                          "still refused)")
    ssh.add_argument("--connect-timeout", type=float, default=15.0, help="seconds (default %(default)s)")
    ssh.add_argument("--user", help="SSH user (default: from the inventory, ~/.ssh/config, or yours)")
    ssh.add_argument("--identity", help="private key file (default: ssh-agent and ~/.ssh/id_*)")
    dev = parser.add_argument_group("device layout")
    dev.add_argument("--root", help="install root on the device (default /opt/edge-sdk)")
    dev.add_argument("--sysroot", help=argparse.SUPPRESS)  # where the agent reads /etc and /proc (tests)
    dev.add_argument("--python", help="python on the device (default python3)")
    dev.add_argument("--sudo", action="store_true", default=None,
                     help="run the device agent with `sudo -n` (needs passwordless sudo; see docs/flash.md)")


def overrides_from(args: argparse.Namespace, extra: dict | None = None) -> dict:
    values = {k: getattr(args, k, None) for k in ("user", "identity", "root", "sysroot", "python", "sudo")}
    values.update(extra or {})
    return {k: v for k, v in values.items() if v is not None}


def select_devices(args: argparse.Namespace, extra: dict | None = None, id_from: str | None = None):
    """Devices named by --device / --inventory / --group, with command-line settings on top."""
    from edge_sdk.deploy.inventory import load_inventory, parse_device_spec

    overrides = overrides_from(args, extra)
    if args.inventory:
        devices = load_inventory(args.inventory, groups=args.group, names=args.device, overrides=overrides)
        if id_from == "hostname":
            for d in devices:
                d.device_id = None
        elif id_from == "name" or id_from is None:
            for d in devices:
                d.device_id = d.device_id or d.name
    else:
        if args.group:
            raise ConfigError("--group needs --inventory")
        if not args.device:
            raise ConfigError("name at least one device: --device nvidia@10.0.0.21 (repeatable) or --inventory "
                              "fleet.toml")
        devices = [parse_device_spec(spec, **overrides) for spec in args.device]
        if id_from == "name":
            for d in devices:
                d.device_id = d.device_id or d.host
    for d in devices:
        check_device_ids(d)
    names = [d.name for d in devices]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError("device {!r} is named twice".format(duplicates[0]))
    if args.parallel < 1:
        raise ConfigError("--parallel must be at least 1")
    return devices


def check_device_ids(device) -> None:
    """The ids a device's name ends up in on the device and the broker: its MQTT id (topics, ACL, the runtime's
    --device-id) and its systemd unit name; one rule (edge_sdk.runtime.ids), checked before any connection."""
    from edge_sdk.deploy.inventory import check_mqtt_prefix
    from edge_sdk.runtime.ids import check_device_id

    if device.device_id is not None:
        try:
            check_device_id(device.device_id)
        except ConfigError as exc:
            raise ConfigError("device {}: {}; set device_id in the inventory or use --device-id-from hostname"
                              .format(device.name, exc)) from None
    check_device_id(device.service_name, "device {}: service_name".format(device.name))
    check_mqtt_prefix(device.mqtt_prefix, "device {}: mqtt_prefix".format(device.name))


def flash_options(args: argparse.Namespace, **kwargs):
    from edge_sdk.deploy.fleet import FlashOptions
    from edge_sdk.deploy.ssh import SshOptions

    ssh = SshOptions(known_hosts=args.known_hosts, trust_on_first_use=args.trust_on_first_use,
                     connect_timeout=args.connect_timeout)
    return FlashOptions(parallel=args.parallel, ssh=ssh, **kwargs)
