"""Issue #13, item 10: hostile bundle archives against the three places that unpack them -- the device agent
(`edge_sdk/deploy/agent.py`), the runtime (`edge_sdk/runtime/bundle.py`, `run --bundle X.tar.gz`) and the host
pre-check before `flash` uploads (`edge_sdk/deploy/release.py`).

Real archives on real files, each unpacked in a child process whose file size limit (RLIMIT_FSIZE) stands in
for a small disk, so an unbounded extraction fails there instead of filling this machine's disk.
"""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from edge_sdk.deploy import agent
from tests.conftest import REPO, python36

PY36 = python36()  # the agent and the runtime run on JetPack 4.6's Python 3.6: no tarfile filters there
DEVICE_PYTHONS = [sys.executable] + ([PY36] if PY36 else [])
DISK_LIMIT = 32 << 20  # what the child process may write, per file

UNPACK = r"""
import json, os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
entry, where = sys.argv[1:3]
for i, archive in enumerate(sys.argv[3:]):
    target = os.path.join(where, str(i))
    os.makedirs(target)
    try:
        if entry == "agent":
            from edge_sdk.deploy import agent
            agent.unpack_bundle(archive, os.path.join(target, "bundle"))
        elif entry == "runtime":
            from edge_sdk.runtime.bundle import open_bundle
            bundle = open_bundle(archive, extract_to=target)
            getattr(bundle, "close", lambda: None)()
        else:
            from edge_sdk.deploy.release import read_bundle
            read_bundle(archive, target)
        print(json.dumps({{"ok": True}}))
    except Exception as exc:
        print(json.dumps({{"ok": False, "type": type(exc).__name__, "error": str(exc),
                          "code": getattr(exc, "code", "")}}))
""".format(limit=DISK_LIMIT)


