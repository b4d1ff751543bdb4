"""Rewrite passes: each keeps the model's outputs (ONNX Runtime, real sessions) and changes the graph as claimed.

Tolerances: passes that only move or fold ops (fold, transposes, prune, shape) must match to 1e-6 absolute;
folding the normalisation into conv weights re-associates float sums, so 1e-4 absolute on maps of O(1);
peak extraction must match the NumPy reference to 1e-4 in coordinates and scores.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.graph import run_passes
from edge_sdk.graph.common import check_outputs, get_meta, load_model
from edge_sdk.graph.synthetic_model import make_pose_model
from edge_sdk.runtime.decode import DecodeConfig, decode_peaks, decode_poses, find_peaks
from edge_sdk.runtime.preprocess import preprocess_frame

H, W = 64, 96
EXACT = 1e-6


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def infer(model, image):
    sess = session(model)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: image})))


def ops(model):
    return [n.op_type for n in model.graph.node]


@pytest.fixture(scope="module")
def original():
    return make_pose_model(seed=1)


@pytest.fixture(scope="module")
def nhwc_batch():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, H, W, 3)).astype(np.float32)


def test_fold_constants_same_outputs_fewer_nodes(original, nhwc_batch):
    folded, _, reports = run_passes(original, ["fold"])
    assert reports[0].nodes_after < reports[0].nodes_before == len(original.graph.node)
    assert "Shape" not in ops(folded) and "Identity" not in ops(folded)[:-4]  # only the tf2onnx-style consts
    assert ops(folded).count("Transpose") == ops(original).count("Transpose") - 1  # the kernel transpose folded
    ref, got = infer(original, nhwc_batch), infer(folded, nhwc_batch)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], atol=EXACT)


def test_remove_layout_transposes(original, nhwc_batch):
    model, meta, reports = run_passes(original, ["fold", "transposes"])
    assert "Transpose" not in ops(model)
    assert reports[1].nodes_before - reports[1].nodes_after == 5  # 1 input + 4 output Transposes
    assert meta.input.layout == "NCHW" and meta.extra["output_layout"] == "NCHW"
    ref = infer(original, nhwc_batch)
    got = infer(model, np.ascontiguousarray(nhwc_batch.transpose(0, 3, 1, 2)))
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name].transpose(0, 3, 1, 2), atol=EXACT)


def test_prune_drops_stage1_outputs_and_their_nodes(original, nhwc_batch):
    model, _, reports = run_passes(original, ["prune"])
    assert [o.name for o in model.graph.output] == ["heatmaps", "pafs"]
    assert reports[0].nodes_after == reports[0].nodes_before - 2  # the stage-1 output Transposes
    ref, got = infer(original, nhwc_batch), infer(model, nhwc_batch)
    for name in ("heatmaps", "pafs"):
        np.testing.assert_allclose(got[name], ref[name], atol=EXACT)


@pytest.mark.parametrize("first_kernel, zero_pad", [(3, False), (1, False), (3, True)])
@pytest.mark.parametrize("dtype, layout, color", [("uint8", "NHWC", "BGR"), ("float32", "NCHW", "RGB")])
def test_fold_normalization_feeds_raw_pixels(first_kernel, zero_pad, dtype, layout, color):
    """The runtime's own preprocess_frame, driven by each model's metadata, gives the same maps."""
    original = make_pose_model(seed=2, first_kernel=first_kernel, zero_pad_first=zero_pad)
    base, base_meta, _ = run_passes(original, ["fold", "transposes"])
    model, meta, reports = run_passes(base, ["normalize"], {"normalize": {
        "dtype": dtype, "layout": layout, "color": color}})
    assert (meta.input.dtype, meta.input.layout, meta.input.color) == (dtype, layout, color)
    assert meta.extra["normalization_folded"]["mean"] == base_meta.input.mean
    padded = first_kernel == 3
    assert ops(model).count("Sub") == ops(base).count("Sub") + (1 if padded else 0)
    assert ("Cast" in ops(model)) == (dtype == "uint8")
    assert model.graph.input[0].type.tensor_type.elem_type == (
        onnx.TensorProto.UINT8 if dtype == "uint8" else onnx.TensorProto.FLOAT)
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)  # BGR, letterboxed into 96x64
    x_base, _ = preprocess_frame(frame, base_meta.input)
    x_raw, _ = preprocess_frame(frame, meta.input)
    assert x_raw.dtype == np.dtype(dtype)
    ref, got = infer(base, x_base[None]), infer(model, x_raw[None])
    for name in ("heatmaps", "pafs"):
        np.testing.assert_allclose(got[name], ref[name], atol=1e-4)


def test_fold_normalization_refuses_non_conv_input():
    model, _, _ = run_passes(make_pose_model(seed=4), ["fold"])  # input still NHWC -> Transpose
    with pytest.raises(ModelError, match="transposes"):
        run_passes(model, ["normalize"])
    same, meta, reports = run_passes(model, ["normalize"], {"normalize": {"on_unsupported": "skip"}})
    assert reports[0].nodes_after == reports[0].nodes_before and "skipped" in reports[0].changes[0]
    assert meta.input.dtype == "float32" and "normalization_folded" not in meta.extra


def test_fix_input_shape_static_and_equal(original, nhwc_batch):
    model, meta, _ = run_passes(original, ["fold", "transposes", "shape"], {"shape": {"width": W, "height": H,
                                                                                     "batch": 2}})
    sess = session(model)
    assert sess.get_inputs()[0].shape == [2, 3, H, W]
    shapes = {o.name: o.shape for o in sess.get_outputs()}
    assert shapes["heatmaps"] == [2, 19, H // 8, W // 8] and shapes["pafs"] == [2, 38, H // 8, W // 8]
    for value in model.graph.value_info:  # every intermediate shape is static
        assert all(d.HasField("dim_value") for d in value.type.tensor_type.shape.dim), value.name
    assert (meta.input.width, meta.input.height, meta.input.batch) == (W, H, 2)
    ref = infer(original, nhwc_batch)
    got = infer(model, np.ascontiguousarray(nhwc_batch.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(got["heatmaps"], ref["heatmaps"].transpose(0, 3, 1, 2), atol=EXACT)


def test_fix_input_shape_rejects_non_stride_multiple(original):
    with pytest.raises(ConfigError, match="multiples"):
        run_passes(original, ["shape"], {"shape": {"width": 100, "height": 64}})


def host_peaks(heatmaps, k, threshold, refine):
    """The runtime decoder's host peak finder, padded to K slots."""
    found = find_peaks(heatmaps, DecodeConfig(peak_threshold=threshold, refine=refine, max_peaks_per_part=k))
    out = np.zeros((18, k, 3), np.float32)
    out[:, :found.shape[1]] = found
    return out


