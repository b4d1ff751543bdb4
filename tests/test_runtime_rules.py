"""The on-device runtime runs on JetPack 4.6 (Python 3.6) and imports nothing heavy (DESIGN.md)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUNTIME = REPO / "edge_sdk" / "runtime"
ON_DEVICE = [RUNTIME, REPO / "edge_sdk" / "bench"]  # `edge-sdk bench` runs on the device too
ON_DEVICE_FILES = [REPO / "edge_sdk" / f for f in ("__init__.py", "__main__.py", "cli.py", "errors.py")] + [
    REPO / "edge_sdk" / "commands" / (name + ".py")
    for name in ("run", "bench", "doctor", "inspect", "build", "targets")
]  # the CLI and the commands a device uses; host-only commands may need a newer Python (cli.py skips them)
FORBIDDEN = ["tensorflow", "onnx", "onnx_graphsurgeon", "polygraphy", "onnxruntime", "tf2onnx", "keras"]


def runtime_modules():
    mods = []
    for path in sorted(p for folder in ON_DEVICE for p in folder.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods.append(".".join(parts))
    return mods


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


def test_runtime_is_python36_syntax():
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    files = sorted(set(on_device_files()) | {str(p) for folder in ON_DEVICE for p in folder.rglob("*.py")}
                   | {str(p) for p in ON_DEVICE_FILES})
    assert any(f.endswith("pipeline.py") for f in files)
    proc = subprocess.run([vermin, "--target=3.6-", "--no-tips", "--violations", "--eval-annotations",
                           "--backport", "typing"] + files, capture_output=True, text=True)
    assert proc.returncode == 0, "runtime code needs a Python newer than 3.6:\n" + proc.stdout + proc.stderr
    # vermin exits 0 on a file whose rules it "could not combine" (e.g. a .decode() it took for Python 2):
    # such a file was not really checked, so it fails here too
    assert "incompatible versions" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("module", runtime_modules())
def test_runtime_imports_nothing_heavy(module):
    code = (
        "import sys, json, importlib; importlib.import_module({!r}); "
        "print(json.dumps(sorted(m for m in sys.modules)))".format(module)
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    heavy = sorted(m for m in FORBIDDEN if m in loaded)
    assert not heavy, "{} imports {} at import time".format(module, heavy)


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
