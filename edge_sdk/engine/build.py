"""`edge-sdk build`: ONNX export -> rewritten graph -> (calibration) -> engine or first-start recipe -> bundle.

Every step prints one progress line; the decisions that depend on the hardware (precision, DLA, where the
engine is built) are made from the target profile and printed, never taken silently.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk.errors import ConfigError
from edge_sdk.targets import Target, detect_local_target, get_target, local_compute_capability

ENGINE_PORTABILITY = ("TensorRT engines are specific to one GPU model and one TensorRT version, so the device "
                      "builds it at first start")


@dataclass
class BuildRequest:
    model: str
    target: str
    output: str
    precision: str | None = None  # fp32 | fp16 | int8 | best | None
    calib: str | None = None
    calib_method: str = "entropy"
    calib_count: int = 500
    dla_core: int | None = None
    workspace_mb: int | None = None
    input_size: tuple[int, int] | None = None  # (width, height)
    batch: int = 1
    peaks: int | None = None
    peak_threshold: float = 0.1
    strict: bool = False
    engine: str = "auto"  # auto | device (always leave the engine to the device) | local (must build here)
    archive: bool = True


@dataclass
class BuildResult:
    bundle_dir: Path
    archive: Path | None
    manifest: dict[str, Any]
    reports: list = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)


def raw_input_dtype(target: Target) -> str:
    """uint8 frames where the runtime accepts them (ONNX Runtime, TensorRT >= 8.5), else float32 raw pixels
    (TensorRT 8.2 has no UINT8 network I/O)."""
    if target.backend == "onnxruntime":
        return "uint8"
    parts = (target.tensorrt or "10").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return "float32"
    return "uint8" if (major, minor) >= (8, 5) else "float32"


def choose_input_size(model, meta, target: Target, requested: tuple[int, int] | None) -> tuple[int, int, str]:
    """--input, else the size a static export was made for (its training resolution), else the target's
    default (a model with symbolic height/width runs at any size)."""
    if requested:
        return requested[0], requested[1], "--input"
    dims = []
    inputs = [i for i in model.graph.input if i.name == meta.input.name] or list(model.graph.input[:1])
    if inputs:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) == 4:
        h, w = (dims[1], dims[2]) if meta.input.layout == "NHWC" else (dims[2], dims[3])
        if h and w:
            return w, h, "the size the model was exported for; --input WxH to change"
    return target.input_width, target.input_height, "the {} default; --input WxH to change".format(target.name)


def local_build_check(target: Target) -> tuple[bool, str]:
    """Whether this machine can build the target's engine: (yes/no, why not)."""
    if target.backend != "tensorrt":
        return False, "target '{}' runs ONNX Runtime; no engine".format(target.name)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "this host has no TensorRT"
    local = detect_local_target()
    if target.kind == "jetson":
        if local is None or local.name != target.name:
            return False, "this host is {}, not a {}".format(local.name if local else "not a Jetson", target.name)
        return True, ""
    cc = local_compute_capability()
    if local is None or cc is None:
        return False, "this host has no NVIDIA GPU"
    if tuple(int(x) for x in cc.split(".")) < tuple(int(x) for x in (target.compute_capability or "0.0").split(".")):
        return False, "this host's GPU is sm_{} (< {})".format(cc.replace(".", ""), target.sm)
    return True, ""


def _calibrate(model_path: str, source: str, out_dir: str, method: str, count: int,
               trt_version: str | None = None) -> dict[str, Any]:
    """The seam to the calibration stage (`calibration/`): Q/DQ model + TensorRT cache + accuracy report."""
    try:
        from edge_sdk import calibration
        calibrate = calibration.calibrate
    except (ImportError, AttributeError):
        raise ConfigError("INT8 calibration is not available in this install (the `calibration` package is "
                          "missing); build with --fp16, or install edge-sdk with its calibration stage") from None
    if not os.path.exists(source):
        raise ConfigError("--calib {} does not exist; pass a folder of images or a video of the scene".format(source))
    if trt_version:  # the cache header must name the device's TensorRT, or TensorRT skips the cache
        return calibrate(model_path, source, out_dir, method=method, count=count, trt_version=trt_version)
    return calibrate(model_path, source, out_dir, method=method, count=count)


