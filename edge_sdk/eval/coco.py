"""COCO keypoint evaluation helpers (host side): poses -> COCO results, OKS AP/AR as a dict with named keys.

pycocotools is imported lazily so that importing this module never needs it; every function that
evaluates raises a ConfigError naming the extra to install when it is missing.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.skeleton import COCO17_PARTS, COCO17_SKELETON

STAT_NAMES = ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
"""Names of COCOeval.stats for keypoints, in order (OKS thresholds .50:.95; m/l = medium/large area)."""

PERSON_CATEGORY = {
    "id": 1, "name": "person", "supercategory": "person",
    "keypoints": list(COCO17_PARTS),
    "skeleton": [[a + 1, b + 1] for a, b in COCO17_SKELETON],  # COCO numbers joints from 1
}


def _pycocotools():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigError("COCO evaluation needs pycocotools: pip install 'edge-sdk[host]'") from exc
    return COCO, COCOeval


def load_coco_json(source: dict | str | Path) -> dict:
    """A COCO dict from a dict (copied) or a JSON file path."""
    if isinstance(source, dict):
        return copy.deepcopy(source)
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"COCO annotation file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ConfigError(f"{path} is not valid JSON: {str(exc)[:200]}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _list_of_dicts(gt: dict, key: str, where: str) -> list[dict]:
    items = gt.get(key)
    if not isinstance(items, list):
        raise ConfigError(f"{where}: '{key}' must be a list of objects, not {type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: {key}[{i}] must be an object, not {type(item).__name__}")
    return items


def _check_image(i: int, image: dict, where: str) -> None:
    name = image.get("file_name")
    if not _is_int(image.get("id")):
        raise ConfigError(f"{where}: images[{i}] needs an integer 'id', not {image.get('id')!r}")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: images[{i}] (id {image['id']}) needs a 'file_name' string")
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise ConfigError(f"{where}: images[{i}] file_name {name!r} must be a path inside the image folder")


def _check_annotation(i: int, ann: dict, image_ids: set[int], num_parts: int, where: str) -> None:
    what = f"{where}: annotations[{i}] (id {ann.get('id')!r})"
    for key in ("id", "image_id", "category_id", "num_keypoints"):
        if not _is_int(ann.get(key)):
            raise ConfigError(f"{what} needs an integer '{key}', not {ann.get(key)!r}")
    if ann["image_id"] not in image_ids:
        raise ConfigError(f"{what} refers to image_id {ann['image_id']}, which 'images' does not list")
    keypoints = ann.get("keypoints")
    if not isinstance(keypoints, list) or len(keypoints) != 3 * num_parts:
        shown = len(keypoints) if isinstance(keypoints, list) else "no" if keypoints is None else repr(keypoints)
        raise ConfigError(f"{what} needs 'keypoints': {3 * num_parts} numbers (x, y, v for {num_parts} parts), "
                          f"has {shown}")
    if not all(_is_number(v) for v in keypoints):
        raise ConfigError(f"{what}: 'keypoints' must be finite numbers")
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise ConfigError(f"{what} needs a 'bbox' of 4 numbers [x, y, w, h], not {bbox!r}")
    if not _is_number(ann.get("area", 0.0)) or ann.get("iscrowd", 0) not in (0, 1):
        raise ConfigError(f"{what}: 'area' must be a number and 'iscrowd' 0 or 1")


def check_keypoint_file(gt: Any, where: str = "COCO file") -> dict:
    """A COCO person-keypoints dict of the structure pycocotools needs, else one clear ConfigError naming
    the first bad entry (pycocotools itself fails with a KeyError or TypeError deep inside). Fills the
    optional 'area' and 'iscrowd' with pycocotools' defaults."""
    if not isinstance(gt, dict):
        raise ConfigError(f"{where}: the top level must be an object with images, annotations and categories, "
                          f"not a {type(gt).__name__}")
    categories = _list_of_dicts(gt, "categories", where)
    parts = [c.get("keypoints") for c in categories if c.get("keypoints") is not None]
    if not parts or not all(isinstance(p, list) and p and all(isinstance(n, str) for n in p) for p in parts):
        raise ConfigError(f"{where}: no category with a 'keypoints' list of part names (is it a "
                          "person_keypoints_*.json file? instances_*.json and captions_*.json carry no keypoints)")
    if len(parts[0]) != len(COCO17_PARTS):
        raise ConfigError(f"{where}: the person category lists {len(parts[0])} keypoints; the evaluation scores "
                          f"the {len(COCO17_PARTS)} COCO keypoints ({', '.join(COCO17_PARTS[:3])}, ...)")
    images = _list_of_dicts(gt, "images", where)
    for i, image in enumerate(images):
        _check_image(i, image, where)
    image_ids = {image["id"] for image in images}
    for i, ann in enumerate(_list_of_dicts(gt, "annotations", where)):
        _check_annotation(i, ann, image_ids, len(COCO17_PARTS), where)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
    return gt


