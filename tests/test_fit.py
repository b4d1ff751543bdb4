"""`--fit letterbox|stretch`: the frame fills the input either way, and keypoints map back to frame pixels."""

import json

import numpy as np
import pytest
from test_bench_eval import _coco_mini_oracle

from edge_sdk.runtime.model_meta import InputSpec
from edge_sdk.runtime.preprocess import fit_params, preprocess_frame

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("fit", ["letterbox", "stretch"])
def test_inverse_mapping_returns_frame_pixels(fit):
    box, (new_w, new_h) = fit_params(480, 640, 368, 432, fit)
    corners = np.array([[0, 0], [639, 479], [320, 100]], np.float32)
    assert np.allclose(box.input_to_frame(box.frame_to_input(corners)), corners, atol=1e-3)
    if fit == "stretch":
        assert (new_w, new_h) == (432, 368) and box.pad_x == box.pad_y == 0
        assert box.scale_x == pytest.approx(432 / 640) and box.scale_y == pytest.approx(368 / 480)
    else:
        assert box.scale_x == box.scale_y and new_w == 432 and new_h < 368 and box.pad_y > 0


def test_stretch_fills_the_input_and_letterbox_pads():
    frame = np.full((90, 320, 3), 200, np.uint8)  # a wide frame
    spec = InputSpec(height=128, width=128, dtype="uint8", layout="NHWC", color="BGR")
    padded, _ = preprocess_frame(frame, spec)
    spec.fit = "stretch"
    filled, _ = preprocess_frame(frame, spec)
    assert (filled == 200).all()
    assert (padded[0] == 0).all() and (padded[64] == 200).all()  # top rows are padding


def test_fit_both_ways_on_real_photos(tmp_path, edge_sdk_cli):
    """An oracle whose maps were rendered for one fit: decoded with that fit, the real COCO annotations come
    back (AP near 1); with the other fit the keypoints land elsewhere (AP near 0)."""
    from edge_sdk.eval.dataset import evaluate_dataset

    results = {}
    for rendered in ("letterbox", "stretch"):
        gt_path, folder, model, _ = _coco_mini_oracle(tmp_path / rendered, InputSpec(height=256, width=256,
                                                                                     fit=rendered))
        for used in ("letterbox", "stretch"):
            report = evaluate_dataset(gt_path, folder, model=str(model), fit=used, progress=False, limit=6)
            results[rendered, used] = report["stats"]["AP"]
            assert report["fit"] == used
    for rendered in ("letterbox", "stretch"):
        other = "stretch" if rendered == "letterbox" else "letterbox"
        assert results[rendered, rendered] >= 0.75, results
        assert results[rendered, other] <= 0.25, results
    # the command line: the flag overrides the model's own fit
    out = tmp_path / "cli.json"
    edge_sdk_cli("eval", "--model", model, "--coco", gt_path, "--images", folder, "--fit", "letterbox", "--limit", 6,
                 "-o", out, check=True)
    assert json.loads(out.read_text())["stats"]["AP"] == pytest.approx(results["stretch", "letterbox"], abs=1e-6)
