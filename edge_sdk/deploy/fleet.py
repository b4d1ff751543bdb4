"""Flash, inspect and roll back many devices in parallel (bounded); one device's failure never stops another.

Per device, `flash` is: connect (host key checked) -> `agent prepare` (old version; a wrong target is
refused and an already-running version skipped before any upload; disk space, on-device deps; which of
the release's files its content-addressed store already has) -> upload only the missing files (one SFTP
session; a dropped link is retried with backoff and resumes the cut file, edge_sdk.deploy.delta) ->
`agent install` (verify, signature, switch `current`, restart, wait for health, roll back if it does not come).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_sdk.deploy import delta
from edge_sdk.deploy.inventory import Device
from edge_sdk.deploy.progress import DeviceResult, Reporter, Stopwatch
from edge_sdk.deploy.release import Release
from edge_sdk.deploy.ssh import DeviceError, SshOptions, connect, run_agent

DEFAULT_HEALTH_TIMEOUT = 90.0
ENGINE_BUILD_HEALTH_TIMEOUT = 900.0  # TensorRT builds the engine at first start: minutes on a Nano


@dataclass
class FlashOptions:
    parallel: int = 4
    ssh: SshOptions = field(default_factory=SshOptions)
    health_timeout: float | None = None  # None: 90 s, or 900 s when the device must build the engine first
    probation: float = 0.0  # seconds a new version is watched before it is committed (0: commit when healthy)
    min_fps: float = 0.0  # fps floor during the probation
    lock_timeout: float = 30.0  # seconds the agent waits for the runtime's update lock before stopping it
    upload_retries: int = 3  # reconnections after the link drops before the install starts (Mender: 10)
    retry_backoff: float = 2.0  # seconds before the first retry, doubled for each next one
    force: bool = False
    skip_target_check: bool = False


def _health_timeout(device: Device, release: Release | None, options: FlashOptions) -> float:
    if device.health_timeout is not None:
        return float(device.health_timeout)
    if options.health_timeout is not None:
        return float(options.health_timeout)
    if release is not None and release.builds_engine_on_device:
        return ENGINE_BUILD_HEALTH_TIMEOUT
    return DEFAULT_HEALTH_TIMEOUT


async def _bounded(devices, parallel, work):
    sem = asyncio.Semaphore(max(1, parallel))

    async def one(device):
        async with sem:
            return await work(device)

    return await asyncio.gather(*(one(d) for d in devices))


def _run(coro):
    """asyncio.run, without "Task exception was never retrieved" noise from SFTP requests still in flight
    when a device's connection dropped: that device's failure is already in its result row."""

    async def main():
        loop = asyncio.get_running_loop()

        def handler(loop, context):
            exc = context.get("exception")
            if isinstance(exc, (OSError, EOFError)) or type(exc).__module__.startswith("asyncssh"):
                return
            loop.default_exception_handler(context)

        loop.set_exception_handler(handler)
        return await coro

    return asyncio.run(main())


def _failure(device: Device, exc: DeviceError, watch: Stopwatch, old=None, new=None) -> DeviceResult:
    status = {"unreachable": "unreachable", "host-key": "refused", "auth": "refused"}.get(exc.kind, "failed")
    return DeviceResult(device.name, device.address, status, old, new, str(exc), watch.seconds, exc.kind)


async def _prepare_and_upload(device: Device, release: Release, options: FlashOptions, reporter: Reporter,
                              files: delta.ReleaseFiles):
    """Connect, run `agent prepare`, upload the files the device's store lacks. Returns (conn, prep) with the
    connection open for the install, or (None, DeviceResult) when the device answered without needing one."""
    name = device.name
    reporter.stage(name, "connecting")
    conn = await connect(device, options.ssh)
    try:
        if conn.trusted_new_key:
            reporter.stage(name, "trusted new host key", conn.trusted_new_key)
        reporter.stage(name, "preparing")
        blobs = files.blobs
        argv = ["prepare", "--version=" + release.version, "--need-bytes={}".format(3 * release.upload_bytes),
                "--python=" + device.python, "--deps=" + device.deps, "--target=" + release.target,
                "--target-hints=" + _hints_json(release), "--blobs=" + json.dumps([[b.sha256, b.size] for b in blobs])]
        argv += ["--force"] if options.force else []
        argv += ["--skip-target-check"] if options.skip_target_check else []
        prep = await run_agent(conn, device, argv)
        if prep.get("status") in ("refused", "unchanged") or not prep.get("ok"):
            conn.close()
            return None, prep
        have, partial = set(prep.get("have") or []), dict(prep.get("partial") or {})
        missing = [b for b in blobs if b.sha256 not in have]
        total = sum(b.size - partial.get(b.sha256, 0) for b in missing)
        reporter.stage(name, "uploading", "{} of {} file(s) to send, {:.1f} MB ({} already on the device)".format(
            len(missing), len(blobs), total / 1e6, len(blobs) - len(missing)))
        sent = await delta.upload_missing(conn, prep["store_dir"], missing, have, partial,
                                          lambda done: reporter.transfer(name, done, total),
                                          lambda text: reporter.stage(name, "uploading", text))
        reporter.stage(name, "uploaded", "{} bytes sent".format(sent))
        return conn, prep
    except BaseException:
        conn.close()
        raise


async def flash_device(device: Device, release: Release, options: FlashOptions, reporter: Reporter) -> DeviceResult:
    """prepare + upload (retried with backoff when the link drops: each retry resumes the cut file), then the
    install on the device."""
    watch = Stopwatch()
    name = device.name
    old = None
    files = delta.release_files(release)
    first_loss: DeviceError | None = None
    for attempt in range(options.upload_retries + 1):
        if attempt:
            delay = options.retry_backoff * 2 ** (attempt - 1)
            reporter.stage(name, "retrying", "attempt {} of {} in {:.1f}s".format(
                attempt + 1, options.upload_retries + 1, delay))
            await asyncio.sleep(delay)
        try:
            conn, prep = await _prepare_and_upload(device, release, options, reporter, files)
            break
        except DeviceError as exc:
            if exc.kind not in ("lost", "unreachable") or (first_loss is None and exc.kind == "unreachable"):
                return _failure(device, exc, watch, old, release.version)
            first_loss = first_loss or exc
    else:
        return _failure(device, DeviceError("{}: {}; gave up after {} retr{}".format(
            name, first_loss, options.upload_retries, "y" if options.upload_retries == 1 else "ies"), "lost"),
            watch, old, release.version)
    old = prep.get("current")
    if conn is None:
        if prep.get("status") in ("refused", "unchanged"):
            message = prep.get("error") or "already runs this version (--force to reinstall)"
            return DeviceResult(name, device.address, prep["status"], old, release.version, message,
                                watch.seconds, prep.get("code", ""))
        return DeviceResult(name, device.address, "failed", old, release.version, prep.get("error", ""),
                            watch.seconds, prep.get("code", "prepare"))
    reporter.stage(name, "prepared", "{} -> {}".format(old or "(none)", release.version))
    reporter.stage(name, "deps", prep.get("deps", ""))
    try:
        argv = install_argv(device, release, options, files)

        def on_event(event):
            reporter.stage(name, event.get("step", "?"), event.get("message", ""))

        result = await run_agent(conn, device, argv, on_event)
    except DeviceError as exc:
        return _failure(device, exc, watch, old, release.version)
    finally:
        conn.close()
    status = result.get("status") or ("updated" if result.get("ok") else "failed")
    if not result.get("ok") and result.get("code") in ("wrong-target", "corrupt", "refused", "signature"):
        status = "refused"
    message = result.get("message", "") if result.get("ok") else result.get("error", "")
    return DeviceResult(name, device.address, status, old, release.version, message, watch.seconds,
                        result.get("code", ""))

def install_argv(device: Device, release: Release, options: FlashOptions, files) -> list[str]:
    """The agent's `install` command line for one device."""
    # --opt=value: values such as run_args start with "--"
    argv = ["install", "--version=" + release.version, "--store-plan=" + json.dumps(files.plan()),
            "--runtime-version=" + release.runtime_version, "--target-hints=" + _hints_json(release),
            "--service=" + device.service, "--service-name=" + device.service_name,
            "--systemctl=" + device.systemctl, "--python=" + device.python, "--run-args=" + device.run_args,
            "--health-timeout={}".format(_health_timeout(device, release, options)),
            "--keep={}".format(device.keep), "--lock-timeout={}".format(options.lock_timeout)]
    if device.service_command:
        argv.append("--service-command=" + device.service_command)
    if device.device_id:
        argv.append("--device-id=" + device.device_id)
    if device.health_mqtt:
        argv += ["--health-mqtt=" + device.health_mqtt, "--mqtt-prefix=" + device.mqtt_prefix]
    if options.force:
        argv.append("--force")
    if options.skip_target_check:
        argv.append("--skip-target-check")
    argv += signature_policy_args(device)
    if options.probation > 0:
        argv += ["--probation={}".format(options.probation), "--min-fps={}".format(options.min_fps)]
    return argv


