"""Every flavour of the TensorRT double against the REAL API of its release (tests/data/tensorrt_api/).

The listings were read from NVIDIA's bindings wheels by scripts/trt_api_listing.py (8.2: derived from 8.6 and
NVIDIA's API change tables; see the listing's ``source``). A name the double offers that the release lacks, or
that the release deprecates while the double does not, fails here: our code is only ever tested against an API
that exists, and told when it leans on a deprecated one.
"""

import ast
import json
from pathlib import Path

import pytest

from tests import tensorrt_double as double

DATA = Path(__file__).parent / "data" / "tensorrt_api"
REPO = Path(__file__).resolve().parents[1]

# Double classes -> the real class, and the real bases whose members a script reaches through it.
CLASSES = {
    "Builder": ["Builder"], "IBuilderConfig": ["IBuilderConfig"], "INetworkDefinition": ["INetworkDefinition"],
    "ITensor": ["ITensor"], "OnnxParser": ["OnnxParser"], "Runtime": ["Runtime"], "ICudaEngine": ["ICudaEngine"],
    "IExecutionContext": ["IExecutionContext"], "IOptimizationProfile": ["IOptimizationProfile"],
    "ITimingCache": ["ITimingCache"], "Logger": ["Logger", "ILogger"],
}
# Attributes of the double that exist only for tests to inspect what the code asked for (never used by
# production code: test_production_code_reads_no_double_only_attribute).
DOUBLE_ONLY = {
    "IBuilderConfig": {"pool_limits", "profiles", "timing_cache"},
    "IOptimizationProfile": {"shapes"},
    "ICudaEngine": {"plan"},
    "IExecutionContext": {"addresses", "shapes"},
    "ITimingCache": {"data"},
}
MODULE_ONLY = {"flavour", "calls", "deprecated_uses", "log_messages", "executions", "network_io", "parser_errors",
               "build_fails", "memory", "output_function", "num_dla_cores", "platform_has_fast_fp16",
               "platform_has_fast_int8", "calls_named", "call_names"}


def listing(flavour):
    with open(DATA / double.LISTINGS[flavour]) as handle:
        return json.load(handle)


CHECKS = [(f, None, double.LISTINGS[f]) for f in sorted(double.FLAVOURS)] + \
    [(f, v, name) for (f, v), name in sorted(double.VERSIONED_LISTINGS.items())]


@pytest.mark.parametrize("flavour, version, name", CHECKS)
def test_every_enum_deprecation_of_the_release_is_recorded_at_its_version(flavour, version, name):
    """Within a generation deprecations grow (10.12 deprecates BuilderFlag.FP16/INT8 for strong typing): the
    double at that version must flag what the release's listing does, for every enum value it offers."""
    with open(DATA / name) as handle:
        api = json.load(handle)
    trt = double.make_tensorrt_double(flavour, version=version)
    assert trt.__version__.split(".")[:2] == api["tensorrt"].split(".")[:2]
    flagged = double.enum_deprecations(flavour, trt.__version__)
    problems = []
    for enum, members in double.ENUMS.items():
        real = api["classes"].get(enum)
        missing = double.ENUM_MISSING[flavour].get(enum, set())
        if real is None or missing is None:
            continue
        problems += ["{}.{}".format(enum, m) for m in members if m not in missing and m in real["deprecated"]
                     and m not in flagged.get(enum, set())]
        problems += ["{}.{} (absent)".format(enum, m) for m in members if m not in missing
                     and m not in real["members"]]
    assert not problems, "TensorRT {} deprecates or lacks {}".format(api["tensorrt"], ", ".join(problems))


def real_members(api, names):
    members, deprecated = set(), {}
    for name in names:
        entry = api["classes"].get(name, {"members": [], "deprecated": {}})
        members.update(entry["members"])
        deprecated.update(entry["deprecated"])
    return members, deprecated


def double_members(cls):
    """Public names a script can reach on a double class: its methods, properties and class attributes."""
    names = set()
    for klass in cls.__mro__:
        if klass in (object, double.Recorded):
            continue
        names.update(n for n in vars(klass) if not n.startswith("_"))
    return names


