"""Which inference backend the runtime will use, and why -- one rule for `edge-sdk run` and `edge-sdk doctor`.

``auto``: a bundle made for a CPU target runs on ONNX Runtime; otherwise TensorRT when it can be imported,
a CUDA binding (cuda-python or pycuda) is there, and the bundle has an engine or can build one (has its
ONNX model and the engine builder is importable); otherwise ONNX Runtime. The reason is a sentence a user
can act on.
"""

from typing import Any, Callable, Optional, Tuple


def probe_tensorrt() -> Tuple[Optional[str], str]:
    """(version or None, reason when not usable)."""
    try:
        import tensorrt
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install (missing libnvinfer)
        return None, "TensorRT is not importable ({}: {})".format(type(exc).__name__, exc)
    return getattr(tensorrt, "__version__", "unknown"), ""


def probe_cuda_binding() -> Tuple[Optional[str], str]:
    """(name of the CUDA Python binding, or None, reason)."""
    from edge_sdk.runtime.cuda import available_backends

    names = available_backends()
    if names:
        return names[0], ""
    return None, "neither cuda-python nor pycuda is importable"


def engine_builder_available() -> bool:
    try:
        from edge_sdk.engine import tensorrt_builder  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def bundle_engine_state(bundle: Any) -> str:
    """'engine' (has one), 'buildable' (ONNX + builder), or 'none', for an opened bundle (or None)."""
    import os

    if bundle is None:
        return "none"
    if getattr(bundle, "engine_path", None) and os.path.isfile(bundle.engine_path):
        return "engine"
    model = getattr(bundle, "model_path", None)
    if model and os.path.isfile(model) and engine_builder_available():
        return "buildable"
    return "none"


def select_backend(prefer: str = "auto", bundle: Any = None,
                   tensorrt_probe: Optional[Callable[[], Tuple[Optional[str], str]]] = None,
                   cuda_probe: Optional[Callable[[], Tuple[Optional[str], str]]] = None,
                   has_bundle: Optional[bool] = None) -> Tuple[str, str]:
    """(backend name, reason). ``prefer``: auto | tensorrt | onnxruntime. Probes are injectable for tests."""
    if prefer in ("onnxruntime", "tensorrt"):
        return prefer, "asked for with --backend {}".format(prefer)
    manifest = getattr(bundle, "manifest", None)
    if isinstance(manifest, dict):
        made_for = manifest.get("backend", "tensorrt" if getattr(bundle, "engine_path", None) else "onnxruntime")
        if made_for != "tensorrt":
            return "onnxruntime", "the bundle was made for target {} ({} backend)".format(
                manifest.get("target", "?"), made_for)
    trt_version, trt_reason = (tensorrt_probe or probe_tensorrt)()
    binding, binding_reason = (cuda_probe or probe_cuda_binding)()
    state = bundle_engine_state(bundle)
    with_bundle = bundle is not None if has_bundle is None else has_bundle
    if trt_version is None:
        return "onnxruntime", trt_reason + "; on a Jetson install JetPack's python3-libnvinfer"
    if binding is None:
        return "onnxruntime", ("TensorRT {} is installed but {}; install cuda-python (JetPack 5+) or pycuda "
                               "(JetPack 4.6)".format(trt_version, binding_reason))
    if not with_bundle:
        return "onnxruntime", ("TensorRT {} and {} are ready, but a plain ONNX model runs on ONNX Runtime; "
                               "run a bundle (`edge-sdk build`) to use TensorRT".format(trt_version, binding))
    if state == "none":
        return "onnxruntime", ("TensorRT {} is ready but the bundle has no engine and cannot build one here "
                               "(no ONNX model or no engine builder)".format(trt_version))
    what = "the bundle's engine" if state == "engine" else \
        "an engine built from the bundle's ONNX at first start (then cached)"
    return "tensorrt", "TensorRT {} with {} runs {}".format(trt_version, binding, what)
