"""scripts/trt_api_listing.py on registration streams shaped like the ones objdump shows (the real wheels are
not in the repository: their listings are, tests/data/tensorrt_api/)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "trt_api_listing.py"
spec = importlib.util.spec_from_file_location("trt_api_listing", SCRIPT)
listing = importlib.util.module_from_spec(spec)
spec.loader.exec_module(listing)

MAIN = "tensorrt::bindCore(pybind11::module_&)"
CONFIG_DOC = ("\n    :ivar flags: :class:`int` The build mode flags.\n"
              "    :ivar int8_calibrator: :class:`IInt8Calibrator` [DEPRECATED] Deprecated in TensorRT 10.1. "
              "Superseded by explicit quantization. Int8 Calibration.\n")
SET_POOL_DOC = "\n  Set the memory size for the memory pool.\n\n  :arg pool: The pool.\n  :arg pool_size: Bytes.\n"


def test_inline_registrations_file_names_docs_and_deprecations_under_their_class():
    stream = [
        (MAIN, "IBuilderConfig", None), (MAIN, CONFIG_DOC, None), (MAIN, "flags", None),
        (MAIN, "({%}, {%}) -> None", None), (MAIN, "int8_calibrator", None), (MAIN, "pool_size", None),
        (MAIN, SET_POOL_DOC, None),
        (MAIN, "set_memory_pool_limit", None), (MAIN, "pool", None),
        (MAIN, "\n    [DEPRECATED] Deprecated in TensorRT 10.1. Superseded by explicit quantization.\n", None),
        (MAIN, "set_calibration_profile", None),
        (MAIN, "BuilderFlag", None), (MAIN, "Enable FP16 layer selection", None), (MAIN, "FP16", None),
    ]
    classes = {name: c.listing() for name, c in listing.read_registrations(stream).items()}
    config = classes["IBuilderConfig"]
    assert config["members"] == ["flags", "int8_calibrator", "set_calibration_profile", "set_memory_pool_limit"]
    assert set(config["deprecated"]) == {"int8_calibrator", "set_calibration_profile"}  # keyword names dropped
    assert config["deprecated"]["int8_calibrator"].startswith("[DEPRECATED] Deprecated in TensorRT 10.1")
    assert classes["BuilderFlag"] == {"members": ["FP16"], "deprecated": {}}


def test_called_registrations_name_their_class_even_out_of_order():
    """Newer builds register through calls of pybind11::enum_<T>::value: the name loaded before the call belongs
    to T, whatever the plain stream guessed."""
    value = ("pybind11::enum_<nvinfer1::NetworkDefinitionCreationFlag>::value(char const*, "
             "nvinfer1::NetworkDefinitionCreationFlag, char const*)")
    ctor = ("pybind11::enum_<nvinfer1::NetworkDefinitionCreationFlag>::enum_<pybind11::arithmetic, char const*>"
            "(pybind11::handle const&, char const*, pybind11::arithmetic const&, char const* const&)")
    stream = [
        (MAIN, "ICudaEngine", None), (MAIN, "num_io_tensors", None),
        (MAIN, "NetworkDefinitionCreationFlag", None), (MAIN, None, ctor),
        (MAIN, "ICudaEngine", None),  # the plain stream is back in another class when the values come
        (MAIN, "[DEPRECATED] Deprecated in TensorRT 11.0. Strongly typed mode is always enabled.", None),
        (MAIN, "STRONGLY_TYPED", None), (MAIN, None, value),
    ]
    classes = {name: c.listing() for name, c in listing.read_registrations(stream).items()}
    flags = classes["NetworkDefinitionCreationFlag"]
    assert flags["members"] == ["STRONGLY_TYPED"] and "STRONGLY_TYPED" in flags["deprecated"]
    assert classes["ICudaEngine"]["members"] == ["num_io_tensors"]


def test_8_2_is_8_6_minus_later_additions_and_later_deprecations():
    base = {"tensorrt": "8.6.1", "module_functions": ["nptype"], "init_classes": [], "classes": {
        "IBuilderConfig": {"members": ["max_workspace_size", "set_memory_pool_limit", "set_flag"],
                           "deprecated": {"max_workspace_size": "[DEPRECATED] The maximum workspace size."}},
        "MemoryPoolType": {"members": ["WORKSPACE"], "deprecated": {}},
        "IExecutionContext": {"members": ["execute_async_v2", "execute_async_v3"],
                              "deprecated": {"execute_async_v2": "Deprecated in TensorRT 8.5. Use v3."}},
    }}
    derived = listing.derive_8_2(base)
    classes = derived["classes"]
    assert "MemoryPoolType" not in classes
    assert classes["IBuilderConfig"] == {"members": ["max_workspace_size", "set_flag"], "deprecated": {}}
    assert classes["IExecutionContext"] == {"members": ["execute_async_v2"], "deprecated": {}}
    assert "IBuilderConfig.set_memory_pool_limit (8.4)" in derived["source"]["removed"]
