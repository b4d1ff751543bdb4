"""A recorded-call double of the ``tensorrt`` Python module, shaped like TensorRT 8.2, 8.6, 10.x or 11.x.

TensorRT cannot be installed on the CI machines, so code that drives it (the engine builder, the
TensorRT backend) is tested against this double. It is NOT a simulator of TensorRT's maths; it checks
that our code asks for the right things, in the API of the version at hand:

* every method call and attribute assignment is recorded in ``trt.calls`` as ``Call(name, args, kwargs)``
  with ``name`` like ``"IBuilderConfig.set_flag"`` or ``"IBuilderConfig.max_workspace_size="``;
* an API that the flavour does not have raises ``AttributeError`` (as pybind11 does): e.g.
  ``engine.num_bindings`` on TensorRT 10, ``config.set_memory_pool_limit`` on 8.2, ``BuilderFlag.FP16`` on 11;
* an API that the flavour has but deprecates works and is also noted in ``trt.deprecated_uses``, so a test
  can require that our code uses the modern API wherever the version offers it.

Which version has what is checked against the REAL API: ``tests/test_tensorrt_api_listing.py`` compares every
class, member and enum value of each flavour with ``tests/data/tensorrt_api/trt-*.json``, read from NVIDIA's
bindings wheels by ``scripts/trt_api_listing.py`` (8.2 derived from 8.6 and NVIDIA's API change tables). A
name the double offers must exist in its release; a name the release's docstrings mark deprecated must be
deprecated here too. The double may be stricter than the Python docstrings where the C++ API deprecates
(the bindings API is ``TRT_DEPRECATED`` in 8.5/8.6 C++ headers, not in the 8.6 Python docstrings).

===============================================  =========  ==============  ==============  ==============
API                                              8.2        8.6             10.3            11.4
===============================================  =========  ==============  ==============  ==============
NetworkDefinitionCreationFlag.EXPLICIT_BATCH     yes        yes             deprecated      removed
NetworkDefinitionCreationFlag.STRONGLY_TYPED     --         --              yes             deprecated [1]
BuilderFlag.FP16 / INT8                          yes        yes             yes [3]         removed [1]
BuilderFlag.VERSION_COMPATIBLE / EXCLUDE_LEAN_R  --         yes             yes             yes
Builder.platform_has_fast_fp16 / _int8           yes        yes             yes             removed
Builder.build_engine                             deprecated deprecated      removed         removed
Builder.build_serialized_network                 yes        yes             yes             yes
IBuilderConfig.max_workspace_size                yes        deprecated      removed         removed
IBuilderConfig.set_memory_pool_limit (+ enum)    --         yes (8.4+)      yes             yes
IBuilderConfig.int8_calibrator, IInt8*Calibrator yes        yes             deprecated [2]  removed
IBuilderConfig.hardware_compatibility_level      --         yes             yes             yes
ICudaEngine bindings API (num_bindings, ...)     yes        deprecated      removed         removed
ICudaEngine tensor API (num_io_tensors, ...)     --         yes (8.5+)      yes             yes
IExecutionContext.execute_async_v2 / bindings    yes        deprecated      removed         removed
IExecutionContext.set_tensor_address / v3        --         yes (8.5+)      yes             yes
Runtime.engine_host_code_allowed                 --         yes             yes             yes
===============================================  =========  ==============  ==============  ==============

[1] TensorRT 11 networks are always strongly typed: precision comes from the tensor types in the ONNX (FP16
    weights, Q/DQ for INT8); the flag is accepted and ignored. [2] "Deprecated in TensorRT 10.1. Superseded by
    explicit quantization." [3] Deprecated from 10.12 ("superseded by strong typing"): the 10.x flavour made at
    a later version (``make_tensorrt_double("10", version="10.13.3.9")``) flags them (ENUM_DEPRECATED_SINCE),
    checked against trt-10.13.json.

Engines: ``build_serialized_network`` returns bytes that encode the network's I/O, the builder flags and
the flavour's version; ``Runtime.deserialize_cuda_engine`` returns ``None`` (as TensorRT does, after logging
an error through the logger) for bytes that are not such a plan or that were "built" by another TensorRT
version - unless the plan was built VERSION_COMPATIBLE by an older release of the same major version and the
runtime allows the lean runtime it embeds (``engine_host_code_allowed``). The I/O of parsed networks is
``make_tensorrt_double(io=...)`` (default: the pose model's ``image`` -> ``heatmaps``, ``pafs``).

INT8 calibrators follow TensorRT's pybind11 contract: a calibrator is an instance of a subclass of
``trt.IInt8EntropyCalibrator2`` (or another ``IInt8*Calibrator``) whose ``__init__`` called the base
``__init__``; the builder calls ``get_batch_size()`` and ``read_calibration_cache()`` and, without a cache,
``get_batch(names)`` until it returns None, then ``write_calibration_cache(cache)``. Anything else fails the
build with the error pybind11 would raise.

Messages: the double's Runtime/Builder log through the logger they were given (``logger.log(severity, msg)``),
so code that wants TensorRT's messages subclasses ``trt.ILogger`` as TensorRT documents. ``trt.log_messages``
also keeps them, for tests only; production code must never read it (a test checks).

Execution: the execute calls validate what TensorRT validates (every I/O address set and non-zero, input
shapes specified, bindings list complete) and return ``False`` otherwise. If ``trt.memory`` is set to an
object with ``read(ptr, nbytes) -> bytes`` and ``write(ptr, data)`` (and optionally
``enqueue(stream_handle, fn)`` to run in stream order; see ``tests/cuda_double.py``), the double also "runs"
the engine: every output is filled with ``output_function(inputs, output_index)`` read
from and written to the bound addresses, so a test can prove that the right buffers were bound.

Use it as the ``tensorrt`` module (``import tensorrt`` in the code under test then gets the double)::

    from tests.tensorrt_double import install_tensorrt_double

    @pytest.fixture(params=["8.2", "8.6", "10", "11"])
    def trt(request, monkeypatch):
        return install_tensorrt_double(monkeypatch, request.param)

or use the ready-made fixture ``tensorrt_double`` (parametrised over the flavours): import it into
the test module (``from tests.tensorrt_double import tensorrt_double  # noqa: F401``) and take it as an
argument (``def test_x(tensorrt_double):  # noqa: F811``).
"""

