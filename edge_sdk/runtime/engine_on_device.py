"""The one on-device engine build: the runtime's first start and `edge-sdk build --bundle B` both come here.

An engine only runs on the GPU model and TensorRT version it was built with, so both build into the engine
cache keyed by them (``tensorrt_backend.cached_engine_path``: beside the bundle, never inside it) with the
engine's sha256 beside it, and both record the build in the bundle's manifest the same way
(``engine.built_on_device[key]``: file, sha256, size, TensorRT version, seconds). The files the manifest hashes
are never changed, so the bundle still verifies afterwards. The builder itself is
``edge_sdk.engine.tensorrt_builder`` (Python 3.6, standard library + tensorrt), which imports nothing of the
runtime. Python 3.6 syntax.
"""

import os
import shutil
import sys
import time
from typing import Any, Callable, Dict, Optional

from edge_sdk.errors import BundleError
from edge_sdk.runtime.backends.tensorrt_backend import (
    _cached_engine_ok,
    _sha256,
    _write_atomic,
    bundle_engine_settings,
    cached_engine_path,
    check_bundle_tensorrt,
    engine_cache_key,
)
from edge_sdk.runtime.bundle import Bundle, open_bundle, write_manifest


def read_device_model(sysroot: str = "/") -> str:
    """``/proc/device-tree/model`` of this machine ('' when it is not a Jetson)."""
    try:
        with open(os.path.join(sysroot, "proc/device-tree/model"), "rb") as handle:
            return handle.read().decode("utf-8", "replace").strip("\x00 \n")
    except (IOError, OSError):
        return ""


def device_matches(profile: Optional[Dict[str, Any]], device_model: str) -> bool:
    """Whether a device model string matches a bundle's target profile (its ``detect_model`` hints)."""
    hints = (profile or {}).get("detect_model") or []
    lowered = (device_model or "").lower()
    return any(hint.lower() in lowered for hint in hints)


def _import_builder(bundle):
    try:
        from edge_sdk.engine import tensorrt_builder
    except ImportError as exc:
        raise BundleError("bundle {} has no engine for this GPU and the engine builder is not installed ({}); "
                          "build the engine on a host with `edge-sdk build`, or install edge-sdk-runtime on this "
                          "device".format(bundle.dir, exc)) from exc
    return tensorrt_builder


def _timing_cache_for(bundle, engine_path):
    """The timing cache beside the engine, seeded from the bundle's (TensorRT ignores entries of other GPUs)."""
    timing_cache = os.path.splitext(engine_path)[0] + ".timing.cache"
    shipped = bundle.listed_path("timing.cache") or ""  # only a file the manifest hashes (so was verified)
    if not os.path.isfile(timing_cache) and os.path.isfile(shipped):
        directory = os.path.dirname(timing_cache)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory)
        shutil.copyfile(shipped, timing_cache)
    return timing_cache


def _calibration_cache_for(bundle, model):
    engine = bundle.manifest.get("engine") or {}
    calib = bundle.listed_path(engine.get("calib_cache") or "calib.cache")  # verified files only
    if (engine.get("options") or {}).get("explicit_quantization") or str(model).endswith(".qdq.onnx"):
        return None  # a Q/DQ model carries its scales; a calibrator on top of explicit quantisation is an error
    return calib if calib and os.path.isfile(calib) else None


def _source_model(bundle, tensorrt_builder):
    """The bundle file to build from: ``engine.source_model``, or on a strongly typed TensorRT (10.12+, 11) the
    FP16 model a bundle for a GPU of unknown TensorRT ships as ``engine.strongly_typed_source``."""
    engine = bundle.manifest.get("engine") or {}
    if hasattr(tensorrt_builder, "engine_source"):
        import tensorrt as trt

        source = tensorrt_builder.engine_source(trt, engine, None)
    else:
        source = engine.get("source_model")
    return bundle.file_path(source) if source else bundle.model_path


def record_built_engine(bundle: Bundle, key: str, engine_path: str, data: bytes, seconds: float, tensorrt_version: str,
                        progress: Callable[[str], None] = print) -> None:
    """Write the build into the manifest (``engine.built_on_device[key]``); the manifest is not itself hashed,
    so this keeps the bundle valid. A read-only bundle keeps working (the engine cache is enough) and says so."""
    engine = bundle.manifest.setdefault("engine", {})
    engine.setdefault("built_on_device", {})[key] = {
        "file": os.path.relpath(engine_path, bundle.dir), "sha256": _sha256(data), "size": len(data),
        "tensorrt": tensorrt_version, "seconds": round(seconds, 1)}
    try:
        write_manifest(bundle.dir, bundle.manifest)
    except (IOError, OSError) as exc:
        progress("engine built but not recorded in {} ({})".format(bundle.dir, exc))


