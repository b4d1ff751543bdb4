"""Open a deployable bundle on the device: verify every file's sha256 and the target, then expose its parts.

A bundle is a directory (or a ``.tar.gz`` of one) made by ``edge-sdk build``:
``manifest.json`` + ``model.onnx`` + optional ``engine.plan`` / ``calib.cache`` / ``timing.cache``.
The manifest lists the sha256 and size of every other file; a bundle that does not match is refused,
because a half-copied or tampered engine crashes or silently mis-predicts on the device.
Python 3.6 syntax, standard library + model_meta only (runs on JetPack 4.6 through 7).
"""

import hashlib
import json
import os
import tarfile
import tempfile
from typing import Any, Dict, Optional

from edge_sdk.errors import BundleError
from edge_sdk.runtime.model_meta import ModelMeta

MANIFEST_NAME = "manifest.json"
BUNDLE_KIND = "edge-sdk-bundle"
#: ``manifest["format"]``: the bundle format version (the flash agent checks the same key)
BUNDLE_FORMAT_VERSION = 1


def sha256_file(path: str, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (engines can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk_size)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


class Bundle(object):
    """A verified bundle: ``dir``, ``manifest`` (dict), ``meta`` (ModelMeta), ``model_path``,
    ``engine_path`` (None when the engine is still to be built on the device), ``target`` (name)."""

    def __init__(self, directory, manifest, source=None):
        self.dir = directory
        #: what the caller opened (the .tar.gz or the directory)
        self.source = source or directory
        self.manifest = manifest
        self.meta = ModelMeta.from_dict(manifest.get("model_meta", {}))
        self.target = manifest.get("target")
        self.model_path = os.path.join(directory, manifest.get("model", "model.onnx"))
        engine = (manifest.get("engine") or {}).get("file")
        self.engine_path = os.path.join(directory, engine) if engine else None

    @property
    def precision(self):
        """The precision the engine is (to be) built with: fp32, fp16 or int8."""
        return (self.manifest.get("precision") or {}).get("used", "fp32")

    @property
    def needs_engine_build(self):
        """True when the bundle asks the device to build its TensorRT engine at first start."""
        engine = self.manifest.get("engine") or {}
        return engine.get("status") == "build-on-device" and self.engine_path is None

    def file_path(self, name):
        return os.path.join(self.dir, name)

    def add_file(self, name, engine_file=False):
        """Record a file written into the bundle directory (e.g. an engine built at first start) in the
        manifest with its hash, and rewrite the manifest atomically."""
        path = self.file_path(name)
        self.manifest.setdefault("files", {})[name] = {"sha256": sha256_file(path), "size": os.path.getsize(path)}
        if engine_file:
            engine = self.manifest.setdefault("engine", {})
            engine["file"] = name
            engine["status"] = "built"
            self.engine_path = path
        write_manifest(self.dir, self.manifest)

    def __repr__(self):
        return "Bundle({!r}, target={!r}, precision={!r})".format(self.dir, self.target, self.precision)


def write_manifest(directory: str, manifest: Dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically (write + rename), so a power cut never leaves half a manifest."""
    final = os.path.join(directory, MANIFEST_NAME)
    tmp = final + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, final)


def _safe_extract(archive_path, destination):
    """Extract a .tar.gz, refusing members that would land outside ``destination``."""
    try:
        with tarfile.open(archive_path, "r:*") as archive:
            members = archive.getmembers()
            root = os.path.realpath(destination)
            for member in members:
                target = os.path.realpath(os.path.join(destination, member.name))
                if not (target == root or target.startswith(root + os.sep)) or member.issym() or member.islnk():
                    raise BundleError("bundle archive {} contains an unsafe entry '{}'; rebuild it with "
                                      "`edge-sdk build`".format(archive_path, member.name))
            if hasattr(tarfile, "data_filter"):  # Python 3.12+: the safe filter, and no deprecation warning
                archive.extractall(destination, members=members, filter="data")
            else:
                archive.extractall(destination, members=members)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError("cannot read bundle archive {}: {}; copy it again or rebuild it with "
                          "`edge-sdk build`".format(archive_path, exc)) from None
    entries = [e for e in os.listdir(destination) if not e.startswith(".")]
    if MANIFEST_NAME not in entries and len(entries) == 1 and os.path.isdir(os.path.join(destination, entries[0])):
        return os.path.join(destination, entries[0])
    return destination


def open_bundle(path: str, expected_target: Optional[str] = None, extract_to: Optional[str] = None) -> Bundle:
    """Open and verify a bundle directory or ``.tar.gz``; raises BundleError saying which file is wrong and
    what to do. ``expected_target``: refuse a bundle built for another device."""
    if not os.path.exists(path):
        raise BundleError("bundle {} does not exist; build one with `edge-sdk build MODEL.onnx --target T -o DIR`"
                          .format(path))
    directory = path
    if os.path.isfile(path):
        if not (path.endswith(".tar.gz") or path.endswith(".tgz") or tarfile.is_tarfile(path)):
            raise BundleError("{} is neither a bundle directory nor a .tar.gz bundle".format(path))
        destination = extract_to or tempfile.mkdtemp(prefix="edge-sdk-bundle-")
        if not os.path.isdir(destination):
            os.makedirs(destination)
        directory = _safe_extract(path, destination)
    manifest_path = os.path.join(directory, MANIFEST_NAME)
    if not os.path.isfile(manifest_path):
        raise BundleError("{} has no {}; it is not a bundle (make one with `edge-sdk build`)"
                          .format(path, MANIFEST_NAME))
    try:
        with open(manifest_path) as handle:
            manifest = json.load(handle)
    except ValueError as exc:
        raise BundleError("{} is not valid JSON ({}); rebuild the bundle with `edge-sdk build`"
                          .format(manifest_path, exc)) from None
    version = manifest.get("format")
    if not isinstance(version, int) or isinstance(version, bool) or manifest.get("kind") != BUNDLE_KIND:
        raise BundleError("{}: not an edge-sdk bundle manifest (format={!r}, kind={!r}); rebuild the bundle with "
                          "`edge-sdk build`".format(manifest_path, version, manifest.get("kind")))
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError("{}: bundle format {} is newer than this runtime understands ({}); update edge-sdk on "
                          "the device".format(manifest_path, version, BUNDLE_FORMAT_VERSION))
    if expected_target is not None and manifest.get("target") != expected_target:
        raise BundleError("bundle {} was built for target '{}', but this device is '{}'; rebuild it with "
                          "`edge-sdk build MODEL.onnx --target {}`".format(path, manifest.get("target"),
                                                                          expected_target, expected_target))
    files = manifest.get("files") or {}
    model_name = manifest.get("model", "model.onnx")
    if model_name not in files:
        raise BundleError("{}: the manifest lists no '{}' entry; rebuild the bundle".format(manifest_path,
                                                                                           model_name))
    for name in sorted(files):
        entry = files[name]
        file_path = os.path.join(directory, name)
        if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
            raise BundleError("{}: file entry '{}' points outside the bundle".format(manifest_path, name))
        if not os.path.isfile(file_path):
            raise BundleError("bundle {} is missing '{}' (listed in the manifest); copy the whole bundle again"
                              .format(path, name))
        size = os.path.getsize(file_path)
        if size != entry.get("size"):
            raise BundleError("bundle {}: '{}' is {} bytes, the manifest says {}; the copy is incomplete or the "
                              "file was changed -- copy the bundle again".format(path, name, size, entry.get("size")))
        if sha256_file(file_path) != entry.get("sha256"):
            raise BundleError("bundle {}: sha256 of '{}' does not match the manifest; the file was changed or "
                              "corrupted -- copy the bundle again or rebuild it".format(path, name))
    return Bundle(directory, manifest, source=path)