FLAVOURS = sorted(double.FLAVOURS)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_listing_is_the_release_the_flavour_claims(flavour):
    api = listing(flavour)
    assert double.FLAVOURS[flavour].split(".")[:2] == api["tensorrt"].split(".")[:2]
    assert api["command"].startswith("python scripts/trt_api_listing.py")
    assert len(api["classes"]) > 100  # the whole module was read, not a fragment


@pytest.mark.parametrize("flavour, present, absent", [
    ("8.2", ["ICudaEngine.num_bindings", "IExecutionContext.execute_async_v2", "IBuilderConfig.max_workspace_size",
             "Builder.build_engine"],
     ["ICudaEngine.num_io_tensors", "IExecutionContext.execute_async_v3", "IBuilderConfig.set_memory_pool_limit",
      "MemoryPoolType"]),
    ("8.6", ["ICudaEngine.num_bindings", "ICudaEngine.num_io_tensors", "IExecutionContext.execute_async_v3",
             "IBuilderConfig.set_memory_pool_limit", "BuilderFlag.VERSION_COMPATIBLE", "IInt8EntropyCalibrator2"],
     ["NetworkDefinitionCreationFlag.STRONGLY_TYPED", "DataType.INT64"]),
    ("10", ["NetworkDefinitionCreationFlag.STRONGLY_TYPED", "DataType.INT64", "IBuilderConfig.int8_calibrator",
            "Builder.platform_has_fast_fp16", "BuilderFlag.FP16"],
     ["ICudaEngine.num_bindings", "IExecutionContext.execute_async_v2", "Builder.build_engine",
      "IBuilderConfig.max_workspace_size", "BuilderFlag.STRICT_TYPES"]),
    ("11", ["IExecutionContext.execute_async_v3", "BuilderFlag.VERSION_COMPATIBLE", "DataType.INT8",
            "IBuilderConfig.set_memory_pool_limit"],
     ["BuilderFlag.FP16", "BuilderFlag.INT8", "IInt8EntropyCalibrator2", "Builder.platform_has_fast_int8",
      "NetworkDefinitionCreationFlag.EXPLICIT_BATCH"]),
])
def test_listings_agree_with_nvidias_migration_guides(flavour, present, absent):
    """Facts from NVIDIA's 8.x -> 10.x and 10.x -> 11.x migration pages, independent of the double: the static
    read finds what is there and does not invent what is not."""
    api = listing(flavour)["classes"]

    def has(name):
        cls, _, member = name.partition(".")
        return cls in api and (not member or member in api[cls]["members"])
    assert [n for n in present if not has(n)] == [] and [n for n in absent if has(n)] == []


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_member_the_double_offers_exists_in_the_release(flavour):
    api = listing(flavour)
    problems = []
    for kind, real in CLASSES.items():
        cls = getattr(double, kind)
        members, _ = real_members(api, real)
        instance_attrs = {"ITensor": {"name", "shape", "dtype", "is_network_input", "is_network_output"},
                          "INetworkDefinition": {"name"}, "Builder": {"logger"}, "Runtime": {"logger"},
                          "ICudaEngine": {"name"}, "IExecutionContext": {"engine", "name"},
                          "IBuilderConfig": {"flags", "default_device_type"}}.get(kind, set())
        offered = (double_members(cls) | instance_attrs) - DOUBLE_ONLY.get(kind, set())
        offered -= double.MISSING[flavour].get(kind, set())
        if kind == "Logger":
            offered -= {"INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"}  # exported Severity values
        problems += ["{}.{}".format(kind, name) for name in sorted(offered - members)]
    assert not problems, "TensorRT {} has no {}".format(flavour, ", ".join(problems))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_what_the_double_removes_is_really_gone(flavour):
    api = listing(flavour)
    problems = []
    for kind, names in double.MISSING[flavour].items():
        members, _ = real_members(api, CLASSES.get(kind, [kind]))
        problems += ["{}.{}".format(kind, n) for n in sorted(names & members)]
    for enum, names in double.ENUM_MISSING[flavour].items():
        real = api["classes"].get(enum)
        if names is None:
            if real is not None:
                problems.append(enum)
        elif real is not None:
            problems += ["{}.{}".format(enum, n) for n in sorted(set(names) & set(real["members"]))]
    assert not problems, "TensorRT {} does have {}".format(flavour, ", ".join(problems))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_deprecation_of_the_release_is_recorded_by_the_double(flavour):
    api = listing(flavour)
    problems = []
    for kind, real in CLASSES.items():
        _, deprecated = real_members(api, real)
        offered = double_members(getattr(double, kind)) - double.MISSING[flavour].get(kind, set())
        flagged = double.DEPRECATED[flavour].get(kind, set())
        problems += ["{}.{} ({})".format(kind, n, deprecated[n][:60]) for n in sorted(offered & set(deprecated))
                     if n not in flagged]
    for enum, members in double.ENUMS.items():
        real = api["classes"].get(enum)
        if real is None:
            continue
        flagged = double.ENUM_DEPRECATED[flavour].get(enum, set())
        problems += ["{}.{}".format(enum, n) for n in members if n in real["deprecated"] and n not in flagged]
    assert not problems, "TensorRT {} deprecates {}".format(flavour, "; ".join(problems))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_enum_value_the_double_offers_exists(flavour):
    api = listing(flavour)
    problems = []
    for enum, members in double.ENUMS.items():
        missing = double.ENUM_MISSING[flavour].get(enum, set())
        if missing is None:
            continue
        real = api["classes"].get(enum)
        if real is None:
            problems.append(enum)
            continue
        problems += ["{}.{}".format(enum, m) for m in members if m not in missing and m not in real["members"]]
    assert not problems, "TensorRT {} has no {}".format(flavour, ", ".join(problems))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_calibrators_match_the_release(flavour):
    api = listing(flavour)
    trt = double.make_tensorrt_double(flavour)
    for name in double.CALIBRATORS:
        real = api["classes"].get(name)
        assert (real is None) == double.CALIBRATORS_MISSING[flavour] == (not hasattr(trt, name)), name
        if real is None:
            continue
        offered = {n for n in vars(trt.IInt8Calibrator) if not n.startswith("_")} | {"__init__"}
        members, deprecated = real_members(api, [name, "IInt8Calibrator"])
        assert offered <= members, (name, offered - members)
        assert ("__init__" in api["classes"][name]["deprecated"]) == double.CALIBRATORS_DEPRECATED[flavour]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_module_level_names_exist(flavour):
    api = listing(flavour)
    trt = double.make_tensorrt_double(flavour)
    public = {n for n in vars(trt) if not n.startswith("_")} - MODULE_ONLY
    known = set(api["classes"]) | set(api["module_functions"]) | set(api["init_classes"])
    known |= {"float32", "float16", "int8", "int32", "bool", "init_libnvinfer_plugins", "Dims"}
    assert public - known == set()


