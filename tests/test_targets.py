"""Target profiles: every shipped file loads and states the facts build decisions depend on."""

import pytest
from edge_sdk.targets import get_target, load_target_file, load_targets, match_device, release_supported

from edge_sdk.errors import ConfigError

EXPECTED = {  # name: (compute capability, fast INT8, DLA cores, TensorRT major.minor)
    "jetson-nano": ("5.3", False, 0, "8.2"),
    "jetson-tx2": ("6.2", False, 0, "8.2"),
    "jetson-xavier-nx": ("7.2", True, 2, "8.5"),
    "jetson-agx-xavier": ("7.2", True, 2, "8.5"),
    "jetson-orin-nano": ("8.7", True, 0, "10.3"),
    "jetson-orin-nx": ("8.7", True, 2, "10.3"),
    "jetson-agx-orin": ("8.7", True, 2, "11.4"),  # default: the newest stack (JetPack 7.2.2+)
    "jetson-thor": ("11.0", True, 0, "11.4"),
}


def test_every_profile_loads_with_its_facts():
    targets = load_targets()
    assert set(EXPECTED) | {"x86-gpu", "cpu"} <= set(targets)
    for name, (cc, int8, dla, trt) in EXPECTED.items():
        t = targets[name]
        assert (t.compute_capability, t.fast_int8, t.dla_cores, t.tensorrt) == (cc, int8, dla, trt), name
        assert t.fast_fp16 and t.backend == "tensorrt" and t.kind == "jetson"
        assert t.sources and t.default_workspace_mb > 0 and t.input_width % 8 == 0
        assert t.detect_model and t.detect_l4t_major, name + ": device detection hints missing"
        text = open(t.path).read()
        assert "https://" in text.split("name =")[0], name + ": citation comment missing"
    assert targets["jetson-nano"].python == "3.6" and targets["jetson-orin-nano"].python == "3.10"
    assert targets["cpu"].backend == "onnxruntime" and targets["cpu"].onnxruntime["providers"]


def test_unknown_target_lists_known_nearest_first():
    with pytest.raises(ConfigError) as err:
        get_target("jetson-tx3")
    message = str(err.value)
    assert "unknown target 'jetson-tx3'" in message
    known = message.split("known: ")[1]
    assert known.index("jetson-tx2") < known.index("cpu")


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.replace("fast_int8 = false", "fast_int8 = \"no\""), "fast_int8"),
    (lambda s: s.replace("dla_cores = 0\n", ""), "dla_cores"),
    (lambda s: s.replace("input_width = 256", "input_width = 250"), "multiples of 8"),
    (lambda s: s.replace("[gpu]", "[gpu"), "not valid TOML"),
    (lambda s: s.replace('name = "jetson-nano"', 'name = "other"'), "must match the file name"),
])
def test_bad_profile_names_file_and_key(tmp_path, edit, needle):
    good = get_target("jetson-nano")
    bad = tmp_path / "jetson-nano.toml"
    bad.write_text(edit(open(good.path).read()))
    with pytest.raises(ConfigError) as err:
        load_target_file(bad)
    assert needle in str(err.value) and str(bad) in str(err.value)


def test_custom_profile_by_path_and_env(tmp_path, monkeypatch):
    text = open(get_target("jetson-orin-nano").path).read().replace('"jetson-orin-nano"', '"my-board"')
    (tmp_path / "my-board.toml").write_text(text)
    assert get_target(str(tmp_path / "my-board.toml")).name == "my-board"
    monkeypatch.setenv("EDGE_SDK_TARGETS_DIR", str(tmp_path))
    assert get_target("my-board").compute_capability == "8.7"


@pytest.mark.parametrize("model, expected", [
    ("NVIDIA Jetson Nano Developer Kit\x00", "jetson-nano"),
    ("NVIDIA Jetson Orin Nano Developer Kit\x00", "jetson-orin-nano"),
    ("NVIDIA Jetson Xavier NX Developer Kit", "jetson-xavier-nx"),
    ("Jetson-AGX", "jetson-agx-xavier"),
    ("NVIDIA Jetson AGX Orin Developer Kit", "jetson-agx-orin"),
    ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", "jetson-orin-nx"),
    ("NVIDIA Jetson AGX Thor Developer Kit", "jetson-thor"),
    ("quill", "jetson-tx2"),
    ("Raspberry Pi 4 Model B", None),
])
def test_match_device(model, expected):
    found = match_device(model)
    assert (found.name if found else None) == expected


