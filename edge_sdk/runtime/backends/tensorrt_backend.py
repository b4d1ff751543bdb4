"""TensorRT backend: a serialized engine, bound by tensor name, run asynchronously on a CUDA stream.

One code path from TensorRT 8.2 (JetPack 4.6) to 10.x (JetPack 6+), chosen by FEATURE DETECTION:

* tensor API (8.5+): ``num_io_tensors`` / ``get_tensor_*`` to describe I/O, ``set_input_shape``,
  ``set_tensor_address`` + ``execute_async_v3(stream)``;
* bindings API (8.2-8.4): ``num_bindings`` / ``get_binding_*``, ``set_binding_shape``,
  ``execute_async_v2(bindings, stream)``.

Memory comes from :mod:`edge_sdk.runtime.cuda`: on Jetson the input buffers handed out by
``new_input_buffer()`` are pinned host memory mapped into the GPU, so the pipeline's preprocessing writes the
frame where the engine reads it (zero copies); on a discrete GPU they are pinned and copied asynchronously
on a copy stream that overlaps the previous frame's inference. Outputs live in a double-buffered
:class:`~edge_sdk.runtime.cuda.BufferPool`; ``infer_async`` lets frame N+1 be queued while frame N runs.

Engines are cached next to the bundle, keyed by GPU name + compute capability + TensorRT version (an engine
only runs where it was built); a bundle without a usable engine is built on first start from its ONNX.
"""

import os
import re
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from edge_sdk.engine.tensorrt_builder import capturing_logger  # the builder and the backend log alike
from edge_sdk.errors import BundleError, ModelError
from edge_sdk.runtime.backends import Backend
from edge_sdk.runtime.model_meta import ModelMeta

DEFAULT_WORKSPACE_MB = 512


class TensorInfo(object):
    """One engine I/O tensor: name, direction, shape (resolved), numpy dtype, binding index."""

    def __init__(self, name, is_input, shape, dtype, index):
        self.name = name
        self.is_input = is_input
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.index = index

    def __repr__(self):
        return "TensorInfo({!r}, {}, {}, {})".format(self.name, "in" if self.is_input else "out", self.shape,
                                                     self.dtype)


def uses_tensor_api(engine: Any, context: Any) -> bool:
    """True where the engine/context offer the name-based API (TensorRT 8.5+); decided by hasattr only."""
    return (hasattr(engine, "num_io_tensors") and hasattr(context, "set_tensor_address")
            and hasattr(context, "execute_async_v3"))


def describe_io(trt: Any, engine: Any, tensor_api: bool) -> List[TensorInfo]:
    """The engine's I/O tensors in engine order (shapes may hold -1 for dynamic dimensions)."""
    tensors = []
    if tensor_api:
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            tensors.append(TensorInfo(name, is_input, tuple(engine.get_tensor_shape(name)),
                                      trt.nptype(engine.get_tensor_dtype(name)), index))
    else:
        for index in range(engine.num_bindings):
            tensors.append(TensorInfo(engine.get_binding_name(index), bool(engine.binding_is_input(index)),
                                      tuple(engine.get_binding_shape(index)),
                                      trt.nptype(engine.get_binding_dtype(index)), index))
    return tensors


def engine_cache_key(gpu_name: str, compute_capability: Tuple[int, int], trt_version: str) -> str:
    """A file-name-safe key: an engine is only valid for this GPU model, SM version and TensorRT version."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(gpu_name).lower()).strip("-") or "gpu"
    return "{}_sm{}{}_trt{}".format(slug, compute_capability[0], compute_capability[1], trt_version)


def cached_engine_path(bundle_dir: str, key: str) -> str:
    """Where the engine built for ``key`` is cached: in ``<bundle>.engines/`` beside the bundle (never inside
    it: a bundle's files are exactly those its manifest lists and hashes), else in ~/.cache/edge-sdk/engines."""
    name = "engine.{}.plan".format(key)
    bundle_dir = os.path.abspath(bundle_dir)
    parent = os.path.dirname(bundle_dir)
    if os.access(parent, os.W_OK):
        return os.path.join(parent, os.path.basename(bundle_dir) + ".engines", name)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "edge-sdk", "engines", os.path.basename(bundle_dir), name)


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def _write_atomic(path, data):
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory)
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        handle.write(bytes(data))
    os.replace(tmp, path)


