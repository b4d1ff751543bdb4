"""The on-device runtime (the edge-sdk-runtime wheel, runtime/pyproject.toml) runs on JetPack 4.6 (Python 3.6)
and imports only what its allow-list names (docs/architecture.md, the device/host boundary)."""

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
RUNTIME_CONFIG = tomllib.loads((REPO / "runtime" / "pyproject.toml").read_text())["tool"]["setuptools"]

#: what device code may import besides the standard library and the device modules themselves (the runtime
#: wheel's files): the allow-list of the device/host boundary
DEVICE_LIBRARIES = {"numpy", "cv2", "paho", "tensorrt", "cuda", "pycuda"}
#: allowed only inside a function (imported when that feature is used, never at import time)
LAZY_ONLY = {"onnxruntime": "the optional ONNX Runtime backend", "matplotlib": "`edge-sdk bench --plot`"}
#: host modules a device module may import inside a function, because that function is a host feature
HOST_FEATURES = {
    ("edge_sdk", "edge_sdk.subscriber"): "edge_sdk.subscribe(), a host API",
    ("edge_sdk.commands.build", "edge_sdk.commands.rewrite"): "`build MODEL.onnx` (host); caught ImportError",
    ("edge_sdk.commands.build", "edge_sdk.engine.build"): "`build MODEL.onnx` (host); caught ImportError",
    ("edge_sdk.commands.build", "edge_sdk.signing"): "`build MODEL.onnx --sign KEY` (host), after the host build "
                                                    "imported",
    ("edge_sdk.commands.inspect", "edge_sdk.bundle_writer"): "the text summary; caught ImportError -> JSON",
}


def device_modules():
    """{module name: path} of every file the runtime wheel installs (runtime/pyproject.toml)."""
    mods = {}
    for package in RUNTIME_CONFIG["packages"]:
        for path in (REPO / Path(*package.split("."))).glob("*.py"):
            mods[package + ("" if path.stem == "__init__" else "." + path.stem)] = path
    for dotted in RUNTIME_CONFIG["py-modules"]:
        package, _, name = dotted.rpartition(".")
        folder = REPO / Path(*package.split("."))
        mods[dotted] = folder / (name + ".py")
        mods[package] = folder / "__init__.py"
    return mods


def runtime_modules():
    return sorted(device_modules())


