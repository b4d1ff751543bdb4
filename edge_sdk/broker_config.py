"""Mosquitto configuration for a fleet: listeners, TLS, per-device passwords, an ACL, persistence.

It reads the same fleet file as `edge-sdk flash` (docs/flash.md): each ``[devices.NAME]`` is a broker user
(its ``device_id``, else NAME) that may write only under ``{mqtt_prefix}/{id}/#``; ``[subscribers.NAME]``
tables are read-only users; ``[broker]`` holds the listener and TLS settings (see docs/mqtt.md)::

    [defaults]
    mqtt_prefix = "edge-sdk"
    [broker]
    port = 8883
    cafile = "certs/ca.crt"        # TLS; paths relative to the fleet file
    certfile = "certs/server.crt"
    keyfile = "certs/server.key"
    [devices.cam-01]
    host = "10.0.0.21"             # flash's; broker-config ignores it
    [subscribers.dashboard]        # read-only; topics = [...] narrows it

The generated config refuses anonymous clients, binds each client id to its user name (a device cannot
disconnect another by reusing its client id), keeps sessions and queued messages across broker restarts
(``persistence``), and refuses a clear-text password listener outside localhost unless told ``insecure``.
The older ``[[devices]] id = ...`` form is still read, with a deprecation warning.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.ids import check_device_id
from edge_sdk.runtime.mqtt import DEFAULT_PREFIX

MOSQUITTO_PASSWD = "mosquitto_passwd"
MOSQUITTO_USER = "mosquitto"  # the user Mosquitto drops to when started as root (its `user` default)
#: messages the broker queues per offline persistent subscriber (Mosquitto's default is 1000: 40 s of one
#: 25 fps camera)
DEFAULT_MAX_QUEUED = 100000


@dataclass
class Client:
    """One broker user: a device (writes its own topics) or a subscriber (reads)."""

    name: str
    role: str  # "device" | "subscriber"
    topics: list[str]
    password_file: Path | None = None
    password: str | None = None  # the deprecated form only (a clear password in the fleet file)


@dataclass
class FleetBroker:
    """What a fleet file asks of the broker."""

    fleet_file: Path
    broker: dict[str, Any]
    clients: list[Client]
    warnings: list[str] = field(default_factory=list)


@dataclass
class BrokerConfig:
    """What :func:`write_broker_config` wrote."""

    out_dir: Path
    conf: Path
    password_file: Path
    acl_file: Path
    credentials: dict[str, Path] = field(default_factory=dict)  # user -> file holding its password (0600)
    hashed_with: str = ""
    persistence_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)  # to show the user (insecure listener, deprecated form)


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("fleet file {} not found".format(path)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("fleet file {} is not valid TOML: {}".format(path, exc)) from None


def hash_password(password: str, iterations: int = 101, salt: bytes | None = None) -> str:
    """Mosquitto 2.x password hash (``$7$``: PBKDF2-SHA512), as ``mosquitto_passwd`` writes it."""
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return "$7${}${}${}".format(iterations, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def write_password_file(path: Path, users: dict[str, str], use_mosquitto_passwd: bool | None = None) -> str:
    """Write hashed ``user:hash`` lines; with ``mosquitto_passwd -U`` when installed. Returns the tool used."""
    tool = shutil.which(MOSQUITTO_PASSWD) or ("/usr/bin/mosquitto_passwd"
                                              if os.path.exists("/usr/bin/mosquitto_passwd") else None)
    if use_mosquitto_passwd is None:
        use_mosquitto_passwd = tool is not None
    if use_mosquitto_passwd and not tool:
        raise ConfigError("mosquitto_passwd not found: install the mosquitto package (apt-get install mosquitto)")
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for user, password in users.items():
            f.write("{}:{}\n".format(user, password if use_mosquitto_passwd else hash_password(password)))
    if use_mosquitto_passwd:  # -U hashes the clear passwords in place (never on a command line)
        proc = subprocess.run([tool, "-U", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            path.unlink()
            raise ConfigError("mosquitto_passwd -U failed: {}".format((proc.stderr or proc.stdout).strip()))
        return "mosquitto_passwd"
    return "python-pbkdf2"


# ------------------------------------------------------------------------------------------ checks


def _no_control(value: Any, what: str, where: Path) -> str:
    """A value written into mosquitto.conf, the ACL or the password file: one line, nothing it could add."""
    if not isinstance(value, str) or not value or any(ord(c) < 0x20 or ord(c) == 0x7f for c in value):
        # the value is not shown: it may be a password
        raise ConfigError("{}: {} must be a non-empty string without control characters (newline, tab...)"
                          .format(where, what))
    return value


def check_topic_filter(topic: Any, where: Path) -> str:
    """An ACL topic filter: printable, bounded, wildcards only as whole levels ('+', a final '#')."""
    _no_control(topic, "topic", where)
    levels = topic.split("/")
    if len(topic) > 256 or " " in topic or any(
            ("+" in level and level != "+") or ("#" in level and (level != "#" or i != len(levels) - 1))
            for i, level in enumerate(levels)):
        raise ConfigError("{}: topic {!r} is not a valid MQTT topic filter ('+' and '#' only as whole levels, '#' "
                          "last, no spaces, at most 256 characters)".format(where, topic))
    return topic


def _check_names(clients: list[Client], where: Path) -> None:
    names: dict[str, str] = {}
    for client in clients:
        try:
            check_device_id(client.name, "{} name".format(client.role))
        except ConfigError as exc:
            raise ConfigError("{}: {}".format(where, exc)) from None
        if client.name in names:
            raise ConfigError("{}: {!r} is listed twice (as {} and {}); names must be unique".format(
                where, client.name, names[client.name], client.role))
        names[client.name] = client.role
        for topic in client.topics:
            check_topic_filter(topic, where)
        if client.password is not None:
            _no_control(client.password, "password of {}".format(client.name), where)


# ----------------------------------------------------------------------------------- fleet file forms


def read_fleet_broker(fleet_file: str | Path) -> FleetBroker:
    """The broker's users and settings from a fleet file (the flash inventory form, or the deprecated
    ``[[devices]]`` form)."""
    fleet_file = Path(fleet_file)
    data = _load_toml(fleet_file)
    if isinstance(data.get("devices"), list):
        plan = _read_deprecated_form(fleet_file, data)
    else:
        plan = _read_inventory_form(fleet_file)
    if not any(c.role == "device" for c in plan.clients):
        raise ConfigError("{}: no devices; add a [devices.NAME] table per device".format(fleet_file))
    _check_names(plan.clients, fleet_file)
    return plan


def _subscriber(name: str, table: dict, default_topics: list[str], base: Path, where: Path) -> Client:
    unknown = sorted(set(table) - {"topics", "password_file"})
    if unknown:
        raise ConfigError("{}: [subscribers.{}] unknown key {!r}; known: topics, password_file".format(
            where, name, unknown[0]))
    topics = table.get("topics", default_topics)
    if not isinstance(topics, list) or not topics:
        raise ConfigError("{}: [subscribers.{}] topics must be a list of topic filters, e.g. [\"edge-sdk/#\"]"
                          .format(where, name))
    password_file = table.get("password_file")
    if password_file is not None:
        password_file = base / _no_control(password_file, "password_file", where)
    return Client(name, "subscriber", list(topics), password_file=password_file)


def _read_inventory_form(fleet_file: Path) -> FleetBroker:
    from edge_sdk.deploy.inventory import check_mqtt_prefix, fleet_devices, read_fleet_file

    fleet = read_fleet_file(fleet_file)
    devices = fleet_devices(fleet, require_host=False)  # flash needs hosts; the broker does not
    base = fleet_file.resolve().parent
    clients = []
    for device in devices:
        check_mqtt_prefix(device.mqtt_prefix, "{} [devices.{}] mqtt_prefix".format(fleet_file, device.name))
        clients.append(Client(device.mqtt_id, "device", ["{}/{}/#".format(device.mqtt_prefix, device.mqtt_id)],
                              password_file=Path(device.mqtt_password_file) if device.mqtt_password_file else None))
    prefixes = sorted({device.mqtt_prefix for device in devices})
    default_topics = ["{}/#".format(prefix) for prefix in prefixes]
    for name, table in fleet.subscribers.items():
        clients.append(_subscriber(name, table, default_topics, base, fleet_file))
    return FleetBroker(fleet_file, fleet.broker, clients)


def _read_deprecated_form(fleet_file: Path, data: dict) -> FleetBroker:
    """``prefix = ...``, ``[[devices]] id = ...``, ``[[subscribers]] name = ...`` (before one fleet file served
    both `flash` and `broker-config`)."""
    from edge_sdk.deploy.inventory import check_mqtt_prefix

    unknown = sorted(set(data) - {"prefix", "broker", "devices", "subscribers"})
    if unknown:
        raise ConfigError("{}: unknown key {!r} in the [[devices]] form; known: prefix, [broker], [[devices]], "
                          "[[subscribers]]".format(fleet_file, unknown[0]))
    prefix = check_mqtt_prefix(str(data.get("prefix", DEFAULT_PREFIX)).strip("/"), "{}: prefix".format(fleet_file))
    broker = data.get("broker", {})
    if not isinstance(broker, dict):
        raise ConfigError("{}: [broker] must be a table".format(fleet_file))
    base = fleet_file.resolve().parent
    clients = []
    for key, id_key, role in (("devices", "id", "device"), ("subscribers", "name", "subscriber")):
        entries = data.get(key, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError("{}: `{}` must be an array of tables ([[{}]])".format(fleet_file, key, key))
        for i, entry in enumerate(entries):
            if not entry.get(id_key):
                raise ConfigError("{}: [[{}]] entry {} has no `{}`".format(fleet_file, key, i + 1, id_key))
            name = entry[id_key]
            topics = (["{}/{}/#".format(prefix, name)] if role == "device"
                      else entry.get("topics", ["{}/#".format(prefix)]))
            if not isinstance(topics, list):
                raise ConfigError("{}: [[subscribers]] {!r} topics must be a list".format(fleet_file, name))
            password_file = entry.get("password_file")
            clients.append(Client(name if isinstance(name, str) else repr(name), role, topics,
                                  password_file=base / _no_control(password_file, "password_file", fleet_file)
                                  if password_file is not None else None,
                                  password=entry.get("password")))
    warning = ("{} uses the deprecated [[devices]] form; move to the fleet file `edge-sdk flash` reads "
               "([devices.NAME] tables, [subscribers.NAME], [defaults] mqtt_prefix; docs/mqtt.md)".format(fleet_file))
    return FleetBroker(fleet_file, broker, clients, warnings=[warning])


def _password_for(client: Client) -> str:
    if client.password_file is not None:
        path = client.password_file.expanduser()
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("cannot read password_file {}: {}".format(path, exc)) from None
        if not lines or not lines[0]:
            raise ConfigError("password_file {} is empty; put the password on its first line".format(path))
        return lines[0]
    return client.password or secrets.token_urlsafe(18)


# ------------------------------------------------------------------------------------------ writing


def _is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def listener_lines(broker: dict, fleet_file: Path, insecure: bool, warnings: list[str]) -> list[str]:
    """The listener, with TLS when certificates are given; a clear-text password listener only on
    localhost, or anywhere with ``insecure`` (and a warning either way)."""
    tls = bool(broker.get("certfile"))
    port = broker.get("port", 8883 if tls else 1883)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError("{}: [broker] port must be an integer 1-65535, not {!r}".format(fleet_file, port))
    bind = _no_control(broker.get("bind", "0.0.0.0" if tls else "127.0.0.1"), "[broker] bind", fleet_file)
    if " " in bind:
        raise ConfigError("{}: [broker] bind {!r} must be one address".format(fleet_file, bind))
    lines = ["listener {} {}".format(port, bind), "use_username_as_clientid true"]
    if not tls:
        if _is_loopback(bind):
            warnings.append("NO TLS: passwords cross in clear text, so the listener is bound to {} only (clients on "
                            "this host); add cafile/certfile/keyfile to [broker] to serve devices".format(bind))
        elif not insecure:
            raise ConfigError("{}: refusing a password listener on {}:{} without TLS: device passwords would cross "
                              "the network in clear text. Add cafile/certfile/keyfile to [broker] (docs/mqtt.md), "
                              "bind = \"127.0.0.1\" for local clients only, or pass --insecure".format(
                                  fleet_file, bind, port))
        else:
            warnings.append("INSECURE (--insecure): passwords cross the network in clear text on {}:{}; anyone "
                            "on the path can read them and publish as your devices".format(bind, port))
        return lines
    return lines + tls_lines(broker, fleet_file)


def tls_lines(broker: dict, fleet_file: Path) -> list[str]:
    """The listener's TLS settings: the three files must exist (paths relative to the fleet file)."""
    base = fleet_file.resolve().parent
    lines = []
    for key in ("cafile", "certfile", "keyfile"):
        if not broker.get(key):
            raise ConfigError("{}: [broker] has certfile but no {}; TLS needs cafile, certfile and keyfile"
                              .format(fleet_file, key))
        path = (base / _no_control(broker[key], "[broker] " + key, fleet_file)).resolve()
        if not path.is_file():
            raise ConfigError("{}: [broker] {} = {!r}: no such file ({})".format(fleet_file, key, broker[key], path))
        lines.append("{} {}".format(key, _no_control(str(path), key, fleet_file)))
    lines.append("tls_version tlsv1.2")
    if broker.get("require_certificate"):
        lines.append("require_certificate true")
        if broker.get("use_identity_as_username"):
            lines.append("use_identity_as_username true")
    return lines


