"""`edge-sdk train` over 2 devices (MirroredStrategy on 2 logical CPUs), resume, and `edge-sdk export`."""

import json

import pytest

pytest.importorskip("tensorflow")

TINY = ["--model", "mobilenet", "--width", "0.125", "--stages", "1", "--stage-width", "8", "--input", "64x64",
        "--data", "synthetic:8", "--batch", "4", "--no-progress"]


def test_train_on_two_devices_resume_and_export(edge_sdk_cli, tmp_path, capsys):
    run_dir = tmp_path / "run"
    proc = edge_sdk_cli("train", *TINY, "--steps", "2", "--cpu-devices", "2", "-o", run_dir, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "to step 2 on 2 replica(s)" in proc.stdout
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert history[-1]["step"] == 2 and history[-1]["loss"] > 0

    # the same command with more steps continues from the checkpoint (in this process, one device)
    from edge_sdk.cli import main

    assert main(["train", *TINY, "--steps", "3", "-o", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "at step 2" in out and "to step 3 on 1 replica(s)" in out

    assert main(["export", str(run_dir), "-o", str(tmp_path / "tiny.onnx")]) == 0
    out = capsys.readouterr().out
    assert "max abs error" in out and (tmp_path / "tiny.onnx").stat().st_size > 1000


def test_resume_into_a_different_model_is_refused(tmp_path):
    from edge_sdk.cli import main

    run_dir = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "1", "-o", str(run_dir)]) == 0
    other = [a if a != "mobilenet" else "tinyvgg" for a in TINY]
    assert main(["train", *other, "--steps", "2", "-o", str(run_dir)]) == 2
