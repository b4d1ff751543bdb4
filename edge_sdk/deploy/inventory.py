"""Which devices to talk to and how: a fleet file (TOML) with groups, or ``user@host[:port]`` on the command line.

Settings resolve as: built-in defaults < ``[defaults]`` < each group the device is in < ``[devices.NAME]``
< flags given on the command line. The same file feeds `edge-sdk flash` (the device tables) and
`edge-sdk broker-config` (device ids and prefixes, plus its own ``[broker]`` and ``[subscribers.NAME]``
tables, which flash ignores); see docs/flash.md and docs/mqtt.md.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk.errors import ConfigError, nearest_names
from edge_sdk.runtime.ids import check_device_id, is_device_id


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
    mqtt_password_file: str | None = None  # broker-config: this device's broker password (else one is generated)
    trusted_keys: list[str] = field(default_factory=list)  # .pub files of keys whose signed bundles it installs
    revoked_keys: list[str] = field(default_factory=list)  # key ids (or .pub files) refused for good
    allow_unsigned: bool = False  # accept bundles without manifest.sig (signatures are required by default)
    groups: list[str] = field(default_factory=list)

    @property
    def mqtt_id(self) -> str:
        """The id the device publishes under (topics, broker user): ``device_id``, else its inventory name."""
        return self.device_id or self.name

    @property
    def address(self) -> str:
        user = self.user + "@" if self.user else ""
        return "{}{}{}".format(user, self.host, "" if self.port == 22 else ":{}".format(self.port))


SETTINGS = {f.name for f in dataclasses.fields(Device)} - {"name", "groups"}
#: the type each setting must have in TOML (int settings also take no bool; float ones take an int too)
SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "port": (int,), "keep": (int,), "sudo": (bool,), "health_timeout": (int, float), "allow_unsigned": (bool,),
    "trusted_keys": (list,), "revoked_keys": (list,),
}
FLEET_TABLES = ("defaults", "groups", "devices", "broker", "subscribers")
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


def check_mqtt_prefix(prefix, what: str = "MQTT prefix") -> str:
    """A topic prefix: levels of the device id alphabet joined by '/' (no wildcards, spaces or control chars)."""
    if not isinstance(prefix, str) or not prefix or not all(is_device_id(level) for level in prefix.split("/")):
        raise ConfigError("{} {!r} is not usable: use levels of 1-64 letters, digits, '_', '.', '-' joined by '/', "
                          "e.g. edge-sdk or site-a/edge-sdk".format(what, prefix))
    return prefix


def _check_setting(key: str, value: Any, where: str) -> None:
    """A setting of the type it needs, and no control characters in text (a newline in ``run_args`` would
    end up in a systemd unit, one in ``device_id`` in an ACL)."""
    kinds = SETTING_TYPES.get(key, (str,))
    if value is None and key not in SETTING_TYPES:
        return
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ConfigError("{}: `{}` must be {}, not {!r}".format(
            where, key, " or ".join({"str": "a string", "int": "an integer", "bool": "true or false",
                                     "float": "a number", "list": "a list"}[k.__name__] for k in kinds), value))
    if isinstance(value, list):
        if len(value) > 64 or not all(isinstance(v, str) and v for v in value):
            raise ConfigError("{}: `{}` must be a list of at most 64 non-empty strings, not {!r}".format(
                where, key, value))
        if any(ord(c) < 0x20 or ord(c) == 0x7f for item in value for c in item):
            raise ConfigError("{}: `{}` contains a control character (newline, tab...); remove it".format(where, key))
        return
    bad = [i for i, c in enumerate(value) if ord(c) < 0x20 or ord(c) == 0x7f] if isinstance(value, str) else []
    if bad:  # the value itself is not shown: run_args may hold a camera password
        raise ConfigError("{}: `{}` contains a control character (newline, tab...) at position {}; remove it"
                          .format(where, key, bad[0]))


def _make(name: str, values: dict, where: str, require_host: bool = True) -> Device:
    unknown = sorted(set(values) - SETTINGS - {"groups"})
    if unknown:
        raise ConfigError("{}: unknown setting {!r}; known: {}".format(
            where, unknown[0], ", ".join(nearest_names(unknown[0], sorted(SETTINGS), 5))))
    for key, value in values.items():
        if key != "groups":
            _check_setting(key, value, where)
    if require_host and not values.get("host"):
        raise ConfigError("{}: device {!r} has no host; add host = \"10.0.0.21\"".format(where, name))
    values.setdefault("host", "")
    if values.get("service", "systemd") not in ("systemd", "process"):
        raise ConfigError("{}: service must be \"systemd\" or \"process\", not {!r}".format(where, values["service"]))
    if values.get("device_id") is not None:
        check_device_id(values["device_id"], "{}: device_id".format(where))
    return Device(name=name, **values)


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
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("inventory {} is not valid TOML: {}".format(path, exc)) from None


@dataclass
class FleetFile:
    """The tables of a fleet file, each checked for its shape (a table of tables where one is expected)."""

    path: Path
    defaults: dict
    groups: dict[str, dict]
    devices: dict[str, dict]
    broker: dict
    subscribers: dict[str, dict]

    @property
    def where(self) -> str:
        return str(self.path)


def _table(data: dict, key: str, where: str, example: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError("{}: `{}` must be a table ({}), not {!r}".format(where, key, example, value))
    return value


def _tables_of_tables(data: dict, key: str, where: str) -> dict[str, dict]:
    tables = _table(data, key, where, "[{}.NAME] tables".format(key))
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError("{}: `{}.{}` must be a table ([{}.{}]), not {!r}".format(where, key, name, key, name,
                                                                                      table))
    return tables


def read_fleet_file(path: str | Path) -> FleetFile:
    """Step 1: the fleet file's tables, each of the right shape; unknown tables are errors."""
    path = Path(path)
    data = load_toml(path)
    where = str(path)
    unknown_tables = sorted(set(data) - set(FLEET_TABLES))
    if unknown_tables:
        raise ConfigError("{}: unknown table [{}]; a fleet file has [defaults], [groups.NAME], [devices.NAME], "
                          "[broker] and [subscribers.NAME]".format(where, unknown_tables[0]))
    fleet = FleetFile(path=path, defaults=_table(data, "defaults", where, "[defaults]"),
                      groups=_tables_of_tables(data, "groups", where),
                      devices=_tables_of_tables(data, "devices", where),
                      broker=_table(data, "broker", where, "[broker]"),
                      subscribers=_tables_of_tables(data, "subscribers", where))
    if not fleet.devices:
        raise ConfigError("{}: no [devices.NAME] tables; add at least one device".format(where))
    return fleet


