"""Dense crowd scenes for the decoder benchmark: real COCO poses packed into overlapping, crossing crowds.

Each scene places 8-20 people (poses taken from the real COCO layouts in ``tests/data/coco_layouts``,
mirrored at random, arms swung at random so that limbs cross) on a ground plane seen in perspective: people
further back are smaller and higher, so one frame holds several scales; neighbours stand closer than their
width, so bodies overlap; people near the frame edges are cut by the border (their joints outside the
image are not annotated and not rendered). Scenes are a pure function of their seed, so a tuning seed set
and a held-out seed set never share a scene.

``ceiling_results`` is the best any assembler can do on a scene's maps: every ground-truth joint takes the
nearest peak of its part (the peaks the decoder finds, sub-pixel), i.e. a perfect assignment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_sdk.eval.coco import gt_from_results, load_coco_json
from edge_sdk.eval.oracle import OracleFrame
from edge_sdk.runtime.maps import render_maps
from edge_sdk.runtime.skeleton import STRIDE, coco17_to_coco18, coco18_to_coco17, map_to_image

TUNING_SEEDS = range(0, 40)
"""Scenes the decoder's settings were chosen on."""
HELD_OUT_SEEDS = range(10_000, 10_040)
"""Scenes never looked at while tuning: the figures in docs/decoder.md come from these."""

SCENE_SIZE = (640, 480)
"""(width, height) of every scene, in input pixels (an 80x60 map at stride 8)."""

_MIN_TEMPLATE_JOINTS = 10
_ARMS = ((5, 7, 9), (6, 8, 10))  # COCO-17 (shoulder, elbow, wrist), left and right
_FLIP17 = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]


def pose_templates(layouts: str | Path | list) -> np.ndarray:
    """Real poses [T, 17, 3] (v in {0, 2}) from a COCO keypoint results file, centred on their box and
    scaled to a box height of 1; only people with at least 10 joints, shoulders and hips are kept."""
    people = []
    for res in load_coco_json(layouts) if not isinstance(layouts, list) else layouts:
        kp = np.asarray(res["keypoints"], dtype=np.float64).reshape(17, 3)
        vis = kp[:, 2] > 0
        if vis.sum() < _MIN_TEMPLATE_JOINTS or not vis[[5, 6, 11, 12]].all():
            continue
        lo, hi = kp[vis, :2].min(axis=0), kp[vis, :2].max(axis=0)
        if hi[1] - lo[1] < 1.0:
            continue
        out = np.zeros((17, 3))
        out[vis, :2] = (kp[vis, :2] - (lo + hi) / 2.0) / (hi[1] - lo[1])
        out[vis, 2] = 2.0
        people.append(out)
    if not people:
        raise ValueError("no usable pose template (>= 10 joints with shoulders and hips) in the layouts")
    return np.asarray(people, dtype=np.float64)


def _swing_arms(pose: np.ndarray, rng: np.random.Generator) -> None:
    """Rotate each visible arm about its shoulder by up to +-100 degrees (crossing limbs in crowds)."""
    for shoulder, elbow, wrist in _ARMS:
        if pose[shoulder, 2] <= 0 or rng.random() < 0.4:
            continue
        angle = rng.uniform(-1.75, 1.75)
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, -s], [s, c]])
        for joint in (elbow, wrist):
            if pose[joint, 2] > 0:
                pose[joint, :2] = pose[shoulder, :2] + rot @ (pose[joint, :2] - pose[shoulder, :2])


