"""The ONNX Runtime backend and the backend loader: real ONNX Runtime sessions on tiny real models."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_sdk.errors import BundleError, ConfigError, ModelError
from edge_sdk.runtime.backends.loader import load_backend
from edge_sdk.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge_sdk.runtime.model_meta import METADATA_KEY, InputSpec, ModelMeta
from edge_sdk.testing import make_oracle


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    return make_oracle(tmp_path_factory.mktemp("oracle"), num_frames=4, video=None)


def conv_model(path, outputs, input_name="image", input_shape=(1, 3, 64, 96), meta=None):
    """A model of 1x1 convolutions from the input to each (name, channels, stride) output."""
    nodes, inits, infos = [], [], []
    for name, channels, stride in outputs:
        weight = numpy_helper.from_array(np.full((channels, input_shape[1], 1, 1), 0.01, np.float32), name + "_w")
        inits.append(weight)
        nodes.append(helper.make_node("Conv", [input_name, name + "_w"], [name], strides=[stride, stride]))
        infos.append(helper.make_tensor_value_info(
            name, TensorProto.FLOAT, [input_shape[0], channels, input_shape[2] // stride, input_shape[3] // stride]))
    graph = helper.make_graph(nodes, "test", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                                                            list(input_shape))], infos, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = meta or ModelMeta(InputSpec(height=input_shape[2], width=input_shape[3]))
    if meta is not False:
        helper.set_model_props(model, {METADATA_KEY: meta.to_json() if isinstance(meta, ModelMeta) else meta})
    onnx.save(model, str(path))
    return path


def test_loads_oracle_model_reads_metadata_and_infers(oracle):
    backend = load_backend(model=oracle.model_path, prefer="onnxruntime", threads=1)
    assert isinstance(backend, OnnxRuntimeBackend)
    assert backend.meta.model == "oracle"
    assert backend.input_spec == oracle.meta.input
    buffer = backend.new_input_buffer()
    assert buffer.shape == (1, 3, 192, 256) and buffer.dtype == np.float32
    buffer[...] = 0.0
    outputs = backend.infer(buffer)
    assert outputs["heatmaps"].shape == (1, 19, 24, 32)
    assert outputs["pafs"].shape == (1, 38, 24, 32)
    assert backend.session.get_session_options().intra_op_num_threads == 1
    assert "onnxruntime" in backend.describe()
    backend.close()


def test_valid_conv_model_without_metadata_gets_defaults(tmp_path):
    path = conv_model(tmp_path / "m.onnx", [("heatmaps", 19, 8), ("pafs", 38, 8)], input_shape=(1, 3, 256, 384),
                      meta=False)
    backend = OnnxRuntimeBackend(path, optimization="basic")
    assert backend.meta.input.shape == (1, 3, 256, 384)
    assert set(backend.infer(np.zeros((1, 3, 256, 384), np.float32))) == {"heatmaps", "pafs"}


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_backend(model=tmp_path / "nope.onnx")


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_corrupt_model_file(tmp_path, oracle, damage):
    path = tmp_path / "bad.onnx"
    if damage == "random":
        path.write_bytes(np.random.RandomState(0).bytes(4000))
    else:
        data = oracle.model_path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="corrupt or not an ONNX model"):
        load_backend(model=path)


def test_outputs_that_are_not_heatmaps_and_pafs(tmp_path):
    path = conv_model(tmp_path / "cls.onnx", [("logits", 1000, 8)])
    with pytest.raises(ModelError, match=r"no output named 'heatmaps'.*heatmaps \[N, 19"):
        load_backend(model=path)


def test_heatmaps_with_wrong_channel_count(tmp_path):
    path = conv_model(tmp_path / "wrong.onnx", [("heatmaps", 17, 8), ("pafs", 38, 8)])
    with pytest.raises(ModelError,
                       match=r"'heatmaps' \(heatmaps\) has shape \[1, 17, 8, 12\]; expected \[N, 19, 8, 12\]"):
        load_backend(model=path)


def test_maps_at_the_wrong_stride(tmp_path):
    path = conv_model(tmp_path / "s4.onnx", [("heatmaps", 19, 4), ("pafs", 38, 4)])
    with pytest.raises(ModelError, match="stride 8"):
        load_backend(model=path)


def test_input_with_another_name(tmp_path):
    path = conv_model(tmp_path / "in.onnx", [("heatmaps", 19, 8), ("pafs", 38, 8)], input_name="input_1")
    with pytest.raises(ModelError, match="no input named 'image' .*input_1"):
        load_backend(model=path)


def test_metadata_that_disagrees_with_the_graph(tmp_path):
    meta = ModelMeta(InputSpec(height=256, width=384))
    path = conv_model(tmp_path / "meta.onnx", [("heatmaps", 19, 8), ("pafs", 38, 8)], meta=meta)
    with pytest.raises(ModelError, match="metadata says NCHW"):
        load_backend(model=path)


def test_metadata_that_is_not_json(tmp_path):
    path = conv_model(tmp_path / "j.onnx", [("heatmaps", 19, 8), ("pafs", 38, 8)], meta="{not json")
    with pytest.raises(ModelError, match="not valid ModelMeta JSON"):
        load_backend(model=path)


def test_peaks_model_is_accepted(tmp_path):
    case = make_oracle(tmp_path, num_frames=2, video=None, outputs="peaks")
    backend = load_backend(model=case.model_path)
    outputs = backend.infer(np.zeros(backend.input_spec.shape, np.float32))
    assert outputs["peaks"].shape == (1, 18, 8, 3)


def test_loader_argument_errors(oracle, tmp_path):
    with pytest.raises(ConfigError, match="exactly one"):
        load_backend()
    with pytest.raises(ConfigError, match="exactly one"):
        load_backend(model=oracle.model_path, bundle=tmp_path)
    with pytest.raises(ConfigError, match="unknown backend 'tensorrtx'; known: auto, onnxruntime, tensorrt"):
        load_backend(model=oracle.model_path, prefer="tensorrtx")
    with pytest.raises(ConfigError, match="needs a bundle"):
        load_backend(model=oracle.model_path, prefer="tensorrt")


def test_cli_reports_a_corrupt_model_without_traceback(tmp_path, edge_sdk_cli):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 100)
    proc = edge_sdk_cli("run", "--model", bad, "--source", "synthetic?frames=2", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "cannot load ONNX model" in proc.stderr and "Traceback" not in proc.stderr


def write_cpu_bundle(out, case, target_name="cpu", **target_overrides):
    """A real bundle for the ``cpu`` target (or a Jetson one, engine to be built on the device) around
    ``case``'s model (edge_sdk.bundle_writer.write_bundle)."""
    from edge_sdk.targets import get_target

    from edge_sdk.bundle_writer import Precision, write_bundle

    target = get_target(target_name)
    if target.backend != "onnxruntime":
        return write_bundle(out, model_path=case.model_path, meta=case.meta, target=target,
                            precision=Precision("fp16", "fp16"), engine={"status": "build-on-device", "file": None})
    options = dict(target.onnxruntime, **target_overrides)
    return write_bundle(out, model_path=case.model_path, meta=case.meta, target=target,
                        precision=Precision("fp32", "fp32"), engine={"status": "none", "file": None},
                        onnxruntime_options=options)


