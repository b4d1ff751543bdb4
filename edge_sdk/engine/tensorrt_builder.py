"""Build a serialized TensorRT engine from an ONNX file, with the TensorRT Python API of 8.2 through 11.x.

Python 3.6 syntax, standard library + ``tensorrt`` only: the device runs this at first start when the host
that made the bundle could not build for it (engines are specific to one GPU and one TensorRT version).
Version differences are handled by feature detection, not version numbers, where the API allows:

* network flags: EXPLICIT_BATCH on TensorRT < 10 (required there for ONNX); TensorRT 10 networks are always
  explicit-batch and the flag is deprecated, so none is passed; STRONGLY_TYPED on 10.12+; TensorRT 11
  networks are always strongly typed (the flag is deprecated and ignored there), so none is passed either;
* precision: FP16/INT8 builder flags before 10.12; from 10.12 (flags deprecated) and on 11 (flags removed)
  the ONNX carries it: an FP16 model (``model.fp16.onnx``, graph pass ``fp16``) or the Q/DQ model;
* workspace: ``config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)`` (8.4+), else
  ``config.max_workspace_size`` (8.2, removed in 10);
* build: ``builder.build_serialized_network`` (8.0+), else ``build_engine(...).serialize()``;
* INT8: Q/DQ (explicit quantisation) models need only the INT8 flag; otherwise (8.x, DLA before 11) a
  calibrator that replays a calibration cache (``calib.cache``), so no images or CUDA buffers are needed on the
  device; its base class is deprecated from 10.1 and gone in 11 (:func:`prefers_explicit_quantization`);
* compatibility: VERSION_COMPATIBLE (+ EXCLUDE_LEAN_RUNTIME) and hardware_compatibility_level = AMPERE_PLUS
  where asked for (TensorRT 8.6+; see docs/tensorrt.md);
* DLA: default_device_type = DLA, DLA_core = N, GPU_FALLBACK for layers the DLA cannot run;
* timing cache: loaded from and saved to a file, so rebuilds on the same device take seconds.
"""

import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from edge_sdk.errors import EdgeSdkError

MIB = 1 << 20
STRONGLY_TYPED_FROM = (10, 12)  # BuilderFlag.FP16/INT8 "Deprecated in TensorRT 10.12. Superseded by strong typing."


class EngineBuildError(EdgeSdkError):
    """TensorRT could not parse or build; the message says why and what to do."""


class EngineOptions(object):
    """What to build. ``precision``: fp32 | fp16 | int8; ``dla_core``: None or a DLA core index;
    ``input_shape``: the static input shape used for dynamic dimensions (optimisation profile);
    ``max_batch``: upper bound of a dynamic batch dimension; ``explicit_quantization``: the ONNX has Q/DQ."""

    def __init__(self, precision="fp16", workspace_mb=1024, dla_core=None, gpu_fallback=True, input_shape=None,
                 max_batch=1, timing_cache=None, calib_cache=None, explicit_quantization=False,
                 builder_optimization_level=None, fp16_model=False, version_compatible=False,
                 exclude_lean_runtime=False, hardware_compatibility=None):
        if precision not in ("fp32", "fp16", "int8"):
            raise ValueError("precision must be fp32, fp16 or int8, got {!r}".format(precision))
        self.precision = precision
        self.workspace_mb = int(workspace_mb)
        self.dla_core = None if dla_core is None else int(dla_core)
        self.gpu_fallback = bool(gpu_fallback)
        self.input_shape = tuple(input_shape) if input_shape else None
        self.max_batch = int(max_batch)
        self.timing_cache = timing_cache
        self.calib_cache = calib_cache
        self.explicit_quantization = bool(explicit_quantization)
        self.builder_optimization_level = builder_optimization_level
        self.fp16_model = bool(fp16_model)  # the ONNX carries FP16 types (what TensorRT 11 builds FP16 from)
        self.version_compatible = bool(version_compatible)
        self.exclude_lean_runtime = bool(exclude_lean_runtime)
        if hardware_compatibility not in (None, "ampere_plus"):
            raise ValueError("hardware_compatibility must be None or 'ampere_plus', got {!r}".format(
                hardware_compatibility))
        self.hardware_compatibility = hardware_compatibility

    def to_dict(self):
        return {"precision": self.precision, "workspace_mb": self.workspace_mb, "dla_core": self.dla_core,
                "gpu_fallback": self.gpu_fallback, "input_shape": list(self.input_shape or []) or None,
                "max_batch": self.max_batch, "explicit_quantization": self.explicit_quantization,
                "builder_optimization_level": self.builder_optimization_level, "fp16_model": self.fp16_model,
                "version_compatible": self.version_compatible, "exclude_lean_runtime": self.exclude_lean_runtime,
                "hardware_compatibility": self.hardware_compatibility}

    @classmethod
    def from_dict(cls, data, timing_cache=None, calib_cache=None):
        keys = ("precision", "workspace_mb", "dla_core", "gpu_fallback", "input_shape", "max_batch",
                "explicit_quantization", "builder_optimization_level", "fp16_model", "version_compatible",
                "exclude_lean_runtime", "hardware_compatibility")
        kwargs = dict((k, data[k]) for k in keys if k in data)
        return cls(timing_cache=timing_cache, calib_cache=calib_cache, **kwargs)