def _acl_text(plan: FleetBroker) -> str:
    acl = ["# generated by `edge-sdk broker-config` from {}".format(plan.fleet_file.name),
           "# devices write only under their own <prefix>/<id>/#; subscribers only read", ""]
    for client in plan.clients:
        acl.append("user {}".format(client.name))
        mode = "write" if client.role == "device" else "read"
        acl += ["topic {} {}".format(mode, topic) for topic in client.topics]
        acl.append("")
    return "\n".join(acl)


def _conf_text(plan: FleetBroker, install: Path, persistence: str, insecure: bool, warnings: list[str]) -> str:
    broker = plan.broker
    max_queued = broker.get("max_queued_messages", DEFAULT_MAX_QUEUED)
    if not isinstance(max_queued, int) or isinstance(max_queued, bool) or max_queued < 1:
        raise ConfigError("{}: [broker] max_queued_messages must be a positive integer".format(plan.fleet_file))
    conf = ["# generated by `edge-sdk broker-config` from {}".format(plan.fleet_file.name),
            "per_listener_settings false",
            "allow_anonymous false",
            "password_file {}".format(install / "passwd"),
            "acl_file {}".format(install / "acl"),
            "",
            "# the delivery guarantee (docs/mqtt.md): sessions and queued QoS 1 messages survive a broker restart",
            "persistence true",
            "persistence_location {}/".format(persistence.rstrip("/")),
            "autosave_interval 60",
            "# persistent subscriber sessions (clean_session false): queue this many messages each while away,",
            "# and forget a session nobody resumed for a week",
            "max_queued_messages {}".format(max_queued),
            "persistent_client_expiration 7d",
            "# QoS 1 messages in flight to one client: the default 20 starves a recorder taking a fleet's stream",
            "# (docs/ingest.md: a 3000-message burst into one worker lost 35 % at the defaults, none at 1000)",
            "max_inflight_messages 1000",
            "",
            "# client id := user name, so no client can take over (disconnect) another's session"]
    conf += listener_lines(broker, plan.fleet_file, insecure, warnings)
    if broker.get("plain_port"):
        conf += ["", "# plain MQTT on loopback only (local tools)",
                 "listener {} 127.0.0.1".format(int(broker["plain_port"])), "use_username_as_clientid true"]
    for line in conf:
        _no_control(line or " ", "mosquitto.conf line", plan.fleet_file)
    return "\n".join(conf) + "\n"


