"""Write a deployable bundle: a directory + ``.tar.gz`` with ``manifest.json`` and the files it hashes.

The manifest is the contract between the host build and the device runtime
(``edge_sdk.runtime.bundle.open_bundle`` reads and verifies it): format version, target (and the full
target profile, so the device needs no TOML), the precision actually used and why it differs from the
request, input spec, outputs, skeleton, model metadata, sha256 + size of every file, the versions of the
toolchain that made it, and when.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk import __version__
from edge_sdk.errors import ConfigError
from edge_sdk.runtime.bundle import (
    BUNDLE_FORMAT_VERSION,
    BUNDLE_KIND,
    MANIFEST_NAME,
    open_bundle,
    sha256_file,
    write_manifest,
)
from edge_sdk.runtime.model_meta import ModelMeta
from edge_sdk.runtime.skeleton import STRIDE, get_skeleton
from edge_sdk.targets import Target

MODEL_NAME = "model.onnx"
ENGINE_NAME = "engine.plan"


@dataclass
class Precision:
    """What was asked for, what is used, and why they differ (None when they don't)."""

    requested: str
    used: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "used": self.used, "reason": self.reason}


@dataclass
class BundleResult:
    directory: Path
    archive: Path
    manifest: dict[str, Any]
    files: dict[str, int] = field(default_factory=dict)  # name -> size in bytes


def toolchain_versions() -> dict[str, str | None]:
    """Versions of the tools that made the bundle (None: not installed)."""
    versions: dict[str, str | None] = {"edge_sdk": __version__, "python": platform.python_version()}
    for module in ("onnx", "onnxruntime", "onnx_graphsurgeon", "tensorrt", "numpy"):
        try:
            imported = __import__(module)
            versions[module] = getattr(imported, "__version__", "unknown")
        except Exception:  # noqa: BLE001 - a broken optional install must not break the build record
            versions[module] = None
    return versions


def skeleton_spec(meta: ModelMeta) -> dict[str, Any]:
    spec = get_skeleton(meta.skeleton).to_dict()
    spec["stride"] = meta.stride or STRIDE
    return spec