def group_membership(fleet: FleetFile) -> dict[str, list[str]]:
    """Step 2: device name -> the groups it is in; every member must be a known device."""
    member_of: dict[str, list[str]] = {name: [] for name in fleet.devices}
    for gname, gtable in fleet.groups.items():
        members = gtable.get("devices", [])
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ConfigError("{}: [groups.{}] devices must be a list of device names, e.g. devices = [\"cam-01\"], "
                              "not {!r}".format(fleet.where, gname, members))
        for member in members:
            if member not in fleet.devices:
                raise ConfigError("{}: group {!r} lists unknown device {!r}; known: {}".format(
                    fleet.where, gname, member, ", ".join(nearest_names(member, list(fleet.devices), 5))))
            member_of[member].append(gname)
    return member_of


def check_selection(fleet: FleetFile, groups: list[str] | None, names: list[str] | None) -> None:
    """Step 3: every group and device asked for exists."""
    for gname in groups or []:
        if gname not in fleet.groups:
            raise ConfigError("{}: unknown group {!r}; known: {}".format(
                fleet.where, gname, ", ".join(nearest_names(gname, list(fleet.groups), 5)) or "none"))
    for name in names or []:
        if name not in fleet.devices:
            raise ConfigError("{}: unknown device {!r}; known: {}".format(
                fleet.where, name, ", ".join(nearest_names(name, list(fleet.devices), 5))))


def is_selected(name: str, member_of: dict[str, list[str]], groups: list[str] | None,
                names: list[str] | None) -> bool:
    if groups and not set(groups) & set(member_of[name]) and name not in (names or []):
        return False
    return not (names and not groups and name not in names)


def resolve_settings(fleet: FleetFile, name: str, member_of: dict[str, list[str]],
                     overrides: dict | None = None) -> dict:
    """Step 4: one device's settings: defaults < its groups < its table < command-line overrides; relative
    file paths (``identity``, ``mqtt_password_file``) are relative to the fleet file."""
    values = dict(fleet.defaults)
    for gname in member_of[name]:
        values.update({k: v for k, v in fleet.groups[gname].items() if k != "devices"})
    values.update(fleet.devices[name])
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    values["groups"] = member_of[name]
    for key in ("identity", "mqtt_password_file"):
        value = values.get(key)
        if isinstance(value, str) and value and not value.startswith(("~", "/")):
            values[key] = str(fleet.path.resolve().parent / value)
    for key in ("trusted_keys", "revoked_keys"):  # key files, relative to the fleet file (ids stay ids)
        if isinstance(values.get(key), list):
            values[key] = [v if not isinstance(v, str) or v.startswith(("~", "/")) or (
                len(v) == 16 and all(c in "0123456789abcdef" for c in v)) else str(fleet.path.resolve().parent / v)
                for v in values[key]]
    return values


def fleet_devices(fleet: FleetFile, groups: list[str] | None = None, names: list[str] | None = None,
                  overrides: dict | None = None, require_host: bool = True) -> list[Device]:
    """The selected devices of a fleet file, settings resolved and checked (step 5)."""
    member_of = group_membership(fleet)
    check_selection(fleet, groups, names)
    devices = [_make(name, resolve_settings(fleet, name, member_of, overrides),
                     "{} [devices.{}]".format(fleet.where, name), require_host)
               for name in fleet.devices if is_selected(name, member_of, groups, names)]
    if not devices:
        raise ConfigError("{}: no device matches the selection (groups {}, devices {})".format(
            fleet.where, groups or "-", names or "-"))
    return devices


def load_inventory(path: Path, groups: list[str] | None = None, names: list[str] | None = None,
                   overrides: dict | None = None) -> list[Device]:
    """Devices of a fleet file, optionally only those in ``groups`` or named in ``names``.

    Format::

        [defaults]              # any device setting
        user = "nvidia"
        [groups.lobby]          # devices = members; other keys are settings for the members
        devices = ["cam-01", "cam-02"]
        run_args = "--source /dev/video0"
        [devices.cam-01]
        host = "10.0.0.21"
    """
    return fleet_devices(read_fleet_file(path), groups, names, overrides)