def signature_policy_args(device: Device) -> list[str]:
    """The agent's --keyring (the fleet's trusted public keys, revoked ids) and --allow-unsigned for a device.
    Key files are read here, on the host; the device keeps what it is given in its own keyring."""
    from edge_sdk.signing import key_id_or_file, load_public_key

    keys = [base64.b64encode(load_public_key(os.path.expanduser(p))).decode("ascii") for p in device.trusted_keys]
    revoked = [key_id_or_file(os.path.expanduser(k)) for k in device.revoked_keys]
    argv = ["--keyring=" + json.dumps({"keys": keys, "revoked": revoked})] if keys or revoked else []
    return argv + (["--allow-unsigned"] if device.allow_unsigned else [])


def _hints_json(release: Release) -> str:
    import json

    return json.dumps(release.target_hints or {})


async def _guarded(device: Device, reporter: Reporter, work) -> DeviceResult:
    """Run one device's work; whatever goes wrong there ends up in its result row, never in the others."""
    watch = Stopwatch()
    try:
        result = await work(device)
    except DeviceError as exc:
        result = _failure(device, exc, watch)
    except Exception as exc:  # a bug or an unexpected library error: report it on this device only
        result = DeviceResult(device.name, device.address, "failed", message="{}: {}".format(
            type(exc).__name__, exc), seconds=watch.seconds, kind="internal")
    reporter.finish(result)
    return result


