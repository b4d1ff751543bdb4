"""Oracle maps: heatmaps/PAFs rendered from ground-truth keypoints, to test and benchmark decoders alone.

Rendering from annotations, decoding and scoring the result with COCO OKS measures the decoder with no
network in the way (a perfect network would output exactly these maps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from edge_sdk.eval.coco import load_coco_json, poses_to_results
from edge_sdk.runtime.maps import render_maps
from edge_sdk.runtime.skeleton import STRIDE, coco17_to_coco18


class OracleFrame:
    """One image's oracle maps: ``heatmaps`` [19, H/8, W/8], ``pafs`` [38, H/8, W/8], and its COCO id/size."""

    def __init__(self, image_id: int, width: int, height: int, heatmaps: np.ndarray, pafs: np.ndarray):
        self.image_id = image_id
        self.width = width
        self.height = height
        self.heatmaps = heatmaps
        self.pafs = pafs


def oracle_frames(gt: dict | str | Path, stride: int = STRIDE) -> Iterator[OracleFrame]:
    """Oracle maps of every image of a COCO keypoint ground truth, at ``stride`` of each image's own size."""
    data = load_coco_json(gt)
    by_image: dict[int, list] = {}
    for ann in data["annotations"]:
        if ann.get("num_keypoints", 1) > 0 and not ann.get("iscrowd", 0):
            by_image.setdefault(int(ann["image_id"]), []).append(ann["keypoints"])
    for image in sorted(data["images"], key=lambda im: im["id"]):
        people17 = np.asarray(by_image.get(int(image["id"]), []), dtype=np.float32).reshape(-1, 17, 3)
        heatmaps, pafs = render_maps(coco17_to_coco18(people17), image["height"], image["width"], stride)
        yield OracleFrame(int(image["id"]), int(image["width"]), int(image["height"]), heatmaps, pafs)


def decode_frames(frames: list[OracleFrame], decode: Callable[[np.ndarray, np.ndarray], tuple],
                  ) -> list[dict]:
    """COCO results of ``decode(heatmaps, pafs) -> (keypoints17 [P, 17, 3] image px, scores [P])``."""
    results: list[dict] = []
    for frame in frames:
        keypoints17, scores = decode(frame.heatmaps, frame.pafs)
        results += poses_to_results(keypoints17, scores, frame.image_id)
    return results


def degrade_maps(heatmaps: np.ndarray, pafs: np.ndarray, rng: np.random.Generator, noise: float = 0.02,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Oracle maps made to look more like a network's: peaks of random height (0.65-1.3, clipped to 1),
    blurred (sigma 0.7 cells), Gaussian noise of std ``noise`` on heatmaps and ``2 * noise`` on PAFs,
    PAF magnitude 0.8. Seeded by ``rng`` so that several decoders see the very same maps."""
    import cv2

    parts = heatmaps[:-1] * rng.uniform(0.5, 1.0)
    parts = np.stack([cv2.GaussianBlur(channel, (0, 0), 0.7) for channel in parts])
    parts = np.clip(parts * 1.3 + rng.normal(0.0, noise, parts.shape), 0.0, 1.0).astype(np.float32)
    out_heatmaps = np.concatenate([parts, 1.0 - parts.max(axis=0, keepdims=True)]).astype(np.float32)
    out_pafs = (pafs * 0.8 + rng.normal(0.0, 2.0 * noise, pafs.shape)).astype(np.float32)
    return out_heatmaps, out_pafs
