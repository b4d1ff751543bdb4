"""Progress per device while a fleet operation runs, and the final table.

On a terminal each device gets a tqdm bar (stage in the description, bytes uploaded in the bar); in a log
or CI (not a TTY) each stage change is one line ``[device] stage: message``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass


@dataclass
class DeviceResult:
    """How one device ended: status is updated | unchanged | rolled-back | refused | failed | unreachable | ok."""

    device: str
    address: str
    status: str
    old_version: str | None = None
    new_version: str | None = None
    message: str = ""
    seconds: float = 0.0
    kind: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("updated", "unchanged", "ok")


class Reporter:
    """Receives what happens on each device. The default does nothing; tests subclass it to watch or interfere."""

    def start(self, devices: list[str]) -> None:
        pass

    def stage(self, device: str, stage: str, message: str = "") -> None:
        pass

    def transfer(self, device: str, done: int, total: int) -> None:
        pass

    def finish(self, result: DeviceResult) -> None:
        pass

    def close(self) -> None:
        pass


class ConsoleReporter(Reporter):
    """Per-device progress on stderr: tqdm bars on a terminal, one line per stage otherwise."""

    def __init__(self, stream=None, bars: bool | None = None):
        self.stream = stream or sys.stderr
        self.bars_enabled = self.stream.isatty() if bars is None else bars
        self.bars = {}
        self.width = 12
        self.last_pct = {}

    def start(self, devices):
        self.width = max([len(d) for d in devices] + [6])
        if self.bars_enabled:
            from tqdm import tqdm

            for position, name in enumerate(devices):
                self.bars[name] = tqdm(total=1, position=position, unit="B", unit_scale=True, leave=True,
                                       file=self.stream, desc=self._desc(name, "waiting"),
                                       bar_format="{desc} |{bar:20}| {n_fmt}/{total_fmt} {rate_fmt}")

    def _desc(self, device, text):
        return "{:<{w}} {:<28}".format(device, text[:28], w=self.width)

    def stage(self, device, stage, message=""):
        if self.bars_enabled and device in self.bars:
            self.bars[device].set_description_str(self._desc(device, stage))
            return
        self._line(device, stage + (": " + message if message else ""))

    def transfer(self, device, done, total):
        if self.bars_enabled and device in self.bars:
            bar = self.bars[device]
            if bar.total != total:
                bar.reset(total=total)
            bar.n = done
            bar.refresh()
            return
        pct = int(100 * done / total) if total else 100
        step = pct // 25 * 25
        if self.last_pct.get(device) != step:
            self.last_pct[device] = step
            self._line(device, "upload {}% of {:.1f} MB".format(step, total / 1e6))

    def finish(self, result):
        text = "{} {}".format(result.status.upper(), result.message).strip()
        if self.bars_enabled and result.device in self.bars:
            self.bars[result.device].set_description_str(self._desc(result.device, result.status))
            self.bars[result.device].refresh()
            return
        self._line(result.device, text)

    def close(self):
        for bar in self.bars.values():
            bar.close()
        self.bars = {}

    def _line(self, device, text):
        self.stream.write("[{:<{w}}] {}\n".format(device, text, w=self.width))
        self.stream.flush()


def format_table(results: list[DeviceResult], columns: str = "flash") -> str:
    """The final table: device, old -> new version, result, time (and why, for the ones that failed)."""
    rows = []
    for r in results:
        if columns == "flash":
            version = "{} -> {}".format(r.old_version or "(none)", r.new_version or "?")
        else:
            version = r.new_version or r.old_version or "-"
        rows.append([r.device, r.address, version, r.status, "{:.1f}s".format(r.seconds), r.message])
    header = ["DEVICE", "ADDRESS", "VERSION" if columns != "flash" else "OLD -> NEW", "RESULT", "TIME", "DETAIL"]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    widths[-1] = 0
    lines = []
    for row in [header] + rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    failed = [r for r in results if not r.ok]
    lines.append("{} device(s): {} ok, {} failed".format(len(results), len(results) - len(failed), len(failed)))
    return "\n".join(lines)


class Stopwatch:
    def __init__(self):
        self.t0 = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.t0
