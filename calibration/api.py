"""``calibrate()``: calibration frames -> ranges -> Q/DQ ONNX + TensorRT cache + accuracy report."""

from __future__ import annotations

import warnings
from pathlib import Path

from edge_sdk.calibration import DEFAULT_THRESHOLD, accuracy, qdq
from edge_sdk.calibration.data import CalibrationWarning, load_frames
from edge_sdk.calibration.ranges import METHODS, collect_ranges
from edge_sdk.calibration.report import write_report
from edge_sdk.calibration.trt_cache import DEFAULT_TRT_VERSION, METHOD_ALGORITHM, CalibrationCache

from edge_sdk.errors import ConfigError, ModelError, nearest_names
from edge_sdk.runtime.model_meta import METADATA_KEY, ModelMeta


def load_fp32_model(onnx_path):
    """Load and check an FP32 model; clear errors for a missing, corrupt or already quantised file."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise ModelError("model {} does not exist; pass the FP32 ONNX file to calibrate".format(path))
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises several kinds
        raise ModelError("{} is not a readable ONNX model ({}); re-export it".format(path, exc)) from exc
    if not model.graph.input:
        raise ModelError("{} has no graph input".format(path))
    qdq.check_not_quantized(model, str(path))
    return model


def model_meta(model) -> ModelMeta:
    """The model's metadata; for a model without, what the runtime assumes from its graph."""
    from edge_sdk.graph.common import get_meta

    return get_meta(model)


def _with_meta(qdq_model, meta: ModelMeta, quantization: dict):
    meta.extra = dict(meta.extra, quantization=quantization)
    props = {p.key: p.value for p in qdq_model.metadata_props}
    props[METADATA_KEY] = meta.to_json()
    del qdq_model.metadata_props[:]
    for key in sorted(props):
        entry = qdq_model.metadata_props.add()
        entry.key, entry.value = key, props[key]
    return qdq_model