@pytest.mark.parametrize("refine", ["log_quadratic", "quadratic", "none"])
def test_peaks_match_the_decoders_host_peak_finder(original, nhwc_batch, refine):
    chain = ["fold", "transposes", "prune", "shape"]
    base, _, _ = run_passes(original, chain, {"shape": {"width": W, "height": H, "batch": 2}})
    k = 6
    model, meta, reports = run_passes(base, ["peaks"], {"peaks": {"k": k, "threshold": 0.3, "refine": refine}})
    assert meta.outputs == {"peaks": "peaks", "pafs": "pafs"} and meta.extra["peaks"]["k"] == k
    assert [o.name for o in model.graph.output] == ["peaks", "pafs"]
    assert "TopK" in ops(model) and "MaxPool" in ops(model) and reports[0].nodes_after > reports[0].nodes_before
    x = np.ascontiguousarray(nhwc_batch.transpose(0, 3, 1, 2))
    ref, got = infer(base, x), infer(model, x)
    assert got["peaks"].shape == (2, 18, k, 3) and got["peaks"].dtype == np.float32
    np.testing.assert_allclose(got["pafs"], ref["pafs"], atol=EXACT)
    found = 0
    for b in range(2):
        expected = host_peaks(ref["heatmaps"][b], k, 0.3, refine)
        np.testing.assert_allclose(got["peaks"][b], expected, atol=1e-4)
        found += int((expected[..., 2] > 0).sum())
        border = (expected[..., 2] > 0) & ((expected[..., 0] < 0.5) | (expected[..., 1] < 0.5))
        found += 100 * int(border.any())  # border peaks seen in at least one image
    assert found > 100  # real peaks compared, border cases included
    if refine != "none":
        assert np.any(np.abs(got["peaks"][..., 0] - np.round(got["peaks"][..., 0])) > 1e-3)


