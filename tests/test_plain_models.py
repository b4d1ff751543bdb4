"""Models without metadata run at their graph's size and say what was assumed; `edge-sdk meta show|set`."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.runtime.model_meta import InputSpec, MetaAssumptionError, ModelMeta, assume_meta
from edge_sdk.testing.oracle_model import make_oracle

pytest.importorskip("onnxruntime")


def strip_metadata(source, target):
    model = onnx.load(str(source))
    keep = [(p.key, p.value) for p in model.metadata_props if p.key != "edge_sdk"]
    model.ClearField("metadata_props")
    for key, value in keep:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(target))
    return target


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The oracle at a non-default input size (224x160) with its metadata stripped, and its video."""
    folder = tmp_path_factory.mktemp("plain")
    case = make_oracle(folder, num_frames=6, people=2, input_spec=InputSpec(height=160, width=224))
    return case, strip_metadata(case.model_path, folder / "plain.onnx")


def saved_people(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_plain_model_runs_at_its_own_size_and_says_what_it_assumed(plain, edge_sdk_cli):
    case, path = plain
    proc = edge_sdk_cli("run", "--model", path, "--source", case.video_path, "--save", "-", "--quiet", check=True)
    notes = [line for line in proc.stderr.splitlines() if "no edge_sdk metadata" in line]
    assert len(notes) == 1, proc.stderr
    assert "224x160" in notes[0] and "edge-sdk meta set" in notes[0] and "letterbox" in notes[0]
    assert "metadata says" not in proc.stderr
    messages = saved_people(proc.stdout)
    assert len(messages) == case.num_frames
    for message, expected in zip(messages, case.expected):
        found = np.array([p["keypoints"] for p in message["people"]], np.float32)
        assert found.shape == expected.shape
        present = expected[..., 2] > 0
        # people sorted by x so that order does not matter
        found = found[np.argsort(found[:, 5, 0])]
        expected = expected[np.argsort(expected[:, 5, 0])]
        assert np.abs(found[..., :2] - expected[..., :2])[present].max() < 3.0


def io(shape, outputs, kind="tensor(float)"):
    return {"input_1": (kind, shape)}, outputs


def test_assume_meta_reads_layout_size_outputs_and_stride():
    inputs, outputs = io([1, 368, 432, 3], {"a": ("tensor(float)", [1, 19, 46, 54]),
                                            "b": ("tensor(float)", [1, 38, 46, 54])}, "tensor(uint8)")
    meta = assume_meta(inputs, outputs, "m.onnx")
    assert meta.assumed and meta.input.layout == "NHWC" and meta.input.dtype == "uint8"
    assert (meta.input.height, meta.input.width, meta.input.name) == (368, 432, "input_1")
    assert meta.outputs == {"heatmaps": "a", "pafs": "b"} and meta.stride == 8
    meta = assume_meta(io([1, 3, 256, 256], {"heatmaps": ("tensor(float)", [1, 19, 64, 64]),
                                             "pafs": ("tensor(float)", [1, 38, 64, 64])})[0],
                       {"heatmaps": ("tensor(float)", [1, 19, 64, 64]), "pafs": ("tensor(float)", [1, 38, 64, 64])})
    assert meta.stride == 4 and meta.input.layout == "NCHW"
    assert "assumed" not in meta.to_json()
    with pytest.raises(MetaAssumptionError, match="no fixed size.*meta set .* --input WxH"):
        assume_meta(*io([1, 3, "h", "w"], {"heatmaps": ("tensor(float)", [1, 19, None, None]),
                                           "pafs": ("tensor(float)", [1, 38, None, None])}), name="m.onnx")
    with pytest.raises(MetaAssumptionError, match="no output with 38 channels for pafs.*--pafs TENSOR"):
        assume_meta(*io([1, 3, 64, 64], {"x": ("tensor(float)", [1, 19, 8, 8]), "y": ("tensor(float)", [1, 57, 8, 8])}))
    with pytest.raises(MetaAssumptionError, match="expected an image"):
        assume_meta(*io([1, 5, 64, 64], {}))


def symbolic_model(path):
    """Heatmaps and PAFs by 1x1 stride-8 convolutions from an NCHW input of any size, no metadata."""
    nodes, inits, outputs = [], [], []
    for name, channels in (("heatmaps", 19), ("pafs", 38)):
        inits.append(numpy_helper.from_array(np.full((channels, 3, 1, 1), 0.01, np.float32), name + "_w"))
        nodes.append(helper.make_node("Conv", ["image", name + "_w"], [name], strides=[8, 8]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, channels, None, None]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                         [1, 3, "height", "width"])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def test_symbolic_size_needs_meta_set_input_then_runs(tmp_path, edge_sdk_cli):
    path = symbolic_model(tmp_path / "any.onnx")
    proc = edge_sdk_cli("run", "--model", path, "--source", "synthetic?frames=2")
    assert proc.returncode == 2 and "--input WxH" in proc.stderr and "Traceback" not in proc.stderr
    from edge_sdk.meta import read_meta, update_meta

    with pytest.raises(ConfigError, match="--input WxH"):
        update_meta(path, {"color": "bgr"})
    update_meta(path, {"input": "96x64"})
    proc = edge_sdk_cli("run", "--model", path, "--source", "synthetic?frames=2", check=True)
    assert "no edge_sdk metadata" not in proc.stderr
    assert "2 frames" in proc.stdout

    shown = read_meta(path)
    assert (shown.input.width, shown.input.height, shown.input.name) == (96, 64, "image")


def test_meta_set_show_round_trip_and_decoder_section(plain, tmp_path, edge_sdk_cli):
    case, path = plain
    out = tmp_path / "with_meta.onnx"
    before = path.read_bytes()
    from edge_sdk.meta import format_meta, read_meta, update_meta

    shown = format_meta(read_meta(path), path)
    assert "no edge_sdk metadata; the runtime assumes" in shown and "224x160" in shown
    edge_sdk_cli("meta", "set", path, "-o", out, "--color", "bgr", "--scale", "1/255", "--mean", "0.5,0.5,0.5",
                 "--std", "0.25,0.25,0.25", "--peak-threshold", "0.05", "--max-people", "1", "--name", "mine",
                 check=True)
    assert path.read_bytes() == before, "-o must leave the input model alone"
    meta = json.loads(edge_sdk_cli("meta", "show", out, "--json", check=True).stdout)
    assert meta["input"]["color"] == "BGR" and meta["input"]["mean"] == [0.5] * 3 and meta["model"] == "mine"
    assert abs(meta["input"]["scale"] - 1 / 255) < 1e-12
    assert meta["decoder"] == {"max_people": 1, "peak_threshold": 0.05}
    update_meta(out, {"reset_decoder": ["max_people"]})
    loaded = read_meta(out)
    assert loaded.decoder == {"peak_threshold": 0.05} and not loaded.assumed
    assert loaded.input.color == "BGR" and loaded.model == "mine"


BAD_CHANGES = [
    ({"mean": "1,2"}, "--mean needs 3"),
    ({"std": "1,0,1"}, "--std values must be > 0"),
    ({"scale": "0"}, "--scale must be > 0"),
    ({"scale": "abc"}, "--scale needs a number"),
    ({"input": "10"}, "--input needs WIDTHxHEIGHT"),
    ({"input": "320x240"}, "does not match the graph's fixed"),
    ({"heatmaps": "nothing"}, "no such output"),
    ({"decoder": {"peak_threshold": -1}}, "peak_threshold must be in"),
    ({"decoder": {"min_parts": 2.5}}, "whole number"),
    ({"decoder": {"refine": "cubic"}}, "refine must be one of"),
    ({"fit": "squash"}, "--fit must be one of"),
    ({"json": "{not json"}, "not valid JSON"),
    ({"json": '{"input": {"heigth": 160}}'}, "unknown input key.*heigth"),
    ({"json": '{"decoder": {"peak_threshold": "high"}}'}, "peak_threshold must be a number"),
    ({"json": '{"input": {"height": 160, "width": 224}, "outputs": {"heatmaps": "x", "pafs": "pafs"}}'},
     "not outputs of the graph"),
]


@pytest.mark.parametrize("changes, message", BAD_CHANGES)
def test_meta_set_bad_input_is_a_clear_error(plain, changes, message):
    from edge_sdk.meta import update_meta

    _case, path = plain
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=message):
        update_meta(path, changes)
    assert path.read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--peak-threshold", "-1"], "peak_threshold must be in"),
    (["--color", "purple"], "--color must be rgb or bgr"),
    ([], "nothing to change"),
])
def test_meta_set_bad_input_is_one_line_on_the_cli(plain, edge_sdk_cli, args, message):
    _case, path = plain
    proc = edge_sdk_cli("meta", "set", path, *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr, proc.stderr


def test_malformed_metadata_json_is_a_clear_error_and_can_be_replaced(plain, tmp_path, edge_sdk_cli):
    case, path = plain
    model = onnx.load(str(path))
    helper.set_model_props(model, {"edge_sdk": "{not json"})
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    proc = edge_sdk_cli("run", "--model", broken, "--source", "synthetic?frames=1")
    assert proc.returncode == 2 and "not valid" in proc.stderr and "meta set" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    from edge_sdk.meta import read_meta, update_meta

    with pytest.raises(ModelError, match="not valid.*meta set"):
        read_meta(broken)
    update_meta(broken, {"json": ModelMeta(InputSpec(height=160, width=224)).to_json()})
    proc = edge_sdk_cli("run", "--model", broken, "--source", case.video_path, "--save", "-", "--quiet", check=True)
    assert len(saved_people(proc.stdout)) == case.num_frames


def test_meta_api_errors(tmp_path):
    from edge_sdk.meta import read_meta

    with pytest.raises(ConfigError, match="not found"):
        read_meta(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk" * 10)
    with pytest.raises(ModelError, match="not an ONNX model"):
        read_meta(tmp_path / "junk.onnx")


def test_build_of_a_plain_model_uses_its_graph_size(plain, tmp_path, edge_sdk_cli):
    _case, path = plain
    proc = edge_sdk_cli("build", path, "--target", "cpu", "-o", tmp_path / "bundle", check=True)
    assert "has no edge_sdk metadata; assumed input 'image' 224x160" in proc.stdout
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert (manifest["input"]["width"], manifest["input"]["height"]) == (224, 160)