def calibrate(onnx_path, source, out_dir, method: str = "entropy", count: int = 500, seed: int = 0,
              threshold: float = DEFAULT_THRESHOLD, *, percentile: float = 99.99, holdout: int = 16,
              trt_version=DEFAULT_TRT_VERSION, output_name: str | None = None, fallback: bool = True,
              max_float_nodes: int | None = None, cache_dir=None, plot: bool = True,
              qdq_style: str = "tensorrt", compare_methods: bool = True, progress: bool = True) -> dict:
    """Calibrate ``onnx_path`` on frames from ``source`` (folder, video, ``coco.json:images``) into ``out_dir``.

    Returns {"qdq_model", "cache", "report": paths, "summary": str, "passed": bool,
    "ranges": {tensor: amax}, "float_nodes": [...], "report_data": dict}. ``threshold`` is the largest
    accepted drop of agreement with FP32 (see :mod:`edge_sdk.calibration.accuracy`); above it, the most sensitive
    layers are kept in float (``fallback``), at most ``max_float_nodes`` of them. ``qdq_style`` is
    "tensorrt" (Q/DQ on Conv/MatMul inputs only) or "onnxruntime" (integer kernels for ORT's CPU provider).
    ``compare_methods`` also scores all-INT8 models with the other calibrators' ranges (same statistics,
    no extra calibration runs) so the report can say which calibrator suits the model.
    """
    import onnx

    if method not in METHODS:
        raise ConfigError("unknown calibration method {!r}; known: {}".format(method, ", ".join(
            nearest_names(method, METHODS))))
    if qdq_style not in ("tensorrt", "onnxruntime"):
        raise ConfigError("qdq_style must be tensorrt or onnxruntime, got {!r}".format(qdq_style))
    if not 0.0 <= float(threshold) <= 1.0:
        raise ConfigError("threshold is an agreement drop between 0 and 1, got {}".format(threshold))
    model = load_fp32_model(onnx_path)
    meta = model_meta(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    frames = load_frames(source, meta.input, count=count, seed=seed, holdout=holdout, cache_dir=cache_dir,
                         progress=progress)
    if len(frames.calib) == 0:
        raise ConfigError("no calibration frames left in {}; add images".format(frames.source.describe()))
    if tuple(frames.calib.shape[1:]) != tuple(meta.input.shape[1:]):
        raise ModelError("the model's input is {} but frames came out as {}".format(
            meta.input.shape, frames.calib.shape))

    ranges = collect_ranges(model, frames.calib, method=method, percentile=percentile, progress=progress)
    amax = {name: r.amax for name, r in ranges.items()}
    prepared = qdq.prepare(model)
    candidates = qdq.quantizable_nodes(prepared)
    if not candidates:
        raise ModelError("{} has no Conv/ConvTranspose/MatMul/Gemm node to quantise".format(onnx_path))

    def build(float_nodes):
        return qdq.build_qdq_model(prepared, amax, float_nodes, style=qdq_style)

    eval_frames = frames.holdout if len(frames.holdout) else frames.calib[: max(1, min(holdout, len(frames.calib)))]
    evaluator = accuracy.Evaluator(model, eval_frames, meta.outputs, meta.stride)
    qdq_model = build([])
    full = evaluator.evaluate(qdq_model)
    methods = {method: full["agreement"]}
    if compare_methods:
        for other in METHODS:
            if other != method:
                other_amax = {name: r.candidates.get(other, r.amax) for name, r in ranges.items()}
                methods[other] = evaluator.evaluate(
                    qdq.build_qdq_model(prepared, other_amax, [], style=qdq_style))["agreement"]
    final, float_nodes, sensitivity, trace = full, [], [], []
    if full["drop"] > threshold and fallback:
        sensitivity = accuracy.layer_sensitivity(build, evaluator, candidates, progress)
        float_nodes, final, qdq_model, trace = accuracy.choose_float_nodes(
            build, evaluator, sensitivity, threshold, max_float_nodes, progress)
    passed = final["drop"] <= threshold
    if not passed:
        warnings.warn("INT8 agreement drop {:.3f} exceeds the threshold {:.3f}{}".format(
            final["drop"], threshold, " even with {} layers in float".format(len(float_nodes)) if float_nodes
            else ""), CalibrationWarning, stacklevel=2)

    stem = Path(onnx_path).stem
    qdq_path = out_dir / (output_name or stem + ".int8.onnx")
    algorithm = METHOD_ALGORITHM[method]
    quantization = {"precision": "int8", "format": "qdq", "qdq_style": qdq_style, "method": method,
                    "float_nodes": float_nodes,
                    "calibration_frames": int(len(frames.calib)), "trt_calibration_algorithm": algorithm}
    onnx.save(_with_meta(qdq_model, meta, quantization), str(qdq_path))
    cache = CalibrationCache({name: r.scale for name, r in ranges.items()}, algorithm, trt_version)
    cache_path = cache.write(out_dir / "calib.cache")

    note = None
    if evaluator.decode is None:
        note = "PAF decoder not available: agreement measured on maps, not poses"
    elif not evaluator.has_people:
        note = "the FP32 model finds no people in the evaluation frames: agreement measured on maps, not poses"
    report = {
        "model": str(onnx_path), "source": frames.source.describe(), "method": method, "seed": seed,
        "qdq_style": qdq_style,
        "percentile": percentile if method == "percentile" else None, "threshold": float(threshold),
        "frames": {"requested": count, "calibration": int(len(frames.calib)), "holdout": int(len(frames.holdout)),
                   "from_cache": frames.from_cache},
        "accuracy": {"metric": evaluator.metric, "int8": full, "final": final, "note": note, "methods": methods,
                     "fallback_trace": [{"float_nodes": n, "drop": d} for n, d in trace]},
        "passed": passed, "float_nodes": float_nodes, "quantized_nodes": [n for n in candidates
                                                                           if n not in float_nodes],
        "sensitivity": [[n, e] for n, e in sensitivity], "cache_header": cache.header,
        "ranges": {name: r.to_dict() for name, r in ranges.items()},
        "files": {"qdq_model": str(qdq_path), "cache": str(cache_path)},
    }
    paths = write_report(report, out_dir, plot=plot)
    return {
        "qdq_model": str(qdq_path), "cache": str(cache_path), "report": str(paths["json"]),
        "report_text": str(paths["text"]), "summary": report["summary"], "passed": passed,
        "ranges": amax, "float_nodes": float_nodes, "report_data": report,
    }
