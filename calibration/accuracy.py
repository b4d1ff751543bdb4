"""What INT8 costs: FP32 vs INT8 (ONNX Runtime CPU executes the Q/DQ graph) on held-out frames.

- map errors per output (heatmaps, PAFs): mean / max absolute error and relative L2 error;
- pose agreement: INT8 poses scored against FP32 poses as ground truth with pycocotools' OKS AP (1.0 = INT8
  finds the same people at the same joints). Needs the PAF decoder (``edge_sdk.runtime.decode``); without it
  agreement falls back to ``1 - relative L2 error`` of the maps, and the report says so.
- sensitivity: when the drop exceeds the threshold, each quantised node is kept in float alone and the map
  error measured; the most sensitive nodes are then kept in float one by one until the drop is small enough.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from edge_sdk.calibration.ranges import batches, make_session, model_batch

from edge_sdk.runtime.skeleton import STRIDE, coco18_to_coco17, map_to_image


def run_outputs(model, frames, output_names) -> dict:
    """{output name: [N, ...]} of ``model`` (ModelProto or bytes) on ``frames``."""
    session = make_session(model)
    input_name = session.get_inputs()[0].name
    n = len(frames)
    batch = model_batch(model) if not isinstance(model, bytes) else 1
    collected = {name: [] for name in output_names}
    for chunk in batches(frames, batch):
        for name, value in zip(output_names, session.run(list(output_names), {input_name: chunk})):
            collected[name].append(value)
    return {name: np.concatenate(v)[:n] for name, v in collected.items()}


def map_errors(reference: dict, candidate: dict) -> dict:
    """Per output: mean_abs, max_abs, rel_l2 (||cand - ref|| / ||ref||)."""
    errors = {}
    for name, ref in reference.items():
        diff = candidate[name].astype(np.float64) - ref.astype(np.float64)
        norm = float(np.linalg.norm(ref))
        errors[name] = {"mean_abs": float(np.abs(diff).mean()), "max_abs": float(np.abs(diff).max()),
                        "rel_l2": float(np.linalg.norm(diff) / norm) if norm > 0 else float(np.linalg.norm(diff))}
    return errors


def total_rel_l2(reference: dict, candidate: dict) -> float:
    """One number for all outputs: the relative L2 error of the concatenated maps."""
    num = sum(float(np.sum((candidate[k].astype(np.float64) - v) ** 2)) for k, v in reference.items())
    den = sum(float(np.sum(v.astype(np.float64) ** 2)) for v in reference.values())
    return float(np.sqrt(num / den)) if den > 0 else float(np.sqrt(num))


def load_decoder():
    """``decode_poses`` from the runtime, or None while it is not there."""
    try:
        from edge_sdk.runtime.decode import decode_poses
    except ImportError:
        return None
    return decode_poses


def decode_all(decode_poses, heatmaps, pafs, stride=STRIDE):
    """Per frame: (keypoints17 [P, 17, 3] in input pixels, scores [P])."""
    people = []
    for h, p in zip(heatmaps, pafs):
        poses = decode_poses(h, p)
        kp = np.asarray(poses.keypoints, dtype=np.float32).reshape(-1, 18, 3)
        xy = map_to_image(kp[..., :2], stride)
        kp18 = np.concatenate([xy, kp[..., 2:]], axis=-1)
        people.append((coco18_to_coco17(kp18), np.asarray(poses.scores, dtype=np.float32).reshape(-1)))
    return people


def pose_agreement_ap(reference_people, candidate_people):
    """OKS AP of candidate poses with reference poses as ground truth; None when the reference has no people."""
    stats = pose_agreement_stats(reference_people, candidate_people)
    return None if stats is None else stats["ap"]


def pose_agreement_stats(reference_people, candidate_people):
    """{"ap", "ap50", "ap75"} (pycocotools OKS AP at .50:.95, .50, .75) of candidate vs reference poses."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, detections = [], [], []
    for image_id, ((ref_kp, _), (cand_kp, cand_scores)) in enumerate(zip(reference_people, candidate_people), 1):
        images.append({"id": image_id})
        for kp in ref_kp:
            visible = kp[:, 2] > 0
            if visible.sum() < 2:
                continue
            x0, y0 = kp[visible, :2].min(axis=0)
            x1, y1 = kp[visible, :2].max(axis=0)
            w, h = max(float(x1 - x0), 1.0), max(float(y1 - y0), 1.0)
            flat = np.concatenate([kp[:, :2], np.where(visible, 2.0, 0.0)[:, None]], axis=1)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                "keypoints": flat.ravel().tolist(), "num_keypoints": int(visible.sum()),
                                "bbox": [float(x0), float(y0), w, h], "area": w * h})
        for kp, score in zip(cand_kp, cand_scores):
            detections.append({"image_id": image_id, "category_id": 1, "keypoints": kp.ravel().tolist(),
                               "score": float(score)})
    if not annotations:
        return None
    if not detections:
        return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": 1, "name": "person"}]}
        gt.createIndex()
        dt = gt.loadRes(detections)
        evaluator = COCOeval(gt, dt, "keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {key: max(0.0, float(evaluator.stats[i])) for i, key in enumerate(("ap", "ap50", "ap75"))}


class Evaluator:
    """Scores candidate (INT8 / mixed) models against the FP32 model on fixed held-out frames."""

    def __init__(self, fp32_model, frames, outputs: dict, stride=STRIDE):
        self.frames = frames
        graph_outputs = [o.name for o in fp32_model.graph.output]
        roles = dict(outputs or {})
        self.maps = roles.get("heatmaps") in graph_outputs and roles.get("pafs") in graph_outputs
        self.names = [roles["heatmaps"], roles["pafs"]] if self.maps else graph_outputs
        self.stride = stride
        self.reference = run_outputs(fp32_model, frames, self.names)
        self.decode = load_decoder() if self.maps else None
        self.reference_people = self._people(self.reference) if self.decode else None
        self.has_people = bool(self.reference_people) and any(len(k) for k, _ in self.reference_people)

    def _people(self, maps):
        return decode_all(self.decode, maps[self.names[0]], maps[self.names[1]], self.stride)

    @property
    def metric(self) -> str:
        return "pose agreement (OKS AP vs FP32)" if self.has_people else "map agreement (1 - relative L2 error)"

    def map_error(self, model) -> float:
        return total_rel_l2(self.reference, run_outputs(model, self.frames, self.names))

    def evaluate(self, model) -> dict:
        maps = run_outputs(model, self.frames, self.names)
        result = {"map_errors": map_errors(self.reference, maps), "rel_l2": total_rel_l2(self.reference, maps),
                  "pose_ap": None, "people_fp32": None}
        if self.has_people:
            stats = pose_agreement_stats(self.reference_people, self._people(maps))
            result["pose_ap"], result["pose_ap50"], result["pose_ap75"] = stats["ap"], stats["ap50"], stats["ap75"]
            result["people_fp32"] = int(sum(len(k) for k, _ in self.reference_people))
            result["agreement"] = result["pose_ap"]
        else:
            result["agreement"] = max(0.0, 1.0 - result["rel_l2"])
        result["drop"] = 1.0 - result["agreement"]
        return result


def layer_sensitivity(build, evaluator: Evaluator, candidates, progress=True) -> list:
    """[(node, map error with only that node quantised)], most sensitive (largest error) first.

    Quantising one layer at a time measures each layer's own contribution; keeping one layer in float at a
    time barely moves the error when many layers add up to it (as in a trained network).
    """
    from tqdm import tqdm

    scores = []
    for name in tqdm(candidates, desc="layer sensitivity", unit="layer", disable=not progress, leave=False):
        scores.append((name, evaluator.map_error(build([c for c in candidates if c != name]))))
    return sorted(scores, key=lambda item: (-item[1], candidates.index(item[0])))


def choose_float_nodes(build, evaluator: Evaluator, sensitivity, threshold, max_float=None, progress=True):
    """Keep the k most sensitive nodes in float, for the smallest k found whose drop is <= threshold.

    k is searched by doubling (1, 2, 4, ...) and then bisection, about 2 log2(layers) evaluations instead
    of one per layer (the drop is not strictly monotonic in k, so k is small, not always the minimum).
    Returns (float nodes, result, model, [(k, drop)] trace); with no passing k, everything up to the limit.
    """
    from tqdm import tqdm

    order = [name for name, _ in sensitivity]
    limit = len(order) if max_float is None else min(max_float, len(order))
    tried = {}
    bar = tqdm(desc="mixed precision", unit="eval", disable=not progress, leave=False)

    def attempt(k):
        if k not in tried:
            model = build(order[:k])
            tried[k] = (evaluator.evaluate(model), model)
            bar.update(1)
        return tried[k][0]["drop"] <= threshold

    low, high = 0, None  # low: largest k known to fail; high: smallest k known to pass
    k = 1
    while k <= limit:
        if attempt(k):
            high = k
            break
        low = k
        k = limit if k * 2 > limit and k < limit else k * 2
    if high is not None:
        while high - low > 1:
            mid = (low + high) // 2
            if attempt(mid):
                high = mid
            else:
                low = mid
    bar.close()
    chosen = high if high is not None else limit
    if chosen not in tried:
        attempt(chosen)
    result, model = tried[chosen]
    trace = [(k, tried[k][0]["drop"]) for k in sorted(tried)]
    return order[:chosen], result, model, trace
