"""The TensorRT double itself: each flavour has exactly its version's API, records calls, round-trips plans."""

import pytest

from tests.tensorrt_double import FLAVOURS, install_tensorrt_double, make_tensorrt_double, plan_bytes


def build(trt, onnx_bytes=b"onnx"):
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_bytes)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    return builder, network, config


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_builder_records_calls_and_plan_round_trips(flavour):
    trt = make_tensorrt_double(flavour)
    builder, network, config = build(trt)
    plan = builder.build_serialized_network(network, config)
    assert "IBuilderConfig.set_flag" in trt.call_names()
    assert trt.calls_named("IBuilderConfig.set_flag")[0].args == (trt.BuilderFlag.FP16,)
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan)
    assert engine is not None and engine.plan["flags"] == ["FP16"]
    assert trt.Runtime(trt.Logger()).deserialize_cuda_engine(b"garbage") is None


def test_each_flavour_has_only_its_api():
    t82, t86, t10 = (make_tensorrt_double(f) for f in ("8.2", "8.6", "10"))
    for trt in (t82, t86):
        _, _, config = build(trt)
        config.max_workspace_size = 1 << 20
    assert not t82.deprecated_uses and "IBuilderConfig.max_workspace_size" in t86.deprecated_uses
    _, _, config10 = build(t10)
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