import json
import sys
import types
from collections import namedtuple

import numpy as np
import pytest

Call = namedtuple("Call", "name args kwargs")

FLAVOURS = {
    "8.2": "8.2.1.8",     # JetPack 4.6.x (Python 3.6, CUDA 10.2)
    "8.6": "8.6.2.3",     # JetPack 6.0 DP; same API as 8.5 (JetPack 5.1) for our purposes
    "10": "10.3.0.30",    # JetPack 6.1 / 6.2
    "11": "11.4.0.106",   # JetPack 7.2.2+ (Orin, Thor); `pip install tensorrt` on an x86 host today
}
ALIASES = {"8": "8.2", "8.2": "8.2", "8.5": "8.6", "8.6": "8.6", "10": "10", "10.x": "10", "10.3": "10",
           "11": "11", "11.x": "11", "11.4": "11"}
LISTINGS = {"8.2": "trt-8.2.json", "8.6": "trt-8.6.json", "10": "trt-10.3.json", "11": "trt-11.4.json"}
"""The real API listing (tests/data/tensorrt_api/) each flavour is checked against."""
VERSIONED_LISTINGS = {("10", "10.13.3.9"): "trt-10.13.json"}
"""Flavours also checked at a later version of their generation (JetPack 7.0's TensorRT 10.13 on Thor)."""

PLAN_MAGIC = b"TRTDOUBLE-PLAN\n"

# Default I/O of a parsed network: the pose model contract (DESIGN.md), 256x384 input.
DEFAULT_IO = [
    ("image", "input", (1, 3, 256, 384), "float32"),
    ("heatmaps", "output", (1, 19, 32, 48), "float32"),
    ("pafs", "output", (1, 38, 32, 48), "float32"),
]


def default_output_function(inputs, output_index):
    """What the double's engine "computes": output k = the first input, cycled, times (k + 1).

    ``inputs`` is a list of flat float64 arrays (one per input, in I/O order). Deterministic and
    sensitive to every input byte the output can hold, so a test can recompute it.
    """
    return inputs[0] * float(output_index + 1)


# -- per-flavour availability --------------------------------------------------------------------------------

_ADDED_IN_85 = {
    "ICudaEngine": {"num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_shape",
                    "get_tensor_dtype", "get_tensor_location", "get_tensor_profile_shape"},
    "IExecutionContext": {"set_tensor_address", "get_tensor_address", "execute_async_v3", "set_input_shape",
                          "get_tensor_shape"},
    "IBuilderConfig": {"set_memory_pool_limit", "get_memory_pool_limit", "builder_optimization_level"},
}
_BINDING_API = {
    "ICudaEngine": {"num_bindings", "get_binding_name", "get_binding_index", "binding_is_input",
                    "get_binding_shape", "get_binding_dtype", "max_batch_size", "get_profile_shape"},
    "IExecutionContext": {"execute_async_v2", "set_binding_shape", "get_binding_shape"},
    "Builder": {"build_engine", "max_batch_size"},
    "IBuilderConfig": {"max_workspace_size"},
}

_CALIBRATION_API = {"IBuilderConfig": {"int8_calibrator", "set_calibration_profile", "get_calibration_profile"}}
_VERSION_COMPAT_API = {"IBuilderConfig": {"hardware_compatibility_level"}, "Runtime": {"engine_host_code_allowed"}}


def _merge(*tables):
    merged = {}
    for table in tables:
        for kind, names in table.items():
            merged.setdefault(kind, set()).update(names)
    return merged


# Names each flavour lacks (AttributeError) and names it deprecates (recorded in deprecated_uses).
MISSING = {
    "8.2": _merge(_ADDED_IN_85, _VERSION_COMPAT_API),
    "8.6": {},
    "10": _merge(_BINDING_API),
    "11": _merge(_BINDING_API, _CALIBRATION_API,
                 {"Builder": {"platform_has_fast_fp16", "platform_has_fast_int8", "platform_has_tf32"},
                  "ICudaEngine": {"device_memory_size"}}),
}
DEPRECATED = {
    "8.2": {"Builder": {"build_engine", "max_batch_size"}, "ICudaEngine": {"max_batch_size"}},
    "8.6": {k: set(v) for k, v in _BINDING_API.items()},
    "10": _merge(_CALIBRATION_API),
    "11": {},
}
CALIBRATORS = ("IInt8Calibrator", "IInt8EntropyCalibrator2", "IInt8EntropyCalibrator", "IInt8MinMaxCalibrator",
               "IInt8LegacyCalibrator")
