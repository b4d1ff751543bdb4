"""SSH to devices with asyncssh: key auth only, host keys checked against known_hosts, agent calls, uploads.

Why asyncssh (not the system `ssh`, not paramiko): one asyncio event loop drives a whole fleet in parallel
with a bound (no process per device), SFTP uploads report progress per device, and failures arrive as typed
exceptions (host key not trusted, auth refused, connection lost) we can turn into clear messages. It reads
~/.ssh/config, ~/.ssh/known_hosts, ~/.ssh/id_* and ssh-agent like OpenSSH does.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_sdk.deploy.inventory import Device
from edge_sdk.errors import EdgeSdkError

AGENT_SOURCE = (Path(__file__).parent / "agent.py").read_text()
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


class DeviceError(EdgeSdkError):
    """Something went wrong with one device; ``kind`` says what (unreachable, host-key, auth, lost, agent...)."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


@dataclass
class SshOptions:
    known_hosts: str = DEFAULT_KNOWN_HOSTS
    trust_on_first_use: bool = False
    connect_timeout: float = 15.0


def _known_hosts_entry(host: str, port: int) -> str:
    return host if port == 22 else "[{}]:{}".format(host, port)


def _make_client(known, tofu: bool):
    """asyncssh client callbacks: accept an unknown host key only under trust-on-first-use."""
    import asyncssh

    class Client(asyncssh.SSHClient):
        def __init__(self):
            self.new_key = None

        def validate_host_public_key(self, host, addr, port, key):
            # Called only for a key that is not in known_hosts. Any key on record for this host
            # (by name or address) means the key changed: refuse even with trust-on-first-use.
            if not tofu or known.match(host, addr, port)[0]:
                return False
            self.new_key = key
            return True

    return Client()


_known_hosts_lock: asyncio.Lock | None = None


async def connect(device: Device, options: SshOptions):
    """An authenticated asyncssh connection, or DeviceError saying exactly what stopped us."""
    import asyncssh

    global _known_hosts_lock
    kh_path = Path(os.path.expanduser(options.known_hosts))
    known = asyncssh.read_known_hosts(str(kh_path)) if kh_path.is_file() else asyncssh.import_known_hosts("")
    client = None

    def factory():
        nonlocal client
        client = _make_client(known, options.trust_on_first_use)
        return client

    kwargs = dict(port=device.port, known_hosts=known, preferred_auth="publickey", password=None,
                  kbdint_auth=False, connect_timeout=options.connect_timeout, client_factory=factory,
                  keepalive_interval=15, keepalive_count_max=3)
    if device.user:
        kwargs["username"] = device.user
    if device.identity:
        key = Path(os.path.expanduser(device.identity))
        if not key.is_file():
            raise DeviceError("identity file {} not found (device {})".format(key, device.name), "auth")
        kwargs["client_keys"] = [str(key)]
    where = "{} ({})".format(device.name, device.address)
    entry = _known_hosts_entry(device.host, device.port)
    try:
        conn = await asyncssh.connect(device.host, **kwargs)
    except asyncssh.HostKeyNotVerifiable as exc:
        if known.match(device.host, device.host, device.port)[0]:
            raise DeviceError(
                "HOST KEY MISMATCH for {}: the key it presented differs from the one in {} -- the device was "
                "re-installed, or someone is intercepting the connection. Refusing to connect. If you re-installed "
                "it, remove the old key with `ssh-keygen -R '{}' -f {}` and connect again.".format(
                    where, kh_path, entry, kh_path), "host-key") from None
        raise DeviceError(
            "host key of {} is unknown (not in {}): {}. Check its fingerprint and add it "
            "(`ssh-keyscan -p {} {} >> {}`) or pass --trust-on-first-use to record it on first connection.".format(
                where, kh_path, exc.reason, device.port, device.host, kh_path), "host-key") from None
    except asyncssh.PermissionDenied:
        raise DeviceError(
            "{} refused our SSH key(s) for user {!r}: install your public key there (`ssh-copy-id -p {} {}`) or set "
            "identity = \"~/.ssh/KEY\" for it (edge-sdk never uses passwords)".format(
                where, device.user or os.environ.get("USER", "?"), device.port, device.address), "auth") from None
    except (OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
        raise DeviceError("{} is unreachable: {}".format(where, _why(exc)), "unreachable") from None
    if client is not None and client.new_key is not None:
        if _known_hosts_lock is None:
            _known_hosts_lock = asyncio.Lock()
        async with _known_hosts_lock:
            kh_path.parent.mkdir(parents=True, exist_ok=True)
            line = "{} {}".format(entry, client.new_key.export_public_key("openssh").decode().strip())
            with open(kh_path, "a") as f:
                f.write(line + "\n")
        conn.trusted_new_key = client.new_key.get_fingerprint()
    else:
        conn.trusted_new_key = None
    return conn


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "connection timed out"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is sshd running and the port right?)"
    return text


def agent_command(device: Device, argv: list[str]) -> str:
    """The remote command: the device's python reads the agent from stdin (nothing is left behind)."""
    cmd = ([ "sudo", "-n"] if device.sudo else []) + [device.python, "-", "--root", device.root,
                                                      "--sysroot", device.sysroot] + argv
    return " ".join(shlex.quote(c) for c in cmd)


async def run_agent(conn, device: Device, argv: list[str], on_event: Callable[[dict], None] | None = None) -> dict:
    """Run one agent command; stream its step events to ``on_event``; return its result object."""
    import asyncssh

    command = agent_command(device, argv)
    try:
        proc = await conn.create_process(command, encoding="utf-8")
        proc.stdin.write(AGENT_SOURCE)
        proc.stdin.write_eof()
        result = None
        other = []
        async for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                other.append(line.rstrip())
                continue
            if event.get("event") == "result":
                result = event
            elif on_event is not None:
                on_event(event)
        stderr = await proc.stderr.read()
        completed = await proc.wait()
    except (asyncssh.Error, OSError, asyncio.IncompleteReadError) as exc:
        after = (" -- the device goes on alone: it finishes the switch and its health check, or rolls back; see "
                 "`edge-sdk devices status`" if argv[0] in ("install", "rollback") else "")
        raise DeviceError("{}: connection lost while running the agent ({}): {}{}".format(
            device.name, argv[0], _why(exc), after), "lost") from None
    if result is None:
        text = (stderr or "") + "\n".join(other)
        if completed.exit_status == 127 or "not found" in text and device.python in text:
            hint = "{!r} was not found on the device; set python = \"/usr/bin/python3\" for it".format(device.python)
        elif "sudo" in text and "password" in text:
            hint = ("sudo asks for a password; allow passwordless sudo for the agent (docs/flash.md) -- edge-sdk "
                    "never sends passwords")
        else:
            hint = text.strip()[-800:] or "no output"
        raise DeviceError("{}: the agent failed ({}, exit status {}): {}".format(
            device.name, argv[0], completed.exit_status, hint), "agent")
    return result
