"""Build a serialized TensorRT engine from an ONNX file, with the TensorRT Python API of 8.2 through 10.x.

Python 3.6 syntax, standard library + ``tensorrt`` only: the device runs this at first start when the host
that made the bundle could not build for it (engines are specific to one GPU and one TensorRT version).
Version differences are handled by feature detection, not version numbers, where the API allows:

* network flags: EXPLICIT_BATCH on TensorRT < 10 (required there for ONNX); TensorRT 10 networks are always
  explicit-batch and the flag is deprecated, so none is passed;
* workspace: ``config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)`` (8.4+), else
  ``config.max_workspace_size`` (8.2, removed in 10);
* build: ``builder.build_serialized_network`` (8.0+), else ``build_engine(...).serialize()``;
* INT8: Q/DQ (explicit quantisation) models need only the INT8 flag; otherwise a calibrator that replays a
  calibration cache (``calib.cache``), so no images or CUDA buffers are needed on the device;
* DLA: default_device_type = DLA, DLA_core = N, GPU_FALLBACK for layers the DLA cannot run;
* timing cache: loaded from and saved to a file, so rebuilds on the same device take seconds.
"""

import os
import time
from typing import Any, Callable, Dict, Optional, Tuple

from edge_sdk.errors import EdgeSdkError

MIB = 1 << 20


class EngineBuildError(EdgeSdkError):
    """TensorRT could not parse or build; the message says why and what to do."""


class EngineOptions(object):
    """What to build. ``precision``: fp32 | fp16 | int8; ``dla_core``: None or a DLA core index;
    ``input_shape``: the static input shape used for dynamic dimensions (optimisation profile);
    ``max_batch``: upper bound of a dynamic batch dimension; ``explicit_quantization``: the ONNX has Q/DQ."""

    def __init__(self, precision="fp16", workspace_mb=1024, dla_core=None, gpu_fallback=True, input_shape=None,
                 max_batch=1, timing_cache=None, calib_cache=None, explicit_quantization=False,
                 builder_optimization_level=None):
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

    def to_dict(self):
        return {"precision": self.precision, "workspace_mb": self.workspace_mb, "dla_core": self.dla_core,
                "gpu_fallback": self.gpu_fallback, "input_shape": list(self.input_shape or []) or None,
                "max_batch": self.max_batch, "explicit_quantization": self.explicit_quantization,
                "builder_optimization_level": self.builder_optimization_level}

    @classmethod
    def from_dict(cls, data, timing_cache=None, calib_cache=None):
        keys = ("precision", "workspace_mb", "dla_core", "gpu_fallback", "input_shape", "max_batch",
                "explicit_quantization", "builder_optimization_level")
        kwargs = dict((k, data[k]) for k in keys if k in data)
        return cls(timing_cache=timing_cache, calib_cache=calib_cache, **kwargs)


def tensorrt_major(trt: Any) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except (AttributeError, ValueError):
        return 0


def network_flags(trt: Any) -> int:
    """Creation flags for an ONNX network: EXPLICIT_BATCH only before TensorRT 10 (where it is required)."""
    flag_enum = getattr(trt, "NetworkDefinitionCreationFlag", None)
    if tensorrt_major(trt) >= 10 or flag_enum is None or not hasattr(flag_enum, "EXPLICIT_BATCH"):
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


def configure(trt: Any, builder: Any, network: Any, config: Any, options: EngineOptions) -> Dict[str, Any]:
    """Apply precision, workspace, DLA, profile and timing cache to ``config``; returns what was done."""
    done = {"workspace_api": set_workspace(trt, config, options.workspace_mb * MIB)}
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
    if options.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        if options.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if options.builder_optimization_level is not None and hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(options.builder_optimization_level)
    profile = _add_profile(trt, builder, config, network, options)
    if profile is not None and options.precision == "int8" and hasattr(config, "set_calibration_profile") \
            and not options.explicit_quantization:
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
    logger = logger or trt.Logger(trt.Logger.WARNING)
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
        raise EngineBuildError("TensorRT {} failed to build the engine (see the TensorRT log above); try a larger "
                               "--workspace, or --fp16 instead of --int8".format(trt.__version__))
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
    QuantizeLinear nodes is built as explicit quantisation)."""
    explicit = precision == "int8" and _has_qdq(onnx_path)
    options = EngineOptions(precision=precision, workspace_mb=workspace_mb,
                            dla_core=None if dla_core is None or int(dla_core) < 0 else int(dla_core),
                            timing_cache=timing_cache, calib_cache=calib_cache, explicit_quantization=explicit)
    plan, _ = build_serialized_engine(onnx_path, options, trt=trt, log=log)
    return plan


def _has_qdq(onnx_path):
    """Whether an ONNX file contains Q/DQ nodes (a cheap byte search; no onnx import on the device)."""
    try:
        with open(onnx_path, "rb") as handle:
            return b"QuantizeLinear" in handle.read()
    except OSError:
        return False
