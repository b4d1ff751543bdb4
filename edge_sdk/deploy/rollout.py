"""Staged rollouts: flash a fleet in waves and stop when a wave fails too often (`flash --waves`).

A bad release must stop at its first wave, not reach 200 cameras. Waves are counts or percentages of the
devices still to do (``1,10%,50%,100%``); an inventory group can go first (``--first-wave canary``). In a wave
at most ``--parallel`` devices work at once; once the wave's failures pass ``--max-failures`` (a count, or a
percentage of the wave) no further device of it is started, no later wave runs, and every device not reached
stays on its old version. The state (devices done, the wave that stopped) is written after every device to a
JSON file, so ``--resume`` continues an aborted rollout of the same version where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_sdk.deploy import fleet
from edge_sdk.deploy.inventory import Device
from edge_sdk.deploy.progress import DeviceResult, Reporter
from edge_sdk.deploy.release import Release
from edge_sdk.errors import ConfigError

MAX_WAVES = 100
_SPEC = re.compile(r"\A(\d{1,6})(%?)\Z")
DONE = ("updated", "unchanged")


@dataclass(frozen=True)
class Amount:
    """A number of devices, or a percentage of some total."""

    value: float
    percent: bool

    def of(self, total: int) -> int:
        if not self.percent:
            return int(self.value)
        return max(1, math.ceil(total * self.value / 100.0)) if total else 0

    def __str__(self) -> str:
        return "{:g}{}".format(self.value, "%" if self.percent else "")


def parse_amount(text: str, what: str, allow_zero: bool = False) -> Amount:
    match = _SPEC.match(str(text).strip())
    if not match:
        raise ConfigError("{} {!r}: expected a count (3) or a percentage (10%)".format(what, text))
    value, percent = int(match.group(1)), bool(match.group(2))
    if (value == 0 and not allow_zero) or (percent and value > 100):
        raise ConfigError("{} {!r}: a count must be at least {}, a percentage {}..100%".format(
            what, text, 0 if allow_zero else 1, 0 if allow_zero else 1))
    return Amount(float(value), percent)


def parse_waves(text: str) -> list[Amount]:
    """``1,10%,50%,100%`` -> amounts; each is taken from the devices still to do when its wave starts."""
    parts = [p for p in str(text).split(",")]
    if not parts or len(parts) > MAX_WAVES:
        raise ConfigError("--waves: give 1 to {} waves, e.g. 1,10%,50%,100%".format(MAX_WAVES))
    return [parse_amount(p, "--waves") for p in parts]


def plan_waves(devices: list[Device], waves: list[Amount], first_group: str | None = None) -> list[list[Device]]:
    """Split ``devices`` (in inventory order) into waves; whatever the listed waves leave goes in a last one."""
    rest = list(devices)
    planned: list[list[Device]] = []
    if first_group:
        first = [d for d in rest if first_group in d.groups]
        if first:
            planned.append(first)
            rest = [d for d in rest if first_group not in d.groups]
    for amount in waves:
        if not rest:
            break
        take = min(len(rest), amount.of(len(rest)))
        planned.append(rest[:take])
        rest = rest[take:]
    if rest:
        planned.append(rest)
    return planned


def allowed_failures(limit: Amount | None, wave_size: int) -> float:
    if limit is None:
        return math.inf
    return wave_size * limit.value / 100.0 if limit.percent else limit.value


def default_state_path(version: str) -> Path:
    """$EDGE_SDK_STATE_DIR/rollouts/VERSION.json (next to the `last seen` memory)."""
    return fleet.state_file().parent / "rollouts" / "{}.json".format(version)


@dataclass
class RolloutState:
    version: str
    waves: str
    devices: dict[str, str] = field(default_factory=dict)  # name -> last status
    aborted_wave: int | None = None
    finished: bool = False

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp{}".format(os.getpid()))
        with open(tmp, "w") as f:
            json.dump({"version": self.version, "waves": self.waves, "devices": self.devices,
                       "aborted_wave": self.aborted_wave, "finished": self.finished, "ts": time.time()}, f,
                      indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, version: str) -> RolloutState:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError("--resume: cannot read the rollout state {} ({})".format(path, exc)) from None
        if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
            raise ConfigError("--resume: {} is not a rollout state file".format(path))
        if data.get("version") != version:
            raise ConfigError("--resume: {} is the rollout of version {!r}, not {!r}; flash that bundle, or start "
                              "this one without --resume".format(path, data.get("version"), version))
        return cls(version, str(data.get("waves", "")), {str(k): str(v) for k, v in data["devices"].items()},
                   data.get("aborted_wave"), bool(data.get("finished")))


@dataclass
class WaveReport:
    number: int
    devices: list[str]
    failed: int
    allowed: float
    aborted: bool


@dataclass
class RolloutResult:
    results: list[DeviceResult]
    waves: list[WaveReport]
    aborted: bool
    skipped: list[str]
    state_path: Path

    def summary(self) -> str:
        lines = []
        for w in self.waves:
            lines.append("wave {}: {} device(s), {} failed (max {}){}".format(
                w.number, len(w.devices), w.failed, "-" if math.isinf(w.allowed) else "{:g}".format(w.allowed),
                " -> ABORTED" if w.aborted else ""))
        if self.aborted:
            lines.append("rollout aborted: {} device(s) not started stay on their old version ({}); fix the cause "
                         "and continue with --resume (state: {})".format(len(self.skipped), ", ".join(self.skipped)
                                                                          or "none", self.state_path))
        return "\n".join(lines)


async def _run_wave(wave: list[Device], release: Release, options: fleet.FlashOptions, reporter: Reporter,
                    allowed: float, on_result) -> tuple[list[DeviceResult], int, bool]:
    """Flash one wave, at most ``options.parallel`` at a time; start no device once failures pass ``allowed``."""
    sem = asyncio.Semaphore(max(1, options.parallel))
    failed = 0

    async def one(device: Device) -> DeviceResult:
        nonlocal failed
        async with sem:
            if failed > allowed:
                result = DeviceResult(device.name, device.address, "skipped", None, release.version,
                                      "not started: the wave's failures passed --max-failures", 0.0, "aborted")
                reporter.finish(result)
                return result
            result = await fleet._guarded(device, reporter, lambda d: fleet.flash_device(d, release, options,
                                                                                         reporter))
            if not result.ok:
                failed += 1
            on_result(result)
            return result

    results = await asyncio.gather(*(one(d) for d in wave))
    return list(results), failed, failed > allowed


def rollout(devices: list[Device], release: Release, waves: list[Amount], options: fleet.FlashOptions | None = None,
            reporter: Reporter | None = None, max_failures: Amount | None = None, first_group: str | None = None,
            state_path: Path | None = None, resume: bool = False, waves_text: str = "") -> RolloutResult:
    """Flash ``release`` wave by wave; stop at the first wave whose failures pass ``max_failures``."""
    options = options or fleet.FlashOptions()
    reporter = reporter or Reporter()
    if first_group and not any(first_group in d.groups for d in devices):
        raise ConfigError("--first-wave {!r}: no selected device is in that inventory group".format(first_group))
    for device in devices:
        fleet.signature_policy_args(device)
    path = Path(state_path) if state_path else default_state_path(release.version)
    state = RolloutState.load(path, release.version) if resume else RolloutState(release.version, waves_text)
    todo = [d for d in devices if state.devices.get(d.name) not in DONE]
    plan = plan_waves(todo, waves, first_group)
    state.aborted_wave, state.finished = None, False
    state.save(path)
    reports: list[WaveReport] = []
    results: list[DeviceResult] = []

    def record(result: DeviceResult) -> None:
        state.devices[result.device] = result.status
        state.save(path)

    skipped: list[str] = []

    async def all_waves() -> bool:  # one event loop for the whole rollout
        for number, wave in enumerate(plan, 1):
            allowed = allowed_failures(max_failures, len(wave))
            wave_results, failed, stop = await _run_wave(wave, release, options, reporter, allowed, record)
            results.extend(wave_results)
            skipped.extend(r.device for r in wave_results if r.status == "skipped")
            reports.append(WaveReport(number, [d.name for d in wave], failed, allowed, stop))
            if stop:
                state.aborted_wave = number
                for later in plan[number:]:
                    skipped.extend(d.name for d in later)
                return True
        return False

    reporter.start([d.name for d in todo])
    aborted = True
    try:
        aborted = fleet._run(all_waves())
    finally:
        reporter.close()
        state.finished = not aborted
        state.save(path)
    fleet.update_last_seen({r.address: r.new_version if r.ok else r.old_version for r in results
                            if r.kind not in ("unreachable", "host-key", "auth", "aborted")})
    return RolloutResult(results, reports, aborted, skipped, path)
