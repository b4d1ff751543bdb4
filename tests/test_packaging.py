"""One top-level package: training/, calibration/ and targets/ install and import as edge_sdk.* only."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
MAPPED = {"training": "edge_sdk.training", "calibration": "edge_sdk.calibration", "targets": "edge_sdk.targets"}
SOURCE_DIRS = ["edge_sdk", "training", "calibration", "targets", "tests", "benchmarks", "scripts"]


def setuptools_config():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def package_of(folder: Path) -> str:
    rel = folder.relative_to(REPO).parts
    top = MAPPED.get(rel[0], rel[0])
    return ".".join((top,) + rel[1:])


def test_every_package_folder_is_listed_once():
    listed = setuptools_config()["packages"]
    assert len(listed) == len(set(listed))
    found = {package_of(init.parent) for top in ("edge_sdk", *MAPPED) for init in (REPO / top).rglob("__init__.py")}
    found.add("edge_sdk.schemas")  # data only (the JSON schema)
    assert set(listed) == found


def test_folders_map_into_the_namespace():
    assert setuptools_config()["package-dir"] == {v: k for k, v in MAPPED.items()}


def test_no_module_imports_a_mapped_folder_by_its_bare_name():
    bare = re.compile(r"^\s*(?:from|import)\s+(training|calibration|targets)\b", re.MULTILINE)
    offenders = []
    for folder in SOURCE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            if bare.search(path.read_text()):
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders, "import these as edge_sdk.<name>: {}".format(offenders)


def test_bare_names_are_not_importable_from_an_installed_edge_sdk(tmp_path):
    code = ("import importlib.util, edge_sdk.targets as t; "
            "print([n for n in ('training', 'calibration', 'targets') if importlib.util.find_spec(n)]); "
            "print(len(t.load_targets()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", "10"]


def test_the_wheel_has_one_top_level_package(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path), str(REPO)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("edge_sdk-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"edge_sdk"}
    assert "edge_sdk/targets/jetson-tx2.toml" in names
    assert "edge_sdk/training/models/backbones.py" in names
    assert "edge_sdk/calibration/qdq.py" in names
    assert "edge_sdk/schemas/pose-v1.json" in names
    assert {"edge_sdk/fleet/static/dashboard.html", "edge_sdk/fleet/static/dashboard.js"} <= set(names)