CALIBRATORS_MISSING = {"8.2": False, "8.6": False, "10": False, "11": True}  # implicit INT8 removed in 11
CALIBRATORS_DEPRECATED = {"8.2": False, "8.6": False, "10": True, "11": False}  # their __init__, since 10.1
ENUM_MISSING = {
    "8.2": {"MemoryPoolType": None, "TensorIOMode": None, "HardwareCompatibilityLevel": None,
            "NetworkDefinitionCreationFlag": {"STRONGLY_TYPED"},
            "BuilderFlag": {"VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"},
            "DataType": {"UINT8", "INT64", "BF16", "FP8"}},
    "8.6": {"NetworkDefinitionCreationFlag": {"STRONGLY_TYPED"}, "DataType": {"INT64", "BF16"}},
    "10": {"BuilderFlag": {"STRICT_TYPES"}, "NetworkDefinitionCreationFlag": {"EXPLICIT_PRECISION"}},
    "11": {"BuilderFlag": {"FP16", "INT8", "STRICT_TYPES", "OBEY_PRECISION_CONSTRAINTS",
                           "PREFER_PRECISION_CONSTRAINTS"},
           "NetworkDefinitionCreationFlag": {"EXPLICIT_BATCH", "EXPLICIT_PRECISION"}},
}
ENUM_DEPRECATED_SINCE = {  # deprecated from a release inside the flavour's generation (read from trt-10.13.json)
    "BuilderFlag": {"DIRECT_IO": (10, 7), "FP16": (10, 12), "INT8": (10, 12), "OBEY_PRECISION_CONSTRAINTS": (10, 12),
                    "PREFER_PRECISION_CONSTRAINTS": (10, 12)},
}


def version_tuple(version):
    return tuple(int(p) for p in str(version).split(".")[:2] if p.isdigit())


def enum_deprecations(flavour, version=None):
    """{enum: deprecated members} of a flavour at a version (default: the flavour's own)."""
    found = {k: set(v) for k, v in ENUM_DEPRECATED[flavour].items()}
    at = version_tuple(version or FLAVOURS[flavour])
    for enum, members in ENUM_DEPRECATED_SINCE.items():
        for member, since in members.items():
            if since[0] == at[0] and since <= at:
                found.setdefault(enum, set()).add(member)
    return found


ENUM_DEPRECATED = {
    "8.2": {"BuilderFlag": {"STRICT_TYPES"}, "NetworkDefinitionCreationFlag": {"EXPLICIT_PRECISION"}},
    "8.6": {"BuilderFlag": {"STRICT_TYPES"}, "NetworkDefinitionCreationFlag": {"EXPLICIT_PRECISION"}},
    "10": {"NetworkDefinitionCreationFlag": {"EXPLICIT_BATCH"}},
    "11": {"NetworkDefinitionCreationFlag": {"STRONGLY_TYPED"}, "BuilderFlag": {"DIRECT_IO"}},
}


# -- enums ---------------------------------------------------------------------------------------------------

class EnumMember:
    """An enum value like pybind11's: ``int(m)``, ``m.name``, hashable, equal to itself only."""

    def __init__(self, enum_name, name, value):
        self.enum_name = enum_name
        self.name = name
        self.value = value

    def __int__(self):
        return self.value

    def __index__(self):
        return self.value

    def __eq__(self, other):
        return isinstance(other, EnumMember) and (self.enum_name, self.value) == (other.enum_name, other.value)

    def __hash__(self):
        return hash((self.enum_name, self.value))

    def __repr__(self):
        return "<{}.{}: {}>".format(self.enum_name, self.name, self.value)


class Enum:
    """A namespace of EnumMembers; a member the flavour lacks raises AttributeError."""

    def __init__(self, module, name, members, missing=(), deprecated=()):
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_members", {m: EnumMember(name, m, i) for i, m in enumerate(members)
                                              if m not in missing})
        object.__setattr__(self, "_deprecated", set(deprecated))

    def __getattr__(self, item):
        members = object.__getattribute__(self, "_members")
        if item not in members:
            raise AttributeError("type object 'tensorrt.{}' has no attribute '{}' (TensorRT {} double)".format(
                self._name, item, self._module.__version__))
        if item in self._deprecated:
            self._module.deprecated_uses.append("{}.{}".format(self._name, item))
        return members[item]

    @property
    def __members__(self):
        return dict(self._members)


ENUMS = {
    "DataType": ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "INT64", "BF16", "FP8"],
    "BuilderFlag": ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "STRICT_TYPES", "REFIT", "DISABLE_TIMING_CACHE",
                    "TF32", "SPARSE_WEIGHTS", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS",
                    "DIRECT_IO", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"],
    "HardwareCompatibilityLevel": ["NONE", "AMPERE_PLUS"],
    "NetworkDefinitionCreationFlag": ["EXPLICIT_BATCH", "EXPLICIT_PRECISION", "STRONGLY_TYPED"],
    "DeviceType": ["GPU", "DLA"],
    "MemoryPoolType": ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM", "TACTIC_DRAM"],
    "TensorIOMode": ["NONE", "INPUT", "OUTPUT"],
    "TensorLocation": ["DEVICE", "HOST"],
    "ProfilingVerbosity": ["LAYER_NAMES_ONLY", "NONE", "DETAILED"],
}
_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
       "UINT8": np.uint8, "INT64": np.int64}
_FROM_NP = {"float32": "FLOAT", "float16": "HALF", "int8": "INT8", "int32": "INT32", "bool": "BOOL",
            "uint8": "UINT8", "int64": "INT64"}


class Dims(tuple):
    """``tensorrt.Dims``: a tuple of ints (-1 for a dynamic dimension)."""

    def __repr__(self):
        return "Dims({})".format(tuple(self))


