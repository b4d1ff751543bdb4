"""Pass `limbs`: the engine scores every candidate limb; with ONNX Runtime its [19, K, K] scores equal the host
decoder's on the same maps, and decode_limbs assembles the same people as decode_peaks.

Tolerance: the sampled cells, projections and agreement counts are computed in the same float32 order as
the host (exact); the mean over the samples may sum in another order, so scores match to 1e-5.
"""

import numpy as np
import pytest
from conftest import COCO_LAYOUTS
from test_graph_passes import infer, oracle_model

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.eval.crowd_scenes import HELD_OUT_SEEDS, crowd_set
from edge_sdk.eval.oracle import degrade_maps
from edge_sdk.graph import run_passes
from edge_sdk.runtime.decode import (
    INVALID_LIMB_SCORE,
    DecodeConfig,
    DecodeError,
    decode_limbs,
    decode_peaks,
    score_limb,
)
from edge_sdk.runtime.model_meta import ModelMeta
from edge_sdk.runtime.pipeline import default_decoder
from edge_sdk.runtime.skeleton import LIMBS

K = 24


@pytest.fixture(scope="module")
def scenes():
    crowd = crowd_set(HELD_OUT_SEEDS[:3], COCO_LAYOUTS)
    rng = np.random.default_rng(7)
    noisy = [degrade_maps(f.heatmaps, f.pafs, rng, 0.02) for f in crowd.frames[:2]]
    return [(f.heatmaps, f.pafs) for f in crowd.frames] + noisy


def engine_outputs(heatmaps, pafs, **limbs_options):
    model, meta, reports = run_passes(oracle_model(heatmaps, pafs), ["peaks", "limbs"],
                                      {"peaks": {"k": K}, "limbs": limbs_options})
    out = infer(model, np.zeros((1, 1, 1, 1), np.float32))
    return out, meta, reports


def test_engine_limb_scores_equal_the_host_decoders(scenes):
    compared = 0
    for heatmaps, pafs in scenes:
        out, meta, reports = engine_outputs(heatmaps, pafs)
        assert set(out) == {"peaks", "limb_scores"} and meta.outputs == {"peaks": "peaks", "limb_scores": "limb_scores"}
        assert out["limb_scores"].shape == (1, 19, K, K) and out["limb_scores"].dtype == np.float32
        assert "'pafs'" in reports[1].changes[1] and meta.extra["limbs"]["samples"] == 10
        peaks, scores = out["peaks"][0], out["limb_scores"][0]
        for limb, (a, b) in enumerate(LIMBS):
            host = score_limb(peaks[a], peaks[b], pafs[2 * limb], pafs[2 * limb + 1], DecodeConfig(), pafs.shape[1])
            is_limb = scores[limb] > INVALID_LIMB_SCORE / 2
            np.testing.assert_array_equal(is_limb, np.isfinite(host))
            np.testing.assert_allclose(scores[limb][is_limb], host[is_limb], atol=1e-5)
            compared += int(is_limb.sum())
        from_engine = decode_limbs(peaks, scores, map_shape=pafs.shape[1:])
        from_host = decode_peaks(peaks, pafs)
        assert len(from_engine) == len(from_host) > 5
        np.testing.assert_array_equal(from_engine.keypoints, from_host.keypoints)
        np.testing.assert_allclose(from_engine.scores, from_host.scores, atol=1e-5)
    assert compared > 500  # real limbs compared, not only empty slots


def test_baked_thresholds_follow_the_options(scenes):
    heatmaps, pafs = scenes[-1]
    out, meta, _ = engine_outputs(heatmaps, pafs, samples=6, min_fraction=0.5, max_limb_fraction=None,
                                  keep_pafs=True)
    assert set(out) == {"peaks", "pafs", "limb_scores"} and meta.extra["limbs"]["max_limb_fraction"] is None
    config = DecodeConfig(paf_samples=6, paf_min_fraction=0.5, max_limb_fraction=None)
    peaks, scores = out["peaks"][0], out["limb_scores"][0]
    for limb, (a, b) in enumerate(LIMBS):
        host = score_limb(peaks[a], peaks[b], pafs[2 * limb], pafs[2 * limb + 1], config, pafs.shape[1])
        np.testing.assert_array_equal(scores[limb] > INVALID_LIMB_SCORE / 2, np.isfinite(host))


def test_limbs_needs_peaks_and_sane_options(scenes):
    heatmaps, pafs = scenes[0]
    model = oracle_model(heatmaps, pafs)
    with pytest.raises(ModelError, match="run the 'peaks' pass first"):
        run_passes(model, ["limbs"])
    for bad in ({"samples": 1}, {"min_fraction": 1.5}, {"max_limb_fraction": 0}):
        with pytest.raises(ConfigError):
            run_passes(model, ["peaks", "limbs"], {"limbs": bad})
    with pytest.raises(ConfigError, match="smaller --peaks K"):
        run_passes(model, ["peaks", "limbs"], {"peaks": {"k": 400}})
    twice, _, reports = run_passes(model, ["peaks", "limbs", "limbs"])
    assert reports[2].changes[0] == "limb_scores output already present"


def test_decode_limbs_rejects_scores_of_another_shape():
    peaks = np.zeros((18, 5, 3), np.float32)
    with pytest.raises(DecodeError, match=r"\[19, K, K\] with K = 5"):
        decode_limbs(peaks, np.zeros((19, 4, 4), np.float32))
    assert len(decode_limbs(peaks[None], np.zeros((1, 19, 5, 5), np.float32))) == 0


def test_the_runtime_decodes_engine_limb_scores(scenes):
    heatmaps, pafs = scenes[0]
    out, meta, _ = engine_outputs(heatmaps, pafs)
    decode = default_decoder(ModelMeta(outputs=meta.outputs))
    keypoints, scores = decode({"peaks": out["peaks"][0], "limb_scores": out["limb_scores"][0]}, None, 8)
    expected = decode_peaks(out["peaks"][0], pafs).to_frame(None, 8)
    np.testing.assert_array_equal(keypoints, expected[0])
    np.testing.assert_allclose(scores, expected[1], atol=1e-5)


def test_build_with_limbs_gives_a_bundle_the_runtime_opens(tmp_path):
    import onnx

    from edge_sdk.engine.build import BuildRequest, build
    from edge_sdk.graph.synthetic_model import make_pose_model
    from edge_sdk.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from edge_sdk.runtime.bundle import open_bundle

    model_path = tmp_path / "pose.onnx"
    onnx.save(make_pose_model(seed=7), str(model_path))
    result = build(BuildRequest(model=str(model_path), target="jetson-orin-nano", output=str(tmp_path / "b"),
                                input_size=(96, 64), peaks=5, limbs=True, engine="device", archive=False),
                   echo=lambda line: None)
    manifest = result.manifest
    assert manifest["outputs"] == {"peaks": "peaks", "limb_scores": "limb_scores"}
    assert [p["name"] for p in manifest["graph"]["passes"]][-2:] == ["peaks", "limbs"]
    bundle = open_bundle(str(result.bundle_dir))
    backend = OnnxRuntimeBackend(bundle.model_path, bundle.meta)
    image = np.zeros(backend.meta.input.shape, dtype=backend.meta.input.dtype)
    outputs = backend.infer(image[None] if image.ndim == 3 else image)
    shapes = sorted(np.asarray(o).shape for o in (outputs.values() if isinstance(outputs, dict) else outputs))
    assert shapes == [(1, 18, 5, 3), (1, 19, 5, 5)]