def on_device_files():
    """Every edge_sdk source file the on-device modules load (transitively), found by importing them."""
    code = (
        "import sys, json, importlib\n"
        "for m in {!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(getattr(m, '__file__', None) or '' for n, m in sys.modules.items()"
        " if n == 'edge_sdk' or n.startswith('edge_sdk.'))))".format(runtime_modules())
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    return [f for f in json.loads(proc.stdout.strip().splitlines()[-1]) if f.endswith(".py")]


def imports_of(path, module):
    """(imported module, line, lazy) for every import in a file, at any depth; lazy: inside a function."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    found = []

    def visit(node, lazy):
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[:len(package.split(".")) - child.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                for alias in child.names:  # `from pkg import module` imports pkg.module when it is one
                    sub = base + "." + alias.name
                    is_module = (REPO / Path(*sub.split("."))).with_suffix(".py").exists() or \
                        (REPO / Path(*sub.split(".")) / "__init__.py").exists()
                    found.append((sub if is_module else base, child.lineno, lazy))
            visit(child, inner)

    visit(tree, False)
    return found


def test_device_modules_import_only_the_allow_list():
    """Every import in every file the runtime wheel installs -- function-level ones included -- is the standard
    library, a device library, another device module, or a listed lazy exception."""
    mods = device_modules()
    problems = []
    for module, path in sorted(mods.items()):
        for name, line, lazy in imports_of(path, module):
            top = name.split(".")[0]
            where = "{}:{} imports {}".format(path.relative_to(REPO), line, name)
            if top == "edge_sdk":
                if name not in mods and (module, name) not in HOST_FEATURES:
                    problems.append(where + " (a host module)")
                elif (module, name) in HOST_FEATURES and not lazy:
                    problems.append(where + " at import time")
            elif top in LAZY_ONLY:
                if not lazy:
                    problems.append(where + " at import time (allowed only lazily: {})".format(LAZY_ONLY[top]))
            elif top not in DEVICE_LIBRARIES and top not in sys.stdlib_module_names and top != "__future__":
                problems.append(where + " (not on the device allow-list)")
    assert not problems, "\n".join(problems)


def test_the_allow_list_check_sees_function_level_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import os\n\n\ndef f():\n    try:\n        import onnx\n    except ImportError:\n"
                     "        from edge_sdk.graph import fold\n")
    assert imports_of(probe, "edge_sdk.probe") == [("os", 1, False), ("onnx", 6, True),
                                                   ("edge_sdk.graph.fold", 8, True)]


def test_importing_every_device_module_loads_only_the_allow_list():
    """At import time (one process importing every device module) nothing but the standard library, the device
    libraries and edge_sdk's own device modules is loaded."""
    code = ("import sys, json, importlib\nbefore = set(sys.modules)\n"
            "for m in {!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(set(sys.modules) - before)))".format(runtime_modules()))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    outside = sorted(n for n in loaded if n.split(".")[0] not in DEVICE_LIBRARIES | set(sys.stdlib_module_names)
                     | {"edge_sdk"} and not n.startswith("_"))
    assert not outside, "loaded at import time: {}".format(outside)
    host = sorted(n for n in loaded if n.startswith("edge_sdk.") and n not in device_modules())
    assert not host, "device modules load host modules at import time: {}".format(host)


def test_import_contracts():
    """import-linter (pyproject.toml [tool.importlinter]): the device side imports no host module, and the engine
    builder does not import the runtime (no runtime <-> engine cycle)."""
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([lint, "--no-cache"], capture_output=True, text=True, cwd=str(REPO))
    assert proc.returncode == 0 and " 0 broken" in proc.stdout, proc.stdout + proc.stderr


def test_runtime_is_python36_syntax():
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    files = sorted(set(on_device_files()) | {str(p) for p in device_modules().values()})
    assert any(f.endswith("pipeline.py") for f in files)
    proc = subprocess.run([vermin, "--target=3.6-", "--no-tips", "--violations", "--eval-annotations",
                           "--backport", "typing"] + files, capture_output=True, text=True)
    assert proc.returncode == 0, "runtime code needs a Python newer than 3.6:\n" + proc.stdout + proc.stderr
    # vermin exits 0 on a file whose rules it "could not combine" (e.g. a .decode() it took for Python 2):
    # such a file was not really checked, so it fails here too
    assert "incompatible versions" not in proc.stdout, proc.stdout


def test_cli_survives_a_command_module_this_python_cannot_load(tmp_path):
    """On Python 3.6 the host-only command modules fail to compile; `edge-sdk run` must still start."""
    broken = REPO / "edge_sdk" / "commands" / "zz_py36_probe.py"
    broken.write_text("x: int := 1\n")  # a SyntaxError, as 3.7+ syntax is on 3.6
    try:
        proc = subprocess.run([sys.executable, "-m", "edge_sdk", "zz-py36-probe", "--x"], capture_output=True,
                              text=True, cwd=str(REPO))
        assert proc.returncode == 2
        assert "not available here" in proc.stderr and "Traceback" not in proc.stderr
        proc = subprocess.run([sys.executable, "-m", "edge_sdk", "run", "--help"], capture_output=True, text=True,
                              cwd=str(REPO))
        assert proc.returncode == 0 and "--source" in proc.stdout
    finally:
        broken.unlink()


def test_the_runtime_public_functions_are_typed():
    """Every public module-level function of the runtime wheel annotates its parameters and return value
    (Python 3.6 evaluates annotations at import time: the next test imports every module there)."""
    untyped = []
    for module, path in sorted(device_modules().items()):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                args = node.args.args + node.args.kwonlyargs
                if node.returns is None or any(a.annotation is None for a in args):
                    untyped.append("{}.{}".format(module, node.name))
    assert not untyped, untyped


def test_every_device_module_imports_on_python36():
    from conftest import python36

    interpreter = python36()
    if interpreter is None:
        pytest.skip("no Python 3.6 interpreter ($EDGE_SDK_PY36)")
    code = "import importlib, sys; sys.path.insert(0, sys.argv[1])\nfor m in sys.argv[2:]: importlib.import_module(m)"
    proc = subprocess.run([interpreter, "-c", code, str(REPO)] + runtime_modules(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
