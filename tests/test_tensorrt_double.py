"""The TensorRT double itself: each flavour has exactly its version's API, records calls, round-trips plans."""

import pytest

from tests.tensorrt_double import FLAVOURS, install_tensorrt_double, make_tensorrt_double, plan_bytes


def build(trt, onnx_bytes=b"onnx", logger=None):
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit = trt.flavour in ("8.2", "8.6")  # implied from 10 on, removed in 11
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if explicit else 0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_bytes)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK if trt.flavour == "11" else trt.BuilderFlag.FP16)
    return builder, network, config


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_builder_records_calls_and_plan_round_trips(flavour):
    trt = make_tensorrt_double(flavour)
    builder, network, config = build(trt)
    plan = builder.build_serialized_network(network, config)
    assert "IBuilderConfig.set_flag" in trt.call_names()
    flag = "GPU_FALLBACK" if flavour == "11" else "FP16"
    assert trt.calls_named("IBuilderConfig.set_flag")[0].args == (getattr(trt.BuilderFlag, flag),)
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan)
    assert engine is not None and engine.plan["flags"] == [flag]
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(b"garbage") is None


def test_each_flavour_has_only_its_api():
    t82, t86, t10 = (make_tensorrt_double(f) for f in ("8.2", "8.6", "10"))
    for trt in (t82, t86):
        _, _, config = build(trt)
        config.max_workspace_size = 1 << 20
    assert not t82.deprecated_uses and "IBuilderConfig.max_workspace_size" in t86.deprecated_uses
    _, _, config10 = build(t10)
    assert t10.NetworkDefinitionCreationFlag.EXPLICIT_BATCH is not None
    assert "NetworkDefinitionCreationFlag.EXPLICIT_BATCH" in t10.deprecated_uses
    with pytest.raises(AttributeError):
        config10.max_workspace_size = 1 << 20
    assert not hasattr(t82, "MemoryPoolType")
    _, _, config82 = build(t82)
    assert not hasattr(config82, "set_memory_pool_limit")
    engine10 = t10.Runtime(t10.Logger()).deserialize_cuda_engine(plan_bytes("10"))
    assert not hasattr(engine10, "num_bindings")
    assert not hasattr(engine10.create_execution_context(), "execute_async_v2")
    assert not hasattr(t10.Builder(t10.Logger()), "build_engine")
    engine82 = t82.Runtime(t82.Logger()).deserialize_cuda_engine(plan_bytes("8.2"))
    with pytest.raises(AttributeError):
        engine82.get_tensor_name(0)
    assert engine82.num_bindings == 3 and engine82.binding_is_input(0)


def test_plan_from_another_version_is_refused():
    trt = make_tensorrt_double("10")
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan_bytes("8.6")) is None
    assert "not compatible" in trt.log_messages[-1][1]


def test_execute_checks_addresses_and_bindings():
    trt = make_tensorrt_double("8.6")
    ctx = trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan_bytes("8.6")).create_execution_context()
    ctx.set_tensor_address("image", 4096)
    assert ctx.execute_async_v3(7) is False  # outputs unbound
    ctx.set_tensor_address("heatmaps", 8192)
    ctx.set_tensor_address("pafs", 12288)
    assert ctx.execute_async_v3(7) is True
    assert ctx.execute_async_v2([1, 2], 7) is False
    assert trt.calls_named("IExecutionContext.execute_async_v3")[-1].args == (7,)


@pytest.fixture(params=sorted(FLAVOURS))
def trt(request, monkeypatch):
    return install_tensorrt_double(monkeypatch, request.param)


def test_fixture_installs_the_module(trt):
    import tensorrt

    assert tensorrt is trt and tensorrt.__version__ in FLAVOURS.values()


def test_tensorrt_11_has_no_precision_flags_calibrators_or_platform_queries():
    trt = make_tensorrt_double("11")
    for name in ("FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS"):
        with pytest.raises(AttributeError):
            getattr(trt.BuilderFlag, name)
    assert not hasattr(trt, "IInt8EntropyCalibrator2")
    builder = trt.Builder(trt.Logger())
    assert not hasattr(builder, "platform_has_fast_fp16")
    with pytest.raises(AttributeError):
        builder.create_builder_config().int8_calibrator = None
    assert trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED is not None
    assert trt.deprecated_uses == ["NetworkDefinitionCreationFlag.STRONGLY_TYPED"]


class _Calibrator:
    pass


@pytest.mark.parametrize("flavour", ["8.2", "8.6", "10"])
def test_calibrator_must_honour_the_base_class_contract(flavour):
    trt = make_tensorrt_double(flavour)
    _, _, config = build(trt)
    with pytest.raises(TypeError, match="IInt8Calibrator"):
        config.int8_calibrator = _Calibrator()  # duck typing is not enough: pybind11 checks the type

    class NoInit(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            pass

    with pytest.raises(TypeError, match="__init__"):
        config.int8_calibrator = NoInit()

    class Partial(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)

    builder, network, config = build(trt)
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = Partial()
    with pytest.raises(RuntimeError, match="pure virtual"):
        builder.build_serialized_network(network, config)

    class FromCache(Partial):
        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            return None

        def read_calibration_cache(self):
            return b"TRT-8601-EntropyCalibration2\nimage: 3c010a14\n"

        def write_calibration_cache(self, cache):
            return None

    builder, network, config = build(trt)
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = FromCache()
    plan = builder.build_serialized_network(network, config)
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan).plan["calibration"] == "cache"
    deprecated = "IInt8EntropyCalibrator2.__init__" in trt.deprecated_uses
    assert deprecated == (flavour == "10")  # "Deprecated in TensorRT 10.1. Superseded by explicit quantization."


def test_messages_reach_an_ilogger_subclass():
    trt = make_tensorrt_double("10")

    class Capture(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages = []

        def log(self, severity, msg):
            self.messages.append((severity, msg))

    logger = Capture()
    assert trt.Runtime(logger).deserialize_cuda_engine(plan_bytes("8.6")) is None
    assert "not compatible" in logger.messages[-1][1]

    class Forgot(trt.ILogger):
        def __init__(self):
            pass

    with pytest.raises(TypeError, match="__init__"):
        trt.Runtime(Forgot())


def test_version_compatible_plans_load_on_a_later_release_of_the_same_major():
    trt = make_tensorrt_double("10")
    later = plan_bytes("10", version="10.1.0.27", flags=["VERSION_COMPATIBLE"])
    runtime = trt.Runtime(trt.Logger())
    assert runtime.deserialize_cuda_engine(later) is None  # embeds the lean runtime: host code not allowed
    runtime.engine_host_code_allowed = True
    assert runtime.deserialize_cuda_engine(later) is not None
    lean = plan_bytes("10", version="10.1.0.27", flags=["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"])
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(lean) is not None
    newer = plan_bytes("10", version="10.9.0.34", flags=["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"])
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(newer) is None  # built by a later TensorRT
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan_bytes("8.6", flags=["VERSION_COMPATIBLE"])) is None
