"""Sample CPU, memory and (on Jetson) GPU load and power while the runtime works.

Runs on the device (Python 3.6, stdlib only): reads /proc for CPU and memory, and parses `tegrastats`
output on Jetson (JetPack 4.6 through 6: rail names and units differ between generations).
"""

import os
import re
import shutil
import subprocess
import threading
import time
from typing import Any, Dict

_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?\b")
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "EMC_FREQ", "GR3D_FREQ"}
_INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0")


def parse_tegrastats_line(line: str) -> Dict[str, Any]:
    """One tegrastats line -> {"ram_used_mb", "ram_total_mb", "gpu_load_pct", "power_mw": {rail: mW},
    "power_total_mw"} (keys absent when the line lacks them)."""
    out = {}
    match = _RAM.search(line)
    if match:
        out["ram_used_mb"] = int(match.group(1))
        out["ram_total_mb"] = int(match.group(2))
    match = _GR3D.search(line)
    if match:
        out["gpu_load_pct"] = int(match.group(1))
    rails = {}
    for name, now, _avg in _RAIL.findall(line):
        if name not in _NOT_RAILS:
            rails[name] = int(now)
    if rails:
        out["power_mw"] = rails
        for name in _INPUT_RAILS:
            if name in rails:
                out["power_total_mw"] = rails[name]
                break
        else:
            out["power_total_mw"] = sum(rails.values())
    return out


def _read_proc_stat():
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values), idle


def _rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class SystemSampler(object):
    """Background sampler: every ``interval`` s records time, system CPU %, process CPU %, RSS and, where
    `tegrastats` exists, GPU load and power. Use as a context manager; ``samples`` is a list of dicts."""

    def __init__(self, interval=0.5, tegrastats=None, extra=None):
        self.interval = float(interval)
        self.tegrastats = tegrastats if tegrastats is not None else shutil.which("tegrastats")
        self.extra = extra  # optional callable -> dict merged into each sample (e.g. GPU memory)
        self.samples = []
        self._stop = threading.Event()
        self._thread = None
        self._proc = None
        self._last_tegra = {}

    def start(self):
        if self.tegrastats:
            try:
                self._proc = subprocess.Popen(
                    [self.tegrastats, "--interval", str(int(self.interval * 1000))],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
                threading.Thread(target=self._read_tegrastats, daemon=True).start()
            except OSError:
                self._proc = None
        self._thread = threading.Thread(target=self._run, name="sysmon", daemon=True)
        self._thread.start()
        return self

    def _read_tegrastats(self):
        for line in self._proc.stdout:
            parsed = parse_tegrastats_line(line)
            if parsed:
                self._last_tegra = parsed

    def _run(self):
        self._t0 = time.time()
        self._last = (self._t0,) + _read_proc_stat() + (sum(os.times()[:2]),)
        while not self._stop.wait(self.interval):
            self._sample()
        self._sample()  # the end of the run: even a run shorter than one interval gets a sample

    def _sample(self):
        then, total0, idle0, proc0 = self._last
        total1, idle1 = _read_proc_stat()
        proc1 = sum(os.times()[:2])
        now = time.time()
        elapsed = max(now - then, 1e-6)
        ncpu = os.cpu_count() or 1
        sample = {
            "t": round(now - self._t0, 3),
            "cpu_pct": round(100.0 * (1.0 - float(idle1 - idle0) / max(total1 - total0, 1)), 1),
            "process_cpu_pct": round(100.0 * (proc1 - proc0) / elapsed / ncpu, 1),
            "rss_mb": _rss_mb(),
        }
        sample.update(self._last_tegra)
        if self.extra is not None:
            try:
                sample.update(self.extra())
            except Exception:  # a sampler must never break the run it observes
                pass
        self.samples.append(sample)
        self._last = (now, total1, idle1, proc1)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(2.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        return self.samples

    def summary(self):
        """Mean/max of every numeric field over the samples."""
        out = {}
        keys = set()
        for s in self.samples:
            keys.update(k for k, v in s.items() if isinstance(v, (int, float)) and k != "t")
        for key in sorted(keys):
            values = [s[key] for s in self.samples if isinstance(s.get(key), (int, float))]
            if values:
                out[key] = {"mean": round(sum(values) / len(values), 2), "max": max(values)}
        return out

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
