"""`edge-sdk bench --rate FPS --threads N`: latency measured at a camera's pace, inference threads chosen."""

import json
import time

import pytest

from edge_sdk.bench.runner import paced_source, run_bench
from edge_sdk.errors import ConfigError
from edge_sdk.testing.oracle_model import make_oracle

pytest.importorskip("onnxruntime")


def test_paced_source_spec():
    assert paced_source("synthetic", 30) == "synthetic:live?fps=30"
    assert paced_source("synthetic:live?w=64&fps=5&h=48", 12.5) == "synthetic:live?w=64&h=48&fps=12.5"
    with pytest.raises(ConfigError, match="synthetic source only"):
        paced_source("video.mp4", 30)
    with pytest.raises(ConfigError, match="between 0 and 1000"):
        paced_source("synthetic", 0)


def test_bench_at_a_paced_rate_reports_latency_ratios(tmp_path, edge_sdk_cli):
    oracle = make_oracle(tmp_path / "oracle", num_frames=4, people=1, video=None)
    out = tmp_path / "bench.json"
    started = time.perf_counter()
    proc = edge_sdk_cli("bench", "--model", oracle.model_path, "--source", "synthetic?w=160&h=120", "--frames", 20,
                        "--warmup", 2, "--mode", "both", "--rate", 40, "--threads", 1, "-o", out, check=True)
    elapsed = time.perf_counter() - started
    result = json.loads(out.read_text())
    assert result["settings"]["rate"] == 40 and result["settings"]["threads"] == 1
    assert result["settings"]["source"] == "synthetic:live?w=160&h=120&fps=40"
    assert elapsed > 2 * 20 / 40.0 * 0.9, "both runs were paced at 40 fps"
    for run in result["runs"]:
        assert run["frames"] + run["drops"] == 20 and run["frames"] > 0 and run["fps"] <= 40 * 1.1  # live: may drop
    assert "pipelined / sequential end-to-end p50 latency" in proc.stdout


def test_bench_rejects_zero_threads():
    with pytest.raises(ConfigError, match="--threads must be at least 1"):
        run_bench(["missing.onnx"], threads=0)