# -- recorded objects ----------------------------------------------------------------------------------------

class Recorded:
    """Base of every double class: records calls and sets, refuses APIs the flavour lacks."""

    _kind = "object"

    def __init__(self, module):
        object.__setattr__(self, "_trt", module)

    def _check(self, name):
        trt = object.__getattribute__(self, "_trt")
        kind = type(self)._kind
        if name in MISSING[trt.flavour].get(kind, ()):
            raise AttributeError("'tensorrt.{}' object has no attribute '{}' (TensorRT {} double)".format(
                kind, name, trt.__version__))
        if name in DEPRECATED[trt.flavour].get(kind, ()):
            trt.deprecated_uses.append("{}.{}".format(kind, name))

    def __getattribute__(self, name):
        if name.startswith("_"):
            return object.__getattribute__(self, name)
        object.__getattribute__(self, "_check")(name)
        value = object.__getattribute__(self, name)
        if callable(value) and not isinstance(value, (Recorded, EnumMember, Enum)):
            trt = object.__getattribute__(self, "_trt")
            label = "{}.{}".format(type(self)._kind, name)

            def recorded(*args, **kwargs):
                trt.calls.append(Call(label, args, kwargs))
                return value(*args, **kwargs)

            return recorded
        return value

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        self._check(name)
        if not hasattr(type(self), name) and name not in self.__dict__:
            raise AttributeError("'tensorrt.{}' object has no attribute '{}'".format(type(self)._kind, name))
        self._trt.calls.append(Call("{}.{}=".format(type(self)._kind, name), (value,), {}))
        object.__setattr__(self, name, value)


class Logger(Recorded):
    _kind = "Logger"
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4

    def __init__(self, module, min_severity=2):
        Recorded.__init__(self, module)
        object.__setattr__(self, "min_severity", min_severity)

    def log(self, severity, msg):
        pass  # TensorRT's own Logger prints to stderr; _log() below keeps every message in trt.log_messages


class ILoggerBase:
    """``trt.ILogger``: subclassed by code that wants TensorRT's messages (the documented pattern)::

        class MyLogger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
            def log(self, severity, msg): ...
    """

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4

    def __init__(self):
        self._ilogger_initialised = True
        self.min_severity = 2

    def log(self, severity, msg):
        raise RuntimeError('Tried to call pure virtual function "ILogger::log"')


def _check_logger(trt, logger):
    """What pybind11 does with a logger argument: our Logger or an initialised ILogger subclass, else TypeError."""
    if isinstance(logger, Logger):
        return logger
    if not isinstance(logger, trt.ILogger):
        raise TypeError("incompatible function arguments: expected a tensorrt.ILogger, got {!r}".format(
            type(logger).__name__))
    if not getattr(logger, "_ilogger_initialised", False):
        raise TypeError("{}.__init__() must be called when overriding __init__".format(type(logger).__name__))
    return logger


def _log(trt, logger, severity, msg):
    """TensorRT reports through the logger it was given; the double also keeps the message for tests."""
    trt.log_messages.append((severity, msg))
    if logger is not None and not isinstance(logger, Logger):
        logger.log(severity, msg)


class ITensor(Recorded):
    _kind = "ITensor"

    def __init__(self, module, name, shape, dtype, is_input):
        Recorded.__init__(self, module)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "shape", Dims(shape))
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "is_network_input", is_input)
        object.__setattr__(self, "is_network_output", not is_input)


class INetworkDefinition(Recorded):
    _kind = "INetworkDefinition"

    def __init__(self, module, flags):
        Recorded.__init__(self, module)
        object.__setattr__(self, "_flags", flags)
        object.__setattr__(self, "_inputs", [])
        object.__setattr__(self, "_outputs", [])
        object.__setattr__(self, "name", "network")

    @property
    def num_inputs(self):
        return len(self._inputs)

    @property
    def num_outputs(self):
        return len(self._outputs)

    @property
    def num_layers(self):
        return 1 if self._inputs else 0

    def get_input(self, index):
        return self._inputs[index]

    def get_output(self, index):
        return self._outputs[index]

    def mark_output(self, tensor):
        self._outputs.append(tensor)

    def _io(self):
        return [(t.name, "input" if t.is_network_input else "output", tuple(t.shape), _dtype_name(t.dtype))
                for t in self._inputs + self._outputs]


class ParserError:
    def __init__(self, message):
        self._message = message

    def desc(self):
        return self._message

    def code(self):
        return 1

    def node(self):
        return -1

    def __str__(self):
        return "In node -1 (parse): {}".format(self._message)


class OnnxParser(Recorded):
    """Fills the network with ``trt.network_io``; fails with ``trt.parser_errors`` or on non-ONNX bytes."""

    _kind = "OnnxParser"

    def __init__(self, module, network, logger):
        Recorded.__init__(self, module)
        _check_logger(module, logger)
        object.__setattr__(self, "_network", network)
        object.__setattr__(self, "_errors", [])

    def parse(self, model, path=None):
        data = bytes(model)
        if self._trt.parser_errors:
            self._errors.extend(ParserError(m) for m in self._trt.parser_errors)
            return False
        if not data:
            self._errors.append(ParserError("empty model"))
            return False
        trt = self._trt
        for name, mode, shape, dtype in trt.network_io:
            tensor = ITensor(trt, name, shape, getattr(trt.DataType, _FROM_NP[dtype]), mode == "input")
            (self._network._inputs if mode == "input" else self._network._outputs).append(tensor)
        return True

    def parse_from_file(self, path):
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            self._errors.append(ParserError("cannot read {}: {}".format(path, exc)))
            return False
        return self.parse(data, path)

    @property
    def num_errors(self):
        return len(self._errors)

    def get_error(self, index):
        return self._errors[index]

    def clear_errors(self):
        del self._errors[:]