def build_engine_for_bundle(bundle: Bundle, engine_path: str, settings: Dict[str, Any],
                            progress: Callable[[str], None] = print, key: Optional[str] = None) -> bytes:
    """Build the engine the bundle asks for from its ONNX, write it to ``engine_path`` (+ its sha256) and
    record it in the manifest under ``key``. Returns the plan bytes."""
    tensorrt_builder = _import_builder(bundle)
    model = _source_model(bundle, tensorrt_builder)
    if not model or not os.path.isfile(model):
        raise BundleError("bundle {} has neither an engine for this GPU nor an ONNX model to build one from; "
                          "rebuild the bundle with `edge-sdk build`".format(bundle.dir))
    engine_dir = os.path.dirname(engine_path)
    if engine_dir and not os.path.isdir(engine_dir):
        os.makedirs(engine_dir)
    timing_cache = _timing_cache_for(bundle, engine_path)
    calib = _calibration_cache_for(bundle, model)
    progress("building the TensorRT engine for this GPU from {} ({}{}); this takes minutes, the first time "
             "only".format(model, settings["precision"], ", DLA core {}".format(settings["dla_core"])
                           if settings["dla_core"] is not None else ""))
    started = time.time()
    if hasattr(tensorrt_builder, "build_serialized_engine"):  # every option the bundle records
        options = tensorrt_builder.EngineOptions.from_dict(settings, timing_cache=timing_cache, calib_cache=calib)
        options.fp16_model = str(model).endswith(".fp16.onnx")  # what a strongly typed build takes for FP16
        options.explicit_quantization = options.explicit_quantization or str(model).endswith(".qdq.onnx")
        data, _ = tensorrt_builder.build_serialized_engine(model, options, log=progress)
    else:  # a builder that offers only the simple entry point
        data = tensorrt_builder.build_engine_from_onnx(model, settings["precision"], settings["workspace_mb"],
                                                       settings["dla_core"], timing_cache, calib_cache=calib)
    data = bytes(data)
    _write_atomic(engine_path, data)
    _write_atomic(engine_path + ".sha256", _sha256(data).encode())
    trt = sys.modules.get("tensorrt")  # the builder imported it to build
    record_built_engine(bundle, key or os.path.basename(engine_path), engine_path, data, time.time() - started,
                        str(getattr(trt, "__version__", "?")), progress)
    return data


def build_on_device(bundle_path: str, log: Callable[[str], None] = print, device: Any = None,
                    device_model: Optional[str] = None, skip_target_check: bool = False) -> str:
    """`edge-sdk build --bundle B` on the device (Python 3.6): verify the bundle, check it was made for this
    kind of device, and build the engine exactly as the first start would. Returns the engine path."""
    if os.path.isfile(bundle_path):  # an archive would be unpacked to a temporary copy, engine and all lost
        raise BundleError("`edge-sdk build --bundle` writes the engine beside the bundle directory, and {} is an "
                          "archive; unpack it first (tar xzf {}) and pass the directory".format(bundle_path,
                                                                                            bundle_path))
    bundle = open_bundle(bundle_path)
    profile = bundle.manifest.get("target_profile") or {}
    model = read_device_model() if device_model is None else device_model
    if not skip_target_check and profile.get("kind") == "jetson" and not device_matches(profile, model):
        raise BundleError("bundle {} was built for target '{}', but this device is {!r}; rebuild it with "
                          "`edge-sdk build MODEL.onnx --target <this device>`".format(
                              bundle_path, bundle.target, model or "not a Jetson"))
    import tensorrt as trt

    from edge_sdk.runtime.cuda import CudaDevice

    check_bundle_tensorrt(bundle.manifest, trt.__version__, where="bundle {}".format(bundle_path))
    if bundle.engine_path and os.path.isfile(bundle.engine_path):
        log("the bundle has its engine: {}".format(bundle.engine_path))
        return bundle.engine_path
    device = device or CudaDevice(0)
    key = engine_cache_key(device.name, device.compute_capability, trt.__version__)
    path = cached_engine_path(bundle.dir, key)
    if _cached_engine_ok(path):
        log("engine already built for this GPU: {}".format(path))
        return path
    build_engine_for_bundle(bundle, path, bundle_engine_settings(bundle.manifest), log, key=key)
    log("built {} with TensorRT {}".format(path, trt.__version__))
    return path
