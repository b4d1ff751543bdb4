"""Issue #13, items 11 and 12: what a bundle's manifest may make the runtime load, what opening a bundle leaves
in $TMPDIR, and malformed manifests -- against real bundles made by `edge-sdk build` and the real CLI."""

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from edge_sdk.errors import BundleError
from edge_sdk.runtime.bundle import open_bundle


@pytest.fixture(scope="module")
def real_bundle(tmp_path_factory):
    """A CPU bundle (directory + .tar.gz) of a small pose model, made by the real build."""
    import onnx

    from edge_sdk.engine.build import BuildRequest, build
    from edge_sdk.graph.synthetic_model import make_pose_model

    d = tmp_path_factory.mktemp("bundle")
    onnx.save(make_pose_model(seed=3), str(d / "pose.onnx"))
    result = build(BuildRequest(model=str(d / "pose.onnx"), target="cpu", output=str(d / "b"), input_size=(96, 64)),
                   echo=lambda line: None)
    return Path(result.bundle_dir)


def copy_bundle(real_bundle, tmp_path):
    target = tmp_path / "b"
    shutil.copytree(real_bundle, target)
    return target


def edit_manifest(bundle_dir, change):
    path = bundle_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def listed(bundle_dir, name):
    data = (bundle_dir / name).read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


# ---------------------------------------------------------------------------------------------------- item 11


def test_an_engine_outside_the_bundle_is_refused(real_bundle, tmp_path):
    bundle = copy_bundle(real_bundle, tmp_path)
    (tmp_path / "evil.plan").write_bytes(b"not yours")
    edit_manifest(bundle, lambda m: m["engine"].update(file="../evil.plan", status="built"))
    with pytest.raises(BundleError, match="outside the bundle"):
        open_bundle(str(bundle))


def test_an_engine_the_manifest_does_not_hash_is_refused(real_bundle, tmp_path):
    bundle = copy_bundle(real_bundle, tmp_path)
    (bundle / "engine.plan").write_bytes(b"swapped in on the device")
    edit_manifest(bundle, lambda m: m["engine"].update(file="engine.plan", status="built"))
    with pytest.raises(BundleError, match="engine.file 'engine.plan' is not listed"):
        open_bundle(str(bundle))
    edit_manifest(bundle, lambda m: m["files"].update({"engine.plan": listed(bundle, "engine.plan")}))
    assert open_bundle(str(bundle)).engine_path == str(bundle / "engine.plan")  # listed and hashed: fine


def test_a_listed_file_that_links_outside_is_refused(real_bundle, tmp_path):
    bundle = copy_bundle(real_bundle, tmp_path)
    outside = tmp_path / "model-elsewhere.onnx"
    shutil.move(str(bundle / "model.onnx"), str(outside))
    os.symlink(str(outside), str(bundle / "model.onnx"))  # same bytes, so the hash alone would pass
    with pytest.raises(BundleError, match="link or leads outside"):
        open_bundle(str(bundle))


def test_optional_caches_are_loaded_only_when_listed(real_bundle, tmp_path):
    bundle = copy_bundle(real_bundle, tmp_path)
    (bundle / "timing.cache").write_bytes(b"planted")
    opened = open_bundle(str(bundle))
    assert opened.listed_path("timing.cache") is None and opened.listed_path("model.onnx")


# ---------------------------------------------------------------------------------------------------- item 12


def leftovers(tmpdir):
    """What is in $TMPDIR, but ONNX Runtime's own 51-byte `.ses` marker (written by `import onnxruntime`)."""
    return sorted(p.name for p in tmpdir.iterdir() if p.name != ".ses")


def run_cli(edge_sdk_cli, tmpdir, *args):
    tmpdir.mkdir(exist_ok=True)
    return edge_sdk_cli(*args, env=dict(os.environ, TMPDIR=str(tmpdir)), timeout=180)


def test_run_doctor_and_inspect_leave_nothing_in_tmpdir(real_bundle, tmp_path, edge_sdk_cli):
    archive = real_bundle.parent / (real_bundle.name + ".tar.gz")
    assert archive.is_file()
    tmpdir = tmp_path / "tmpdir"
    proc = run_cli(edge_sdk_cli, tmpdir, "run", "--bundle", archive, "--source", "synthetic?w=96&h=64&frames=3",
                   "--save", tmp_path / "poses.jsonl", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "poses.jsonl").read_text().splitlines()) == 3
    assert leftovers(tmpdir) == []
    for args in (("doctor", "--bundle", archive), ("inspect", archive), ("inspect", "--json", archive)):
        proc = run_cli(edge_sdk_cli, tmpdir, *args)
        assert proc.returncode == 0, proc.stderr
        assert leftovers(tmpdir) == [], args
    # the on-device engine build writes into the bundle: an archive is refused, not copied to $TMPDIR
    proc = run_cli(edge_sdk_cli, tmpdir, "build", "--bundle", archive)
    assert proc.returncode == 2 and "unpack it first" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert leftovers(tmpdir) == []


def test_a_failing_archive_leaves_nothing_in_tmpdir(real_bundle, tmp_path, edge_sdk_cli):
    bundle = copy_bundle(real_bundle, tmp_path)
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    (bundle / "model.onnx").write_bytes(bytes(data))
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(str(bundle), arcname="b")
    tmpdir = tmp_path / "tmpdir"
    for args in (("run", "--bundle", archive, "--source", "synthetic?frames=1"), ("doctor", "--bundle", archive)):
        proc = run_cli(edge_sdk_cli, tmpdir, *args)
        assert proc.returncode == 2 and "sha256" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert leftovers(tmpdir) == [], args


MALFORMED = {
    "manifest is a list": lambda m: [m],
    "files is a list": lambda m: dict(m, files=["model.onnx"]),
    "files entry is a string": lambda m: dict(m, files={"model.onnx": "abc"}),
    "size is a string": lambda m: dict(m, files={"model.onnx": dict(m["files"]["model.onnx"], size="big")}),
    "model is a number": lambda m: dict(m, model=5),
    "engine is a string": lambda m: dict(m, engine="engine.plan"),
    "precision is a number": lambda m: dict(m, precision=16),
    "model_meta is a list": lambda m: dict(m, model_meta=[]),
    "input width is a word": lambda m: dict(m, model_meta=dict(m["model_meta"], input=dict(
        m["model_meta"]["input"], width="wide"))),
    "input is a string": lambda m: dict(m, model_meta=dict(m["model_meta"], input="384x256")),
    "huge input": lambda m: dict(m, model_meta=dict(m["model_meta"], input=dict(
        m["model_meta"]["input"], width=10 ** 9))),
    "skeleton is a list": lambda m: dict(m, skeleton=[]),
    "toolchain is a string": lambda m: dict(m, toolchain="edge-sdk"),
}


def malformed(real_bundle, tmp_path, case):
    bundle = copy_bundle(real_bundle, tmp_path)
    path = bundle / "manifest.json"
    path.write_text(json.dumps(MALFORMED[case](json.loads(path.read_text()))))
    return bundle


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_manifests_are_clear_errors(real_bundle, tmp_path, case):
    with pytest.raises(BundleError) as err:
        open_bundle(str(malformed(real_bundle, tmp_path, case)))
    assert "manifest.json" in str(err.value) and "\n" not in str(err.value)


def test_the_cli_says_it_in_one_line(real_bundle, tmp_path, edge_sdk_cli):
    for case in ("files entry is a string", "skeleton is a list"):
        proc = edge_sdk_cli("inspect", malformed(real_bundle, tmp_path / case.replace(" ", "-"), case))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "manifest.json" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
