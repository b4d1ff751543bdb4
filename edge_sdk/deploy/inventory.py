"""Which devices to talk to and how: an inventory TOML with groups, or ``user@host[:port]`` on the command line.

Settings resolve as: built-in defaults < ``[defaults]`` < each group the device is in < ``[devices.NAME]``
< flags given on the command line.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from edge_sdk.errors import ConfigError, nearest_names


@dataclass
class Device:
    """One device and everything needed to reach it and run the runtime on it."""

    name: str
    host: str
    port: int = 22
    user: str | None = None
    identity: str | None = None  # private key file; default: ssh-agent + ~/.ssh/id_*
    root: str = "/opt/edge-sdk"  # install root on the device
    sysroot: str = "/"  # where the agent looks for /etc/nv_tegra_release and /proc/device-tree (tests fake it)
    python: str = "python3"
    sudo: bool = False  # run the agent with `sudo -n` (passwordless sudo for the SSH user; never a password)
    service: str = "systemd"  # "systemd" or "process" (--no-service: background process + pid file)
    service_name: str = "edge-sdk"
    systemctl: str = "systemctl"  # path of systemctl on the device
    service_command: str | None = None  # template; default runs `python -m edge_sdk run ...`
    run_args: str = ""  # extra `edge-sdk run` arguments (source, MQTT broker, ...)
    device_id: str | None = None  # MQTT device id; None: the device's hostname
    health_timeout: float | None = None
    health_mqtt: str | None = None  # also require the runtime's retained status "online" on this broker
    mqtt_prefix: str = "edge-sdk"
    keep: int = 3
    deps: str = "install"  # install | check | skip (on-device dependencies)
    groups: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        user = self.user + "@" if self.user else ""
        return "{}{}{}".format(user, self.host, "" if self.port == 22 else ":{}".format(self.port))


SETTINGS = {f.name for f in dataclasses.fields(Device)} - {"name", "groups"}
_SPEC = re.compile(r"^(?:(?P<user>[^@]+)@)?(?:\[(?P<host6>[^\]]+)\]|(?P<host>[^:@]+))(?::(?P<port>\d+))?$")


def parse_device_spec(spec: str, **settings) -> Device:
    """``[user@]host[:port]`` (IPv6 in brackets) -> Device named after the host."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise ConfigError("--device {!r}: expected [user@]host[:port], e.g. nvidia@10.0.0.21".format(spec))
    host = match.group("host6") or match.group("host")
    values = {"host": host, "user": match.group("user")}
    if match.group("port"):
        values["port"] = int(match.group("port"))
    values.update({k: v for k, v in settings.items() if v is not None})
    return _make(host if not match.group("port") else "{}:{}".format(host, match.group("port")), values, spec)


def _make(name: str, values: dict, where: str) -> Device:
    unknown = sorted(set(values) - SETTINGS - {"groups"})
    if unknown:
        raise ConfigError("{}: unknown setting {!r}; known: {}".format(
            where, unknown[0], ", ".join(nearest_names(unknown[0], sorted(SETTINGS), 5))))
    if not values.get("host"):
        raise ConfigError("{}: device {!r} has no host; add host = \"10.0.0.21\"".format(where, name))
    if values.get("service", "systemd") not in ("systemd", "process"):
        raise ConfigError("{}: service must be \"systemd\" or \"process\", not {!r}".format(where, values["service"]))
    try:
        return Device(name=name, **values)
    except TypeError as exc:
        raise ConfigError("{}: {}".format(where, exc)) from None


def load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise ConfigError("inventory {} not found; see docs/flash.md for the format".format(path))
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("inventory {} is not valid TOML: {}".format(path, exc)) from None


def load_inventory(path: Path, groups: list[str] | None = None, names: list[str] | None = None,
                   overrides: dict | None = None) -> list[Device]:
    """Devices of an inventory file, optionally only those in ``groups`` or named in ``names``.

    Format::

        [defaults]              # any device setting
        user = "nvidia"
        [groups.lobby]          # devices = members; other keys are settings for the members
        devices = ["cam-01", "cam-02"]
        run_args = "--source /dev/video0"
        [devices.cam-01]
        host = "10.0.0.21"
    """
    data = load_toml(path)
    where = str(path)
    unknown_tables = sorted(set(data) - {"defaults", "groups", "devices"})
    if unknown_tables:
        raise ConfigError("{}: unknown table [{}]; an inventory has [defaults], [groups.NAME] and "
                          "[devices.NAME]".format(where, unknown_tables[0]))
    defaults = dict(data.get("defaults", {}))
    group_tables = data.get("groups", {})
    device_tables = data.get("devices", {})
    if not device_tables:
        raise ConfigError("{}: no [devices.NAME] tables; add at least one device".format(where))
    member_of: dict[str, list[str]] = {name: [] for name in device_tables}
    for gname, gtable in group_tables.items():
        for member in gtable.get("devices", []):
            if member not in device_tables:
                raise ConfigError("{}: group {!r} lists unknown device {!r}; known: {}".format(
                    where, gname, member, ", ".join(nearest_names(member, list(device_tables), 5))))
            member_of[member].append(gname)
    for gname in groups or []:
        if gname not in group_tables:
            raise ConfigError("{}: unknown group {!r}; known: {}".format(
                where, gname, ", ".join(nearest_names(gname, list(group_tables), 5)) or "none"))
    for name in names or []:
        if name not in device_tables:
            raise ConfigError("{}: unknown device {!r}; known: {}".format(
                where, name, ", ".join(nearest_names(name, list(device_tables), 5))))
    devices = []
    for name, table in device_tables.items():
        if groups and not set(groups) & set(member_of[name]) and name not in (names or []):
            continue
        if names and not groups and name not in names:
            continue
        values = dict(defaults)
        for gname in member_of[name]:
            values.update({k: v for k, v in group_tables[gname].items() if k != "devices"})
        values.update(table)
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        values["groups"] = member_of[name]
        identity = values.get("identity")
        if identity and not identity.startswith(("~", "/")):  # relative to the inventory file, like its keys
            values["identity"] = str(Path(path).resolve().parent / identity)
        devices.append(_make(name, values, "{} [devices.{}]".format(where, name)))
    if not devices:
        raise ConfigError("{}: no device matches the selection (groups {}, devices {})".format(
            where, groups or "-", names or "-"))
    return devices
