"""A tiny model overfits a handful of synthetic people until decoding its output finds them (pycocotools
OKS AP), and the exported ONNX model gives the same maps and the same poses under ONNX Runtime."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
ort = pytest.importorskip("onnxruntime")

from edge_sdk.training.augment import AugmentConfig  # noqa: E402
from edge_sdk.training.config import TrainConfig  # noqa: E402
from edge_sdk.training.data.input_pipeline import make_dataset  # noqa: E402
from edge_sdk.training.data.sample_sources import SyntheticSource  # noqa: E402
from edge_sdk.training.export import export_onnx, load_trained_model  # noqa: E402
from edge_sdk.training.loop import train  # noqa: E402
from edge_sdk.training.models import ModelConfig  # noqa: E402

from edge_sdk.eval.coco import evaluate_keypoints, poses_to_results  # noqa: E402
from edge_sdk.runtime.decode import decode_poses  # noqa: E402
from edge_sdk.runtime.model_meta import ModelMeta  # noqa: E402
from edge_sdk.synthetic_people import to_coco  # noqa: E402

HEIGHT, WIDTH, IMAGES = 96, 128, 3


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    """Train tinyvgg (width 0.25) for 800 steps on the same 3 images (one person each, no augmentation)."""
    run_dir = tmp_path_factory.mktemp("overfit") / "run"
    source = SyntheticSource(count=IMAGES, height=HEIGHT, width=WIDTH, seed=5, people=(1, 1))
    config = TrainConfig(output=str(run_dir), model=ModelConfig(backbone="tinyvgg", input_height=HEIGHT,
                                                                input_width=WIDTH, width=0.25, stages=2,
                                                                stage_width=32),
                         steps=800, batch=IMAGES, learning_rate=2e-3, warmup_steps=10, schedule="cosine",
                         augment=AugmentConfig.none(), progress=False, checkpoint_every=10 ** 6, seed=0)
    result = train(config, source=source)
    images, _ = next(iter(make_dataset(source, (HEIGHT, WIDTH), IMAGES, AugmentConfig.none(), shuffle=False,
                                       repeat=False)))
    return {"run_dir": run_dir, "result": result, "source": source, "images": images.numpy()}


def decode_all(heatmaps_nchw, pafs_nchw):
    results, people = [], []
    for i in range(len(heatmaps_nchw)):
        poses = decode_poses(heatmaps_nchw[i], pafs_nchw[i])
        keypoints, scores = poses.to_frame()
        results += poses_to_results(keypoints, scores, image_id=i + 1)
        people.append(keypoints)
    return results, people


def test_decoded_poses_match_the_ground_truth(overfit):
    losses = overfit["result"].losses
    assert np.isfinite(losses).all() and np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10])
    model, _ = load_trained_model(overfit["run_dir"])
    outputs = model(overfit["images"], training=False)
    results, _ = decode_all(outputs[-2].numpy().transpose(0, 3, 1, 2), outputs[-1].numpy().transpose(0, 3, 1, 2))
    samples = [overfit["source"].generator.sample(i) for i in range(IMAGES)]
    stats = evaluate_keypoints(to_coco(samples), results)
    print("OKS stats of the overfit model:", stats)
    # chance is ~0: a detection must put most of 17 joints within the OKS tolerance of the right person
    assert stats["AP50"] >= 0.3 and stats["AP"] >= 0.05, stats


def test_exported_onnx_gives_the_same_poses(overfit, tmp_path, capsys):
    path = tmp_path / "overfit.onnx"
    result = export_onnx(overfit["run_dir"], path)
    assert "max abs error" in capsys.readouterr().out
    assert result.max_abs_error < 1e-3

    import onnx

    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 13
    meta = ModelMeta.from_props({p.key: p.value for p in model.metadata_props})
    assert (meta.input.height, meta.input.width, meta.input.layout) == (HEIGHT, WIDTH, "NCHW")
    assert meta.input.mean == [0.485, 0.456, 0.406] and meta.stride == 8

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    nchw = np.ascontiguousarray(overfit["images"].transpose(0, 3, 1, 2))
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": nchw})))
    assert got["heatmaps"].shape == (IMAGES, 19, HEIGHT // 8, WIDTH // 8)
    assert got["pafs"].shape == (IMAGES, 38, HEIGHT // 8, WIDTH // 8)
    keras_model, _ = load_trained_model(overfit["run_dir"])
    outputs = keras_model(overfit["images"], training=False)
    want_hm, want_paf = outputs[-2].numpy().transpose(0, 3, 1, 2), outputs[-1].numpy().transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got["heatmaps"], want_hm, atol=1e-4)
    _, onnx_people = decode_all(got["heatmaps"], got["pafs"])
    _, keras_people = decode_all(want_hm, want_paf)
    assert sum(len(p) for p in keras_people) >= IMAGES - 1
    for a, b in zip(onnx_people, keras_people):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=0.05)  # same people, same joints (pixels)
