"""Parts of `edge-sdk flash` that need no SSH: the agent's checks run in-process, inventory parsing, the table."""

import ast
import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from edge_sdk.deploy import agent
from edge_sdk.deploy.inventory import load_inventory, parse_device_spec
from edge_sdk.deploy.progress import DeviceResult, format_table
from edge_sdk.errors import BundleError, ConfigError

REPO = Path(__file__).resolve().parent.parent
AGENT = REPO / "edge_sdk" / "deploy" / "agent.py"


def test_agent_runs_on_python36_with_the_standard_library_only():
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    proc = subprocess.run([vermin, "--target=3.6-", "--no-tips", "--violations", str(AGENT)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    imported = set()
    for node in ast.walk(ast.parse(AGENT.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert not imported - set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


@pytest.mark.parametrize("target, model, ok", [
    ("jetson-nano", "NVIDIA Jetson Nano Developer Kit", True),
    ("jetson-nano", "NVIDIA Jetson Orin Nano Developer Kit", False),  # not fooled by the shorter pattern
    ("jetson-orin-nano", "NVIDIA Jetson Orin Nano Developer Kit", True),
    ("jetson-tx2", "quill", True),
    ("jetson-tx2", "NVIDIA Jetson Xavier NX Developer Kit", False),
    ("jetson-xavier-nx", "NVIDIA Jetson Xavier NX Developer Kit", True),
    ("jetson-agx-orin", "Jetson AGX Orin", True),
    ("cpu", None, True),
    ("jetson-nano", None, False),  # not a Jetson at all
])
def test_target_check(target, model, ok):
    device = {"model": model, "l4t": "32.7"}
    if ok:
        agent.check_target(target, {}, device)
    else:
        with pytest.raises(agent.AgentError) as err:
            agent.check_target(target, {}, device)
        assert err.value.code == "wrong-target" and target in str(err.value)


def test_target_hints_from_the_profile_extend_and_check_the_l4t_release():
    device = {"model": "Acme Carrier with Jetson Module X", "l4t": "35.4"}
    agent.check_target("jetson-x", {"model": ["Jetson Module X"], "l4t_major": [35, 36]}, device)
    with pytest.raises(agent.AgentError, match="needs L4T R32"):
        agent.check_target("jetson-x", {"model": ["Jetson Module X"], "l4t_major": [32]}, device)


def test_l4t_release_is_read_from_nv_tegra_release(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text(
        "# R32 (release), REVISION: 7.1, GCID: 29689809, BOARD: t210ref, EABI: aarch64, DATE: Wed Feb 23 2022\n")
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_bytes(b"NVIDIA Jetson Nano Developer Kit\0")
    found = agent.detect_device(agent.Layout(tmp_path / "opt", tmp_path))
    assert found["l4t"] == "32.7.1"
    assert found["model"] == "NVIDIA Jetson Nano Developer Kit"
    assert found["tensorrt"] is None  # no dpkg database: unknown, not guessed


def test_tensorrt_version_is_read_from_the_dpkg_database(tmp_path):
    (tmp_path / "var" / "lib" / "dpkg").mkdir(parents=True)
    (tmp_path / "var" / "lib" / "dpkg" / "status").write_text(
        "Package: libnvinfer8\nStatus: deinstall ok config-files\nVersion: 8.5.2-1+cuda11.4\n\n"
        "Package: libnvinfer-bin\nStatus: install ok installed\nVersion: 10.3.0.30-1+cuda12.5\n\n"
        "Package: libnvinfer10\nStatus: install ok installed\nArchitecture: arm64\n"
        "Version: 10.3.0.30-1+cuda12.5\nDescription: TensorRT runtime libraries\n")
    assert agent.detect_tensorrt(str(tmp_path)) == "10.3.0.30"


ORIN_STACKS = [{"jetpack": "6.0", "l4t": "R36.3", "tensorrt": "8.6"}, {"jetpack": "6.2", "l4t": "R36.4",
                                                                      "tensorrt": "10.3"}]


@pytest.mark.parametrize("l4t, tensorrt, fails", [
    ("36.4.3", "10.3.0.30", None),
    ("36.4.3", None, None),  # TensorRT unknown: the L4T check still holds
    ("36.3.0", "8.6.2.3", "--jetpack 6.0"),
    ("36.4.0", "8.6.2.3", "TensorRT 8.6.2.3 \\(needs 10.3\\)"),
])
def test_the_agent_refuses_a_device_running_another_stack(l4t, tensorrt, fails):
    hints = {"model": ["AGX Orin"], "l4t_major": [36], "software": {"jetpack": "6.2", "l4t": "R36.4",
                                                                     "tensorrt": "10.3"}, "stacks": ORIN_STACKS}
    device = {"model": "NVIDIA Jetson AGX Orin Developer Kit", "l4t": l4t, "tensorrt": tensorrt}
    if fails is None:
        assert "built for JetPack 6.2 (TensorRT 10.3)" in agent.check_target("jetson-agx-orin", hints, device)
        return
    with pytest.raises(agent.AgentError, match=fails) as err:
        agent.check_target("jetson-agx-orin", hints, device)
    assert err.value.code == "wrong-target" and "built for JetPack 6.2 (TensorRT 10.3)" in str(err.value)


def write_tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def manifest_for(files, target="jetson-tx2"):
    return json.dumps({"format": 1, "target": target, "files": {
        k: {"sha256": hashlib.sha256(v).hexdigest(), "size": len(v)} for k, v in files.items()}}).encode()


def test_bundle_unpack_refuses_path_traversal_and_links(tmp_path):
    write_tar(tmp_path / "evil.tar.gz", {"manifest.json": b"{}", "../../outside": b"x"})
    with pytest.raises(agent.AgentError, match="unsafe path"):
        agent.unpack_bundle(str(tmp_path / "evil.tar.gz"), str(tmp_path / "out"))
    assert not (tmp_path.parent / "outside").exists()
    write_tar(tmp_path / "link.tar.gz", {"manifest.json": b"{}", "engine.plan": None})
    with pytest.raises(agent.AgentError, match="link or special file"):
        agent.unpack_bundle(str(tmp_path / "link.tar.gz"), str(tmp_path / "out2"))


def test_the_agent_and_the_runtime_unpack_bundles_with_the_same_code():
    """The agent cannot import edge_sdk (it runs before anything is installed), so it carries its own copy of
    edge_sdk/runtime/bundle_archive.py's functions: the two must stay the same code, annotations aside."""
    from edge_sdk.runtime import bundle_archive

    def functions(path):
        tree = ast.parse(Path(path).read_text())
        found = {}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                node.returns = None
                for arg in node.args.args + node.args.kwonlyargs:
                    arg.annotation = None
                if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
                    node.body = node.body[1:] or node.body  # docstrings may differ
                found[node.name] = ast.dump(node)
            elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
                found[node.targets[0].id] = ast.dump(node)
        return found

    runtime = functions(bundle_archive.__file__)
    device = functions(agent.__file__)
    names = [n for n in runtime if n != "AgentError"]
    assert "unpack_bundle" in names and "plan_unpack" in names
    differ = [n for n in names if runtime[n] != device.get(n)]
    assert not differ, "edge_sdk/deploy/agent.py and edge_sdk/runtime/bundle_archive.py differ in {}".format(differ)


def test_bundle_verification_lists_every_problem(tmp_path):
    files = {"model.onnx": b"abc", "engine.plan": b"plan"}
    members = dict(files, **{"manifest.json": manifest_for(files)})
    members["model.onnx"] = b"abd"  # damaged
    del members["engine.plan"]  # missing
    write_tar(tmp_path / "b.tar.gz", {"bundle/" + k: v for k, v in members.items()})  # with a top-level dir
    unpacked = agent.unpack_bundle(str(tmp_path / "b.tar.gz"), str(tmp_path / "out"))
    (Path(unpacked) / "extra.bin").write_bytes(b"?")  # not in the manifest
    with pytest.raises(agent.AgentError) as err:
        agent.verify_bundle(unpacked)
    text = str(err.value)
    assert "model.onnx: sha256 mismatch" in text and "engine.plan: missing" in text
    assert "extra.bin: not listed in manifest.json" in text
    members["extra.bin"] = b"?"  # in the archive: refused before anything is written
    write_tar(tmp_path / "c.tar.gz", {"bundle/" + k: v for k, v in members.items()})
    with pytest.raises(agent.AgentError, match="'bundle/extra.bin' is not listed in manifest.json"):
        agent.unpack_bundle(str(tmp_path / "c.tar.gz"), str(tmp_path / "out2"))
    assert not list(tmp_path.glob("out2*"))


def make_wheel(path, files, dist="edge_sdk_runtime-0.0.1"):
    """A pure-Python wheel with a proper RECORD (sha256 of every file)."""
    files = dict(files)
    files[dist + ".dist-info/WHEEL"] = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
    record = ""
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += "{},sha256={},{}\n".format(name, digest, len(data))
    record += dist + ".dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(dist + ".dist-info/RECORD", record)
    return path


def test_damaged_runtime_wheel_is_refused(tmp_path):
    good = make_wheel(tmp_path / "edge_sdk_runtime-0.0.1-py3-none-any.whl",
                      {"edge_sdk/__init__.py": b"print('hi')\n"})
    agent.install_wheel(str(good), str(tmp_path / "site"))
    assert (tmp_path / "site" / "edge_sdk" / "__init__.py").read_bytes() == b"print('hi')\n"
    bad = tmp_path / "bad" / good.name
    bad.parent.mkdir()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, b"print('evil')\n" if name.endswith("__init__.py") else src.read(name))
    with pytest.raises(agent.AgentError, match="does not match its RECORD"):
        agent.install_wheel(str(bad), str(tmp_path / "site2"))
    sneaky = tmp_path / "sneaky" / good.name
    sneaky.parent.mkdir()
    shutil.copy(good, sneaky)
    with zipfile.ZipFile(sneaky, "a") as zf:
        zf.writestr("edge_sdk/backdoor.py", b"")
    with pytest.raises(agent.AgentError, match="backdoor.py is not listed in RECORD"):
        agent.install_wheel(str(sneaky), str(tmp_path / "site3"))


def test_host_wheel_is_refused_on_the_device(tmp_path):
    host = make_wheel(tmp_path / "edge_sdk-0.0.1-py3-none-any.whl", {"edge_sdk/graph/__init__.py": b""},
                      dist="edge_sdk-0.0.1")
    with pytest.raises(agent.AgentError, match="devices take only the runtime wheel"):
        agent.install_wheel(str(host), str(tmp_path / "site"))
    assert not (tmp_path / "site").exists()


def run_agent_inprocess(capsys, *argv):
    code = agent.main(list(argv))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, lines[-1], lines[:-1]


def test_first_install_that_never_gets_healthy_leaves_nothing_running(tmp_path, capsys):
    files = {"model.onnx": b"m"}
    bundle = tmp_path / "b.tar.gz"
    write_tar(bundle, dict(files, **{"manifest.json": manifest_for(files, target="cpu")}))
    wheel = make_wheel(tmp_path / "edge_sdk_runtime-0.0.1-py3-none-any.whl", {"edge_sdk/__init__.py": b""})
    code, result, steps = run_agent_inprocess(
        capsys, "--root", str(tmp_path / "root"), "install", "--version", "v1", "--wheel", str(wheel),
        "--bundle", str(bundle), "--service", "process", "--health-timeout", "5", "--allow-unsigned",
        "--service-command", "{python} -c 'import sys; sys.exit(7)'")
    assert code == 0 and not result["ok"] and result["status"] == "failed"
    assert "exited with code 7" in result["error"] and "no previous version" in result["error"]
    assert not (tmp_path / "root" / "current").exists()
    assert [s["step"] for s in steps][:5] == ["install-runtime", "unpack", "verify", "signature", "target"]


def test_inventory_groups_and_precedence(tmp_path):
    inv = tmp_path / "fleet.toml"
    inv.write_text("""
[defaults]
user = "nvidia"
run_args = "--source /dev/video0"
keep = 2

[groups.lobby]
devices = ["cam-01", "cam-02"]
run_args = "--source rtsp://cam/stream"

[devices.cam-01]
host = "10.0.0.21"
keep = 5

[devices.cam-02]
host = "10.0.0.22"
port = 2222

[devices.dock]
host = "dock.local"
user = "root"
identity = "keys/dock_ed25519"
""")
    devices = {d.name: d for d in load_inventory(inv)}
    assert devices["cam-01"].run_args == "--source rtsp://cam/stream" and devices["cam-01"].keep == 5
    assert devices["cam-02"].address == "nvidia@10.0.0.22:2222" and devices["cam-02"].groups == ["lobby"]
    assert devices["dock"].user == "root" and devices["dock"].run_args == "--source /dev/video0"
    assert devices["dock"].identity == str(tmp_path.resolve() / "keys" / "dock_ed25519")  # next to the inventory
    assert [d.name for d in load_inventory(inv, groups=["lobby"])] == ["cam-01", "cam-02"]
    assert load_inventory(inv, overrides={"keep": 1})[0].keep == 1  # the command line wins
    with pytest.raises(ConfigError, match="unknown group 'loby'; known: lobby"):
        load_inventory(inv, groups=["loby"])
    inv.write_text('[devices.a]\nhost = "h"\nkep = 3\n')
    with pytest.raises(ConfigError, match="unknown setting 'kep'; known: keep"):
        load_inventory(inv)


def test_device_specs():
    d = parse_device_spec("nvidia@10.0.0.21")
    assert (d.user, d.host, d.port, d.name) == ("nvidia", "10.0.0.21", 22, "10.0.0.21")
    d = parse_device_spec("root@[fe80::1]:2200", root="/srv/edge")
    assert (d.host, d.port, d.root) == ("fe80::1", 2200, "/srv/edge")
    with pytest.raises(ConfigError, match="expected \\[user@\\]host"):
        parse_device_spec("a@b@c:x")


def test_corrupt_bundle_dir_is_refused_on_the_host(tmp_path):
    from edge_sdk.deploy.release import read_bundle

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "model.onnx").write_bytes(b"ok")
    (tmp_path / "b" / "manifest.json").write_bytes(manifest_for({"model.onnx": b"ko"}))
    with pytest.raises(BundleError, match="model.onnx: sha256 mismatch"):
        read_bundle(tmp_path / "b", tmp_path)


def test_final_table():
    text = format_table([
        DeviceResult("cam-01", "nvidia@10.0.0.21", "updated", "0.1.0-aaaa", "0.1.0-bbbb", "healthy", 12.3),
        DeviceResult("cam-02", "nvidia@10.0.0.22", "unreachable", None, "0.1.0-bbbb", "timed out", 15.0),
    ])
    lines = text.splitlines()
    assert lines[0].split() == ["DEVICE", "ADDRESS", "OLD", "->", "NEW", "RESULT", "TIME", "DETAIL"]
    assert "0.1.0-aaaa -> 0.1.0-bbbb" in lines[1] and "updated" in lines[1]
    assert "(none) -> 0.1.0-bbbb" in lines[2] and "unreachable" in lines[2]
    assert lines[-1] == "2 device(s): 1 ok, 1 failed"


def test_health_needs_the_mqtt_status_when_asked(tmp_path, capsys, mosquitto):
    """A runtime whose health file says running but which never reaches the broker is not healthy."""
    files = {"model.onnx": b"m"}
    bundle = tmp_path / "b.tar.gz"
    write_tar(bundle, dict(files, **{"manifest.json": manifest_for(files, target="cpu")}))
    wheel = make_wheel(tmp_path / "edge_sdk_runtime-0.0.1-py3-none-any.whl", {"edge_sdk/__init__.py": b""})
    fake = REPO / "tests" / "fake_runtime.py"
    code, result, steps = run_agent_inprocess(
        capsys, "--root", str(tmp_path / "root"), "install", "--version", "v1", "--wheel", str(wheel),
        "--bundle", str(bundle), "--service", "process", "--health-timeout", "3", "--device-id", "cam9",
        "--allow-unsigned",
        "--service-command", "{{python}} {} --health-file {{health_file}} --bundle {{bundle}}".format(fake),
        "--health-mqtt", mosquitto.url)
    assert not result["ok"], result
    assert "no fresh 'online' status on edge-sdk/cam9/status" in result["error"]
    assert any(s["step"] == "health" and "health file ok" in s["message"] for s in steps)
