"""`edge-sdk build`: ONNX export -> rewritten graph -> (calibration) -> engine or first-start recipe -> bundle.

Every step prints one progress line; the decisions that depend on the hardware (precision, DLA, where the
engine is built) are made from the target profile and printed, never taken silently.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
    limbs: bool = False  # score every candidate limb in the engine too (needs peaks)
    strict: bool = False
    engine: str = "auto"  # auto | device (always leave the engine to the device) | local (must build here)
    archive: bool = True
    jetpack: str | None = None  # the JetPack release the device runs (None: the newest the profile lists)
    version_compatible: bool = False  # a later TensorRT of the same major version may run the engine (8.6+)
    hardware_compatible: bool = False  # the engine runs on any Ampere+ discrete GPU (8.6+, not on JetPack)


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
        import tensorrt
    except ImportError:
        return False, "this host has no TensorRT"
    local = detect_local_target()
    if target.kind == "jetson":
        if local is None or local.name != target.name:
            return False, "this host is {}, not a {}".format(local.name if local else "not a Jetson", target.name)
        installed = str(getattr(tensorrt, "__version__", ""))
        wanted = (target.tensorrt or "").split(".")
        if installed.split(".")[:len(wanted)] != wanted:
            return False, "this {} runs TensorRT {}, the bundle is for TensorRT {} (JetPack {}; --jetpack for " \
                          "this one)".format(target.name, installed, target.tensorrt, target.jetpack)
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


@dataclass
class BuildState:
    """What one build carries from step to step (each step below reads and fills part of it)."""

    req: BuildRequest
    echo: Callable[[str], None]
    target: Target | None = None
    model: Any = None
    meta: Any = None
    decision: Any = None
    reports: list = field(default_factory=list)
    pass_options: dict[str, Any] = field(default_factory=dict)
    raw_dtype: str = "float32"
    work: Path | None = None
    float_path: str = ""
    qdq_path: str | None = None
    fp16_path: str | None = None
    source_model: str = "model.onnx"
    extra_files: dict[str, str] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    calib_summary: str | None = None
    onnxruntime_options: dict[str, Any] | None = None
    step: int = 0
    steps: int = 5

    def progress(self, text: str) -> None:
        self.step += 1
        self.echo("[{}/{}] {}".format(self.step, self.steps, text))

    def note(self, text: str) -> None:
        self.echo("      " + text)


def build(req: BuildRequest, echo: Callable[[str], None] = print) -> BuildResult:
    """Run the whole build; raises EdgeSdkError subclasses on bad input (before any slow step where possible)."""
    from edge_sdk.bundle_writer import human_size

    state = BuildState(req, echo)
    select_target(state)
    load_and_decide(state)
    rewrite_graph(state)
    state.work = Path(tempfile.mkdtemp(prefix="edge-sdk-build-"))
    try:
        from edge_sdk.graph.rewrite import save_model

        state.float_path = str(state.work / "model.onnx")
        save_model(state.model, state.float_path)
        calibrate_int8(state)
        convert_fp16(state)
        append_peaks(state)
        make_engine(state)
        result = write_output(state)
    finally:
        shutil.rmtree(state.work, ignore_errors=True)
    echo("")
    echo(summary_table(state.reports, state.decision, result, human_size))
    return BuildResult(result.directory, result.archive if req.archive else None, result.manifest, state.reports,
                       result.files)


def select_target(state: BuildState) -> None:
    """The profile, set for the JetPack release the device runs (--jetpack; default: the newest it lists)."""
    from edge_sdk.bundle_writer import check_output_dir

    req = state.req
    state.target = get_target(req.target).with_stack(req.jetpack)
    state.progress("target {}: {}".format(state.target.name, state.target.description))
    stack = state.target.stack
    if stack is not None:
        state.note("software {}{}".format(stack.label, "" if req.jetpack else " (the newest it runs; --jetpack X.Y "
                                                                         "for another)"))
    check_output_dir(req.output)


def load_and_decide(state: BuildState) -> None:
    """Load the export, check its outputs and decide precision and accelerator (printed, never silent)."""
    from edge_sdk.engine.precision import decide_precision
    from edge_sdk.graph.common import check_outputs, get_meta, load_model

    req, target = state.req, state.target
    state.model = load_model(req.model)
    state.meta = get_meta(state.model)
    if state.meta.assumed:  # the bundle will carry these as its metadata: say so once, here
        from edge_sdk.runtime.model_meta import assumption_line

        state.note(assumption_line(state.meta, req.model))
    check_outputs(state.model, state.meta, where=req.model)
    if req.peaks and state.meta.skeleton != "coco18-openpose":  # say so before the slow steps, not after them
        raise ConfigError("--peaks{0}: in-engine peak extraction{1} works with the coco18-openpose skeleton only (this "
                          "model's is {2}); build without --peaks{0}".format(
                              " / --limbs" if req.limbs else "", " and limb scoring" if req.limbs else "",
                              state.meta.skeleton if isinstance(state.meta.skeleton, str) else "a custom one"))
    decision = decide_precision(target, req.precision, have_calibration=bool(req.calib), strict=req.strict,
                                dla_core=req.dla_core)
    state.echo("      precision {} (requested {}){}".format(
        decision.used.upper(), decision.requested,
        ", DLA core {} + GPU fallback".format(decision.dla_core) if decision.dla_core is not None else ""))
    if decision.reason:
        state.note("note: " + decision.reason)
    state.decision = decision


def rewrite_graph(state: BuildState) -> None:
    """The deployment graph: fold, layout, prune, normalisation into the first conv, static input shape."""
    from edge_sdk.graph import run_passes
    from edge_sdk.graph.rewrite import format_report

    req, target, model = state.req, state.target, state.model
    width, height, why = choose_input_size(model, state.meta, target, req.input_size)
    state.note("input {}x{} ({})".format(width, height, why))
    state.progress("rewrite {} ({} nodes) for {}x{} input".format(os.path.basename(req.model), len(model.graph.node),
                                                                  width, height))
    state.raw_dtype = raw_input_dtype(target)
    state.pass_options = {"shape": {"width": width, "height": height, "batch": req.batch},
                          "normalize": {"dtype": state.raw_dtype, "layout": "NHWC", "color": "BGR",
                                        # a model we cannot fold keeps its CPU normalisation
                                        "on_unsupported": "skip"},
                          "peaks": {"k": req.peaks or 10, "threshold": req.peak_threshold}}
    names = ["fold", "transposes", "prune", "normalize", "shape", "fold"]
    state.model, state.meta, state.reports = run_passes(model, names, state.pass_options, meta=state.meta,
                                                        progress=lambda r: state.note(format_report(r)))
    if target.backend == "tensorrt":
        warn_unsupported_ops(state)


def warn_unsupported_ops(state: BuildState) -> None:
    from edge_sdk.engine.tensorrt_ops import unsupported_ops

    target = state.target
    missing_ops = unsupported_ops(state.model, target.tensorrt)
    if missing_ops:
        message = ("the model uses {} which TensorRT {} cannot import (onnx-tensorrt operator matrix); the engine "
                   "build on {} will fail -- change those layers in training".format(
                       ", ".join(missing_ops), target.tensorrt, target.name))
        if state.req.strict:
            raise ConfigError(message + " (--strict)")
        state.note("warning: " + message)


def calibrate_int8(state: BuildState) -> None:
    """INT8: ranges from the calibration frames -> Q/DQ model + TensorRT cache + accuracy report (all shipped)."""
    req, target, decision = state.req, state.target, state.decision
    state.progress("calibrate INT8" if decision.needs_calibration else "calibration: not needed for {}".format(
        decision.used.upper()))
    if not decision.needs_calibration:
        return
    result = _calibrate(state.float_path, req.calib, str(state.work / "calib"), req.calib_method, req.calib_count,
                        trt_version=target.tensorrt if target.backend == "tensorrt" else None)
    state.qdq_path, cache_path = result.get("qdq_model"), result.get("cache")
    if cache_path and os.path.isfile(cache_path):
        state.extra_files["calib.cache"] = cache_path
        state.engine["calib_cache"] = "calib.cache"
    # the accuracy report (JSON + text) and its plots travel with the bundle
    report_paths = [result.get("report"), result.get("report_text")]
    report_dir = Path(str(result["report"])).parent if result.get("report") else None
    if report_dir is not None and report_dir.is_dir():
        report_paths += sorted(str(p) for p in report_dir.glob("*.png"))
    for path in report_paths:
        if path and os.path.isfile(path):
            name = os.path.basename(str(path))
            state.extra_files[name if name.startswith("calib") else "calib_" + name] = str(path)
    state.calib_summary = result.get("summary")
    for line in str(state.calib_summary or "").splitlines():
        state.note(line)


def strongly_typed(target: Target) -> bool:
    """Whether the target's TensorRT builds strongly typed networks (10.12+: FP16/INT8 flags deprecated, 11:
    removed), so precision must be in the ONNX. A GPU host target also counts when the TensorRT installed here
    is such."""
    from edge_sdk.engine.tensorrt_builder import STRONGLY_TYPED_FROM, builds_strongly_typed, parse_version

    if target.backend != "tensorrt":
        return False
    if parse_version(target.tensorrt) >= STRONGLY_TYPED_FROM:
        return True
    if target.kind == "discrete-gpu":
        try:
            import tensorrt
        except ImportError:
            return False
        return builds_strongly_typed(tensorrt)
    return False


def convert_fp16(state: BuildState) -> None:
    """FP16 for a strongly typed TensorRT: the fp16 pass writes model.fp16.onnx (checked with ONNX Runtime)."""
    from edge_sdk.graph import run_passes
    from edge_sdk.graph.rewrite import format_report, save_model

    target = state.target
    if state.decision.used != "fp16" or target.backend != "tensorrt":
        return
    if strongly_typed(target):
        state.note("TensorRT {} builds strongly typed networks: FP16 comes from an FP16 model".format(
            target.tensorrt))
    elif target.kind == "discrete-gpu" and state.req.engine != "local":
        state.note("the GPU host's TensorRT is not known here: the FP16 model ships too, for TensorRT 10.12+")
    else:
        return
    half, _, reports = run_passes(state.model, ["fp16"], {}, meta=state.meta,
                                  progress=lambda r: state.note(format_report(r)))
    state.reports += reports
    state.fp16_path = str(state.work / "model.fp16.onnx")
    save_model(half, state.fp16_path)


def append_peaks(state: BuildState) -> None:
    """--peaks K: top-K peak extraction on the GPU (and with --limbs, limb scoring between those peaks), appended
    after calibration (post-processing, never quantised or converted to FP16) to every model the bundle ships."""
    from edge_sdk.graph import run_passes
    from edge_sdk.graph.common import load_model
    from edge_sdk.graph.rewrite import format_report, save_model

    if not state.req.peaks:
        return
    post = ["peaks", "limbs"] if state.req.limbs else ["peaks"]
    state.model, state.meta, peak_reports = run_passes(state.model, post, state.pass_options, meta=state.meta,
                                                       progress=lambda r: state.note(format_report(r)))
    state.reports += peak_reports
    save_model(state.model, state.float_path)
    for attribute, name in (("qdq_path", "model.qdq.onnx"), ("fp16_path", "model.fp16.onnx")):
        path = getattr(state, attribute)
        if path:
            extended, _, _ = run_passes(load_model(path), post, state.pass_options)
            setattr(state, attribute, str(state.work / ("peaks." + name)))
            save_model(extended, getattr(state, attribute))


def choose_source_model(state: BuildState) -> str:
    """Which shipped ONNX the engine is built from: Q/DQ for INT8 where the target's TensorRT prefers explicit
    quantisation (10.1+ on the GPU, always from 11), the FP16 model on a strongly typed TensorRT, else the float
    model (with the calibration cache for INT8 on 8.x and DLA before 11)."""
    from edge_sdk.engine.tensorrt_builder import prefers_explicit_quantization

    if state.qdq_path:
        state.extra_files["model.qdq.onnx"] = state.qdq_path
    if state.fp16_path:
        state.extra_files["model.fp16.onnx"] = state.fp16_path
        if strongly_typed(state.target):
            return "model.fp16.onnx"
        state.engine["strongly_typed_source"] = "model.fp16.onnx"  # what a TensorRT 11 device builds from
    decision = state.decision
    if state.qdq_path and prefers_explicit_quantization(state.target.tensorrt, decision.dla_core is not None):
        return "model.qdq.onnx"
    return "model.onnx"


def check_compatibility_request(req: BuildRequest, target: Target) -> None:
    """--version-compatible / --hardware-compatible only where the target's TensorRT and GPU have them."""
    from edge_sdk.engine.tensorrt_builder import parse_version

    if not (req.version_compatible or req.hardware_compatible):
        return
    if parse_version(target.tensorrt) < (8, 6):
        raise ConfigError("--version-compatible/--hardware-compatible need TensorRT 8.6+, and {} runs TensorRT {} "
                          "(pick a newer stack with --jetpack, or drop the flag)".format(target.name, target.tensorrt))
    if req.hardware_compatible:
        cc = tuple(int(p) for p in (target.compute_capability or "0.0").split("."))
        if target.kind != "discrete-gpu" or cc < (8, 0):
            raise ConfigError("--hardware-compatible is for Ampere-or-later discrete GPUs (TensorRT's "
                              "AMPERE_PLUS level; not supported on JetPack); {} is {} {}".format(
                                  target.name, target.kind, target.sm))


