"""Mosquitto configuration for a fleet: listeners, TLS, per-device passwords and an ACL.

``fleet.toml`` (see docs/mqtt.md)::

    prefix = "edge-sdk"
    [broker]
    port = 8883
    cafile = "certs/ca.crt"        # TLS; paths relative to fleet.toml
    certfile = "certs/server.crt"
    keyfile = "certs/server.key"
    require_certificate = false    # true: clients must also show a certificate signed by cafile
    [[devices]]
    id = "cam-01"                  # password generated unless password / password_file is given
    [[subscribers]]
    name = "dashboard"             # read-only

The ACL lets each device *write* only under ``{prefix}/{id}/#`` and subscribers only *read*
(``{prefix}/#`` unless ``topics`` is given); anonymous clients are refused.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.mqtt import DEFAULT_PREFIX, check_device_id

MOSQUITTO_PASSWD = "mosquitto_passwd"


@dataclass
class BrokerConfig:
    """What :func:`write_broker_config` wrote."""

    out_dir: Path
    conf: Path
    password_file: Path
    acl_file: Path
    credentials: dict[str, Path] = field(default_factory=dict)  # user -> file holding its password (0600)
    hashed_with: str = ""


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
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("fleet file {} is not valid TOML: {}".format(path, exc)) from exc


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


def _entries(fleet: dict, key: str, id_key: str, path: Path) -> list[dict]:
    items = fleet.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError("{}: `{}` must be an array of tables ([[{}]])".format(path, key, key))
    for i, item in enumerate(items):
        if not item.get(id_key):
            raise ConfigError("{}: [[{}]] entry {} has no `{}`".format(path, key, i + 1, id_key))
    return items


def _password_for(entry: dict, base: Path) -> str:
    if entry.get("password_file"):
        p = (base / entry["password_file"]).expanduser()
        try:
            return p.read_text().splitlines()[0]
        except (OSError, IndexError) as exc:
            raise ConfigError("cannot read password_file {}: {}".format(p, exc)) from exc
    return entry.get("password") or secrets.token_urlsafe(18)


def write_broker_config(fleet_file: str | Path, out_dir: str | Path, install_dir: str | Path | None = None,
                        use_mosquitto_passwd: bool | None = None) -> BrokerConfig:
    """Read ``fleet.toml`` and write ``mosquitto.conf``, ``passwd``, ``acl`` and ``credentials/`` into ``out_dir``.

    ``install_dir``: where the files will live on the broker host (paths inside mosquitto.conf); default
    ``out_dir``. ``credentials/NAME.password`` holds each client's clear password (mode 0600) to provision
    the device with (``--mqtt-password-file``); keep it off the broker host.
    """
    fleet_file = Path(fleet_file)
    fleet = _load_toml(fleet_file)
    base = fleet_file.resolve().parent
    prefix = str(fleet.get("prefix", DEFAULT_PREFIX)).strip("/")
    if not prefix or any(c in prefix for c in "+#"):
        raise ConfigError("{}: prefix {!r} must be a topic without wildcards".format(fleet_file, prefix))
    broker = fleet.get("broker", {})
    devices = _entries(fleet, "devices", "id", fleet_file)
    subscribers = _entries(fleet, "subscribers", "name", fleet_file)
    if not devices:
        raise ConfigError("{}: no [[devices]]; add one table per device with its `id`".format(fleet_file))
    names: dict[str, str] = {}
    for kind, entries, key in (("device", devices, "id"), ("subscriber", subscribers, "name")):
        for e in entries:
            name = str(e[key])
            try:
                check_device_id(name)
            except ConfigError as exc:
                raise ConfigError("{}: {} {}".format(fleet_file, kind, exc)) from exc
            if name in names:
                raise ConfigError("{}: {!r} is listed twice (as {} and {}); names must be unique".format(
                    fleet_file, name, names[name], kind))
            names[name] = kind

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    creds_dir = out / "credentials"
    creds_dir.mkdir(exist_ok=True)
    os.chmod(creds_dir, 0o700)
    install = Path(install_dir) if install_dir else out.resolve()

    users: dict[str, str] = {}
    credentials: dict[str, Path] = {}
    for e in devices + subscribers:
        name = str(e.get("id") or e.get("name"))
        users[name] = _password_for(e, base)
        cred = creds_dir / (name + ".password")
        fd = os.open(str(cred), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(users[name] + "\n")
        credentials[name] = cred
    password_file = out / "passwd"
    tool = write_password_file(password_file, users, use_mosquitto_passwd)

    acl = ["# generated by `edge-sdk broker-config` from {}".format(fleet_file.name),
           "# devices write only under their own {}/<id>/#; subscribers only read".format(prefix), ""]
    for e in devices:
        acl += ["user {}".format(e["id"]), "topic write {}/{}/#".format(prefix, e["id"]), ""]
    for e in subscribers:
        acl.append("user {}".format(e["name"]))
        for topic in e.get("topics", ["{}/#".format(prefix)]):
            acl.append("topic read {}".format(topic))
        acl.append("")
    acl_file = out / "acl"
    acl_file.write_text("\n".join(acl))

    port = int(broker.get("port", 8883 if broker.get("certfile") else 1883))
    conf = ["# generated by `edge-sdk broker-config` from {}".format(fleet_file.name),
            "per_listener_settings false",
            "allow_anonymous false",
            "password_file {}".format(install / "passwd"),
            "acl_file {}".format(install / "acl"),
            "",
            "listener {} {}".format(port, broker.get("bind", "0.0.0.0")).rstrip()]
    if broker.get("certfile"):
        for key in ("cafile", "certfile", "keyfile"):
            if not broker.get(key):
                raise ConfigError("{}: [broker] has certfile but no {}; TLS needs cafile, certfile and keyfile"
                                  .format(fleet_file, key))
            path = (base / broker[key]).resolve()
            if not path.is_file():
                raise ConfigError("{}: [broker] {} = {!r}: no such file ({})".format(fleet_file, key, broker[key],
                                                                                     path))
            conf.append("{} {}".format(key, path))
        conf.append("tls_version tlsv1.2")
        if broker.get("require_certificate"):
            conf.append("require_certificate true")
            if broker.get("use_identity_as_username"):
                conf.append("use_identity_as_username true")
    if broker.get("plain_port"):
        conf += ["", "# plain MQTT on loopback only (local tools)",
                 "listener {} 127.0.0.1".format(int(broker["plain_port"]))]
    if broker.get("persistence_location"):
        conf += ["", "persistence true", "persistence_location {}/".format(broker["persistence_location"])]
    conf_file = out / "mosquitto.conf"
    conf_file.write_text("\n".join(conf) + "\n")
    return BrokerConfig(out, conf_file, password_file, acl_file, credentials, tool)