class IOptimizationProfile(Recorded):
    _kind = "IOptimizationProfile"

    def __init__(self, module):
        Recorded.__init__(self, module)
        object.__setattr__(self, "shapes", {})

    def set_shape(self, input, min, opt, max):  # noqa: A002 - TensorRT's own parameter names
        self.shapes[input] = (Dims(min), Dims(opt), Dims(max))

    def get_shape(self, input):  # noqa: A002
        return list(self.shapes[input])


class IHostMemory(bytes):
    """Serialized data (plan, timing cache): usable as bytes, like TensorRT's buffer-protocol object."""

    @property
    def nbytes(self):
        return len(self)


class ITimingCache(Recorded):
    _kind = "ITimingCache"

    def __init__(self, module, data):
        Recorded.__init__(self, module)
        object.__setattr__(self, "data", bytes(data))

    def serialize(self):
        return IHostMemory(b"TRTDOUBLE-CACHE\n" + self._trt.__version__.encode() + b"\n" + self.data)

    def combine(self, input_cache, ignore_mismatch):
        return True

    def reset(self):
        return True


class IBuilderConfig(Recorded):
    _kind = "IBuilderConfig"
    hardware_compatibility_level = None
    max_workspace_size = 0
    default_device_type = None
    DLA_core = -1
    int8_calibrator = None
    profiling_verbosity = None
    builder_optimization_level = 3
    engine_capability = None

    def __init__(self, module):
        Recorded.__init__(self, module)
        object.__setattr__(self, "flags", set())
        object.__setattr__(self, "pool_limits", {})
        object.__setattr__(self, "profiles", [])
        object.__setattr__(self, "timing_cache", None)
        object.__setattr__(self, "default_device_type", module.DeviceType.GPU)

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def get_flag(self, flag):
        return flag in self.flags

    def set_memory_pool_limit(self, pool, pool_size):
        self.pool_limits[pool] = int(pool_size)

    def get_memory_pool_limit(self, pool):
        return self.pool_limits.get(pool, 0)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        data = bytes(serialized_timing_cache)
        header = b"TRTDOUBLE-CACHE\n" + self._trt.__version__.encode() + b"\n"
        return ITimingCache(self._trt, data[len(header):] if data.startswith(header) else b"")

    def set_timing_cache(self, cache, ignore_mismatch):
        object.__setattr__(self, "timing_cache", cache)
        return True

    def get_timing_cache(self):
        return self.timing_cache

    def can_run_on_DLA(self, layer):
        return True

    def __setattr__(self, name, value):
        if name == "int8_calibrator" and value is not None:
            _check_calibrator(self._trt, value)
        Recorded.__setattr__(self, name, value)


def _check_calibrator(trt, calibrator):
    """pybind11's checks on ``config.int8_calibrator = x``: an initialised IInt8Calibrator subclass."""
    base = getattr(trt, "IInt8Calibrator", None)
    if base is None or not isinstance(calibrator, base):
        raise TypeError("int8_calibrator: incompatible function arguments; expected a tensorrt.IInt8Calibrator, "
                        "got {!r}".format(type(calibrator).__name__))
    if not getattr(calibrator, "_calibrator_initialised", False):
        raise TypeError("{}.__init__() must be called when overriding __init__".format(type(calibrator).__name__))


def _run_calibrator(trt, logger, network, config):
    """What the builder does with an INT8 calibrator: read its cache, else pull batches until None."""
    calibrator = object.__getattribute__(config, "int8_calibrator")
    int8 = getattr(trt.BuilderFlag.__members__.get("INT8"), "value", None)
    if calibrator is None or not any(getattr(f, "value", None) == int8 for f in config.flags):
        return None
    calibrator.get_batch_size()
    cache = calibrator.read_calibration_cache()
    if cache:
        return "cache"
    names = [t.name for t in network._inputs]
    batches = 0
    while batches < 100000:
        batch = calibrator.get_batch(names)
        if not batch:
            break
        batches += 1
    if not batches:
        _log(trt, logger, 1, "Calibration failure occurred with no scaling factors detected: the calibrator "
                             "returned no batch and no cache")
        return False
    calibrator.write_calibration_cache(b"TRT-" + trt.__version__.encode() + b"-EntropyCalibration2\n")
    return "batches"


_ALGORITHMS = {"IInt8EntropyCalibrator2": "ENTROPY_CALIBRATION_2", "IInt8EntropyCalibrator": "ENTROPY_CALIBRATION",
               "IInt8MinMaxCalibrator": "MINMAX_CALIBRATION", "IInt8LegacyCalibrator": "LEGACY_CALIBRATION",
               "IInt8Calibrator": "ENTROPY_CALIBRATION_2"}


