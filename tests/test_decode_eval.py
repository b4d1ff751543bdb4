"""The host-side COCO helpers the decoder tests, benchmarks and calibration report share."""

import json

import numpy as np
from conftest import COCO_LAYOUTS, COCO_MINI

from edge_sdk.eval import STAT_NAMES, evaluate_keypoints, gt_from_results, poses_to_results


def test_ground_truth_scores_perfectly_and_nothing_scores_zero():
    gt = json.loads((COCO_MINI / "person_keypoints.json").read_text())
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in gt["annotations"] if a["num_keypoints"] > 0]
    stats = evaluate_keypoints(COCO_MINI / "person_keypoints.json", results)
    assert list(stats) == STAT_NAMES
    assert stats["AP"] > 0.99 and stats["AR"] > 0.99
    assert evaluate_keypoints(gt, []) == {name: 0.0 for name in STAT_NAMES}


def test_gt_from_results_drops_placeholders_and_sizes_images():
    raw = json.loads(COCO_LAYOUTS.read_text())
    gt = gt_from_results(COCO_LAYOUTS)
    first = next(a for a in gt["annotations"] if a["image_id"] == raw[0]["image_id"])
    kp = np.array(first["keypoints"]).reshape(17, 3)
    placeholder = np.array(raw[0]["keypoints"]).reshape(17, 3)[:, 2] == 0
    assert np.all(kp[placeholder] == 0) and np.all(kp[~placeholder, 2] == 2)
    assert first["num_keypoints"] == int((~placeholder).sum())
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        assert x + w <= sizes[ann["image_id"]][0] and y + h <= sizes[ann["image_id"]][1]
    assert all(im["width"] == 640 for im in gt_from_results(raw, image_size=(640, 480))["images"])


def test_poses_to_results_shape():
    kp = np.zeros((2, 17, 3), np.float32)
    kp[1, 0] = (10.5, 20.25, 0.9)
    results = poses_to_results(kp, [0.8, 0.7], image_id=7)
    assert [r["score"] for r in results] == [0.8, 0.7]
    assert results[1]["keypoints"][:3] == [10.5, 20.25, 0.9] and len(results[0]["keypoints"]) == 51
