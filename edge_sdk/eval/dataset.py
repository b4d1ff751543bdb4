"""`edge-sdk eval`: COCO keypoint AP/AR of any model or bundle on a COCO-format image set.

Each image goes through exactly what the runtime does (preprocess_frame -> backend.infer -> the pipeline's
decoder -> frame pixels), so FP32 vs FP16 vs INT8 accuracy is one command each. Images missing from the
folder are reported and counted, and the evaluation continues without them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from edge_sdk.errors import ConfigError
from edge_sdk.eval.coco import STAT_NAMES, check_keypoint_file, evaluate_keypoints, load_coco_json, poses_to_results


def person_keypoint_images(gt: dict) -> list[dict]:
    """The images of a COCO dict that the keypoint evaluation uses; ConfigError if it has no person keypoints."""
    cats = [c for c in gt.get("categories", []) if c.get("keypoints")]
    if not cats:
        raise ConfigError("the COCO file has no category with 'keypoints' (is it a person_keypoints_*.json file? "
                          "instances_*.json and captions_*.json carry no keypoints)")
    if not any(a.get("num_keypoints", 0) > 0 for a in gt.get("annotations", [])):
        raise ConfigError("the COCO file has no annotation with keypoints (num_keypoints > 0): nothing to evaluate")
    return sorted(gt.get("images", []), key=lambda im: im["id"])


def evaluate_dataset(coco_json: str | Path | dict, images_dir: str | Path, model: str | None = None,
                     bundle: str | None = None, backend=None, prefer: str = "auto", limit: int | None = None,
                     results_path: str | Path | None = None, progress: bool = True) -> dict:
    """Run the model over every keypoint image of ``coco_json`` found in ``images_dir`` and evaluate with
    pycocotools. Returns {"stats": {AP, AP50, ...}, "images": n, "missing": [...], "per_image": [...], ...}."""
    import cv2

    from edge_sdk.runtime.backends.loader import load_backend
    from edge_sdk.runtime.pipeline import default_decoder
    from edge_sdk.runtime.preprocess import preprocess_frame

    gt = check_keypoint_file(load_coco_json(coco_json), "COCO file" if isinstance(coco_json, dict) else str(coco_json))
    images = person_keypoint_images(gt)
    if limit:
        images = images[: int(limit)]
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise ConfigError(f"image folder not found: {images_dir}")
    own = backend is None
    if own:
        backend = load_backend(model=model, bundle=bundle, prefer=prefer)
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is in the [host] extra; evaluation works without a bar
        def tqdm(it, **_kw):
            return it
    spec = backend.input_spec
    decode = default_decoder(backend.meta)
    buffer = backend.new_input_buffer()
    results, per_image, missing, evaluated = [], [], [], []
    started = time.perf_counter()
    try:
        for image in tqdm(images, desc="eval", unit="img", disable=not progress):
            path = images_dir / image["file_name"]
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
            if frame is None:
                missing.append(image["file_name"])
                continue
            _, box = preprocess_frame(frame, spec, out=buffer[0])
            outputs = backend.infer(buffer)
            maps = {role: outputs[name][0] for role, name in backend.meta.outputs.items()}
            keypoints, scores = decode(maps, box, backend.meta.stride)
            found = poses_to_results(keypoints, scores, image["id"])
            results.extend(found)
            evaluated.append(image["id"])
            per_image.append({"image_id": image["id"], "file_name": image["file_name"], "people": len(found)})
    finally:
        if own:
            backend.close()
    if missing:
        print(f"warning: {len(missing)} of {len(images)} images missing from {images_dir} "
              f"(first: {missing[0]}); evaluated the other {len(evaluated)}")
    if not evaluated:
        raise ConfigError(f"none of the {len(images)} images of the COCO file were found in {images_dir}")
    stats = evaluate_keypoints(gt, results, image_ids=evaluated)
    if results_path:
        Path(results_path).parent.mkdir(parents=True, exist_ok=True)
        Path(results_path).write_text(json.dumps(results))
    return {
        "stats": stats,
        "images": len(evaluated),
        "missing": missing,
        "detections": len(results),
        "seconds": round(time.perf_counter() - started, 3),
        "backend": backend.describe(),
        "model": str(model or bundle or backend.meta.model),
        "per_image": per_image,
    }


def format_summary(report: dict) -> str:
    """The standard COCO keypoint summary table."""
    names = {
        "AP": "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all ]",
        "AP50": "Average Precision  (AP) @[ IoU=0.50      | area=   all ]",
        "AP75": "Average Precision  (AP) @[ IoU=0.75      | area=   all ]",
        "APm": "Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium ]",
        "APl": "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large ]",
        "AR": "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all ]",
        "AR50": "Average Recall     (AR) @[ IoU=0.50      | area=   all ]",
        "AR75": "Average Recall     (AR) @[ IoU=0.75      | area=   all ]",
        "ARm": "Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium ]",
        "ARl": "Average Recall     (AR) @[ IoU=0.50:0.95 | area= large ]",
    }
    lines = [f"{report['model']} ({report['backend']}): {report['images']} images, {report['detections']} people"
             + (f", {len(report['missing'])} missing" if report["missing"] else "")]
    lines += [f" {names[k]} = {report['stats'][k]:.3f}" for k in STAT_NAMES]
    return os.linesep.join(lines)