def grant_broker_access(out: Path, readable: list[Path], writable: Path) -> list[str]:
    """Let the user Mosquitto runs as read ``readable`` and write ``writable``; returns warnings.

    Started as root, Mosquitto drops to the ``mosquitto`` user before it opens the password file: the files
    stay root-owned and get that user's group, mode 0640 (never world-readable). Started by anyone else it
    runs as that user, who already owns them."""
    if os.geteuid() != 0:
        return []
    import pwd

    try:
        user = pwd.getpwnam(MOSQUITTO_USER)
    except KeyError:
        return ["there is no '{}' user here: Mosquitto started as root then runs as 'nobody' and cannot read {}; "
                "add a `user NAME` line to mosquitto.conf for a user that may read it".format(MOSQUITTO_USER,
                                                                                         readable[0])]
    for path in readable:
        os.chown(path, 0, user.pw_gid)
        os.chmod(path, 0o640)
    os.chown(writable, user.pw_uid, user.pw_gid)
    os.chmod(writable, 0o700)
    blocked = [d for d in [out.resolve(), *out.resolve().parents] if not os.stat(d).st_mode & 0o001
               and os.stat(d).st_gid != user.pw_gid]
    if blocked:
        return ["{} (mode {:o}) keeps the '{}' user out, so `mosquitto -c {}` started as root cannot open the "
                "password file; write the config under a traversable directory (e.g. -o /etc/mosquitto/edge-sdk) "
                "or chmod o+x {}".format(blocked[-1], os.stat(blocked[-1]).st_mode & 0o777, MOSQUITTO_USER,
                                         out / "mosquitto.conf", blocked[-1])]
    return []