def scene_people(seed: int, templates: np.ndarray, size: tuple[int, int] = SCENE_SIZE,
                 people: tuple[int, int] = (8, 20)) -> np.ndarray:
    """Keypoints [P, 17, 3] (image px, v = 2 inside the image, 0 outside) of the scene of ``seed``.

    People stand on a ground plane: feet at height y_f, body height proportional to y_f (perspective), so
    one scene spans about 4x in scale; x positions are spread over the width plus a margin, so people are
    cut by the border and neighbours overlap. People with fewer than 3 joints in the image are left out.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    count = int(rng.integers(people[0], people[1] + 1))
    out = []
    attempts = 0
    while len(out) < count and attempts < 50 * count:
        attempts += 1
        pose = templates[rng.integers(len(templates))].copy()
        if rng.random() < 0.5:
            pose = pose[_FLIP17]
            pose[:, 0] *= -1.0
        _swing_arms(pose, rng)
        feet = rng.uniform(0.35, 1.2) * height  # ground contact, may be below the frame
        person_height = feet * rng.uniform(0.45, 0.75)
        centre_x = rng.uniform(-0.1, 1.1) * width
        kp = np.zeros((17, 3))
        vis = pose[:, 2] > 0
        kp[vis, 0] = centre_x + pose[vis, 0] * person_height
        kp[vis, 1] = feet - person_height / 2.0 + pose[vis, 1] * person_height
        inside = vis & (kp[:, 0] >= 0) & (kp[:, 0] <= width - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= height - 1)
        if inside.sum() < 3:
            continue
        kp[inside, 2] = 2.0
        kp[~inside] = 0.0
        out.append(kp)
    return np.asarray(out, dtype=np.float32).reshape(-1, 17, 3)


class CrowdSet:
    """Scenes of a seed set: ``gt`` (a COCO ground-truth dict, image ids = seeds), ``frames`` (oracle maps)
    and ``people`` (seed -> [P, 17, 3] keypoints)."""

    def __init__(self, gt: dict, frames: list[OracleFrame], people: dict[int, np.ndarray]):
        self.gt = gt
        self.frames = frames
        self.people = people

    @property
    def num_people(self) -> int:
        return len(self.gt["annotations"])


def crowd_set(seeds, layouts: str | Path | list, size: tuple[int, int] = SCENE_SIZE,
              people: tuple[int, int] = (8, 20)) -> CrowdSet:
    """The scenes of ``seeds`` rendered to oracle maps, with their COCO ground truth."""
    templates = pose_templates(layouts)
    width, height = size
    results, frames, by_seed = [], [], {}
    for seed in seeds:
        kp17 = scene_people(int(seed), templates, size, people)
        by_seed[int(seed)] = kp17
        results += [{"image_id": int(seed), "category_id": 1, "score": 1.0,
                     "keypoints": [float(v) for v in person.reshape(-1)]} for person in kp17]
        heatmaps, pafs = render_maps(coco17_to_coco18(kp17), height, width)
        frames.append(OracleFrame(int(seed), width, height, heatmaps, pafs))
    gt = gt_from_results(results, image_size=size)
    return CrowdSet(gt, frames, by_seed)


def ceiling_results(people17: np.ndarray, peaks: np.ndarray, image_id: int, radius_cells: float = 2.0,
                    ) -> list[dict]:
    """COCO results of a perfect assignment: each ground-truth joint takes the nearest peak of its part
    within ``radius_cells`` (peaks [18, K, 3] in map cells, as ``find_peaks`` returns them); a peak may serve
    two people (merged peaks of close joints). Person score 1."""
    from edge_sdk.eval.coco import poses_to_results

    truth18 = coco17_to_coco18(people17)
    found = np.zeros_like(truth18)
    for part in range(truth18.shape[1]):
        cands = peaks[part][peaks[part, :, 2] > 0]
        if cands.shape[0] == 0:
            continue
        cells = map_to_image(cands[:, :2])
        for p in range(truth18.shape[0]):
            if truth18[p, part, 2] <= 0:
                continue
            dist = np.hypot(*(cells - truth18[p, part, :2]).T)
            best = int(np.argmin(dist))
            if dist[best] <= radius_cells * STRIDE:
                found[p, part] = (cells[best, 0], cells[best, 1], cands[best, 2])
    kp17 = coco18_to_coco17(found)
    return poses_to_results(kp17, np.ones(len(kp17)), image_id)


__all__ = ["HELD_OUT_SEEDS", "TUNING_SEEDS", "SCENE_SIZE", "CrowdSet", "ceiling_results", "crowd_set",
           "pose_templates", "scene_people"]