def make_calibrator_classes(trt):
    """The IInt8*Calibrator base classes of one double: pure virtual methods that raise like pybind11's
    trampolines, an ``__init__`` that subclasses must call (deprecated since TensorRT 10.1)."""
    def pure(method):
        def call(self, *args):
            raise RuntimeError('Tried to call pure virtual function "IInt8Calibrator::{}"'.format(method))
        call.__name__ = method
        return call

    def init_for(name):
        def __init__(self):
            self._calibrator_initialised = True
            if CALIBRATORS_DEPRECATED[trt.flavour]:
                trt.deprecated_uses.append("{}.__init__".format(name))
        return __init__

    namespace = {"get_batch_size": pure("get_batch_size"), "get_batch": pure("get_batch"),
                 "read_calibration_cache": pure("read_calibration_cache"),
                 "write_calibration_cache": pure("write_calibration_cache"),
                 "__init__": init_for("IInt8Calibrator"),
                 "get_algorithm": lambda self: _ALGORITHMS[type(self).__mro__[-2].__name__]}
    base = type("IInt8Calibrator", (object,), namespace)
    classes = {"IInt8Calibrator": base}
    for name in CALIBRATORS[1:]:
        classes[name] = type(name, (base,), {"__init__": init_for(name),
                                              "get_algorithm": (lambda n: lambda self: _ALGORITHMS[n])(name)})
    return classes


class Builder(Recorded):
    _kind = "Builder"
    max_batch_size = 1

    def __init__(self, module, logger):
        Recorded.__init__(self, module)
        object.__setattr__(self, "logger", _check_logger(module, logger))

    @property
    def platform_has_fast_fp16(self):
        return self._trt.platform_has_fast_fp16

    @property
    def platform_has_fast_int8(self):
        return self._trt.platform_has_fast_int8

    @property
    def num_DLA_cores(self):
        return self._trt.num_dla_cores

    @property
    def max_DLA_batch_size(self):
        return 32

    def create_network(self, flags=0):
        return INetworkDefinition(self._trt, int(flags))

    def create_builder_config(self):
        return IBuilderConfig(self._trt)

    def create_optimization_profile(self):
        return IOptimizationProfile(self._trt)

    def build_serialized_network(self, network, config):
        return self._build_plan(network, config)

    def _build_plan(self, network, config):
        trt = self._trt
        if trt.build_fails or not network._inputs:
            _log(trt, self.logger, 1, "Network must have at least one input and one output")
            return None
        if config.DLA_core >= trt.num_dla_cores and config.default_device_type == trt.DeviceType.DLA:
            _log(trt, self.logger, 1, "DLA core {} not available".format(config.DLA_core))
            return None
        calibration = _run_calibrator(trt, self.logger, network, config)
        if calibration is False:
            return None
        cache = config.timing_cache
        if cache is not None:
            object.__setattr__(cache, "data", cache.data + b"tactics;")
        plan = {"version": trt.__version__, "io": network._io(),
                "flags": sorted(f.name for f in config.flags), "network_flags": network._flags,
                "dla_core": config.DLA_core if config.default_device_type == trt.DeviceType.DLA else -1,
                "calibration": calibration,
                "hardware_compatibility_level": getattr(
                    object.__getattribute__(config, "hardware_compatibility_level"), "name", "NONE")}
        return IHostMemory(PLAN_MAGIC + json.dumps(plan, sort_keys=True).encode())

    def build_engine(self, network, config):
        plan = self._build_plan(network, config)
        return None if plan is None else ICudaEngine(self._trt, _read_plan(plan), self.logger)

    def is_network_supported(self, network, config):
        return True


class Runtime(Recorded):
    _kind = "Runtime"
    DLA_core = -1

    def __init__(self, module, logger):
        Recorded.__init__(self, module)
        object.__setattr__(self, "logger", _check_logger(module, logger))

    @property
    def num_DLA_cores(self):
        return self._trt.num_dla_cores

    engine_host_code_allowed = False

    def deserialize_cuda_engine(self, serialized_engine):
        trt = self._trt
        plan = _read_plan(bytes(serialized_engine))
        if plan is None:
            _log(trt, self.logger, 1, "1: [stdArchiveReader.cpp::StdArchiveReader::32] Error Code 1: "
                                      "Serialization (Serialization assertion magicTagRead == kMAGIC_TAG "
                                      "failed.Magic tag does not match)")
            return None
        if plan["version"] != trt.__version__ and not self._version_compatible(plan):
            _log(trt, self.logger, 1, "The engine plan file is not compatible with this version of "
                                      "TensorRT, expecting library version {} got {}".format(
                                          trt.__version__, plan["version"]))
            return None
        plan["runtime_dla_core"] = self.DLA_core
        return ICudaEngine(trt, plan, self.logger)

    def _version_compatible(self, plan):
        """A VERSION_COMPATIBLE plan loads on a later release of the same major version; unless it was built
        with EXCLUDE_LEAN_RUNTIME it embeds the lean runtime, which the runtime must allow to run."""
        def parts(version):
            return tuple(int(p) for p in str(version).split(".")[:3])
        if "VERSION_COMPATIBLE" not in plan.get("flags", ()):
            return False
        ours, theirs = parts(self._trt.__version__), parts(plan["version"])
        if ours[0] != theirs[0] or ours < theirs:
            return False
        if "EXCLUDE_LEAN_RUNTIME" not in plan["flags"] and not self.engine_host_code_allowed:
            _log(self._trt, self.logger, 1, "Engine host code is not allowed: set engine_host_code_allowed to "
                                            "run a version-compatible engine with an embedded lean runtime")
            return False
        return True


def _read_plan(data):
    data = bytes(data)
    if not data.startswith(PLAN_MAGIC):
        return None
    try:
        return json.loads(data[len(PLAN_MAGIC):].decode())
    except ValueError:
        return None


def _dtype_name(dtype):
    return {v: k for k, v in _FROM_NP.items()}[dtype.name]