def capturing_logger(trt: Any, severity: Any = None) -> Any:
    """A ``trt.ILogger`` subclass (TensorRT's documented way to receive its messages) that prints like
    ``trt.Logger`` and keeps ``messages`` [(severity, text)], so an error can quote what TensorRT said."""
    base = trt.ILogger
    threshold = int(trt.Logger.WARNING if severity is None else severity)

    class CapturingLogger(base):
        def __init__(self):
            base.__init__(self)
            self.messages = []

        def log(self, level, msg):
            if int(level) <= threshold:
                self.messages.append((level, msg))
                import sys

                sys.stderr.write("[TensorRT] {}\n".format(msg))

    return CapturingLogger()


def last_message(logger: Any, default: str = "see the TensorRT messages above") -> str:
    """The last message a capturing logger kept (``default`` for any other logger)."""
    messages = getattr(logger, "messages", None)
    return messages[-1][1] if messages else default


def tensorrt_major(trt: Any) -> int:
    return tensorrt_version(trt)[0]


def tensorrt_version(trt: Any) -> Tuple[int, int]:
    """(major, minor) of a tensorrt module ((0, 0) when unreadable)."""
    return parse_version(getattr(trt, "__version__", ""))


def parse_version(text: Any) -> Tuple[int, int]:
    """(major, minor) of a version string like '10.3.0.30' or '8.6' ((0, 0) when unreadable)."""
    parts = (str(text or "").split(".") + ["0"])[:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return 0, 0


def has_precision_flags(trt: Any) -> bool:
    """TensorRT before 11 picks precisions from builder flags (FP16, INT8). TensorRT 11 removed them: every
    network is strongly typed and precision comes from the tensor types in the ONNX (FP16 weights, Q/DQ)."""
    members = getattr(getattr(trt, "BuilderFlag", None), "__members__", None) or {}
    return "FP16" in members and "INT8" in members  # looked up, not touched: touching a deprecated flag warns


def builds_strongly_typed(trt: Any) -> bool:
    """Whether engines are built strongly typed (precision from the ONNX tensor types): on TensorRT 11 (no
    FP16/INT8 flags) and from 10.12 (the flags are deprecated there, "superseded by strong typing")."""
    return not has_precision_flags(trt) or tensorrt_version(trt) >= STRONGLY_TYPED_FROM


def engine_source(trt: Any, engine: Dict[str, Any], default: Optional[str] = "model.onnx") -> Optional[str]:
    """The bundle file to build from: ``engine["source_model"]``, or on a strongly typed TensorRT (10.12+) the
    FP16 model a bundle for a GPU of unknown TensorRT ships as ``engine["strongly_typed_source"]``."""
    if engine.get("strongly_typed_source") and builds_strongly_typed(trt):
        return engine["strongly_typed_source"]
    return engine.get("source_model") or default


def prefers_explicit_quantization(tensorrt_version_text: Any, dla: bool = False) -> bool:
    """Whether an INT8 build for this TensorRT uses the Q/DQ model rather than a calibration cache: always from
    TensorRT 11 (implicit calibration removed), on the GPU from 10.1 (the calibrator API is deprecated there,
    "superseded by explicit quantization"); 8.x and DLA before 11 keep the cache (DLA INT8 on JetPack 4.6-6
    is built from calibration scales)."""
    version = parse_version(tensorrt_version_text)
    if version >= (11, 0):
        return True
    return version >= (10, 1) and not dla


def network_flags(trt: Any) -> int:
    """Creation flags for an ONNX network: EXPLICIT_BATCH before TensorRT 10 (required there); STRONGLY_TYPED
    on 10.12+ (where the precision flags are deprecated, "superseded by strong typing"); none on 11 (always
    strongly typed, the flag deprecated and ignored)."""
    flag_enum = getattr(trt, "NetworkDefinitionCreationFlag", None)
    if flag_enum is None:
        return 0
    if tensorrt_major(trt) >= 11:
        return 0
    if builds_strongly_typed(trt):
        return 1 << int(flag_enum.STRONGLY_TYPED)
    if tensorrt_major(trt) >= 10 or not hasattr(flag_enum, "EXPLICIT_BATCH"):
        return 0
    return 1 << int(flag_enum.EXPLICIT_BATCH)


def set_workspace(trt: Any, config: Any, workspace_bytes: int) -> str:
    """Workspace limit via the memory-pool API where it exists (8.4+), else max_workspace_size."""
    if hasattr(trt, "MemoryPoolType") and hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
        return "set_memory_pool_limit"
    config.max_workspace_size = int(workspace_bytes)
    return "max_workspace_size"


CALIBRATOR_FOR_ALGORITHM = {
    "EntropyCalibration2": "IInt8EntropyCalibrator2",
    "EntropyCalibration": "IInt8EntropyCalibrator",
    "MinMaxCalibration": "IInt8MinMaxCalibrator",
    "LegacyCalibration": "IInt8LegacyCalibrator",
}
"""TensorRT only replays a cache whose header names the algorithm of the calibrator that reads it."""


def calibrator_class_name(cache_bytes: bytes) -> str:
    """The TensorRT calibrator class for a cache, from its header ``TRT-<version>-<algorithm>``."""
    first = bytes(cache_bytes).split(b"\n", 1)[0].decode("ascii", "replace").strip()
    algorithm = first.split("-", 2)[2] if first.startswith("TRT-") and first.count("-") >= 2 else ""
    return CALIBRATOR_FOR_ALGORITHM.get(algorithm, "IInt8EntropyCalibrator2")


def make_cache_calibrator(trt: Any, cache_bytes: bytes) -> Any:
    """An INT8 calibrator that serves a calibration cache and no batches (implicit quantisation from a cache
    made on the host by `calibration/`; TensorRT reads the cache and never asks for images). Its class follows
    the cache header (a MinMaxCalibration cache needs IInt8MinMaxCalibrator, or TensorRT ignores it)."""
    name = calibrator_class_name(cache_bytes)
    base = getattr(trt, name, None)
    if base is None:
        raise EngineBuildError("this TensorRT has no {} (the calibration cache's algorithm); rebuild the bundle "
                               "with a Q/DQ model or another --calib-method".format(name))

    class CacheCalibrator(base):
        def __init__(self):
            base.__init__(self)
            self.cache = cache_bytes

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            return None

        def read_calibration_cache(self):
            return self.cache

        def write_calibration_cache(self, cache):
            return None

    return CacheCalibrator()


def _parse(trt, builder, network, logger, onnx_path):
    parser = trt.OnnxParser(network, logger)
    if hasattr(parser, "parse_from_file"):
        ok = parser.parse_from_file(onnx_path)
    else:  # pragma: no cover - TensorRT < 7.1
        with open(onnx_path, "rb") as handle:
            ok = parser.parse(handle.read())
    if not ok:
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError("TensorRT {} could not parse {}: {}. Check the model with `edge-sdk rewrite` and that "
                               "every op is supported by this TensorRT version".format(
                                   trt.__version__, onnx_path, "; ".join(errors) or "unknown error"))
    return parser


def _add_profile(trt, builder, config, network, options):
    """An optimisation profile for every input with a dynamic dimension (none when all shapes are static)."""
    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if all(d >= 0 for d in shape):
            continue
        target = list(options.input_shape or shape)
        if len(target) != len(shape) or any(d < 0 for d in target[1:]):
            raise EngineBuildError("input '{}' has dynamic shape {}; pass the static input size (--input WxH)"
                                   .format(tensor.name, shape))
        low, high = list(target), list(target)
        if shape[0] < 0:
            low[0], high[0] = 1, max(options.max_batch, target[0] if target[0] > 0 else 1)
            target[0] = high[0]
        if profile is None:
            profile = builder.create_optimization_profile()
        profile.set_shape(tensor.name, tuple(low), tuple(target), tuple(high))
    if profile is not None:
        config.add_optimization_profile(profile)
    return profile


def set_precision(trt: Any, config: Any, options: EngineOptions) -> str:
    """Precision through builder flags (TensorRT < 11), or a check that the ONNX carries it (TensorRT 11:
    strongly typed, FP16 from an FP16 model, INT8 from Q/DQ; also from 10.12, where the flags are deprecated).
    Returns how precision was expressed."""
    if builds_strongly_typed(trt):
        if options.precision == "int8" and not options.explicit_quantization:
            raise EngineBuildError("TensorRT {} builds strongly typed networks, without implicit INT8 calibration "
                                   "(removed in TensorRT 11): INT8 needs the bundle's Q/DQ model; rebuild the bundle "
                                   "with `edge-sdk build --int8 --calib DIR` for this target".format(trt.__version__))
        if options.precision == "fp16" and not options.fp16_model:
            raise EngineBuildError("TensorRT {} builds strongly typed networks: FP16 needs an FP16 model "
                                   "(model.fp16.onnx), this one is FP32; rebuild the bundle for a TensorRT 11 target, "
                                   "or build with --fp32".format(trt.__version__))
        return "strongly-typed"
    if options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 builds keep FP16 for layers without INT8 kernels
    if options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if not options.explicit_quantization:
            if not options.calib_cache or not os.path.isfile(options.calib_cache):
                raise EngineBuildError("INT8 without Q/DQ nodes needs a calibration cache; {} is missing -- "
                                       "rebuild the bundle with --int8 --calib DIR".format(options.calib_cache))
            with open(options.calib_cache, "rb") as handle:
                config.int8_calibrator = make_cache_calibrator(trt, handle.read())
            return "builder-flags+calibration-cache"
    return "builder-flags"


def set_compatibility(trt: Any, config: Any, options: EngineOptions) -> List[str]:
    """Version-compatible (TensorRT 8.6+: a later TensorRT of the same major version can run the engine) and
    hardware-compatible (8.6+, Ampere and later GPUs) engines, where asked for and where this TensorRT has
    them. Returns the flags used (a request this TensorRT cannot honour is an error, never silently dropped)."""
    used = []
    if options.version_compatible:
        if not hasattr(trt.BuilderFlag, "VERSION_COMPATIBLE"):
            raise EngineBuildError("TensorRT {} cannot build version-compatible engines (8.6+)".format(
                trt.__version__))
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        used.append("VERSION_COMPATIBLE")
        if options.exclude_lean_runtime:
            config.set_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)
            used.append("EXCLUDE_LEAN_RUNTIME")
    if options.hardware_compatibility == "ampere_plus":
        if not hasattr(trt, "HardwareCompatibilityLevel"):
            raise EngineBuildError("TensorRT {} cannot build hardware-compatible engines (8.6+)".format(
                trt.__version__))
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
        used.append("AMPERE_PLUS")
    return used


