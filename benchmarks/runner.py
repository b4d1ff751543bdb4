"""The one runner of benchmarks/: repeated rounds, the compared sides interleaved round by round, the machine's
load recorded, JSON written, median and range reported.

A benchmark gives each side a callable that measures once and returns its metrics ({"ms_per_frame": 2.1}).
``interleave`` runs them round by round, starting each round with the next side (A B C, B C A, ...), so a
machine that slows down (thermal throttling, another job) hurts every side alike; it records the 1-minute
load average around every round. Ratios are taken round by round (side A of round i / side B of round i) and
reported as median and range; so are the metrics. ``write`` puts the result in benchmarks/results/NAME.json,
and ``python benchmarks/results_page.py`` turns every such file into docs/benchmarks.md.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SCHEMA = "edge-sdk-benchmark/1"


def summary(values: list[float]) -> dict:
    """Median and range (min, max) of a list of measurements."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not on this platform
        return None


@dataclass
class Rounds:
    """What ``interleave`` measured: values[side][metric] is one value per round; load per round."""

    sides: list[str]
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    load: list[dict] = field(default_factory=list)

    def metric(self, side: str, metric: str) -> dict:
        return summary(self.values[side][metric])

    def ratio(self, numerator: str, denominator: str, metric: str) -> dict:
        """numerator / denominator of ``metric``, round by round, summarised."""
        pairs = zip(self.values[numerator][metric], self.values[denominator][metric])
        return summary([a / b for a, b in pairs if b])


def interleave(sides: dict[str, Callable[[], dict]], rounds: int, warmup: int = 1,
               progress: Callable[[str], None] | None = None) -> Rounds:
    """Run every side once per round, rotating which goes first; ``warmup`` unrecorded rounds first."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    names = list(sides)
    result = Rounds(sides=names, values={name: {} for name in names})
    for index in range(warmup + rounds):
        recorded = index >= warmup
        before = load_average()
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            metrics = sides[name]()
            if recorded:
                for key, value in metrics.items():
                    result.values[name].setdefault(key, []).append(float(value))
        if recorded:
            result.load.append({"round": index - warmup + 1, "load_before": before, "load_after": load_average()})
        if progress is not None:
            progress("{} {}/{}".format("round" if recorded else "warm-up", index - warmup + 1 if recorded else
                                       index + 1, rounds if recorded else warmup))
    return result


def machine() -> dict:
    """Where it ran: enough to tell two machines apart and to judge the load."""
    info = {"hostname": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as handle:
            models = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        if models:
            info["cpu"] = models[0]
    except OSError:
        pass
    return info


def git_commit() -> str | None:
    """The commit the code ran from, '+modified' when the working tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=str(REPO))
    if head.returncode != 0 or not head.stdout.strip():
        return None
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                             ":!benchmarks/results", ":!docs/benchmarks.md"],  # what the benchmarks write
                            capture_output=True, text=True, cwd=str(REPO))
    return head.stdout.strip() + ("+modified" if status.stdout.strip() else "")


def result(name: str, title: str, baseline: str, rounds: Rounds, rows: list[dict], ratios: list[dict],
           settings: dict, notes: list[str] | None = None) -> dict:
    """The JSON document of one benchmark run.

    ``rows``: [{"label": ..., "metrics": {metric: summary}}] (a table row each); ``ratios``: [{"label": ...,
    "summary": summary, "goal": optional text}]."""
    loads = [v for r in rounds.load for v in (r["load_before"], r["load_after"]) if v is not None]
    return {
        "schema": SCHEMA, "name": name, "title": title, "baseline": baseline,
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git_commit(), "machine": machine(),
        "load": {"per_round": rounds.load, "summary": summary(loads) if loads else None},
        "settings": settings, "rows": rows, "ratios": ratios, "notes": notes or [],
    }


def write(doc: dict, out: Path | None = None) -> Path:
    """benchmarks/results/<name>.json (or ``out``)."""
    path = Path(out) if out else RESULTS / (doc["name"] + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return path


def span(s: dict, digits: int | None = None) -> str:
    """'median (min-max)' of a summary ('median' alone when all values are equal); by default about three
    significant digits."""
    if digits is None:
        size = abs(s["median"])
        digits = 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 0.1 or size == 0 else 3
    fmt = "{:.%df}" % digits
    if s["min"] == s["max"]:
        return fmt.format(s["median"])
    return "{} ({}-{})".format(fmt.format(s["median"]), fmt.format(s["min"]), fmt.format(s["max"]))


def print_result(doc: dict) -> None:
    """The terminal view: every row and ratio as median (range), and the load."""
    print("{} -- baseline: {}".format(doc["title"], doc["baseline"]))
    for row in doc["rows"]:
        print("  {:<40} {}".format(row["label"], "  ".join("{} {}".format(k, span(v))
                                                            for k, v in row["metrics"].items())))
    for ratio in doc["ratios"]:
        print("  {:<40} {}x{}".format(ratio["label"], span(ratio["summary"]),
                                      "  (goal {})".format(ratio["goal"]) if ratio.get("goal") else ""))
    load = doc["load"]["summary"]
    if load:
        print("  load average during the rounds: {} on {} CPUs".format(span(load, 1), doc["machine"]["cpu_count"]))
