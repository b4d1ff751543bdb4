"""benchmarks/runner.py (interleaved rounds, load, JSON, median and range) and benchmarks/results_page.py
(docs/benchmarks.md generated from the JSON files)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import results_page, runner

REPO = Path(__file__).resolve().parent.parent


def test_rounds_rotate_the_first_side_and_ratios_are_taken_round_by_round():
    calls = []
    speeds = {"a": iter([9.0, 1.0, 2.0, 4.0]), "b": iter([9.0, 2.0, 6.0, 4.0])}  # first value: warm-up

    def side(name):
        def measure():
            calls.append(name)
            return {"ms": next(speeds[name])}
        return measure

    rounds = runner.interleave({"a": side("a"), "b": side("b")}, rounds=3, warmup=1)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert rounds.values == {"a": {"ms": [1.0, 2.0, 4.0]}, "b": {"ms": [2.0, 6.0, 4.0]}}
    assert rounds.ratio("b", "a", "ms") == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert rounds.metric("a", "ms")["median"] == 2.0
    assert [r["round"] for r in rounds.load] == [1, 2, 3] and all("load_before" in r for r in rounds.load)
    with pytest.raises(ValueError):
        runner.interleave({"a": side("a")}, rounds=0)


def test_a_result_round_trips_through_json_and_the_page(tmp_path):
    rounds = runner.interleave({"base": lambda: {"fps": 10.0}, "fast": lambda: {"fps": 25.0}}, rounds=2, warmup=0)
    doc = runner.result("probe", "A probe", "base, exactly", rounds,
                        [{"label": side, "metrics": {"fps": rounds.metric(side, "fps")}} for side in rounds.sides],
                        [{"label": "fast / base fps", "summary": rounds.ratio("fast", "base", "fps"), "goal": ">= 2x"}],
                        {"rounds": 2}, ["a note"])
    path = runner.write(doc, tmp_path / "probe.json")
    loaded = results_page.load_results(tmp_path)
    assert loaded == [json.loads(path.read_text())]
    page = results_page.render(loaded)
    assert "## A probe" in page and "baseline: **base, exactly**" in page
    assert "| fast / base fps | **2.50x** | >= 2x |" in page  # one value: no range shown
    assert "| fast | 25.0 |" in page and doc["machine"]["hostname"] in page
    assert doc["command"].startswith("python ")


def test_docs_benchmarks_md_is_generated_from_the_result_files():
    proc = subprocess.run([sys.executable, "benchmarks/results_page.py", "--check"], capture_output=True, text=True,
                          cwd=str(REPO))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list((REPO / "benchmarks" / "results").glob("*.json"))