def check_output_dir(out_dir: str | os.PathLike) -> Path:
    """Refuse an output path we cannot (or must not) write, before any slow work starts."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError("output {} exists and is not a directory; pass a directory path with -o".format(out))
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).exists():
        raise ConfigError("output directory {} is not empty and is not a bundle; refusing to overwrite it -- pass "
                          "a new or empty directory with -o".format(out))
    try:  # the only reliable test (root passes os.access everywhere): create the parent and a probe file
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=str(out.parent)):
            pass
    except OSError as exc:
        raise ConfigError("cannot write the bundle to {}: {}; choose another -o directory".format(
            out, exc.strerror or exc)) from None
    return out


def write_bundle(out_dir: str | os.PathLike, *, model_path: str | os.PathLike, meta: ModelMeta, target: Target,
                 precision: Precision, engine: dict[str, Any], extra_files: dict[str, str | os.PathLike] | None = None,
                 graph: dict[str, Any] | None = None, onnxruntime_options: dict[str, Any] | None = None,
                 make_archive: bool = True) -> BundleResult:
    """Assemble the bundle in a temporary sibling directory, then swap it into place (no half-written
    bundle is ever left under ``out_dir``). ``engine``: {"status": "built" | "build-on-device" | "none",
    "file": path or None, ...build options}. Returns the directory, the archive and the manifest."""
    out = check_output_dir(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".{}.".format(out.name), dir=str(out.parent)))
    try:
        shutil.copyfile(model_path, staging / MODEL_NAME)
        engine = dict(engine)
        if engine.get("file"):
            shutil.copyfile(engine["file"], staging / ENGINE_NAME)
            engine["file"] = ENGINE_NAME
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, staging / name)
        files = {}
        for path in sorted(staging.iterdir()):
            files[path.name] = {"sha256": sha256_file(str(path)), "size": path.stat().st_size}
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT_VERSION,
            "kind": BUNDLE_KIND,
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "target": target.name,
            "target_profile": target.to_dict(),
            "backend": target.backend,
            "precision": precision.to_dict(),
            "model": MODEL_NAME,
            "engine": engine,
            "input": meta.input.to_dict(),
            "outputs": dict(meta.outputs),
            "skeleton": skeleton_spec(meta),
            "model_meta": meta.to_dict(),
            "graph": graph or {},
            "files": files,
            "toolchain": toolchain_versions(),
        }
        if onnxruntime_options is not None:
            manifest["onnxruntime"] = onnxruntime_options
        if target.backend == "tensorrt":  # the stack the bundle was built for: the device must run it
            pinned = target.kind == "jetson" or engine.get("status") == "built"
            manifest["software"] = {key: getattr(target, key) for key in ("jetpack", "l4t", "tensorrt", "cuda",
                                                                           "python")} if pinned else None
        write_manifest(str(staging), manifest)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    archive = out.parent / (out.name + ".tar.gz")
    if make_archive:
        tmp_archive = archive.with_name(archive.name + ".tmp")
        with tarfile.open(tmp_archive, "w:gz") as tar:
            # manifest.json first: an unpacker checks each later file's size against it before writing it
            tar.add(str(out), arcname=out.name, recursive=False)
            for name in [MANIFEST_NAME] + sorted(n for n in os.listdir(str(out)) if n != MANIFEST_NAME):
                tar.add(str(out / name), arcname="{}/{}".format(out.name, name))
        os.replace(tmp_archive, archive)
    sizes = {name: entry["size"] for name, entry in files.items()}
    sizes[MANIFEST_NAME] = (out / MANIFEST_NAME).stat().st_size
    return BundleResult(directory=out, archive=archive, manifest=manifest, files=sizes)


def describe_bundle(path: str | os.PathLike) -> str:
    """Human-readable summary of a bundle (verifies it first): what `edge-sdk inspect` prints."""
    with tempfile.TemporaryDirectory(prefix="edge-sdk-inspect-") as scratch:
        return _describe(open_bundle(str(path), extract_to=scratch))


def _describe(bundle) -> str:
    m = bundle.manifest
    spec = bundle.meta.input
    precision = m.get("precision", {})
    engine = m.get("engine", {})
    lines = [
        "bundle      {}".format(bundle.source),
        "format      {} v{}".format(m.get("kind"), m.get("format")),
        "created     {}".format(m.get("created")),
        "target      {} ({})".format(m.get("target"), (m.get("target_profile") or {}).get("description", "")),
        "backend     {}".format(m.get("backend")),
        "precision   {} (requested {}){}".format(precision.get("used"), precision.get("requested"),
                                                 "; " + precision["reason"] if precision.get("reason") else ""),
        "engine      {}{}".format(engine.get("status"), " ({})".format(engine.get("file")) if engine.get("file")
                                  else ""),
        "input       {} {} {} {} {}x{} batch {}, {}".format(
            spec.name, spec.dtype, spec.layout, spec.color, spec.width, spec.height, spec.batch,
            "raw pixels (normalisation folded into the first conv)" if bundle.meta.extra.get("normalization_folded")
            else "(x*{:.6g} - mean {}) / std {}".format(spec.scale, [round(v, 4) for v in spec.mean],
                                                        [round(v, 4) for v in spec.std])),
        "outputs     {}".format(", ".join("{}={}".format(k, v) for k, v in sorted(m.get("outputs", {}).items()))),
        "skeleton    {} ({} parts, {} limbs, stride {})".format(
            m.get("skeleton", {}).get("name"), len(m.get("skeleton", {}).get("parts", [])),
            len(m.get("skeleton", {}).get("limbs", [])), m.get("skeleton", {}).get("stride")),
    ]
    passes = (m.get("graph") or {}).get("passes") or []
    if passes:
        lines.append("passes      {}".format(", ".join(str(p.get("name") if isinstance(p, dict) else p)
                                                   for p in passes)))
    if m.get("onnxruntime"):
        lines.append("onnxruntime {}".format(", ".join("{}={}".format(k, v) for k, v in m["onnxruntime"].items())))
    lines.append("toolchain   {}".format(", ".join("{} {}".format(k, v) for k, v in m.get("toolchain", {}).items()
                                                   if v)))
    lines.append("files (sha256 verified):")
    for name, entry in sorted(m.get("files", {}).items()):
        lines.append("  {:<14} {:>12}  {}".format(name, human_size(entry["size"]), entry["sha256"][:16]))
    return "\n".join(lines)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return "{:.0f} {}".format(size, unit) if unit == "B" else "{:.1f} {}".format(size, unit)
        size /= 1024
    return str(n)
