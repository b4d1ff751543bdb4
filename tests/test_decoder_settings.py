"""Decoder settings: command line > model metadata > defaults, on run / eval / bench; `eval --sweep`."""

import json

import numpy as np
import onnx
import pytest
from onnx import helper
from test_bench_eval import _coco_mini_oracle

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.decoder_settings import check_setting, decode_config, merge_settings
from edge_sdk.runtime.model_meta import InputSpec, ModelMeta
from edge_sdk.testing.oracle_model import make_oracle

pytest.importorskip("onnxruntime")


def with_decoder(source, target, decoder):
    """A copy of the model at ``source`` whose metadata carries ``decoder`` settings."""
    model = onnx.load(str(source))
    meta = ModelMeta.from_props({p.key: p.value for p in model.metadata_props})
    meta.decoder = decoder
    helper.set_model_props(model, {"edge_sdk": meta.to_json()})
    onnx.save(model, str(target))
    return target


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    folder = tmp_path_factory.mktemp("three")
    case = make_oracle(folder, num_frames=4, width=480, height=240, people=3, missing_joints=False)
    return case, with_decoder(case.model_path, folder / "one_person.onnx", {"max_people": 1})


def people_per_frame(stdout):
    return [len(json.loads(line)["people"]) for line in stdout.splitlines() if line.startswith("{")]


def test_precedence_command_line_over_metadata_over_defaults(three, edge_sdk_cli):
    case, one_person = three
    run = ("run", "--source", case.video_path, "--save", "-", "--quiet", "--sequential")
    assert people_per_frame(edge_sdk_cli(*run, "--model", case.model_path, check=True).stdout) == [3] * 4
    assert people_per_frame(edge_sdk_cli(*run, "--model", one_person, check=True).stdout) == [1] * 4
    assert people_per_frame(edge_sdk_cli(*run, "--model", one_person, "--max-people", "2",
                                         check=True).stdout) == [2] * 4


def test_bench_takes_decoder_settings(three, edge_sdk_cli, tmp_path):
    case, one_person = three
    out = tmp_path / "bench.json"
    edge_sdk_cli("bench", "--model", one_person, "--source", case.video_path, "--frames", 4, "--warmup", 0,
                 "--mode", "sequential", "--max-people", "2", "-o", out, check=True)
    assert json.loads(out.read_text())["runs"][0]["people_per_frame"] == 2.0


def test_settings_are_checked_with_their_bounds():
    assert check_setting("peak_threshold", "0.05") == 0.05
    assert check_setting("min_parts", "4") == 4 and check_setting("max_people", "none") is None
    for name, value, message in (("peak_threshold", "1.5", r"in \[0, 1\]"), ("min_parts", "0", r"in \[1, 18\]"),
                                 ("min_parts", "2.5", "whole number"), ("max_people", "nan", "finite"),
                                 ("paf_samples", True, "must be a number"), ("refine", "cubic", "one of"),
                                 ("peak_treshold", "0.1", "did you mean peak_threshold")):
        with pytest.raises(ConfigError, match=message):
            check_setting(name, value)
    assert merge_settings({"peak_threshold": 0.05, "min_parts": 2}, {"min_parts": 4}) == {
        "peak_threshold": 0.05, "min_parts": 4}
    config = decode_config({"peak_threshold": 0.05, "refine": "none"})
    assert config.peak_threshold == 0.05 and config.refine == "none" and config.min_parts == 3  # default kept
    with pytest.raises(ValueError, match="peak_threshold"):
        ModelMeta.from_json(json.dumps({"decoder": {"peak_threshold": 7}}))


@pytest.mark.parametrize("command", ["run", "eval", "bench"])
def test_bad_decoder_flag_and_fit_are_one_line_errors(command, three, edge_sdk_cli):
    case, _ = three
    extra = {"run": ["--source", case.video_path], "eval": ["--coco", "x.json", "--images", "."],
             "bench": ["--frames", "2"]}[command]
    for flags, message in ((["--min-parts", "40"], "min_parts must be in [1, 18]"),
                           (["--fit", "squash"], "--fit must be one of letterbox, stretch")):
        proc = edge_sdk_cli(command, "--model", case.model_path, *extra, *flags)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    if command == "eval":
        for flags, message in ((["--sweep", "peak=0.1"], "did you mean peak_threshold"),
                               (["--threads", "0"], "--threads must be in [1, 256]")):
            proc = edge_sdk_cli(command, "--model", case.model_path, *extra, *flags)
            assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_eval_sweep_table_stage_times_and_threads(tmp_path, edge_sdk_cli):
    gt_path, folder, oracle_path, _ = _coco_mini_oracle(tmp_path, InputSpec(height=256, width=256))
    out = tmp_path / "eval.json"
    proc = edge_sdk_cli("eval", "--model", oracle_path, "--coco", gt_path, "--images", folder, "--threads", "1",
                        "--sweep", "min_parts=2,18", "--sweep", "peak_threshold=0.1", "-o", out, check=True)
    report = json.loads(out.read_text())
    rows = report["sweep"]
    assert [(r["swept"]["min_parts"], r["swept"]["peak_threshold"]) for r in rows] == [(2, 0.1), (18, 0.1)]
    # every part of a person visible is rare: min_parts=18 keeps far fewer people, and a lower AP
    assert rows[0]["detections"] > rows[1]["detections"]
    assert rows[0]["stats"]["AP"] > rows[1]["stats"]["AP"] + 0.2
    assert report["stats"] == rows[0]["stats"]
    table = proc.stdout[proc.stdout.index("min_parts"):proc.stdout.index("wrote")].splitlines()
    assert len(table) == 3 and "AP50" in table[0] and table[1].rstrip().endswith("<- best AP")
    assert "{:.3f}".format(rows[1]["stats"]["AP"]) in table[2]
    for stage in ("preprocess", "infer", "decode"):
        assert report["stage_ms"][stage]["mean"] > 0
    assert "time per image" in proc.stdout and "1 threads" in report["backend"]


def test_sweep_parsing_errors():
    from edge_sdk.eval.dataset import parse_sweep

    assert parse_sweep(["peak_threshold=0.05,0.1"]) == [{"peak_threshold": 0.05}, {"peak_threshold": 0.1}]
    assert parse_sweep(None) == []
    for specs, message in ((["peak_threshold"], "NAME=V1,V2"), (["peak=0.1"], "unknown decoder setting"),
                           (["min_parts=2", "min_parts=3"], "swept twice"),
                           (["min_parts=" + ",".join(str(v) for v in range(1, 19)),
                             "peak_threshold=" + ",".join("0.{}".format(v) for v in range(1, 9))], "at most 64"),
                           (["peak_threshold=0.1,x"], "must be a number")):
        with pytest.raises(ConfigError, match=message):
            parse_sweep(specs)


def test_default_decoder_uses_the_metadata_settings():
    from edge_sdk.runtime.maps import render_maps
    from edge_sdk.runtime.pipeline import default_decoder

    people = np.zeros((2, 18, 3), np.float32)
    for p, x in enumerate((40.0, 120.0)):
        people[p, :, 0] = x + np.linspace(-10, 10, 18)
        people[p, :, 1] = np.linspace(20, 100, 18)
        people[p, :, 2] = 2
    heatmaps, pafs = render_maps(people, 128, 160, 8)
    maps = {"heatmaps": heatmaps, "pafs": pafs}
    meta = ModelMeta(InputSpec(height=128, width=160))
    assert len(default_decoder(meta)(maps, None, 8)[1]) == 2
    meta.decoder = {"max_people": 1}
    assert len(default_decoder(meta)(maps, None, 8)[1]) == 1