def unpack_many_in_child(entry, archives, workdir, python=sys.executable):
    """Unpack each archive with ``entry`` (agent | runtime | host) in one child process with a small file size
    limit and its own $TMPDIR; returns, per archive, (result dict, what was left in its work dir), and
    asserts that $TMPDIR was left empty."""
    where, tmpdir = Path(workdir) / "where", Path(workdir) / "tmpdir"
    for d in (where, tmpdir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    env = dict(os.environ, TMPDIR=str(tmpdir), PYTHONPATH=str(REPO))
    proc = subprocess.run([python, "-c", UNPACK, entry, str(where)] + [str(a) for a in archives],
                          capture_output=True, text=True, cwd=str(REPO), env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.strip().splitlines()[-len(archives):]]
    assert sorted(p.name for p in tmpdir.iterdir()) == [], "left in $TMPDIR"
    return [(result, sorted(str(p.relative_to(where / str(i))) for p in (where / str(i)).rglob("*")))
            for i, result in enumerate(results)]


def unpack_in_child(entry, archive, workdir, python=sys.executable):
    """:func:`unpack_many_in_child` for one archive."""
    return unpack_many_in_child(entry, [archive], workdir, python)[0]


def manifest(files, **extra):
    """A bundle manifest listing ``files`` (name -> bytes, or name -> declared size for files never written)."""
    listed = {}
    for name, data in files.items():
        if isinstance(data, int):
            listed[name] = {"sha256": "0" * 64, "size": data}
        else:
            listed[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    body = {"format": 1, "kind": "edge-sdk-bundle", "target": "cpu", "model": "model.onnx", "files": listed}
    body.update(extra)
    return json.dumps(body).encode()


class Zeros(io.RawIOBase):
    """``size`` zero bytes, streamed (a compression bomb's payload, never held in memory)."""

    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def add(tf, name, data=b"", **attrs):
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    if isinstance(data, int):
        info.size = data
        tf.addfile(info, io.BufferedReader(Zeros(data)))
    elif info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    else:
        tf.addfile(info)


@pytest.fixture(scope="module")
def sparse_archive(tmp_path_factory):
    """133 bytes of .tar.gz declaring a 1 TiB sparse model.onnx (GNU tar --sparse of a hole-only file)."""
    if shutil.which("tar") is None:
        pytest.fail("GNU tar is needed to make a sparse archive (apt-get install tar)")
    d = tmp_path_factory.mktemp("sparse")
    with open(d / "model.onnx", "wb") as f:
        f.truncate(1 << 40)
    subprocess.run(["tar", "--sparse", "--format=gnu", "-czf", "sparse.tar.gz", "model.onnx"], cwd=str(d),
                   check=True)
    (d / "model.onnx").unlink()
    return d / "sparse.tar.gz"


@pytest.fixture(scope="module")
def bomb_archive(tmp_path_factory):
    """A gzip bomb: a manifest listing a 3-byte model.onnx, then a model.onnx of 64 MiB of zeros (~65 KiB)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        add(tf, "bundle/manifest.json", manifest({"model.onnx": b"abc"}))
        add(tf, "bundle/model.onnx", 64 << 20)
    assert path.stat().st_size < 1 << 20
    return path


@pytest.mark.parametrize("python", DEVICE_PYTHONS, ids=lambda p: "py36" if p == PY36 else "py3")
@pytest.mark.parametrize("entry", ["agent", "runtime", "host"])
def test_a_1tib_sparse_member_is_refused_without_blaming_the_upload(sparse_archive, tmp_path, entry, python):
    if entry == "host" and python == PY36:
        pytest.skip("the host side needs Python 3.10+")
    assert sparse_archive.stat().st_size < 200
    result, left = unpack_in_child(entry, sparse_archive, tmp_path, python)
    assert not result["ok"], result
    assert "sparse" in result["error"] and "1.0 TiB" in result["error"], result
    assert "upload" not in result["error"] and "flash again" not in result["error"], result
    assert left == [], left  # nothing written, nothing left behind


@pytest.mark.parametrize("entry", ["agent", "runtime", "host"])
def test_a_gzip_bomb_is_refused_before_a_byte_is_written(bomb_archive, tmp_path, entry):
    result, left = unpack_in_child(entry, bomb_archive, tmp_path)
    assert not result["ok"], result
    assert "64.0 MiB" in result["error"] and "manifest.json says 3" in result["error"], result
    assert "upload" not in result["error"], result
    assert left == [], left


def test_the_total_is_capped_even_when_the_manifest_agrees(tmp_path):
    """A bomb whose manifest declares the same huge size: the total limit refuses it at its header."""
    archive = tmp_path / "big.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        add(tf, "manifest.json", manifest({"model.onnx": 24 << 20}))
        add(tf, "model.onnx", 24 << 20)
    with pytest.raises(agent.AgentError, match=r"unpacks to more than 16.0 MiB") as err:
        agent.unpack_bundle(str(archive), str(tmp_path / "out"), max_bytes=16 << 20)
    assert err.value.code == "refused"
    assert not list(tmp_path.glob("out*"))


def test_a_full_disk_while_unpacking_says_so_and_cleans_up(tmp_path):
    """A genuine bundle bigger than the (simulated) disk: a disk error, not 'the upload was cut'."""
    payload = os.urandom(DISK_LIMIT + 4096)
    archive = tmp_path / "b.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tf:
        add(tf, "manifest.json", manifest({"model.onnx": payload}))
        add(tf, "model.onnx", payload)
    result, left = unpack_in_child("agent", archive, tmp_path)
    assert not result["ok"] and result["code"] == "disk", result
    assert "filled up" in result["error"] and "upload" not in result["error"], result
    assert left == [], left


def special_members():
    model = b"onnx"
    listed = manifest({"model.onnx": model})
    return {
        "fifo": [("manifest.json", listed, {}), ("model.onnx", model, {}), ("pipe", b"", {"type": tarfile.FIFOTYPE})],
        "device-node": [("manifest.json", listed, {}), ("model.onnx", model, {}),
                        ("null", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3})],
        "setuid": [("manifest.json", listed, {}), ("model.onnx", model, {"mode": 0o4755})],
        "symlink-out": [("manifest.json", listed, {}), ("model.onnx", model, {}),
                        ("engine.plan", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"})],
        "hardlink-out": [("manifest.json", listed, {}), ("model.onnx", model, {}),
                         ("engine.plan", b"", {"type": tarfile.LNKTYPE, "linkname": "../../../etc/passwd"})],
    }


@pytest.mark.parametrize("python", DEVICE_PYTHONS, ids=lambda p: "py36" if p == PY36 else "py3")
@pytest.mark.parametrize("entry", ["agent", "runtime"])
def test_special_files_and_setuid_bits_are_refused(tmp_path, entry, python):
    """On Python 3.6 the runtime extracted FIFOs, device nodes and setuid files (tarfile has no filters there)."""
    for kind, members in sorted(special_members().items()):
        archive = tmp_path / "{}.tar.gz".format(kind)
        with tarfile.open(archive, "w:gz") as tf:
            for name, data, attrs in members:
                add(tf, name, data, **attrs)
    kinds = sorted(special_members())
    results = unpack_many_in_child(entry, [tmp_path / "{}.tar.gz".format(k) for k in kinds], tmp_path / "work",
                                   python)
    for kind, (result, left) in zip(kinds, results):
        assert not result["ok"], (kind, result)
        assert ("link or special file" in result["error"] or "setuid" in result["error"]), (kind, result)
        assert "upload" not in result["error"], (kind, result)
        assert left == [], (kind, left)