def poses_to_results(keypoints17: np.ndarray, scores: Iterable[float], image_id: int,
                     category_id: int = 1) -> list[dict]:
    """[P, 17, 3] keypoints (x, y, score) in image pixels + person scores -> COCO keypoint results."""
    kp = np.asarray(keypoints17, dtype=np.float64).reshape(-1, 17, 3)
    return [{"image_id": int(image_id), "category_id": int(category_id),
             "keypoints": [round(float(v), 3) for v in person.reshape(-1)], "score": float(score)}
            for person, score in zip(kp, scores)]


def _keypoint_box(kp: np.ndarray) -> list[float]:
    vis = kp[:, 2] > 0
    xs, ys = kp[vis, 0], kp[vis, 1]
    x0, y0 = float(xs.min()), float(ys.min())
    return [x0, y0, float(xs.max()) - x0, float(ys.max()) - y0]


def gt_from_results(results: list[dict] | str | Path, image_size: tuple[int, int] | None = None,
                    min_area: float = 32.0 * 32.0) -> dict:
    """A COCO ground-truth dict from a COCO keypoint *results* list (e.g. real layouts without pixels).

    Keypoints with v/score <= 0 are placeholders and become (0, 0, 0). The bounding box is that of the
    visible keypoints, the area (OKS scale) is the box area, at least ``min_area``. ``image_size`` (w, h)
    sets every image's size; None uses the extent of its keypoints plus a margin.
    """
    if not isinstance(results, list):
        results = load_coco_json(results)
    annotations, extents = [], {}
    for i, res in enumerate(results):
        kp = np.asarray(res["keypoints"], dtype=np.float64).reshape(17, 3)
        vis = kp[:, 2] > 0
        if not vis.any():
            continue
        kp[vis, 2] = 2
        kp[~vis] = 0
        box = _keypoint_box(kp)
        image_id = int(res["image_id"])
        ext = extents.setdefault(image_id, [1.0, 1.0])
        ext[0] = max(ext[0], box[0] + box[2])
        ext[1] = max(ext[1], box[1] + box[3])
        annotations.append({"id": i + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                            "keypoints": [float(v) for v in kp.reshape(-1)], "num_keypoints": int(vis.sum()),
                            "bbox": box, "area": max(box[2] * box[3], float(min_area))})
    images = []
    for image_id, (w, h) in sorted(extents.items()):
        width, height = image_size if image_size else (int(np.ceil(w)) + 16, int(np.ceil(h)) + 16)
        images.append({"id": image_id, "width": int(width), "height": int(height),
                       "file_name": f"{image_id}.jpg"})
    return {"images": images, "annotations": annotations, "categories": [copy.deepcopy(PERSON_CATEGORY)]}


def evaluate_keypoints(gt: dict | str | Path, results: list[dict], image_ids: Iterable[int] | None = None,
                       verbose: bool = False) -> dict[str, float]:
    """OKS keypoint AP/AR of ``results`` against ``gt`` with pycocotools -> {"AP": ..., "AP50": ..., ...}.

    ``image_ids`` restricts the evaluation (default: every image of the ground truth). With no results the
    stats are 0 (pycocotools cannot load an empty result list). ``verbose`` prints pycocotools' table.
    """
    COCO, COCOeval = _pycocotools()
    data = load_coco_json(gt)
    data.setdefault("info", {})
    data.setdefault("licenses", [])
    sink: Any = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        coco_gt = COCO()
        coco_gt.dataset = data
        coco_gt.createIndex()
        ids = sorted(coco_gt.getImgIds()) if image_ids is None else sorted(int(i) for i in image_ids)
        if not results:
            return {name: 0.0 for name in STAT_NAMES}
        coco_dt = coco_gt.loadRes(copy.deepcopy(list(results)))
        evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats)}
