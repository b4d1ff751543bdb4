"""`edge-sdk eval`: COCO keypoint AP/AR of any model or bundle on a COCO-format image set.

Each image goes through exactly what the runtime does (preprocess_frame -> backend.infer -> the pipeline's
decoder -> frame pixels), so FP32 vs FP16 vs INT8 accuracy is one command each. Images missing from the
folder are reported and counted, and the evaluation continues without them.

Per-stage time (preprocess, inference, decode) is measured on every image. A sweep of decoder settings
(``sweep``: a list of settings dicts) runs inference once per image and decodes it once per setting, so
``edge-sdk eval --sweep peak_threshold=0.05,0.1`` costs one inference pass plus the decodes.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

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


MAX_SWEEP = 64
"""At most this many decoder settings in one sweep (each decodes every image once)."""


def parse_sweep(specs: list[str] | None) -> list[dict]:
    """``["peak_threshold=0.05,0.1", "min_parts=2,3"]`` -> every combination as a settings dict (checked),
    in the order given; [] for no sweep. ConfigError on a bad name, value or size."""
    from edge_sdk.runtime.decoder_settings import check_setting

    axes = []
    for spec in specs or []:
        name, sep, values = str(spec).partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ConfigError(f"--sweep {spec!r}: expected NAME=V1,V2,... e.g. peak_threshold=0.05,0.1")
        if name in (axis[0] for axis in axes):
            raise ConfigError(f"--sweep: {name} is swept twice; give its values once")
        checked = [check_setting(name, v.strip(), f"--sweep {name}") for v in values.split(",") if v.strip()]
        axes.append((name, checked))
    combos = 1
    for _name, values in axes:
        combos *= len(values)
    if combos > MAX_SWEEP:
        raise ConfigError(f"--sweep: {combos} combinations; at most {MAX_SWEEP} (each decodes every image)")
    return [dict(zip([a[0] for a in axes], values)) for values in itertools.product(*[a[1] for a in axes])] \
        if axes else []


def _stage_summary(values: list[float]) -> dict:
    if not values:
        return {"mean": 0.0, "p50": 0.0, "p90": 0.0}
    array = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(array.mean()), 3), "p50": round(float(np.percentile(array, 50)), 3),
            "p90": round(float(np.percentile(array, 90)), 3)}


def _progress_bar():
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is in the [host] extra; evaluation works without a bar
        def tqdm(it, **_kw):
            return it
    return tqdm


def _sweep_decoders(backend, decoder_settings, fit, sweep):
    """The settings of each sweep step (on top of the model's and ``decoder_settings``) and a decoder per step;
    ``backend.meta`` is left with the first step's settings."""
    from edge_sdk.runtime.decoder_settings import apply_run_settings, merge_settings
    from edge_sdk.runtime.pipeline import default_decoder

    apply_run_settings(backend.meta, decoder_settings, fit)
    base = dict(backend.meta.decoder)
    settings_list = [merge_settings(base, one) for one in (sweep or [{}])]
    decoders = []
    for settings in settings_list:
        backend.meta.decoder = settings
        decoders.append(default_decoder(backend.meta))
    backend.meta.decoder = settings_list[0]
    return settings_list, decoders


def _evaluate_image(backend, frame, buffer, image_id, decoders, runs, stage_ms):
    """Preprocess and infer one image once, then decode it with every decoder of the sweep (timed per stage)."""
    from edge_sdk.runtime.preprocess import preprocess_frame

    t0 = time.perf_counter()
    _, box = preprocess_frame(frame, backend.input_spec, out=buffer[0])
    t1 = time.perf_counter()
    outputs = backend.infer(buffer)
    t2 = time.perf_counter()
    stage_ms["preprocess"].append((t1 - t0) * 1000.0)
    stage_ms["infer"].append((t2 - t1) * 1000.0)
    maps = {role: np.asarray(outputs[name][0], dtype=np.float32) for role, name in backend.meta.outputs.items()}
    for decode, run in zip(decoders, runs):
        t3 = time.perf_counter()
        keypoints, scores = decode(maps, box, backend.meta.stride)
        run["decode_ms"].append((time.perf_counter() - t3) * 1000.0)
        found = poses_to_results(keypoints, scores, image_id)
        run["results"].extend(found)
        run["people"].append(len(found))


def evaluate_dataset(coco_json: str | Path | dict, images_dir: str | Path, model: str | None = None,
                     bundle: str | None = None, backend=None, prefer: str = "auto", limit: int | None = None,
                     results_path: str | Path | None = None, progress: bool = True, threads: int | None = None,
                     fit: str | None = None, decoder_settings: dict | None = None,
                     sweep: list[dict] | None = None) -> dict:
    """Run the model over every keypoint image of ``coco_json`` found in ``images_dir`` and evaluate with
    pycocotools. Returns {"stats": {AP, AP50, ...}, "images": n, "missing": [...], "per_image": [...],
    "stage_ms": {preprocess, infer, decode: {mean, p50, p90}}, "sweep": [...], ...}.

    ``threads``: ONNX Runtime threads; ``fit`` and ``decoder_settings`` override the model's metadata;
    ``sweep``: decoder settings to evaluate in turn (each on top of ``decoder_settings``); the report's
    main figures are those of the first."""
    import cv2

    from edge_sdk.runtime.backends.loader import load_backend

    if threads is not None and not 1 <= int(threads) <= 256:
        raise ConfigError(f"--threads must be in [1, 256], got {threads}")

    gt = check_keypoint_file(load_coco_json(coco_json), "COCO file" if isinstance(coco_json, dict) else str(coco_json))
    images = person_keypoint_images(gt)
    if limit:
        images = images[: int(limit)]
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise ConfigError(f"image folder not found: {images_dir}")
    own = backend is None
    if own:
        backend = load_backend(model=model, bundle=bundle, prefer=prefer, threads=threads)
    tqdm = _progress_bar()
    try:
        settings_list, decoders = _sweep_decoders(backend, decoder_settings, fit, sweep)
    except BaseException:
        if own:
            backend.close()
        raise
    spec = backend.input_spec
    buffer = backend.new_input_buffer()
    runs = [{"results": [], "decode_ms": [], "people": []} for _ in decoders]
    stage_ms = {"preprocess": [], "infer": []}
    missing, evaluated, per_image_files = [], [], []
    started = time.perf_counter()
    try:
        for image in tqdm(images, desc="eval", unit="img", disable=not progress):
            path = images_dir / image["file_name"]
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
            if frame is None:
                missing.append(image["file_name"])
                continue
            _evaluate_image(backend, frame, buffer, image["id"], decoders, runs, stage_ms)
            evaluated.append(image["id"])
            per_image_files.append((image["id"], image["file_name"]))
    finally:
        if own:
            backend.close()
    if missing:
        print(f"warning: {len(missing)} of {len(images)} images missing from {images_dir} "
              f"(first: {missing[0]}); evaluated the other {len(evaluated)}")
    if not evaluated:
        raise ConfigError(f"none of the {len(images)} images of the COCO file were found in {images_dir}")
    swept = []
    for one, settings, run in zip(sweep or [{}], settings_list, runs):
        stats = evaluate_keypoints(gt, run["results"], image_ids=evaluated)
        swept.append({"swept": one, "settings": settings, "stats": stats,
                      "detections": len(run["results"]), "decode_ms": _stage_summary(run["decode_ms"])})
    first = runs[0]
    if results_path:
        Path(results_path).parent.mkdir(parents=True, exist_ok=True)
        Path(results_path).write_text(json.dumps(first["results"]))
    return {
        "stats": swept[0]["stats"],
        "images": len(evaluated),
        "missing": missing,
        "detections": len(first["results"]),
        "seconds": round(time.perf_counter() - started, 3),
        "backend": backend.describe(),
        "model": str(model or bundle or backend.meta.model),
        "fit": spec.fit,
        "decoder": settings_list[0],
        "stage_ms": {"preprocess": _stage_summary(stage_ms["preprocess"]),
                     "infer": _stage_summary(stage_ms["infer"]), "decode": swept[0]["decode_ms"]},
        "sweep": swept if sweep else [],
        "per_image": [{"image_id": image_id, "file_name": name, "people": people}
                      for (image_id, name), people in zip(per_image_files, first["people"])],
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
    stages = report.get("stage_ms")
    if stages:
        lines.append("time per image, ms (mean / p50): " + "  ".join(
            f"{stage} {stages[stage]['mean']:.1f} / {stages[stage]['p50']:.1f}"
            for stage in ("preprocess", "infer", "decode")) + f"  (fit {report.get('fit', 'letterbox')})")
    return os.linesep.join(lines)


def format_sweep(report: dict) -> str:
    """One row per swept setting: the values, AP, AP50, AR, people found, decode ms; the best AP marked."""
    rows = report.get("sweep") or []
    if not rows:
        return ""
    names = list(rows[0]["swept"])
    best = max(range(len(rows)), key=lambda i: rows[i]["stats"]["AP"])
    header = "  ".join(f"{n:>16}" for n in names) + f"  {'AP':>6} {'AP50':>6} {'AR':>6} {'people':>6} {'decode ms':>9}"
    lines = [header]
    for i, row in enumerate(rows):
        cells = "  ".join(f"{str(row['swept'].get(n)):>16}" for n in names)
        lines.append(f"{cells}  {row['stats']['AP']:6.3f} {row['stats']['AP50']:6.3f} {row['stats']['AR']:6.3f} "
                     f"{row['detections']:6d} {row['decode_ms']['mean']:9.2f}" + ("  <- best AP" if i == best else ""))
    return os.linesep.join(lines)
