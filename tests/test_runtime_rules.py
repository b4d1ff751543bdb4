"""The on-device runtime runs on JetPack 4.6 (Python 3.6) and imports nothing heavy (DESIGN.md)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUNTIME = REPO / "edge_sdk" / "runtime"
FORBIDDEN = ["tensorflow", "onnx", "onnx_graphsurgeon", "polygraphy", "onnxruntime", "tf2onnx", "keras"]


def runtime_modules():
    mods = []
    for path in sorted(RUNTIME.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods.append(".".join(parts))
    return mods


def test_runtime_is_python36_syntax():
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    files = [str(p) for p in RUNTIME.rglob("*.py")] + [str(REPO / "edge_sdk" / f) for f in
                                                       ("__init__.py", "errors.py")]
    proc = subprocess.run([vermin, "--target=3.6-", "--no-tips", "--violations", "--eval-annotations",
                           "--backport", "typing"] + files, capture_output=True, text=True)
    assert proc.returncode == 0, "runtime code needs a Python newer than 3.6:\n" + proc.stdout + proc.stderr


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