def oracle_model(heatmaps, pafs):
    """An ONNX model whose outputs are fixed maps (its input only broadcasts in)."""
    from onnx import TensorProto, helper

    h, w = heatmaps.shape[1:]
    const_h = helper.make_tensor("maps", TensorProto.FLOAT, [1, 19, h, w], heatmaps.ravel())
    const_p = helper.make_tensor("pafs_c", TensorProto.FLOAT, [1, 38, h, w], pafs.ravel())
    graph = helper.make_graph(
        [helper.make_node("Add", ["image", "maps"], ["heatmaps"]),
         helper.make_node("Add", ["image", "pafs_c"], ["pafs"])],
        "oracle", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 1, 1])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 19, h, w]),
         helper.make_tensor_value_info("pafs", TensorProto.FLOAT, [1, 38, h, w])], initializer=[const_h, const_p])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_peaks_plateau_keeps_first_cell_like_the_decoder():
    heatmaps = np.zeros((19, 6, 7), np.float32)
    heatmaps[3, 2:4, 3:5] = 0.8  # a 2x2 plateau: one peak, at its first cell in raster order
    heatmaps[4, 0, 0], heatmaps[4, 5, 6] = 0.5, 0.6  # corners
    out, _, _ = run_passes(oracle_model(heatmaps, np.zeros((38, 6, 7), np.float32)), ["peaks"], {"peaks": {"k": 3}})
    peaks = infer(out, np.zeros((1, 1, 1, 1), np.float32))["peaks"][0]
    np.testing.assert_allclose(peaks, host_peaks(heatmaps, 3, 0.1, "log_quadratic"), atol=1e-5)
    assert (peaks[3, :, 2] > 0).sum() == 1 and (peaks[4, :, 2] > 0).sum() == 2


def test_gpu_peaks_decode_to_the_same_people():
    """Oracle maps of known people: decode_peaks(GPU peaks) == decode_poses(heatmaps), at sub-cell accuracy."""
    from edge_sdk.runtime.maps import render_maps

    h, w = 32, 48
    from edge_sdk.runtime.skeleton import map_to_image

    people = np.array([[[6.0 + 3.3 * (i % 3) + 14 * p, 3.0 + 1.5 * i + 0.7 * p, 2.0] for i in range(18)]
                       for p in range(3)], np.float32)  # [P, 18, 3] in map cells, all visible
    pixels = people.copy()
    pixels[..., :2] = map_to_image(people[..., :2])
    heatmaps, pafs = render_maps(pixels, h * 8, w * 8)
    model = oracle_model(heatmaps, pafs)
    out, _, _ = run_passes(model, ["peaks"], {"peaks": {"k": 8}})
    result = infer(out, np.zeros((1, 1, 1, 1), np.float32))
    from_gpu = decode_peaks(result["peaks"][0], result["pafs"][0])
    from_maps = decode_poses(heatmaps, pafs)
    assert len(from_gpu.scores) == len(from_maps.scores) == 3
    np.testing.assert_allclose(from_gpu.keypoints, from_maps.keypoints, atol=1e-4)
    order = np.argsort(from_gpu.keypoints[:, 1, 0])
    np.testing.assert_allclose(from_gpu.keypoints[order, :, :2], people[:, :, :2], atol=0.05)


def test_full_chain_equivalent_through_preprocess(original):
    model, meta, reports = run_passes(original, ["fold", "transposes", "prune", "normalize", "shape", "fold"],
                                      {"shape": {"width": W, "height": H}})
    assert reports[-1].nodes_after < len(original.graph.node)
    frame = np.random.default_rng(5).integers(0, 256, (90, 150, 3), dtype=np.uint8)
    x_orig, _ = preprocess_frame(frame, get_meta(original).input)
    x_new, _ = preprocess_frame(frame, meta.input)
    ref, got = infer(original, x_orig[None]), infer(model, x_new[None])
    np.testing.assert_allclose(got["heatmaps"], ref["heatmaps"].transpose(0, 3, 1, 2), atol=1e-4)
    np.testing.assert_allclose(got["pafs"], ref["pafs"].transpose(0, 3, 1, 2), atol=1e-4)


def test_bad_inputs(tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    with pytest.raises(ModelError, match="not an ONNX model"):
        load_model(junk)
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "missing.onnx")
    model = make_pose_model(seed=0)
    del model.graph.output[:2]  # only stage-1 outputs left
    with pytest.raises(ModelError, match="heatmaps"):
        check_outputs(model, get_meta(model))
    with pytest.raises(ConfigError, match="unknown pass 'fld'"):
        run_passes(model, ["fld"])


def test_cli_rewrite_prints_each_pass(tmp_path, edge_sdk_cli):
    src, dst = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(make_pose_model(seed=0), src)
    proc = edge_sdk_cli("rewrite", src, "-o", dst, "--passes", "fold,transposes,prune,shape,peaks",
                        "--input", "96x64", "--peaks", "4")
    assert proc.returncode == 0, proc.stderr
    for name in ("fold", "transposes", "prune", "shape", "peaks"):
        assert any(line.startswith(name) and "nodes" in line for line in proc.stdout.splitlines()), name
    out = load_model(dst)
    assert [o.name for o in out.graph.output] == ["peaks", "pafs"]
    bad = edge_sdk_cli("rewrite", src, "-o", dst, "--passes", "fold,foo")
    assert bad.returncode == 2 and "unknown pass 'foo'" in bad.stderr and "Traceback" not in bad.stderr


