"""`edge-sdk import` of the other source formats (ONNX from elsewhere, Keras, SavedModel), the channel
layouts, the instancenorm pass on a real tf2onnx BatchNorm chain, and every bad input as one line."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
from conftest import COCO_MINI, PRETRAINED_TFPOSE, REPO

from edge_sdk.cli import main
from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.importers import PRESETS, get_layout, import_model
from edge_sdk.runtime.skeleton import LIMBS, NUM_HEATMAPS, NUM_PAFS

SHIPPED = REPO / "models" / "tfpose-mnv2s" / "tfpose-mnv2s.onnx"
QUIET = {"log": lambda line: None, "progress": False}


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["heatmaps", "pafs"], {"image": x})


def test_layouts_are_permutations_and_tfpose_matches_provenance():
    for layout in PRESETS.values():
        assert sorted(layout.heatmaps) == list(range(NUM_HEATMAPS)) and sorted(layout.pafs) == list(range(NUM_PAFS))
    tfpose = get_layout("tfpose")
    # tests/data/PROVENANCE.md: limb (1,2) -> network channels (12,13), limb (1,8) -> (0,1), limb (5,17) -> (26,27)
    assert tfpose.pafs[2 * LIMBS.index((1, 2)):][:2] == (12, 13)
    assert tfpose.pafs[2 * LIMBS.index((1, 8)):][:2] == (0, 1)
    assert tfpose.pafs[2 * LIMBS.index((5, 17)):][:2] == (26, 27)
    assert (tfpose.color, tfpose.scale, tfpose.input_size) == ("BGR", 1.0, (432, 368))
    with pytest.raises(ConfigError, match="unknown channel layout preset 'cmu'"):
        get_layout("cmu")


def _foreign_onnx(path):
    """The shipped model dressed as another project's export: NHWC input, one NHWC output with the 57 maps
    concatenated, PAFs in tf-pose's channel order. Importing it with --paf-order tfpose must undo all that."""
    graph = gs.import_onnx(onnx.load(str(SHIPPED)))
    image, (heatmaps, pafs) = graph.inputs[0], graph.outputs
    nhwc = gs.Variable("input_1", dtype=np.float32, shape=[1, 368, 432, 3])
    image.name = "image_nchw"
    graph.nodes.append(gs.Node("Transpose", attrs={"perm": [0, 3, 1, 2]}, inputs=[nhwc], outputs=[image]))
    inverse = np.argsort(np.array(get_layout("tfpose").pafs))  # our channel -> network channel, inverted
    shuffled = gs.Variable("pafs_network_order", dtype=np.float32)
    graph.nodes.append(gs.Node("Gather", attrs={"axis": 1}, inputs=[pafs, gs.Constant("inv", inverse)],
                               outputs=[shuffled]))
    both = gs.Variable("both", dtype=np.float32)
    graph.nodes.append(gs.Node("Concat", attrs={"axis": 1}, inputs=[heatmaps, shuffled], outputs=[both]))
    out = gs.Variable("concat_stage7", dtype=np.float32, shape=[1, 46, 54, 57])
    graph.nodes.append(gs.Node("Transpose", attrs={"perm": [0, 2, 3, 1]}, inputs=[both], outputs=[out]))
    graph.inputs, graph.outputs = [nhwc], [out]
    model = gs.export_onnx(graph.cleanup().toposort())
    del model.metadata_props[:]
    onnx.save(model, str(path))


def test_foreign_nhwc_concatenated_onnx_comes_back_to_our_order(tmp_path):
    foreign = tmp_path / "foreign.onnx"
    _foreign_onnx(foreign)
    result = import_model(foreign, tmp_path / "back.onnx", paf_order="tfpose", check_images=COCO_MINI / "images",
                          check_count=2, **QUIET)
    assert result.format == "onnx" and result.check.max_abs_diff < 1e-4
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 368, 432)).astype(np.float32)
    for got, want in zip(_run(result.path, x), _run(SHIPPED, x)):
        assert np.abs(got - want).max() < 1e-4
    # the wrong preset gives other maps, and the check (ORT vs the file as given) cannot see it: the order
    # is a fact the user states, which is why presets carry their sources
    wrong = import_model(foreign, tmp_path / "wrong.onnx", paf_order="openpose", check_count=1, **QUIET)
    assert wrong.meta.input.scale == pytest.approx(1 / 256)


