"""Host-side evaluation: COCO keypoint results and OKS AP/AR with pycocotools (the `[host]`/`[train]` extras)."""

from edge_sdk.eval.coco import (
    STAT_NAMES,
    evaluate_keypoints,
    gt_from_results,
    load_coco_json,
    poses_to_results,
)

__all__ = ["STAT_NAMES", "evaluate_keypoints", "gt_from_results", "load_coco_json", "poses_to_results"]