def configure(trt: Any, builder: Any, network: Any, config: Any, options: EngineOptions) -> Dict[str, Any]:
    """Apply precision, workspace, DLA, profile and timing cache to ``config``; returns what was done."""
    done = {"workspace_api": set_workspace(trt, config, options.workspace_mb * MIB)}
    done["precision_api"] = set_precision(trt, config, options)
    done["compatibility"] = set_compatibility(trt, config, options)
    if options.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        if options.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if options.builder_optimization_level is not None and hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(options.builder_optimization_level)
    profile = _add_profile(trt, builder, config, network, options)
    if profile is not None and done["precision_api"] == "builder-flags+calibration-cache" \
            and hasattr(config, "set_calibration_profile"):
        config.set_calibration_profile(profile)
    done["profile"] = profile is not None
    cache = None
    if options.timing_cache and hasattr(config, "create_timing_cache"):
        data = b""
        if os.path.isfile(options.timing_cache):
            with open(options.timing_cache, "rb") as handle:
                data = handle.read()
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, False)
    done["timing_cache"] = cache is not None
    return done


def build_serialized_engine(onnx_path: str, options: EngineOptions, trt: Any = None, logger: Any = None,
                            log: Optional[Callable[[str], None]] = None) -> Tuple[bytes, Dict[str, Any]]:
    """Parse ``onnx_path`` and build; returns (plan bytes, info dict). Writes the timing cache back."""
    if trt is None:
        import tensorrt as trt  # noqa: F811 - the real module on a device / GPU host
    say = log or (lambda message: None)
    if logger is None:
        logger = capturing_logger(trt)
    builder = trt.Builder(logger)
    if options.dla_core is not None and getattr(builder, "num_DLA_cores", 0) <= options.dla_core:
        raise EngineBuildError("DLA core {} requested but this device has {} DLA core(s)".format(
            options.dla_core, getattr(builder, "num_DLA_cores", 0)))
    network = builder.create_network(network_flags(trt))
    _parse(trt, builder, network, logger, onnx_path)
    config = builder.create_builder_config()
    info = configure(trt, builder, network, config, options)
    say("building TensorRT {} engine ({}{}), this takes a while on the first build".format(
        trt.__version__, options.precision.upper(), ", DLA core {}".format(options.dla_core)
        if options.dla_core is not None else ""))
    start = time.time()
    if hasattr(builder, "build_serialized_network"):
        plan = builder.build_serialized_network(network, config)
        info["build_api"] = "build_serialized_network"
    else:  # pragma: no cover - TensorRT 7
        engine = builder.build_engine(network, config)
        plan = engine.serialize() if engine is not None else None
        info["build_api"] = "build_engine"
    if plan is None:
        raise EngineBuildError("TensorRT {} failed to build the engine ({}); try a larger --workspace, or --fp16 "
                               "instead of --int8".format(trt.__version__, last_message(logger)))
    info["seconds"] = round(time.time() - start, 1)
    info["tensorrt"] = str(trt.__version__)
    if options.timing_cache and info.get("timing_cache"):
        cache = config.get_timing_cache()
        if cache is not None:
            data = bytes(cache.serialize())
            tmp = options.timing_cache + ".tmp"
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, options.timing_cache)
    return bytes(plan), info