def test_keras_and_saved_model(tmp_path):
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    inp = tf.keras.Input((64, 96, 3))
    x = tf.keras.layers.Conv2D(8, 3, strides=8, padding="same", activation="relu")(inp)
    model = tf.keras.Model(inp, [tf.keras.layers.Conv2D(19, 1)(x), tf.keras.layers.Conv2D(38, 1)(x)])
    model.save(str(tmp_path / "tiny.keras"))
    result = import_model(tmp_path / "tiny.keras", tmp_path / "k.onnx", check_count=2, **QUIET)
    assert result.format == "keras" and result.check.max_abs_diff < 1e-4
    again = import_model(tmp_path / "tiny.keras", tmp_path / "again" / "k.onnx", check_count=1, **QUIET)
    assert again.path.read_bytes() == result.path.read_bytes()  # same process, tf2onnx's counters moved on
    # a tolerance the float32 graphs cannot meet: refused, nothing written
    with pytest.raises(ModelError, match="does not match TensorFlow .* not writing"):
        import_model(tmp_path / "tiny.keras", tmp_path / "strict" / "k.onnx", atol=1e-12, check_count=1, **QUIET)
    assert not (tmp_path / "strict" / "k.onnx").exists()
    assert (result.meta.input.width, result.meta.input.height, result.meta.input.color) == (96, 64, "RGB")
    x = np.random.default_rng(1).normal(size=(1, 3, 64, 96)).astype(np.float32)
    heatmaps, pafs = _run(result.path, x)
    want = model(x.transpose(0, 2, 3, 1))
    assert np.abs(heatmaps - want[0].numpy().transpose(0, 3, 1, 2)).max() < 1e-4
    assert np.abs(pafs - want[1].numpy().transpose(0, 3, 1, 2)).max() < 1e-4

    tf.saved_model.save(model, str(tmp_path / "saved"))
    saved = import_model(tmp_path / "saved", tmp_path / "s.onnx", check_count=2, **QUIET)
    assert saved.format == "saved-model"
    for got, ref in zip(_run(saved.path, x), (heatmaps, pafs)):
        assert np.abs(got - ref).max() < 1e-4


def _tf_batchnorm_graph(tf, batch):
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [batch, 16, 24, 4], name="image")
        rng = np.random.default_rng(2)
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(image, rng.uniform(0.5, 2, 4).astype(np.float32),
                                                   rng.normal(size=4).astype(np.float32), epsilon=1e-3,
                                                   is_training=True)
        tf.identity(y, name="out")
    return graph


def test_instancenorm_pass_on_a_tf2onnx_training_mode_batchnorm():
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    from edge_sdk.graph import run_passes

    x = np.random.default_rng(3).normal(2.0, 3.0, (1, 16, 24, 4)).astype(np.float32)
    for batch in (1, 2):
        graph = _tf_batchnorm_graph(tf, batch)
        with tf.compat.v1.Session(graph=graph) as session:
            want = session.run("out:0", {"image:0": np.repeat(x, batch, 0)})
        model, _ = tf2onnx.convert.from_graph_def(graph.as_graph_def(), input_names=["image:0"],
                                                  output_names=["out:0"], opset=13)
        assert "ReduceSumSquare" in [n.op_type for n in model.graph.node]
        rewritten, _, reports = run_passes(model, ["instancenorm", "fold"])
        ops = [n.op_type for n in rewritten.graph.node]
        session = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run(None, {"image:0": np.repeat(x, batch, 0)})[0]
        assert np.abs(got - want).max() < 1e-4
        if batch == 1:
            assert ops.count("InstanceNormalization") == 1 and "ReduceMean" not in ops
        else:  # two images share their statistics: not an instance norm, left alone
            assert "InstanceNormalization" not in ops
            assert "not a static 1" in " ".join(reports[0].changes)


@pytest.mark.parametrize("args, message", [
    (["--paf-order", "tfpos"], "unknown channel layout preset 'tfpos'"),
    (["--paf-order", "tfpose", "--output-name", "Openpose/concat_stage8"], "is not a node of"),
    (["--paf-order", "tfpose", "--input", "img"], "is not a Placeholder of"),
    (["--paf-order", "tfpose", "--mean", "1,2"], "--mean takes 1 or 3 finite numbers"),
    (["--paf-order", "tfpose", "--input-size", "430x368"], "multiples of 8"),
])
def test_bad_options_are_one_line_errors(args, message, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["import", str(PRETRAINED_TFPOSE), "-o", str(out)] + args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("content, message", [
    (b"this is a README, not a model\n" * 20, "neither ONNX nor a TensorFlow GraphDef"),
    (PRETRAINED_TFPOSE.read_bytes()[:700_000], "neither ONNX nor a TensorFlow GraphDef"),
    (b"", "not a model file"),
])
def test_files_that_are_not_models(content, message, tmp_path, capsys):
    bad = tmp_path / "graph.pb"
    bad.write_bytes(content)
    assert main(["import", str(bad), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == [bad]