def build(req: BuildRequest, echo: Callable[[str], None] = print) -> BuildResult:
    """Run the whole build; raises EdgeSdkError subclasses on bad input (before any slow step where possible)."""
    from edge_sdk.bundle_writer import Precision, check_output_dir, human_size, write_bundle
    from edge_sdk.engine.precision import decide_precision
    from edge_sdk.graph import run_passes
    from edge_sdk.graph.common import check_outputs, get_meta, load_model
    from edge_sdk.graph.rewrite import format_report, save_model

    steps = 5
    step = [0]

    def progress(text: str) -> None:
        step[0] += 1
        echo("[{}/{}] {}".format(step[0], steps, text))

    target = get_target(req.target)
    progress("target {}: {}".format(target.name, target.description))
    check_output_dir(req.output)
    model = load_model(req.model)
    meta = get_meta(model)
    check_outputs(model, meta, where=req.model)
    decision = decide_precision(target, req.precision, have_calibration=bool(req.calib), strict=req.strict,
                                dla_core=req.dla_core)
    echo("      precision {} (requested {}){}".format(decision.used.upper(), decision.requested,
                                                    ", DLA core {} + GPU fallback".format(decision.dla_core)
                                                    if decision.dla_core is not None else ""))
    if decision.reason:
        echo("      note: " + decision.reason)

    width, height, why = choose_input_size(model, meta, target, req.input_size)
    echo("      input {}x{} ({})".format(width, height, why))
    progress("rewrite {} ({} nodes) for {}x{} input".format(os.path.basename(req.model), len(model.graph.node),
                                                            width, height))
    dtype = raw_input_dtype(target)
    options = {"shape": {"width": width, "height": height, "batch": req.batch},
               "normalize": {"dtype": dtype, "layout": "NHWC", "color": "BGR"},
               "peaks": {"k": req.peaks or 10, "threshold": req.peak_threshold}}
    options["normalize"]["on_unsupported"] = "skip"  # a model we cannot fold keeps its CPU normalisation
    names = ["fold", "transposes", "prune", "normalize", "shape", "fold"]
    model, meta, reports = run_passes(model, names, options, meta=meta,
                                      progress=lambda r: echo("      " + format_report(r)))
    if target.backend == "tensorrt":
        from edge_sdk.engine.tensorrt_ops import unsupported_ops

        missing_ops = unsupported_ops(model, target.tensorrt)
        if missing_ops:
            message = ("the model uses {} which TensorRT {} cannot import (onnx-tensorrt operator matrix); the "
                       "engine build on {} will fail -- change those layers in training".format(
                           ", ".join(missing_ops), target.tensorrt, target.name))
            if req.strict:
                raise ConfigError(message + " (--strict)")
            echo("      warning: " + message)
    work = Path(tempfile.mkdtemp(prefix="edge-sdk-build-"))
    try:
        float_path = str(work / "model.onnx")
        save_model(model, float_path)
        extra_files: dict[str, str] = {}
        engine: dict[str, Any] = {}
        source_model = "model.onnx"

        progress("calibrate INT8" if decision.needs_calibration else "calibration: not needed for {}".format(
            decision.used.upper()))
        calib_summary = None
        qdq_path = None
        if decision.needs_calibration:
            result = _calibrate(float_path, req.calib, str(work / "calib"), req.calib_method, req.calib_count,
                                trt_version=target.tensorrt if target.backend == "tensorrt" else None)
            qdq_path, cache_path = result.get("qdq_model"), result.get("cache")
            if cache_path and os.path.isfile(cache_path):
                extra_files["calib.cache"] = cache_path
                engine["calib_cache"] = "calib.cache"
            # the accuracy report (JSON + text) and its plots travel with the bundle
            report_paths = [result.get("report"), result.get("report_text")]
            report_dir = Path(str(result["report"])).parent if result.get("report") else None
            if report_dir is not None and report_dir.is_dir():
                report_paths += sorted(str(p) for p in report_dir.glob("*.png"))
            for path in report_paths:
                if path and os.path.isfile(path):
                    name = os.path.basename(str(path))
                    extra_files[name if name.startswith("calib") else "calib_" + name] = str(path)
            calib_summary = result.get("summary")
            if calib_summary:
                for line in str(calib_summary).splitlines():
                    echo("      " + line)

        if req.peaks:  # after calibration: peak extraction is post-processing, never quantised
            model, meta, peak_reports = run_passes(model, ["peaks"], options, meta=meta,
                                                   progress=lambda r: echo("      " + format_report(r)))
            reports += peak_reports
            save_model(model, float_path)
            if qdq_path:
                from edge_sdk.graph.common import load_model as _load

                qdq, _, _ = run_passes(_load(qdq_path), ["peaks"], options)
                qdq_path = str(work / "model.qdq.onnx")
                save_model(qdq, qdq_path)
        if qdq_path:
            extra_files["model.qdq.onnx"] = str(qdq_path)
            source_model = "model.qdq.onnx" if decision.dla_core is None else "model.onnx"

        onnxruntime_options = None
        if target.backend == "onnxruntime":
            progress("engine: none (ONNX Runtime on the CPU)")
            engine.update({"status": "none", "file": None})
            onnxruntime_options = dict(target.onnxruntime)
        else:
            from edge_sdk.engine.tensorrt_builder import EngineOptions, build_serialized_engine

            engine_options = EngineOptions(
                precision=decision.used, workspace_mb=req.workspace_mb or target.default_workspace_mb,
                dla_core=decision.dla_core, input_shape=meta.input.shape, max_batch=req.batch,
                explicit_quantization=source_model.endswith(".qdq.onnx"))
            engine.update({"options": engine_options.to_dict(), "source_model": source_model,
                           # flat copies read by the runtime's TensorRT backend (bundle_engine_settings)
                           "dla_core": decision.dla_core, "workspace_mb": engine_options.workspace_mb,
                           "tensorrt_expected": target.tensorrt, "compute_capability": target.compute_capability})
            can_build, why_not = local_build_check(target) if req.engine != "device" else (False, "--engine device")
            if req.engine == "local" and not can_build:
                raise ConfigError("--engine local: cannot build the {} engine here ({})".format(target.name,
                                                                                              why_not))
            if can_build:
                progress("engine: building with TensorRT on this machine")
                timing = str(work / "timing.cache")
                engine_options.timing_cache = timing
                engine_options.calib_cache = extra_files.get("calib.cache")
                source = float_path if source_model == "model.onnx" else qdq_path
                plan, info = build_serialized_engine(source, engine_options, log=lambda m: echo("      " + m))
                plan_path = work / "engine.plan"
                plan_path.write_bytes(plan)
                engine.update({"status": "built", "file": str(plan_path), "built": info})
                if os.path.isfile(timing):
                    extra_files["timing.cache"] = timing
            else:
                progress("engine: built on the device at first start ({}; {})".format(why_not,
                                                                                     ENGINE_PORTABILITY))
                engine.update({"status": "build-on-device", "file": None, "reason": why_not})

        progress("bundle -> {}".format(req.output))
        graph_info = {"passes": [r.to_dict() for r in reports], "raw_input_dtype": dtype}
        if calib_summary:
            graph_info["calibration_summary"] = str(calib_summary)
        result = write_bundle(req.output, model_path=float_path, meta=meta, target=target,
                              precision=Precision(decision.requested, decision.used, decision.reason), engine=engine,
                              extra_files=extra_files, graph=graph_info, onnxruntime_options=onnxruntime_options,
                              make_archive=req.archive)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    echo("")
    echo(summary_table(reports, decision, result, human_size))
    return BuildResult(result.directory, result.archive if req.archive else None, result.manifest, reports,
                       result.files)