def build_engine_from_onnx(onnx_path: str, precision: str, workspace_mb: int, dla_core: Optional[int] = -1,
                           timing_cache: Optional[str] = None, calib_cache: Optional[str] = None, trt: Any = None,
                           log: Optional[Callable[[str], None]] = None) -> bytes:
    """Plan bytes for ``onnx_path``: the entry point the TensorRT backend calls at first start
    (``dla_core`` -1 or None: GPU only; INT8 with a float model replays ``calib_cache``; a model with
    QuantizeLinear nodes is built as explicit quantisation; ``*.fp16.onnx`` is an FP16 model, what a strongly
    typed TensorRT 11 build takes for FP16)."""
    explicit = precision == "int8" and _has_qdq(onnx_path)
    options = EngineOptions(precision=precision, workspace_mb=workspace_mb,
                            dla_core=None if dla_core is None or int(dla_core) < 0 else int(dla_core),
                            timing_cache=timing_cache, calib_cache=calib_cache, explicit_quantization=explicit,
                            fp16_model=str(onnx_path).endswith(".fp16.onnx"))
    plan, _ = build_serialized_engine(onnx_path, options, trt=trt, log=log)
    return plan


def _has_qdq(onnx_path):
    """Whether an ONNX file contains Q/DQ nodes (a cheap byte search; no onnx import on the device)."""
    try:
        with open(onnx_path, "rb") as handle:
            return b"QuantizeLinear" in handle.read()
    except OSError:
        return False
