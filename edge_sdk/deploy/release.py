"""What `edge-sdk flash` pushes: the runtime wheel + the bundle tarball, checked on the host before any upload.

The runtime wheel is `edge-sdk-runtime` (runtime/pyproject.toml: the on-device files only, Python 3.6+);
the host package `edge-sdk` never goes to a device.

The version label on the device is ``<runtime version>-<8 hex>``, the hex a sha256 over the bundle's
manifest.json and the wheel's RECORD: the same bundle and runtime always get the same label (re-flashing is a
no-op), any change to either gets a new one.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from edge_sdk.deploy import agent
from edge_sdk.errors import BundleError, ConfigError

REPO_MARKERS = ("pyproject.toml", "edge_sdk", "runtime/pyproject.toml")
RUNTIME_DIST = "edge_sdk_runtime"  # the wheel file name's first field (PEP 427 escaping of edge-sdk-runtime)


@dataclass
class Release:
    """A runtime wheel and a bundle, verified, ready to upload."""

    wheel: Path
    runtime_version: str
    bundle_tar: Path
    manifest: dict
    version: str
    target_hints: dict = field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.manifest.get("target", "")

    @property
    def has_engine(self) -> bool:
        return agent.bundle_has_engine(self.manifest)

    @property
    def builds_engine_on_device(self) -> bool:
        return (self.manifest.get("engine") or {}).get("status") == "build-on-device"

    @property
    def precision(self) -> str:
        return agent.precision_of(self.manifest) or "?"

    @property
    def upload_bytes(self) -> int:
        return self.wheel.stat().st_size + self.bundle_tar.stat().st_size


def project_root() -> Path | None:
    """The edge-sdk source tree this package runs from, if it runs from one (not from an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    return root if all((root / m).exists() for m in REPO_MARKERS) else None


def build_runtime_wheel(outdir: Path, source: Path | None = None) -> Path:
    """`pip wheel --no-deps runtime/` of the edge-sdk source tree -> the edge-sdk-runtime wheel file (pure Python,
    installs anywhere)."""
    source = source or project_root()
    if source is None:
        raise ConfigError("cannot build the runtime wheel: edge-sdk is not running from its source tree; pass "
                          "--runtime-wheel PATH (make it with `pip wheel --no-deps runtime/` in the edge-sdk "
                          "sources)")
    source = Path(source) / "runtime"
    # setuptools stages files in runtime/build/lib and never removes one: a module deleted or renamed since the
    # last build would still ship to the devices. Its scratch folder goes first (it is in .gitignore).
    shutil.rmtree(source / "build", ignore_errors=True)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(outdir)]
    # Without build isolation when setuptools is here: no download, and works offline.
    attempts = [base + ["--no-build-isolation", str(source)], base + [str(source)]]
    proc = None
    for cmd in attempts:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            break
    if proc.returncode != 0:
        raise ConfigError("building the runtime wheel failed (`{}`):\n{}".format(
            " ".join(attempts[-1]), (proc.stderr or proc.stdout).strip()[-2000:]))
    wheels = sorted(outdir.glob(RUNTIME_DIST + "-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise ConfigError("pip wheel made no {}-*.whl in {}".format(RUNTIME_DIST, outdir))
    return wheels[-1]


def wheel_identity(wheel: Path) -> tuple[str, bytes]:
    """(version, RECORD bytes) of an edge-sdk-runtime wheel; refuses anything else (the host package too)."""
    parts = wheel.name.split("-")
    if not wheel.name.endswith(".whl") or len(parts) < 5 or parts[0] != RUNTIME_DIST:
        raise ConfigError("{}: not the edge-sdk runtime wheel (expected {}-VERSION-py3-none-any.whl; make it with "
                          "`pip wheel --no-deps runtime/`)".format(wheel, RUNTIME_DIST))
    try:
        with zipfile.ZipFile(wheel) as zf:
            record = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
            if not record:
                raise ConfigError("{}: not a wheel (no RECORD)".format(wheel))
            return parts[1], zf.read(record[0])
    except zipfile.BadZipFile:
        raise ConfigError("{}: not a valid wheel (zip) file".format(wheel)) from None


def read_bundle(bundle: Path, workdir: Path) -> tuple[dict, Path, bytes]:
    """Verify a bundle (dir or .tar.gz) with the agent's own checks -> (manifest, tarball to upload, manifest bytes).

    Checking on the host first turns a bad bundle into one clear error instead of one per device; the device
    checks again after the upload."""
    bundle = Path(bundle)
    if not bundle.exists():
        raise BundleError("bundle {} not found; make one with `edge-sdk build MODEL --target T -o DIR`".format(bundle))
    workdir = Path(workdir)
    try:
        if bundle.is_dir():
            manifest = agent.verify_bundle(str(bundle))
            tar_path = workdir / (bundle.name + ".tar.gz")
            with tarfile.open(tar_path, "w:gz", compresslevel=6) as tf:
                # manifest.json first: the device checks each later file's size against it before unpacking it
                for path in sorted(bundle.rglob("*"), key=lambda p: (p.name != "manifest.json", p)):
                    if path.is_symlink() or not (path.is_file() or path.is_dir()):
                        raise BundleError("{}: {} is a link or special file; bundles hold regular files only"
                                          .format(bundle, path.relative_to(bundle)))
                    tf.add(path, arcname=path.relative_to(bundle).as_posix(), recursive=False)
            manifest_bytes = (bundle / "manifest.json").read_bytes()
        elif tarfile.is_tarfile(bundle):
            scratch = tempfile.mkdtemp(dir=workdir)
            try:  # the agent's own bounded unpack: a bomb or a sparse member is refused here, before any upload
                unpacked = agent.unpack_bundle(str(bundle), scratch + "/bundle")
                manifest = agent.verify_bundle(unpacked)
                manifest_bytes = Path(unpacked, "manifest.json").read_bytes()
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            tar_path = bundle
        else:
            raise BundleError("{}: not a bundle (expected a directory with manifest.json or its .tar.gz)"
                              .format(bundle))
    except agent.AgentError as exc:
        raise BundleError("bundle {}: {}".format(bundle, exc)) from None
    return manifest, tar_path, manifest_bytes


def target_hints(manifest: dict) -> dict:
    """What the agent needs to recognise the bundle's device before anything is uploaded.

    The profile the bundle carries (``target_profile``: detect_model, detect_l4t_major, kind), else the
    local targets/<target>.toml; plus the model patterns of every other known target, so the longest match
    wins on the device ('Orin Nano' is not a 'Nano')."""
    target = manifest.get("target", "")
    profile = manifest.get("target_profile") or {}
    others: dict[str, list[str]] = {}
    try:
        from edge_sdk.targets import load_targets

        known = load_targets()
    except Exception:  # a broken custom profile dir must not stop a flash; the agent has its own table
        known = {}
    if not profile and target in known:
        profile = known[target].to_dict()
    for name, t in known.items():
        if name != target and t.detect_model:
            others[name] = list(t.detect_model)
    return {"model": list(profile.get("detect_model") or []),
            "tegra_release": list(profile.get("detect_tegra_release") or []),
            "l4t_major": list(profile.get("detect_l4t_major") or []),
            "kind": profile.get("kind"), "others": others}


def prepare_release(bundle: Path, workdir: Path, runtime_wheel: Path | None = None,
                    version: str | None = None) -> Release:
    """Verify the bundle, build (or check) the runtime wheel, and name the version."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    manifest, tar_path, manifest_bytes = read_bundle(bundle, workdir)
    if runtime_wheel is None:
        runtime_wheel = build_runtime_wheel(workdir / "wheel")
    runtime_wheel = Path(runtime_wheel)
    if not runtime_wheel.is_file():
        raise ConfigError("runtime wheel {} not found".format(runtime_wheel))
    runtime_version, record = wheel_identity(runtime_wheel)
    digest = hashlib.sha256(manifest_bytes + b"\0" + record).hexdigest()[:8]
    label = version or "{}-{}".format(runtime_version, digest)
    if not label.replace(".", "").replace("-", "").replace("_", "").replace("+", "").isalnum():
        raise ConfigError("version label {!r}: use letters, digits and . - _ + only".format(label))
    return Release(wheel=runtime_wheel, runtime_version=runtime_version, bundle_tar=Path(tar_path),
                   manifest=manifest, version=label, target_hints=target_hints(manifest))


def describe(release: Release) -> str:
    return "{} (runtime {}, target {}, precision {}, {})".format(
        release.version, release.runtime_version, release.target or "?", release.precision,
        "engine included" if release.has_engine else
        "engine built on the device at first start" if release.builds_engine_on_device else "no engine needed")
