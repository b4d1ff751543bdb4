"""`edge-sdk flash BUNDLE --device ... | --inventory ...`: put the runtime and a bundle on devices, safely."""

from edge_sdk.deploy.cli_args import add_device_selection


def register(subparsers):
    p = subparsers.add_parser(
        "flash", help="install the runtime + a bundle on devices over SSH (A/B, health check, rollback)",
        description="Upload the edge-sdk runtime and a bundle to each device, verify every file, switch the "
                    "`current` version atomically, restart the runtime and wait for its health signal; a device "
                    "that does not become healthy is rolled back. See docs/flash.md.")
    p.add_argument("bundle", help="bundle directory (with manifest.json) or its .tar.gz")
    add_device_selection(p)
    run = p.add_argument_group("runtime on the device")
    run.add_argument("--runtime-wheel", help="edge-sdk wheel to install (default: build one from this source tree "
                     "with `pip wheel --no-deps`)")
    run.add_argument("--version-label", help="name of this version on the device (default RUNTIME-HASH8)")
    run.add_argument("--no-service", action="store_true",
                     help="no systemd: run the runtime as a background process with a pid file")
    run.add_argument("--service-name", help="systemd unit name (default edge-sdk)")
    run.add_argument("--service-command", help="command template that starts the runtime (default: python -m "
                     "edge_sdk run --bundle {bundle} --health-file {health_file} --device-id {device_id} "
                     "{run_args})")
    run.add_argument("--run-args", help="extra `edge-sdk run` arguments, e.g. \"--source /dev/video0 --mqtt "
                     "mqtt://broker:1883\"")
    run.add_argument("--device-id-from", choices=("name", "hostname"),
                     help="MQTT device id: the inventory name (default with --inventory) or the device's hostname "
                          "(default with --device)")
    run.add_argument("--health-timeout", type=float,
                     help="seconds to wait for the health signal before rolling back (default 90; 900 when the "
                          "device must build the TensorRT engine first)")
    run.add_argument("--health-mqtt", metavar="URL",
                     help="also require the runtime's retained MQTT status 'online' on this broker (as the "
                          "device reaches it: mqtt://host:1883 or mqtts://host:8883)")
    run.add_argument("--mqtt-prefix", help="MQTT topic prefix of the runtime (default edge-sdk)")
    run.add_argument("--keep", type=int, help="versions kept on each device (default 3)")
    run.add_argument("--deps", choices=("install", "check", "skip"),
                     help="on-device dependencies (numpy, OpenCV, paho-mqtt): install the missing ones "
                          "(default), only check, or skip")
    run.add_argument("--force", action="store_true", help="reinstall even if the device already runs this version")
    run.add_argument("--probation", metavar="DURATION", help="watch the new version this long (90s, 10m, 1h) "
                     "before committing it: it must keep running, infer, stay connected to MQTT (when it uses it) and "
                     "above --min-fps, else it is rolled back")
    run.add_argument("--min-fps", type=float, default=0.0, help="fps floor during --probation (default none)")
    run.add_argument("--lock-timeout", type=float, default=30.0, metavar="S",
                     help="seconds to wait for the runtime's update lock (held while it writes its spill queue) "
                          "before stopping it (default %(default)s)")
    run.add_argument("--retries", type=int, default=3, help="reconnections when the link drops during the upload; "
                     "each resumes the cut file (default %(default)s)")
    run.add_argument("--retry-backoff", type=float, default=2.0, metavar="S",
                     help="seconds before the first retry, doubled for each next one (default %(default)s)")
    run.add_argument("--skip-target-check", action="store_true",
                     help="flash even if the bundle's target does not match the device (you know better)")
    waves = p.add_argument_group("staged rollout (see docs/flash.md)")
    waves.add_argument("--waves", metavar="LIST", help="flash in waves, each a count or a percentage of the devices "
                       "still to do, e.g. 1,10%%,50%%,100%%")
    waves.add_argument("--max-failures", metavar="N|P%", help="abort when a wave's failures pass this (a count, or a "
                       "percentage of the wave): no further device is started and the rest keep their version")
    waves.add_argument("--first-wave", metavar="GROUP", help="an inventory group (e.g. canary) that goes first")
    waves.add_argument("--resume", action="store_true", help="continue an aborted rollout of this version: devices "
                       "already updated are skipped")
    waves.add_argument("--state", metavar="FILE", help="rollout state file (default $EDGE_SDK_STATE_DIR or "
                       "~/.local/state/edge-sdk/rollouts/VERSION.json)")
    sig = p.add_argument_group("signatures (required by default; see docs/flash.md)")
    sig.add_argument("--trusted-key", action="append", metavar="PUB",
                     help="public key file whose signed bundles the devices install (repeatable; default: the fleet "
                          "file's trusted_keys)")
    sig.add_argument("--revoke-key", action="append", metavar="ID|PUB",
                     help="key id or public key file the devices refuse from now on, for good (repeatable)")
    sig.add_argument("--allow-unsigned", action="store_true", default=None,
                     help="let the devices install a bundle without manifest.sig")
    p.set_defaults(func=run_flash)