def test_release_hints():
    assert release_supported(get_target("jetson-nano"), "# R32 (release), REVISION: 7.1, GCID: 29818004")
    assert not release_supported(get_target("jetson-nano"), "# R36 (release), REVISION: 4.3")


def test_cli_targets_table_and_show(edge_sdk_cli):
    table = edge_sdk_cli("targets")
    assert table.returncode == 0
    for name in EXPECTED:
        assert name in table.stdout
    shown = edge_sdk_cli("targets", "show", "jetson-tx2")
    assert shown.returncode == 0 and "6.2" in shown.stdout and "fast_int8" in shown.stdout
    bad = edge_sdk_cli("targets", "show", "jetson-tx3")
    assert bad.returncode != 0 and "jetson-tx2" in bad.stderr and "Traceback" not in bad.stderr


STACKS = {  # name: the JetPack releases the profile lists (oldest first)
    "jetson-nano": ["4.6"], "jetson-tx2": ["4.6"], "jetson-xavier-nx": ["4.6", "5.1"],
    "jetson-agx-xavier": ["4.6", "5.1"], "jetson-orin-nano": ["5.1", "6.0", "6.2"],
    "jetson-orin-nx": ["5.1", "6.0", "6.2"], "jetson-agx-orin": ["5.1", "6.0", "6.2", "7.2"],
    "jetson-thor": ["7.0", "7.2"],
}


def test_every_jetson_lists_its_software_stacks_with_sources():
    targets = load_targets()
    for name, releases in STACKS.items():
        t = targets[name]
        assert [s.jetpack for s in t.stacks] == releases, name
        assert all(s.sources and all(u.startswith("https://") for u in s.sources) for s in t.stacks), name
        assert (t.jetpack, t.tensorrt) == (t.stacks[-1].jetpack, t.stacks[-1].tensorrt)  # default: newest
        assert t.stack is t.stacks[-1]


@pytest.mark.parametrize("jetpack, tensorrt, l4t, python", [
    ("5.1", "8.5", "R35", "3.8"), ("6.0", "8.6", "R36.3", "3.10"), ("6", "10.3", "R36.4", "3.10"),
    ("6.2", "10.3", "R36.4", "3.10"), ("7.2", "11.4", None, "3.12"), (None, "11.4", None, "3.12"),
])
def test_a_build_picks_the_stack_the_device_runs(jetpack, tensorrt, l4t, python):
    orin = get_target("jetson-agx-orin").with_stack(jetpack)
    assert (orin.tensorrt, orin.l4t, orin.python) == (tensorrt, l4t, python)
    assert orin.to_dict()["tensorrt"] == tensorrt and len(orin.to_dict()["stacks"]) == 4


def test_an_unlisted_jetpack_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="runs JetPack 4.6, 5.1, not 6.0"):
        get_target("jetson-xavier-nx").with_stack("6.0")
    with pytest.raises(ConfigError, match="lists no JetPack"):
        get_target("x86-gpu").with_stack("6.0")


def test_a_profile_whose_default_is_not_its_newest_stack_is_refused(tmp_path):
    text = open(get_target("jetson-orin-nano").path).read().replace('jetpack = "6.2"\nl4t = "R36.4"\ntensorrt = '
                                                                    '"10.3"', 'jetpack = "6.0"\nl4t = "R36.3"\n'
                                                                    'tensorrt = "8.6"', 1)
    path = tmp_path / "jetson-orin-nano.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="must repeat the newest"):
        load_target_file(path)
    path.write_text(text.replace('sources = ["https://developer.nvidia.com/embedded/jetpack-sdk-512"]',
                                 "sources = []"))
    with pytest.raises(ConfigError, match="cite at least one source"):
        load_target_file(path)