def write_broker_config(fleet_file: str | Path, out_dir: str | Path, install_dir: str | Path | None = None,
                        use_mosquitto_passwd: bool | None = None, insecure: bool = False) -> BrokerConfig:
    """Read the fleet file and write ``mosquitto.conf``, ``passwd``, ``acl``, ``persistence/`` and
    ``credentials/`` into ``out_dir``.

    ``install_dir``: where the files will live on the broker host (paths inside mosquitto.conf); default
    ``out_dir``. ``credentials/NAME.password`` holds each client's clear password (mode 0600) to provision
    the device with (``--mqtt-password-file``); keep it off the broker host. ``insecure``: allow a
    clear-text password listener outside localhost.
    """
    plan = read_fleet_broker(fleet_file)
    warnings = list(plan.warnings)
    out = Path(out_dir)
    install = Path(install_dir) if install_dir else out.resolve()
    _no_control(str(install), "--install-dir", plan.fleet_file)
    persistence = str(plan.broker.get("persistence_location") or install / "persistence")
    conf_text = _conf_text(plan, install, persistence, insecure, warnings)  # every refusal before any write

    out.mkdir(parents=True, exist_ok=True)
    creds_dir = out / "credentials"
    creds_dir.mkdir(exist_ok=True)
    os.chmod(creds_dir, 0o700)
    persistence_dir = out / "persistence"
    persistence_dir.mkdir(exist_ok=True)
    users: dict[str, str] = {}
    credentials: dict[str, Path] = {}
    for client in plan.clients:
        users[client.name] = _password_for(client)
        cred = creds_dir / (client.name + ".password")
        fd = os.open(str(cred), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(users[client.name] + "\n")
        credentials[client.name] = cred
    password_file = out / "passwd"
    tool = write_password_file(password_file, users, use_mosquitto_passwd)
    acl_file = out / "acl"
    fd = os.open(str(acl_file), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_acl_text(plan))
    conf_file = out / "mosquitto.conf"
    conf_file.write_text(conf_text)
    warnings += grant_broker_access(out, [password_file, acl_file], persistence_dir)
    return BrokerConfig(out, conf_file, password_file, acl_file, credentials, tool, persistence_dir, warnings)