def flash(devices: list[Device], release: Release, options: FlashOptions | None = None,
          reporter: Reporter | None = None) -> list[DeviceResult]:
    """Flash `release` to every device (at most ``options.parallel`` at a time); one result per device."""
    options = options or FlashOptions()
    reporter = reporter or Reporter()
    for device in devices:  # a missing or bad key file is one clear error before any device is touched
        signature_policy_args(device)
    reporter.start([d.name for d in devices])
    try:
        results = _run(_bounded(devices, options.parallel, lambda d: _guarded(
            d, reporter, lambda dev: flash_device(dev, release, options, reporter))))
    finally:
        reporter.close()
    update_last_seen({r.address: r.new_version if r.ok else r.old_version for r in results
                      if r.kind not in ("unreachable", "host-key", "auth")})
    return results


@dataclass
class DeviceStatus:
    device: str
    address: str
    reachable: bool
    version: str | None = None
    target: str | None = None
    precision: str | None = None
    running: bool = False
    health: str = "-"
    model: str | None = None
    error: str = ""
    versions: list[str] = field(default_factory=list)
    last_seen: dict | None = None  # {"ts", "version"} of the last time this host reached it
    probation: str = ""  # "" when the version is committed


def _health_text(info: dict) -> str:
    health = info.get("health")
    if not isinstance(health, dict):
        return "no health file"
    age = info.get("now", 0) - (health.get("ts") or 0)
    frames = health.get("frames")
    text = "{} {:.0f}s ago".format(health.get("status", "?"), max(age, 0))
    if frames is not None:
        text += ", {} frames".format(frames)
    if age > 10:
        text += " (STALE)"
    return text


async def status_device(device: Device, options: FlashOptions) -> DeviceStatus:
    try:
        conn = await connect(device, options.ssh)
    except DeviceError as exc:
        return DeviceStatus(device.name, device.address, False, error=str(exc))
    try:
        info = await run_agent(conn, device, ["info"])
    except DeviceError as exc:
        return DeviceStatus(device.name, device.address, False, error=str(exc))
    finally:
        conn.close()
    release = info.get("release") or {}
    return DeviceStatus(device.name, device.address, True, info.get("current"), release.get("target"),
                        release.get("precision"), bool(info.get("running")), _health_text(info),
                        (info.get("device") or {}).get("model"), versions=info.get("versions", []),
                        probation=_probation_text(info))