class ICudaEngine(Recorded):
    _kind = "ICudaEngine"
    max_batch_size = 1

    def __init__(self, module, plan, logger=None):
        Recorded.__init__(self, module)
        object.__setattr__(self, "_logger", logger)
        object.__setattr__(self, "plan", plan)
        object.__setattr__(self, "_io", [(n, m, tuple(s), d) for n, m, s, d in plan["io"]])
        object.__setattr__(self, "name", "engine")

    # names the double uses itself (not recorded, never missing)
    def _index(self, name_or_index):
        if isinstance(name_or_index, int):
            return name_or_index
        names = [io[0] for io in self._io]
        if name_or_index not in names:
            return -1
        return names.index(name_or_index)

    def _dtype(self, name_or_index):
        return getattr(self._trt.DataType, _FROM_NP[self._io[self._index(name_or_index)][3]])

    # bindings API (8.x)
    @property
    def num_bindings(self):
        return len(self._io)

    def get_binding_name(self, index):
        return self._io[index][0]

    def get_binding_index(self, name):
        return self._index(name)

    def binding_is_input(self, index):
        return self._io[self._index(index)][1] == "input"

    def get_binding_shape(self, index):
        return Dims(self._io[self._index(index)][2])

    def get_binding_dtype(self, index):
        return self._dtype(index)

    def get_profile_shape(self, profile_index, binding):
        shape = Dims(self._io[self._index(binding)][2])
        return [shape, shape, shape]

    # tensor API (8.5+)
    @property
    def num_io_tensors(self):
        return len(self._io)

    def get_tensor_name(self, index):
        return self._io[index][0]

    def get_tensor_mode(self, name):
        index = self._index(name)
        if index < 0:
            return self._trt.TensorIOMode.NONE
        return self._trt.TensorIOMode.INPUT if self._io[index][1] == "input" else self._trt.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return Dims(self._io[self._index(name)][2])

    def get_tensor_dtype(self, name):
        return self._dtype(name)

    def get_tensor_location(self, name):
        return self._trt.TensorLocation.DEVICE

    def get_tensor_profile_shape(self, name, profile_index):
        shape = Dims(self._io[self._index(name)][2])
        return [shape, shape, shape]

    # common
    @property
    def num_optimization_profiles(self):
        return 1

    @property
    def device_memory_size(self):
        return 1 << 20

    def create_execution_context(self):
        return IExecutionContext(self._trt, self)

    def serialize(self):
        return IHostMemory(PLAN_MAGIC + json.dumps(self.plan, sort_keys=True).encode())


class IExecutionContext(Recorded):
    _kind = "IExecutionContext"
    debug_sync = False
    active_optimization_profile = 0

    def __init__(self, module, engine):
        Recorded.__init__(self, module)
        object.__setattr__(self, "engine", engine)
        object.__setattr__(self, "addresses", {})
        object.__setattr__(self, "shapes", {n: Dims(s) for n, _, s, _ in engine._io})
        object.__setattr__(self, "name", "context")

    def _fail(self, message):
        _log(self._trt, self.engine._logger, 1, message)
        return False

    # 8.x
    def set_binding_shape(self, binding, shape):
        name = self.engine._io[binding][0]
        return self._set_shape(name, shape)

    def get_binding_shape(self, binding):
        return self.shapes[self.engine._io[binding][0]]

    @property
    def all_binding_shapes_specified(self):
        return self._shapes_specified()

    def execute_async_v2(self, bindings, stream_handle, input_consumed=None):
        return self._run_bindings(bindings, stream_handle)

    def execute_v2(self, bindings):
        return self._run_bindings(bindings, 0)

    def _run_bindings(self, bindings, stream_handle):
        io = self.engine._io
        if len(bindings) != len(io):
            return self._fail("execute_async_v2: expected {} bindings, got {}".format(len(io), len(bindings)))
        return self._run(dict((io[i][0], int(ptr)) for i, ptr in enumerate(bindings)), stream_handle)

    # 8.5+
    def set_tensor_address(self, name, memory):
        if self.engine._index(name) < 0:
            return self._fail("set_tensor_address: no tensor named {!r}".format(name))
        self.addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name):
        return self.addresses.get(name, 0)

    def set_input_shape(self, name, shape):
        return self._set_shape(name, shape)

    def get_tensor_shape(self, name):
        return self.shapes[name]

    def execute_async_v3(self, stream_handle):
        return self._run(dict(self.addresses), stream_handle)

    def set_optimization_profile_async(self, profile_index, stream_handle):
        object.__setattr__(self, "active_optimization_profile", profile_index)
        return True

    # shared checks and the fake execution
    def _set_shape(self, name, shape):
        index = self.engine._index(name)
        if index < 0 or self.engine._io[index][1] != "input":
            return self._fail("set shape: {!r} is not an input".format(name))
        declared = self.engine._io[index][2]
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(declared) or any(d != s and d != -1 for d, s in zip(declared, shape)):
            return self._fail("set shape: {} does not fit {} of {!r}".format(shape, declared, name))
        self.shapes[name] = Dims(shape)
        return True

    def _shapes_specified(self):
        return all(-1 not in self.shapes[n] for n, m, _, _ in self.engine._io if m == "input")

    def _run(self, addresses, stream_handle):
        if not isinstance(stream_handle, int):
            return self._fail("stream handle must be an int, got {!r}".format(type(stream_handle)))
        if not self._shapes_specified():
            return self._fail("not all input shapes are specified")
        for name, _, _, _ in self.engine._io:
            if not addresses.get(name):
                return self._fail("address of tensor {!r} is not set (or 0)".format(name))
        memory = self._trt.memory
        self._trt.executions.append({"addresses": addresses, "stream": stream_handle})
        if memory is None:
            return True
        if hasattr(memory, "enqueue"):  # a simulated GPU: the engine runs in stream order, like TensorRT's
            memory.enqueue(stream_handle, lambda: self._compute(memory, addresses))
        else:
            self._compute(memory, addresses)
        return True

    def _compute(self, memory, addresses):
        inputs, outputs = [], []
        for name, mode, shape, dtype in self.engine._io:
            shape = tuple(self.shapes[name]) if mode == "input" else shape
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            if mode == "input":
                data = np.frombuffer(memory.read(addresses[name], nbytes), dtype=dtype)
                inputs.append(data.astype(np.float64))
            else:
                outputs.append((name, shape, dtype, nbytes))
        for k, (name, shape, dtype, _nbytes) in enumerate(outputs):
            value = self._trt.output_function(inputs, k)
            out = np.resize(value, int(np.prod(shape))).astype(dtype)
            memory.write(addresses[name], out.tobytes())


