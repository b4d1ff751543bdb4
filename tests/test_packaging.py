"""One top-level package: training/, calibration/ and targets/ install and import as edge_sdk.* only.

Two distributions from this one tree: edge-sdk (host, pyproject.toml) and edge-sdk-runtime (on-device,
runtime/pyproject.toml); their wheels install disjoint files of the one `edge_sdk` package.
"""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
MAPPED = {"training": "edge_sdk.training", "calibration": "edge_sdk.calibration", "targets": "edge_sdk.targets"}
SOURCE_DIRS = ["edge_sdk", "training", "calibration", "targets", "tests", "benchmarks", "scripts"]


def setuptools_config(project=REPO):
    return tomllib.loads((project / "pyproject.toml").read_text())["tool"]["setuptools"]


def project_meta(project):
    return tomllib.loads((project / "pyproject.toml").read_text())["project"]


def package_of(folder: Path) -> str:
    rel = folder.relative_to(REPO).parts
    top = MAPPED.get(rel[0], rel[0])
    return ".".join((top,) + rel[1:])


def test_every_package_folder_is_listed_once():
    """Each package folder is in exactly one of the two `packages` lists; the packages the runtime takes single
    modules of (its py-modules) are the host's, minus those modules (setup.py)."""
    listed = setuptools_config()["packages"]
    runtime = setuptools_config(REPO / "runtime")["packages"]
    assert len(listed) == len(set(listed)) and not set(listed) & set(runtime)
    found = {package_of(init.parent) for top in ("edge_sdk", *MAPPED) for init in (REPO / top).rglob("__init__.py")}
    found.add("edge_sdk.schemas")  # data only (the JSON schema)
    assert set(listed) | set(runtime) == found
    shared = {m.rpartition(".")[0] for m in setuptools_config(REPO / "runtime")["py-modules"]}
    assert shared <= set(listed)


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


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    """Both wheels, built the way a release builds them: {"host": (names, metadata), "runtime": (...)}."""
    out = tmp_path_factory.mktemp("wheels")
    built = {}
    for kind, project, dist in (("host", REPO, "edge_sdk"), ("runtime", REPO / "runtime", "edge_sdk_runtime")):
        shutil.rmtree(project / "build", ignore_errors=True)  # setuptools' scratch keeps files of older builds
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                               "-w", str(out / kind), str(project)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        (wheel,) = (out / kind).glob(dist + "-*.whl")
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
            info = [n for n in names if n.split("/")[0].endswith(".dist-info")]
            meta = zf.read(next(n for n in info if n.endswith("/METADATA"))).decode()
            entry_points = [zf.read(n).decode() for n in info if n.endswith("/entry_points.txt")]
        built[kind] = ([n for n in names if n not in info], meta, "".join(entry_points))
    return built


def requires(meta):
    return sorted(line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: "))


def test_each_wheel_has_one_top_level_package_and_no_file_is_in_both(wheels):
    host, runtime = set(wheels["host"][0]), set(wheels["runtime"][0])
    assert {n.split("/")[0] for n in host | runtime} == {"edge_sdk"}
    assert not host & runtime, "installed by both wheels: {}".format(sorted(host & runtime))
    assert {"edge_sdk/targets/jetson-tx2.toml", "edge_sdk/training/models/backbones.py", "edge_sdk/calibration/qdq.py",
            "edge_sdk/schemas/pose-v1.json", "edge_sdk/graph/transposes.py", "edge_sdk/commands/flash.py",
            "edge_sdk/fleet/static/dashboard.html", "edge_sdk/fleet/static/dashboard.js", "edge_sdk/fleet/store.py",
            "edge_sdk/importers/__init__.py", "edge_sdk/meta.py", "edge_sdk/render.py", "edge_sdk/deploy/agent.py",
            "edge_sdk/commands/import_model.py", "edge_sdk/commands/record.py",
            "edge_sdk/commands/dashboard.py"} <= host
    assert {"edge_sdk/__init__.py", "edge_sdk/cli.py", "edge_sdk/errors.py", "edge_sdk/runtime/pipeline.py",
            "edge_sdk/runtime/backends/tensorrt_backend.py", "edge_sdk/bench/runner.py",
            "edge_sdk/commands/run.py", "edge_sdk/engine/tensorrt_builder.py", "edge_sdk/runtime/message_check.py",
            "edge_sdk/runtime/ids.py", "edge_sdk/runtime/redact.py", "edge_sdk/runtime/decoder_settings.py",
            "edge_sdk/runtime/bundle_archive.py", "edge_sdk/runtime/engine_on_device.py"} <= runtime
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "edge_sdk").rglob("*.py")}
    assert sources <= host | runtime, "in neither wheel: {}".format(sorted(sources - host - runtime))


def test_runtime_wheel_metadata(wheels):
    _, meta, entry_points = wheels["runtime"]
    assert "Name: edge-sdk-runtime" in meta and "Requires-Python: >=3.6" in meta.splitlines()
    base = [r for r in requires(meta) if "extra ==" not in r]
    assert base == ["numpy>=1.19", 'opencv-python-headless>=4.5; platform_machine != "aarch64"', "paho-mqtt>=1.5"]
    extras = {r.rsplit("extra == ", 1)[1].strip('"') for r in requires(meta) if "extra ==" in r}
    assert extras == {"gpu", "tensorrt"}
    assert "edge-sdk = edge_sdk.cli:main" in entry_points


def test_host_wheel_depends_on_the_runtime_of_its_own_version(wheels):
    from edge_sdk import __version__

    _, meta, entry_points = wheels["host"]
    assert "Requires-Python: >=3.10" in meta.splitlines()
    assert "edge-sdk-runtime==" + __version__ in requires(meta)
    assert project_meta(REPO)["version"] == project_meta(REPO / "runtime")["version"] == __version__
    assert "edge-sdk =" not in entry_points  # the console script is the runtime's (one file, one owner)


def test_flash_builds_the_runtime_wheel_without_files_of_an_older_build(tmp_path):
    """setuptools never cleans its build/lib: a module removed since the last build must not reach devices."""
    from edge_sdk.deploy.release import build_runtime_wheel

    stale = REPO / "runtime" / "build" / "lib" / "edge_sdk" / "runtime" / "removed_long_ago.py"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("raise SystemExit('stale')\n")
    wheel = build_runtime_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "edge_sdk/runtime/pipeline.py" in names
    assert not [n for n in names if "removed_long_ago" in n]