class PendingInference(object):
    """An inference queued on the GPU; ``result()`` waits and returns {output name: array} (copies)."""

    def __init__(self, backend, slot):
        self._backend = backend
        self._slot = slot
        self._outputs = None
        self._lock = threading.Lock()

    def done(self):
        return self._outputs is not None or self._slot.event.done()

    def result(self):
        with self._lock:
            if self._outputs is None:
                slot = self._slot
                slot.event.synchronize()
                self._outputs = dict((name, slot[name].host.copy()) for name in self._backend.output_tensor_names)
                self._slot = None
                self._backend._finished(self, slot)
        return self._outputs


class TensorRTBackend(Backend):
    """Run a TensorRT engine (``engine``: path of a .plan or its bytes) with ``meta`` describing the model."""

    name = "tensorrt"

    def __init__(self, engine, meta=None, dla_core=None, device=None, depth=2, log_severity=None,
                 allow_engine_host_code=False):
        import tensorrt as trt

        from edge_sdk.runtime.cuda import CudaDevice

        Backend.__init__(self, meta or ModelMeta())
        self.trt = trt
        self.source = engine if isinstance(engine, str) else "<engine bytes>"
        data = _read(engine) if isinstance(engine, str) else bytes(engine)
        self.device = device or CudaDevice(0)
        self.dla_core = -1 if dla_core is None else int(dla_core)
        self.logger = capturing_logger(trt, log_severity)
        self.runtime = trt.Runtime(self.logger)
        if self.dla_core >= 0:
            self.runtime.DLA_core = self.dla_core
        if allow_engine_host_code:  # a version-compatible engine runs the lean runtime it embeds (TensorRT 8.6+)
            self.runtime.engine_host_code_allowed = True
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise ModelError(
                "TensorRT {} could not load the engine {} ({}): it was built by another TensorRT version or for "
                "another GPU, or the file is damaged; rebuild it on this device (`edge-sdk build --target ...`, or "
                "delete it and let the runtime build it from the bundle's ONNX)".format(
                    trt.__version__, self.source, self._last_log()))
        self.context = self.engine.create_execution_context()
        self.tensor_api = uses_tensor_api(self.engine, self.context)
        self.tensors = describe_io(trt, self.engine, self.tensor_api)
        self._resolve_shapes()
        self.input_tensor = self._match_input()
        self.output_tensor_names = self._match_outputs()
        self._lock = threading.Lock()
        self.stream = self.device.stream()
        self.copy_stream = None if self.device.zero_copy else self.device.stream()
        self._copy_done = None if self.device.zero_copy else self.device.event()
        specs = dict((t.name, (t.shape, t.dtype)) for t in self.tensors)
        self.pool = self.device.pool(specs, depth=depth)  # input here is the staging copy for foreign arrays
        self._inputs = {}  # host ptr -> TensorBuffer handed out by new_input_buffer()
        self._pending = []  # PendingInference objects whose slot is still held, oldest first
        self.frames = 0
        self.reclaims = 0  # times a new frame had to wait for the oldest one to finish (all slots busy)

    # -- setup -----------------------------------------------------------------------------------------------

    def _resolve_shapes(self):
        """Give dynamic input dimensions the model's input shape; read the output shapes back."""
        spec_shape = tuple(self.meta.input.shape)
        for tensor in self.tensors:
            if tensor.is_input and -1 in tensor.shape:
                shape = tuple(s if d == -1 else d for d, s in zip(tensor.shape, spec_shape)) \
                    if len(tensor.shape) == len(spec_shape) else tensor.shape
                if self.tensor_api:
                    ok = self.context.set_input_shape(tensor.name, shape)
                else:
                    ok = self.context.set_binding_shape(tensor.index, shape)
                if ok is False or -1 in shape:
                    raise ModelError("engine input {!r} has dynamic shape {}; {} is outside its optimization "
                                     "profile; rebuild the engine for input {}".format(
                                         tensor.name, tensor.shape, shape, spec_shape))
                tensor.shape = shape
        for tensor in self.tensors:
            if not tensor.is_input and -1 in tensor.shape:
                if self.tensor_api:
                    tensor.shape = tuple(int(d) for d in self.context.get_tensor_shape(tensor.name))
                else:
                    tensor.shape = tuple(int(d) for d in self.context.get_binding_shape(tensor.index))

    def _match_input(self):
        inputs = [t for t in self.tensors if t.is_input]
        if len(inputs) != 1:
            raise ModelError("engine {} has {} inputs ({}); a pose model has exactly one image input".format(
                self.source, len(inputs), ", ".join(t.name for t in inputs)))
        tensor = inputs[0]
        spec = self.meta.input
        if tensor.shape != tuple(spec.shape) or tensor.dtype != np.dtype(spec.dtype):
            raise ModelError("engine input {!r} is {} {} but the model metadata says {} {}; rebuild the engine "
                             "from this bundle's model".format(tensor.name, tensor.shape, tensor.dtype,
                                                               tuple(spec.shape), spec.dtype))
        return tensor

    def _match_outputs(self):
        names = [t.name for t in self.tensors if not t.is_input]
        wanted = list(self.meta.outputs.values())
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ModelError("engine {} has no output {}; it has: {}; rebuild the engine from this bundle's "
                             "model".format(self.source, ", ".join(repr(m) for m in missing), ", ".join(names)))
        return names

    # -- Backend interface -----------------------------------------------------------------------------------

    def new_input_buffer(self):
        """Pinned (on Jetson: GPU-mapped) host memory as a numpy array; ``infer`` reads it without a copy."""
        tensor = self.input_tensor
        buffer = self.device.tensor(tensor.shape, tensor.dtype)
        self._inputs[buffer.host_ptr] = buffer
        return buffer.host

    def infer(self, batch):
        return self.infer_async(batch).result()

    def infer_async(self, batch):
        """Queue one batch on the GPU and return a :class:`PendingInference` at once."""
        batch = np.asarray(batch)
        name = self.input_tensor.name
        with self._lock:
            if len(self._pending) >= len(self.pool.slots):
                # every slot holds a frame whose results were not read yet: finish the oldest (its outputs
                # are copied out and kept by its PendingInference), so its slot can take this frame
                self.reclaims += 1
                self._pending[0].result()
            slot = self.pool.acquire()
            source = self._inputs.get(batch.ctypes.data) if batch.flags.c_contiguous else None
            if source is None or batch.nbytes != source.nbytes:
                source = slot[name]
                if batch.shape != source.host.shape:
                    self.pool.release(slot)
                    raise ModelError("input batch has shape {}; the engine takes {}".format(batch.shape,
                                                                                            source.host.shape))
                np.copyto(source.host, batch, casting="same_kind")
            if self.copy_stream is not None:
                source.to_device(self.copy_stream)
                self._copy_done.record(self.copy_stream)
                self.stream.wait(self._copy_done)
            addresses = dict((t.name, slot[t.name].device_ptr) for t in self.tensors if not t.is_input)
            addresses[name] = source.device_ptr
            ok = self._execute(addresses)
            if not ok:
                self.pool.release(slot)
                raise ModelError("TensorRT could not run the engine ({}); its log said: {}".format(
                    "execute_async_v3" if self.tensor_api else "execute_async_v2", self._last_log()))
            for output in self.output_tensor_names:
                slot[output].to_host(self.stream)
            slot.mark_in_flight(self.stream)
            self.frames += 1
            pending = PendingInference(self, slot)
            self._pending.append(pending)
        return pending

    def _finished(self, pending, slot):
        if pending in self._pending:
            self._pending.remove(pending)
        self.pool.release(slot)

    def _execute(self, addresses):
        if self.tensor_api:
            for tensor_name, ptr in addresses.items():
                self.context.set_tensor_address(tensor_name, ptr)
            return self.context.execute_async_v3(self.stream.handle)
        bindings = [0] * len(self.tensors)
        for tensor in self.tensors:
            bindings[tensor.index] = addresses[tensor.name]
        return self.context.execute_async_v2(bindings, self.stream.handle)

    def _last_log(self):
        messages = getattr(self.logger, "messages", None)
        return messages[-1][1] if messages else "see the TensorRT messages above"

    def describe(self):
        return "tensorrt {} on {}{}, {} ({})".format(
            self.trt.__version__, self.device.describe(),
            ", DLA core {}".format(self.dla_core) if self.dla_core >= 0 else "",
            "tensor API" if self.tensor_api else "bindings API",
            "execute_async_v3" if self.tensor_api else "execute_async_v2")

    def close(self):
        if getattr(self, "stream", None) is None:
            return
        self.stream.synchronize()
        if self.copy_stream is not None:
            self.copy_stream.synchronize()
            self._copy_done.close()
            self.copy_stream.close()
        self.pool.free()
        for buffer in self._inputs.values():
            buffer.free()
        self._inputs = {}
        self.stream.close()
        self.stream = None
        self.context = None
        self.engine = None
        self.runtime = None