def test_tensorrt_11_listing_says_what_the_issue_says():
    """The facts the TensorRT 11 support rests on, read from the 11.4 wheel itself."""
    api = listing("11")
    flags = set(api["classes"]["BuilderFlag"]["members"])
    assert not flags & {"FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS"}
    assert "IInt8EntropyCalibrator2" not in api["classes"]
    assert "int8_calibrator" not in api["classes"]["IBuilderConfig"]["members"]
    assert "platform_has_fast_fp16" not in api["classes"]["Builder"]["members"]
    assert "STRONGLY_TYPED" in api["classes"]["NetworkDefinitionCreationFlag"]["deprecated"]
    assert "INT8" in api["classes"]["DataType"]["members"]  # Q/DQ still quantises to INT8
    ten = listing("10")
    assert "int8_calibrator" in ten["classes"]["IBuilderConfig"]["deprecated"]


DOUBLE_HOOKS = sorted(MODULE_ONLY - {"flavour", "num_dla_cores", "platform_has_fast_fp16", "platform_has_fast_int8",
                                     "memory", "calls", "executions"}) + ["calls_named", "call_names"]


def test_production_code_reads_no_double_only_attribute():
    """``trt.log_messages`` and the other test hooks exist only in the double: code that read them would
    fail with AttributeError on a real device."""
    offenders = []
    for path in sorted((REPO / "edge_sdk").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in DOUBLE_HOOKS:
                offenders.append("{}:{} .{}".format(path.relative_to(REPO), node.lineno, node.attr))
            if isinstance(node, ast.Constant) and node.value in DOUBLE_HOOKS:
                offenders.append("{}:{} {!r}".format(path.relative_to(REPO), node.lineno, node.value))
    assert not offenders