def make_engine(state: BuildState) -> None:
    """The engine: none (ONNX Runtime), built here when this machine can, else a recipe for the device."""
    req, target, decision = state.req, state.target, state.decision
    if target.backend == "onnxruntime":
        state.progress("engine: none (ONNX Runtime on the CPU)")
        state.engine.update({"status": "none", "file": None})
        state.onnxruntime_options = dict(target.onnxruntime)
        return
    from edge_sdk.engine.tensorrt_builder import EngineOptions, build_serialized_engine

    source_model = choose_source_model(state)
    check_compatibility_request(req, target)
    engine_options = EngineOptions(
        precision=decision.used, workspace_mb=req.workspace_mb or target.default_workspace_mb,
        dla_core=decision.dla_core, input_shape=state.meta.input.shape, max_batch=req.batch,
        explicit_quantization=source_model == "model.qdq.onnx", fp16_model=source_model == "model.fp16.onnx",
        version_compatible=req.version_compatible,
        hardware_compatibility="ampere_plus" if req.hardware_compatible else None)
    state.engine.update({"options": engine_options.to_dict(), "source_model": source_model,
                         # flat copies read by the runtime's TensorRT backend (bundle_engine_settings)
                         "dla_core": decision.dla_core, "workspace_mb": engine_options.workspace_mb,
                         "tensorrt_expected": target.tensorrt, "compute_capability": target.compute_capability})
    can_build, why_not = local_build_check(target) if req.engine != "device" else (False, "--engine device")
    if req.engine == "local" and not can_build:
        raise ConfigError("--engine local: cannot build the {} engine here ({})".format(target.name, why_not))
    if not can_build:
        state.progress("engine: built on the device at first start ({}; {})".format(why_not, ENGINE_PORTABILITY))
        state.engine.update({"status": "build-on-device", "file": None, "reason": why_not})
        return
    state.progress("engine: building with TensorRT on this machine")
    timing = str(state.work / "timing.cache")
    engine_options.timing_cache = timing
    engine_options.calib_cache = state.extra_files.get("calib.cache")
    source = {"model.onnx": state.float_path, "model.qdq.onnx": state.qdq_path,
              "model.fp16.onnx": state.fp16_path}[source_model]
    plan, info = build_serialized_engine(source, engine_options, log=state.note)
    if target.kind == "discrete-gpu":  # the bundle is for the TensorRT that built it
        state.target = replace(target, tensorrt=".".join(str(info["tensorrt"]).split(".")[:2]))
    plan_path = state.work / "engine.plan"
    plan_path.write_bytes(plan)
    state.engine.update({"status": "built", "file": str(plan_path), "built": info})
    if os.path.isfile(timing):
        state.extra_files["timing.cache"] = timing


def write_output(state: BuildState):
    """The bundle directory (+ archive): manifest with hashes, target profile and the software stack."""
    from edge_sdk.bundle_writer import Precision, write_bundle

    req, decision = state.req, state.decision
    state.progress("bundle -> {}".format(req.output))
    graph_info = {"passes": [r.to_dict() for r in state.reports], "raw_input_dtype": state.raw_dtype}
    if state.calib_summary:
        graph_info["calibration_summary"] = str(state.calib_summary)
    return write_bundle(req.output, model_path=state.float_path, meta=state.meta, target=state.target,
                        precision=Precision(decision.requested, decision.used, decision.reason), engine=state.engine,
                        extra_files=state.extra_files, graph=graph_info,
                        onnxruntime_options=state.onnxruntime_options, make_archive=req.archive)


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
