"""Pick and load an inference backend for a model file or a bundle.

``prefer``:
    ``onnxruntime``  ONNX Runtime on the model's ONNX file (CPU);
    ``tensorrt``     the bundle's TensorRT engine (``edge_sdk.runtime.backends.tensorrt_backend``);
    ``auto``         TensorRT for a bundle made for a GPU target when TensorRT and a CUDA binding
                     (cuda-python or pycuda) can be imported and the bundle has an engine or can build
                     one (the TensorRT backend uses the bundle's engine, or builds/caches one for this
                     GPU), else ONNX Runtime on the bundle's model.onnx. The choice and why are printed.
Backends are imported here, when chosen, so a device only needs the one it uses.
"""

import os
import sys
from typing import Any, Callable, Optional, Tuple

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.runtime.backends import Backend

BACKEND_NAMES = ("auto", "onnxruntime", "tensorrt")


def _tensorrt_available():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def load_onnxruntime(model_path: str, meta: Any = None, threads: Optional[int] = None,
                     optimization: Optional[str] = None, config: Optional[dict] = None) -> Backend:
    """An OnnxRuntimeBackend for ``model_path`` (``meta``: a bundle's metadata, else the model's own;
    ``config``: a bundle's ``onnxruntime`` session settings)."""
    from edge_sdk.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(model_path, meta=meta, threads=threads, optimization=optimization, config=config)


def load_tensorrt(bundle: Any) -> Backend:
    """The TensorRT backend for an opened bundle: the seam to ``edge_sdk.runtime.backends.tensorrt_backend``
    (its ``load_bundle_backend(bundle)`` when it has one: engine cache / on-device build; else the
    bundle's own engine)."""
    try:
        import tensorrt  # noqa: F401 - the backend module imports it lazily; fail here with advice

        from edge_sdk.runtime.backends import tensorrt_backend
    except ImportError as exc:
        raise ConfigError("the TensorRT backend is not available here ({}); on a Jetson install JetPack's "
                          "python3-libnvinfer, elsewhere use --backend onnxruntime".format(exc)) from exc
    try:
        if hasattr(tensorrt_backend, "load_bundle_backend"):
            return tensorrt_backend.load_bundle_backend(bundle)
        if not bundle.engine_path:
            raise ConfigError("bundle {} has no TensorRT engine (target {}); build one for this device with "
                              "`edge-sdk build`, or use --backend onnxruntime".format(bundle.dir, bundle.target))
        return tensorrt_backend.TensorRTBackend(bundle.engine_path, meta=bundle.meta)
    except ImportError as exc:  # e.g. no CUDA binding
        raise ConfigError("the TensorRT backend needs {} ({}): `pip install cuda-python` (JetPack 5/6) or "
                          "`pip install pycuda` (JetPack 4.6), or use --backend onnxruntime".format(
                              getattr(exc, "name", None) or "a CUDA binding", exc)) from exc


def _say_stderr(message):
    print(message, file=sys.stderr)


def choose_for_bundle(opened: Any, prefer: str = "auto") -> Tuple[str, str]:
    """(backend name, reason) for an opened bundle: the rule of
    :func:`edge_sdk.runtime.backends.selection.select_backend` (a CPU-target bundle runs on ONNX Runtime;
    TensorRT when it and a CUDA binding are importable and the bundle has, or can build, an engine)."""
    from edge_sdk.runtime.backends.selection import select_backend

    return select_backend(prefer, bundle=opened)


def load_backend(model: Optional[str] = None, bundle: Optional[str] = None, prefer: str = "auto",
                 threads: Optional[int] = None, optimization: Optional[str] = None, target: Optional[str] = None,
                 say: Optional[Callable[[str], None]] = None) -> Backend:
    """Load the backend for ``model`` (an .onnx path) or ``bundle`` (a bundle directory or .tar.gz).

    ``target``: when given, a bundle made for another target is refused (BundleError). For a bundle, the
    choice and its reason are reported through ``say`` (default: one line on stderr).
    """
    if prefer not in BACKEND_NAMES:
        raise ConfigError("unknown backend {!r}; known: {}".format(prefer, ", ".join(BACKEND_NAMES)))
    if (model is None) == (bundle is None):
        raise ConfigError("give exactly one of a model (--model M.onnx) or a bundle (--bundle DIR)")

    if model is not None:
        model = str(model)
        if os.path.isdir(model) and os.path.isfile(os.path.join(model, "manifest.json")):
            raise ConfigError("{} is a bundle directory; pass it with --bundle".format(model))
        if prefer == "tensorrt":
            if model.endswith((".plan", ".engine", ".trt")):
                raise ConfigError("a bare TensorRT engine has no metadata; run it from a bundle "
                                  "(`edge-sdk build` makes one): --bundle DIR")
            raise ConfigError("--backend tensorrt needs a bundle with an engine (`edge-sdk build`), "
                              "not an ONNX file; use --backend onnxruntime for {}".format(model))
        if not model.endswith(".onnx") and os.path.isfile(model):
            with open(model, "rb") as handle:
                head = handle.read(4)
            if head[:2] == b"\x1f\x8b":
                raise ConfigError("{} looks like a .tar.gz bundle; pass it with --bundle".format(model))
        backend = load_onnxruntime(model, threads=threads, optimization=optimization)
        if getattr(backend.meta, "assumed", False):
            from edge_sdk.runtime.model_meta import assumption_line

            (say or _say_stderr)(assumption_line(backend.meta, model))
        return backend

    from edge_sdk.runtime.bundle import open_bundle  # written by the build helper; imported only for bundles

    # an archive is unpacked into a temporary directory: removed once the backend has read what it needs
    with open_bundle(str(bundle), expected_target=target) as opened:
        choice, reason = choose_for_bundle(opened, prefer)
        (say or _say_stderr)("backend: {} ({})".format(choice, reason))
        if choice == "tensorrt":
            return load_tensorrt(opened)
        if not opened.model_path or not os.path.isfile(str(opened.model_path)):
            raise ModelError("bundle {} has no ONNX model for the ONNX Runtime backend".format(bundle))
        return load_onnxruntime(opened.model_path, meta=opened.meta, threads=threads, optimization=optimization,
                                config=opened.manifest.get("onnxruntime"))