def test_transposes_keep_map_layouts_consistent():
    """If only one of the maps can drop its NHWC Transpose, neither does: the metadata layout stays true."""
    from onnx import helper

    model = make_pose_model(seed=0)
    last = next(n for n in model.graph.node if n.output[0] == "pafs")
    last.output[0] = "pafs_nhwc"
    model.graph.node.append(helper.make_node("Relu", ["pafs_nhwc"], ["pafs"]))  # not a Transpose at the end
    out, meta, reports = run_passes(model, ["transposes"])
    assert meta.extra["output_layout"] == "NHWC" and "kept as they are" in " ".join(reports[0].changes)
    shapes = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in out.graph.output}
    assert shapes["heatmaps"][-1] == 19  # still NHWC
    assert shapes["stage1_heatmaps"][1] == 19  # an output the runtime does not read may still change


def _concat_conv_model(channels=(3, 5, 13), dense_reader=True, extra_reader=None):
    """x (C0 channels) -> conv -> [a, b, c] -> Concat (21 channels) -> depthwise 3x3 -> pointwise 1x1 (+ a 1x1
    conv reading the Concat directly): the shape of tf-pose's refinement stages (121 channels)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    total = sum(channels)
    inits, nodes, parts = [], [], []
    for i, c in enumerate(channels):
        inits.append(numpy_helper.from_array(rng.normal(size=(c, 4, 3, 3)).astype(np.float32), "w{}".format(i)))
        nodes.append(helper.make_node("Conv", ["x", "w{}".format(i)], ["p{}".format(i)], pads=[1, 1, 1, 1]))
        parts.append("p{}".format(i))
    nodes.append(helper.make_node("Concat", parts, ["cat"], axis=1))
    inits += [numpy_helper.from_array(rng.normal(size=(total, 1, 3, 3)).astype(np.float32), "dw"),
              numpy_helper.from_array(rng.normal(size=(total,)).astype(np.float32), "dwb"),
              numpy_helper.from_array(rng.normal(size=(8, total, 1, 1)).astype(np.float32), "pw"),
              numpy_helper.from_array(rng.normal(size=(6, total, 1, 1)).astype(np.float32), "dense")]
    nodes += [helper.make_node("Conv", ["cat", "dw", "dwb"], ["mid"], group=total, pads=[1, 1, 1, 1]),
              helper.make_node("Conv", ["mid", "pw"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if dense_reader:
        nodes.append(helper.make_node("Conv", ["cat", "dense"], ["z"]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    if extra_reader:
        nodes.append(helper.make_node(extra_reader, ["cat"], ["r"]))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "chanpad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 12, 10])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_chanpad_pads_concat_channels_with_zeros_and_keeps_outputs():
    model = _concat_conv_model()
    x = np.random.default_rng(0).normal(size=(1, 4, 12, 10)).astype(np.float32)
    padded, _, reports = run_passes(model, ["chanpad"])
    assert "1 Concat(s) zero-padded to a multiple of 16 channels (cat 21->32" in reports[0].changes[0]
    weights = {w.name: onnx.numpy_helper.to_array(w) for w in padded.graph.initializer}
    convs = {n.output[0]: n for n in padded.graph.node if n.op_type == "Conv"}
    assert weights[convs["mid"].input[1]].shape == (32, 1, 3, 3)
    assert onnx.helper.get_attribute_value(next(a for a in convs["mid"].attribute if a.name == "group")) == 32
    assert weights[convs["y"].input[1]].shape == (8, 32, 1, 1) and weights[convs["z"].input[1]].shape == (6, 32, 1, 1)
    assert not weights[convs["y"].input[1]][:, 21:].any() and not weights[convs["mid"].input[2]][21:].any()
    before, after = infer(model, x), infer(padded, x)
    for name in ("y", "z"):
        assert np.abs(before[name] - after[name]).max() < 1e-4 * max(1.0, np.abs(before[name]).max())


@pytest.mark.parametrize("channels, extra_reader", [((3, 5, 8), None), ((3, 5, 13), "Relu")])
def test_chanpad_leaves_whole_blocks_and_non_conv_readers_alone(channels, extra_reader):
    """16 channels already fill a block; a Relu reading the Concat would see the zero channels."""
    model = _concat_conv_model(channels, extra_reader=extra_reader)
    padded, _, reports = run_passes(model, ["chanpad"])
    assert reports[0].changes[0].startswith("no Concat to pad")
    assert padded.SerializeToString() == model.SerializeToString()