# -- bundles: cached engines, first-start builds -------------------------------------------------------------

def bundle_software(manifest: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The software stack a bundle was built for ({"jetpack", "l4t", "tensorrt", ...}), or None for a bundle
    that records none (older bundles: the engine's ``tensorrt_expected``)."""
    if "software" in manifest:  # None: built for a GPU whose TensorRT was not known (built on the device)
        software = manifest["software"]
        return software if software and software.get("tensorrt") else None
    expected = (manifest.get("engine") or {}).get("tensorrt_expected")
    return {"tensorrt": expected} if expected else None


def same_release(wanted: Any, actual: Any) -> bool:
    """'10.3' vs '10.3.0.30': the components the bundle states must match ('10' matches any 10.x)."""
    want = str(wanted or "").split(".")
    have = str(actual or "").split(".")
    return len(have) >= len(want) and have[:len(want)] == want


def describe_software(software: Optional[Dict[str, Any]]) -> str:
    if not software:
        return "an unrecorded software stack"
    parts = ["TensorRT {}".format(software["tensorrt"])]
    if software.get("l4t"):
        parts.append("L4T {}".format(software["l4t"]))
    return "JetPack {} ({})".format(software["jetpack"], ", ".join(parts)) if software.get("jetpack") else parts[0]


def version_compatible_engine(manifest: Dict[str, Any], trt_version: str) -> bool:
    """A bundle built VERSION_COMPATIBLE by an older TensorRT of the same major version loads on this one."""
    software = bundle_software(manifest) or {}
    options = (manifest.get("engine") or {}).get("options") or {}
    if not options.get("version_compatible") or not software.get("tensorrt"):
        return False

    def parts(text):
        return [int(p) for p in str(text).split(".")[:3] if p.isdigit()]
    built, here = parts(software["tensorrt"]), parts(trt_version)
    return bool(built) and bool(here) and built[0] == here[0] and here[:len(built)] >= built


def check_bundle_tensorrt(manifest: Dict[str, Any], trt_version: str, where: str = "bundle") -> None:
    """Refuse a bundle made for another TensorRT: its engine cannot load here, and its build choices (Q/DQ or
    calibration cache, FP16 flags or an FP16 model) hold only for the release it was built for."""
    software = bundle_software(manifest)
    if not software or same_release(software["tensorrt"], trt_version) \
            or version_compatible_engine(manifest, trt_version):
        return
    target = manifest.get("target") or "<target>"
    raise BundleError(
        "{} was built for {} but this device runs TensorRT {}; a bundle is only loaded by the TensorRT it was built "
        "for. Rebuild it for this device: `edge-sdk build MODEL.onnx --target {} --jetpack <the JetPack this device "
        "runs>` (`edge-sdk doctor` shows it), or build it --version-compatible on TensorRT 8.6+ to let later "
        "releases of the same major version run it".format(where, describe_software(software), trt_version, target))


def bundle_engine_settings(manifest: Dict[str, Any]) -> Dict[str, Any]:
    """The engine build options from the bundle manifest (``engine.options``, written by `edge-sdk build`),
    with the DLA core as an int (-1: GPU) for the runtime."""
    engine = manifest.get("engine") or {}
    options = dict(engine.get("options") or {})
    precision = manifest.get("precision") or {}
    options.setdefault("precision", precision.get("used", "fp16") if isinstance(precision, dict) else str(precision))
    options.setdefault("workspace_mb", DEFAULT_WORKSPACE_MB)
    dla = options.get("dla_core", engine.get("dla_core"))
    options["dla_core"] = None if dla is None or int(dla) < 0 else int(dla)
    return options


def _runtime_dla_core(settings):
    return -1 if settings.get("dla_core") is None else int(settings["dla_core"])


def _sha256(data):
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _cached_engine_ok(path):
    """The cached engine exists and matches the sha256 written beside it (a half-written or damaged cache
    is rebuilt, never loaded)."""
    try:
        with open(path + ".sha256") as handle:
            expected = handle.read().strip()
        return _sha256(_read(path)) == expected
    except (IOError, OSError):
        return False


def load_bundle_backend(bundle: Any, device: Any = None, build: bool = True, progress: Callable[[str], None] = print,
                        depth: int = 2) -> TensorRTBackend:
    """A TensorRTBackend for an opened bundle (``edge_sdk.runtime.bundle.Bundle``).

    Tries the bundle's own engine, then the engine cached for this GPU + TensorRT version; builds one from the
    bundle's ONNX when neither loads (and ``build``). Raises BundleError saying what to do otherwise.
    """
    import tensorrt as trt

    from edge_sdk.runtime.cuda import CudaDevice

    check_bundle_tensorrt(bundle.manifest, trt.__version__, where="bundle {}".format(bundle.dir))
    device = device or CudaDevice(0)
    settings = bundle_engine_settings(bundle.manifest)
    dla_core = _runtime_dla_core(settings)
    key = engine_cache_key(device.name, device.compute_capability, trt.__version__)
    cached = cached_engine_path(bundle.dir, key)
    tried = []
    candidates = [bundle.engine_path] if bundle.engine_path else []
    if _cached_engine_ok(cached):
        candidates.append(cached)
    host_code = bool(settings.get("version_compatible")) and not settings.get("exclude_lean_runtime")
    for path in candidates:
        if os.path.isfile(path):
            try:
                return TensorRTBackend(path, meta=bundle.meta, dla_core=dla_core, device=device, depth=depth,
                                       allow_engine_host_code=host_code and path == bundle.engine_path)
            except ModelError as exc:
                tried.append(str(exc))
    if not build:
        raise BundleError("no usable TensorRT engine in bundle {} for {} ({}){}; let the runtime build one "
                          "or use --backend onnxruntime".format(
                              bundle.dir, device.name, key, ": " + "; ".join(tried) if tried else ""))
    from edge_sdk.runtime.engine_on_device import build_engine_for_bundle

    build_engine_for_bundle(bundle, cached, settings, progress, key=key)
    return TensorRTBackend(cached, meta=bundle.meta, dla_core=dla_core, device=device, depth=depth)