# -- the module ----------------------------------------------------------------------------------------------

def make_tensorrt_double(flavour="8.6", io=None, num_dla_cores=0, platform_has_fast_fp16=True,
                         platform_has_fast_int8=True, version=None):
    """A fresh ``tensorrt`` module double for ``flavour`` ("8.2", "8.6" or "10").

    ``io``: list of (name, "input"|"output", shape, numpy dtype name) that the ONNX parser puts in the
    network (default :data:`DEFAULT_IO`). Attributes a test may change afterwards: ``parser_errors``
    (messages that make parsing fail), ``build_fails``, ``memory`` (see module docstring),
    ``output_function``, ``num_dla_cores``.
    """
    flavour = ALIASES.get(str(flavour))
    if flavour is None:
        raise ValueError("unknown TensorRT double flavour; known: {}".format(", ".join(sorted(FLAVOURS))))
    trt = types.ModuleType("tensorrt")
    trt.__doc__ = "TensorRT {} recorded-call double (tests/tensorrt_double.py)".format(FLAVOURS[flavour])
    trt.__version__ = version or FLAVOURS[flavour]  # e.g. "8.5.2.2": 8.6's API at JetPack 5.1's version
    trt.flavour = flavour
    trt.calls = []
    trt.deprecated_uses = []
    trt.log_messages = []
    trt.executions = []
    trt.network_io = list(io or DEFAULT_IO)
    trt.parser_errors = []
    trt.build_fails = False
    trt.memory = None
    trt.output_function = default_output_function
    trt.num_dla_cores = num_dla_cores
    trt.platform_has_fast_fp16 = platform_has_fast_fp16
    trt.platform_has_fast_int8 = platform_has_fast_int8

    deprecated = enum_deprecations(flavour, trt.__version__)
    for name, members in ENUMS.items():
        missing = ENUM_MISSING[flavour].get(name, ())
        if missing is None:
            continue  # the whole enum does not exist in this flavour
        setattr(trt, name, Enum(trt, name, members, missing, deprecated.get(name, ())))
    for alias, member in (("float32", "FLOAT"), ("float16", "HALF"), ("int8", "INT8"), ("int32", "INT32"),
                          ("bool", "BOOL")):
        setattr(trt, alias, getattr(trt.DataType, member))

    def bind(cls):
        def factory(*args, **kwargs):
            trt.calls.append(Call(cls._kind, args, kwargs))
            return cls(trt, *args, **kwargs)
        factory.__name__ = cls.__name__
        return factory

    trt.ILogger = type("ILogger", (ILoggerBase,), {})
    trt.Logger = bind(Logger)
    if not CALIBRATORS_MISSING[flavour]:
        for name, cls in make_calibrator_classes(trt).items():
            setattr(trt, name, cls)
    for level in ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"):
        setattr(trt.Logger, level, getattr(Logger, level))
    trt.Builder = bind(Builder)
    trt.Runtime = bind(Runtime)
    trt.OnnxParser = bind(OnnxParser)

    def nptype(dtype):
        return _NP[dtype.name]

    def volume(shape):
        return int(np.prod(list(shape))) if len(shape) else 1

    trt.nptype = nptype
    trt.volume = volume
    trt.Dims = Dims
    trt.init_libnvinfer_plugins = lambda logger, namespace: True

    def calls_named(name):
        """The recorded calls whose name is ``name`` (e.g. ``"IExecutionContext.execute_async_v3"``)."""
        return [c for c in trt.calls if c.name == name]

    def call_names():
        return [c.name for c in trt.calls]

    trt.calls_named = calls_named
    trt.call_names = call_names
    return trt


def plan_bytes(flavour="8.6", io=None, dla_core=-1, version=None, flags=()):
    """A serialized engine as the given flavour's double would build it (for tests that only load)."""
    plan = {"version": version or FLAVOURS[ALIASES[str(flavour)]], "io": [list(x) for x in (io or DEFAULT_IO)],
            "flags": sorted(flags), "dla_core": dla_core}
    return PLAN_MAGIC + json.dumps(plan, sort_keys=True).encode()


def install_tensorrt_double(monkeypatch, flavour="8.6", **options):
    """Make ``import tensorrt`` return a fresh double for the rest of the test; returns the double."""
    double = make_tensorrt_double(flavour, **options)
    monkeypatch.setitem(sys.modules, "tensorrt", double)
    return double


@pytest.fixture(params=sorted(FLAVOURS))
def tensorrt_double(request, monkeypatch):
    """``sys.modules["tensorrt"]`` = a fresh double, once per flavour (8.2, 8.6, 10)."""
    return install_tensorrt_double(monkeypatch, request.param)