def test_bundle_for_the_cpu_target(oracle, tmp_path):
    result = write_cpu_bundle(tmp_path / "bundle", oracle, intra_op_num_threads=1,
                              graph_optimization_level="ORT_ENABLE_BASIC")
    for path in (result.directory, result.archive):
        backend = load_backend(bundle=str(path))  # auto: the cpu target's bundle runs on ONNX Runtime
        assert isinstance(backend, OnnxRuntimeBackend) and backend.meta.model == "oracle"
        assert backend.session.get_session_options().intra_op_num_threads == 1
        assert backend.optimization == "basic"
        assert backend.infer(np.zeros(backend.input_spec.shape, np.float32))["pafs"].shape == (1, 38, 24, 32)


def test_bundle_errors(oracle, tmp_path):
    directory = write_cpu_bundle(tmp_path / "bundle", oracle).directory
    with pytest.raises(BundleError, match="built for target 'cpu', but this device is 'jetson-nano'"):
        load_backend(bundle=str(directory), target="jetson-nano")
    with pytest.raises(ConfigError, match="is a bundle directory; pass it with --bundle"):
        load_backend(model=str(directory))
    model = directory / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 of 'model.onnx' does not match"):
        load_backend(bundle=str(directory))


def test_tensorrt_asked_for_where_it_is_missing(oracle, tmp_path, edge_sdk_cli):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    directory = write_cpu_bundle(tmp_path / "orin", oracle, target_name="jetson-orin-nano").directory
    said = []
    backend = load_backend(bundle=str(directory), say=said.append)  # auto: falls back, and says why
    assert isinstance(backend, OnnxRuntimeBackend) and "onnxruntime" in said[0] and "tensorrt" in said[0].lower()
    with pytest.raises(ConfigError, match="TensorRT backend is not available here.*--backend onnxruntime"):
        load_backend(bundle=str(directory), prefer="tensorrt", say=said.append)
    proc = edge_sdk_cli("run", "--bundle", directory, "--backend", "tensorrt", "--source", "synthetic?frames=1",
                        timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "python3-libnvinfer" in proc.stderr