def summary_table(reports, decision, result, human_size) -> str:
    """The end-of-build summary: passes (nodes before/after), precision, files and sizes."""
    rows = [("pass", "nodes", "")]
    for r in reports:
        rows.append((r.name, "{} -> {}".format(r.nodes_before, r.nodes_after), ""))
    rows.append(("precision", decision.used.upper(), decision.reason or ""))
    engine = result.manifest.get("engine", {})
    rows.append(("engine", engine.get("status", "-"), engine.get("reason") or ""))
    for name, size in sorted(result.files.items()):
        rows.append(("file", name, human_size(size)))
    rows.append(("bundle", str(result.directory), ""))
    if result.archive and result.archive.exists():
        rows.append(("archive", str(result.archive), human_size(result.archive.stat().st_size)))
    widths = [max(len(str(row[i])) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(str(cell).ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_on_device(bundle_path: str, echo: Callable[[str], None] = print, device=None) -> str:
    """`edge-sdk build --bundle B`: build the engine the bundle asks for on this device, exactly as the runtime's
    first start does (edge_sdk.runtime.engine_on_device, which the Python 3.6 device CLI calls directly)."""
    from edge_sdk.runtime.engine_on_device import build_on_device as build_here

    local = detect_local_target()
    return build_here(bundle_path, log=echo, device=device,
                      device_model=local.detect_model[0] if local and local.detect_model else None)