def run_flash(args):
    import sys
    import tempfile

    from edge_sdk.deploy import delta, fleet
    from edge_sdk.deploy.cli_args import flash_options, select_devices
    from edge_sdk.deploy.progress import ConsoleReporter, format_table
    from edge_sdk.deploy.release import describe, prepare_release
    from edge_sdk.errors import ConfigError

    if args.probation:
        parse_duration(args.probation)
    if not 0 <= args.min_fps <= 10000 or not 0 <= args.lock_timeout <= 3600:
        raise ConfigError("--min-fps must be 0..10000 and --lock-timeout 0..3600 seconds")
    if not 0 <= args.retries <= 20 or not 0 <= args.retry_backoff <= 600:
        raise ConfigError("--retries must be 0..20 and --retry-backoff 0..600 seconds")
    if args.keep is not None and args.keep < 1:
        raise ConfigError("--keep must be at least 1 (the running version is always kept)")
    extra = {"service": "process" if args.no_service else None, "service_name": args.service_name,
             "service_command": args.service_command, "run_args": args.run_args, "keep": args.keep,
             "deps": args.deps, "health_timeout": args.health_timeout, "health_mqtt": args.health_mqtt,
             "mqtt_prefix": args.mqtt_prefix, "trusted_keys": args.trusted_key, "revoked_keys": args.revoke_key,
             "allow_unsigned": args.allow_unsigned}
    devices = select_devices(args, extra, id_from=args.device_id_from)
    from edge_sdk.deploy import rollout

    staged = bool(args.waves or args.first_wave or args.resume or args.max_failures)
    waves = rollout.parse_waves(args.waves or "100%")
    max_failures = rollout.parse_amount(args.max_failures, "--max-failures", allow_zero=True) \
        if args.max_failures else None
    with tempfile.TemporaryDirectory(prefix="edge-sdk-flash-") as work:
        print("checking bundle {} ...".format(args.bundle), file=sys.stderr)
        release = prepare_release(args.bundle, work, runtime_wheel=args.runtime_wheel, version=args.version_label)
        strict = [d.name for d in devices if not d.allow_unsigned]
        if strict and "manifest.sig" not in delta.release_files(release).files:
            raise ConfigError("bundle {} is not signed and {} device(s) require signed bundles ({}): sign it with "
                              "`edge-sdk sign BUNDLE --key KEY`, or pass --allow-unsigned (allow_unsigned = true "
                              "in the fleet file)".format(args.bundle, len(strict), ", ".join(strict[:5])))
        print("flashing {} to {} device(s), {} at a time".format(describe(release), len(devices), args.parallel),
              file=sys.stderr)
        options = flash_options(args, force=args.force, skip_target_check=args.skip_target_check,
                                upload_retries=args.retries, retry_backoff=args.retry_backoff,
                                probation=parse_duration(args.probation) if args.probation else 0.0,
                                min_fps=args.min_fps, lock_timeout=args.lock_timeout)
        if staged:
            done = rollout.rollout(devices, release, waves, options, ConsoleReporter(), max_failures,
                                   args.first_wave, args.state, args.resume, args.waves or "100%")
            print(format_table(done.results))
            print(done.summary())
            return 1 if done.aborted or not all(r.ok for r in done.results) else 0
        results = fleet.flash(devices, release, options, ConsoleReporter())
    print(format_table(results))
    return 0 if all(r.ok for r in results) else 1


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1h' -> seconds (at most a day)."""
    import re

    from edge_sdk.errors import ConfigError

    match = re.fullmatch(r"(\d{1,6}(?:\.\d+)?)([smh]?)", text.strip())
    seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)] if match else -1
    if not 0 < seconds <= 86400:
        raise ConfigError("--probation {!r}: expected a duration up to a day, e.g. 90s, 10m, 1h".format(text))
    return seconds