def _probation_text(info: dict) -> str:
    watch = info.get("probation")
    if not isinstance(watch, dict):
        return ""
    left = (watch.get("until") or 0) - info.get("now", 0)
    if not watch.get("agent_alive"):
        return "probation of {} interrupted (not committed; `edge-sdk rollback` or flash again)".format(
            watch.get("version"))
    return "probation: {:.0f}s left".format(max(left, 0))


def status(devices: list[Device], options: FlashOptions | None = None) -> list[DeviceStatus]:
    """Version, runtime state and health of every device, read over SSH (remembered for `last seen`)."""
    options = options or FlashOptions()
    rows = _run(_bounded(devices, options.parallel, lambda d: status_device(d, options)))
    seen = update_last_seen({r.address: r.version for r in rows if r.reachable})
    for r in rows:
        r.last_seen = seen.get(r.address)
    return rows


def state_file() -> Path:
    """Where the host remembers when it last reached each device ($EDGE_SDK_STATE_DIR or ~/.local/state)."""
    base = os.environ.get("EDGE_SDK_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "edge-sdk")
    return Path(base) / "last_seen.json"


def update_last_seen(reached: dict[str, str | None]) -> dict[str, dict]:
    """Record the devices reached now; return what is known about every device (address -> ts, version)."""
    path = state_file()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    now = time.time()
    for address, version in reached.items():
        known[address] = {"ts": now, "version": version}
    if reached:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp{}".format(os.getpid()))
            tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home must not break `devices status`
    return known


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return "{:.0f}{} ago".format(seconds / size, unit)
    return "{:.0f}s ago".format(seconds)


def format_status(rows: list[DeviceStatus], mqtt_seen: dict | None = None) -> str:
    header = ["DEVICE", "ADDRESS", "VERSION", "TARGET", "RUNTIME", "HEALTH", "LAST SEEN"]
    if mqtt_seen is not None:
        header.append("MQTT STATUS")
    table = []
    now = time.strftime("%H:%M:%S")
    for r in rows:
        if not r.reachable:
            seen = "never"
            if r.last_seen:
                seen = "{} (ran {})".format(_ago(time.time() - r.last_seen["ts"]), r.last_seen.get("version") or "-")
            row = [r.device, r.address, "?", "?", "?", "unreachable", seen]
        else:
            health = r.health + (" | " + r.probation.upper() if r.probation else "")
            row = [r.device, r.address, r.version or "(none)", "{}/{}".format(r.target or "-", r.precision or "-"),
                   "running" if r.running else "stopped", health, "now ({})".format(now)]
        if mqtt_seen is not None:
            row.append(mqtt_seen.get(r.device, "-"))
        table.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header] + table]
    for r in rows:
        if r.error:
            lines.append("{}: {}".format(r.device, r.error))
    return "\n".join(lines)


async def rollback_device(device: Device, options: FlashOptions, reporter: Reporter, to: str | None) -> DeviceResult:
    watch = Stopwatch()
    try:
        reporter.stage(device.name, "connecting")
        conn = await connect(device, options.ssh)
    except DeviceError as exc:
        return _failure(device, exc, watch)
    try:
        argv = ["rollback", "--health-timeout", str(_health_timeout(device, None, options))]
        if to:
            argv.append("--to=" + to)
        result = await run_agent(conn, device, argv,
                                 lambda e: reporter.stage(device.name, e.get("step", "?"), e.get("message", "")))
    except DeviceError as exc:
        return _failure(device, exc, watch)
    finally:
        conn.close()
    status = "updated" if result.get("ok") else "failed"
    message = "rolled back, healthy" if result.get("ok") else result.get("error", "")
    return DeviceResult(device.name, device.address, status, result.get("previous"), result.get("version"),
                        message, watch.seconds, result.get("code", ""))


def rollback(devices: list[Device], options: FlashOptions | None = None, reporter: Reporter | None = None,
             to: str | None = None) -> list[DeviceResult]:
    """Switch each device back to its previous healthy version (or ``to``), restart, wait for health."""
    options = options or FlashOptions()
    reporter = reporter or Reporter()
    for device in devices:  # a missing or bad key file is one clear error before any device is touched
        signature_policy_args(device)
    reporter.start([d.name for d in devices])
    try:
        return _run(_bounded(devices, options.parallel, lambda d: _guarded(
            d, reporter, lambda dev: rollback_device(dev, options, reporter, to))))
    finally:
        reporter.close()
