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
import shutil
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
    ``engine_path`` (None when the engine is still to be built on the device), ``target`` (name).

    A bundle opened from a ``.tar.gz`` lives in a temporary directory that :meth:`close` removes (``with
    open_bundle(...) as bundle:`` does it); for a bundle directory ``close`` does nothing."""

    def __init__(self, directory, manifest, source=None, owned_dir=None):
        self.dir = directory
        #: what the caller opened (the .tar.gz or the directory)
        self.source = source or directory
        self.manifest = manifest
        #: the temporary directory an archive was unpacked into (removed by close), else None
        self.owned_dir = owned_dir
        self.meta = ModelMeta.from_dict(manifest.get("model_meta", {}))
        self.target = manifest.get("target")
        self.model_path = os.path.join(directory, manifest.get("model", "model.onnx"))
        engine = (manifest.get("engine") or {}).get("file")
        self.engine_path = os.path.join(directory, engine) if engine else None

    @property
    def precision(self):
        """The precision the engine is (to be) built with: fp32, fp16 or int8."""
        precision = self.manifest.get("precision")
        if isinstance(precision, str):
            return precision
        return (precision or {}).get("used", "fp32")

    @property
    def needs_engine_build(self):
        """True when the bundle asks the device to build its TensorRT engine at first start."""
        engine = self.manifest.get("engine") or {}
        return engine.get("status") == "build-on-device" and self.engine_path is None

    def file_path(self, name):
        return os.path.join(self.dir, name)

    def listed_path(self, name):
        """The path of ``name`` if the manifest lists (and so hashes) it, else None: optional files such as
        ``timing.cache`` are loaded only when they were verified."""
        return self.file_path(name) if name in (self.manifest.get("files") or {}) else None

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

    def close(self):
        """Remove the temporary copy of an archive (with any engine cached beside it, inside the same
        temporary directory); a bundle directory stays as it is."""
        if self.owned_dir:
            shutil.rmtree(self.owned_dir, ignore_errors=True)
            self.owned_dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

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


def _unpack_archive(archive_path, destination):
    """Unpack a .tar.gz into ``destination``/bundle with the flash agent's checks (:mod:`bundle_archive`, the
    same code as the device agent's; Python 3.6 has no tarfile filters): regular files only, each the size its
    manifest says, a bounded total, enough free disk; nothing left behind on failure."""
    from edge_sdk.runtime import bundle_archive

    try:
        return bundle_archive.unpack_bundle(archive_path, os.path.join(destination, "bundle"))
    except bundle_archive.AgentError as exc:
        raise BundleError(str(exc)) from None


def _bad_manifest(manifest_path, what):
    return BundleError("{}: {}; rebuild the bundle with `edge-sdk build`".format(manifest_path, what))


def _check_name(manifest_path, name, what):
    """A file name from the manifest: a relative path that stays inside the bundle."""
    if not isinstance(name, str) or not name:
        raise _bad_manifest(manifest_path, "{} must be a file name, not {!r}".format(what, name))
    if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/") or "\x00" in name:
        raise _bad_manifest(manifest_path, "{} '{}' points outside the bundle".format(what, name))
    return name


#: manifest fields the runtime reads, and the JSON types they must have when present
FIELD_TYPES = (("files", dict), ("engine", dict), ("model_meta", dict), ("target_profile", dict),
               ("onnxruntime", dict), ("model", str), ("target", str), ("precision", (dict, str)),
               ("skeleton", dict), ("graph", dict), ("toolchain", dict), ("outputs", dict), ("input", dict),
               ("backend", str), ("created", str))


def _check_types(manifest_path, manifest):
    """Every manifest field the runtime reads has the type it expects: a wrong one is a clear error here,
    not a traceback later."""
    for key, kind in FIELD_TYPES:
        if manifest.get(key) is not None and not isinstance(manifest[key], kind):
            raise _bad_manifest(manifest_path, "`{}` has the wrong type ({})".format(key, type(manifest[key]).__name__))
    for name, entry in (manifest.get("files") or {}).items():
        _check_file_entry(manifest_path, name, entry)
    _check_input(manifest_path, manifest.get("model_meta") or {})


def _check_file_entry(manifest_path, name, entry):
    size = entry.get("size") if isinstance(entry, dict) else None
    digest = entry.get("sha256") if isinstance(entry, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or not isinstance(digest, str) or \
            len(digest) != 64:
        raise _bad_manifest(manifest_path, "files entry {!r} must be {{\"sha256\": 64 hex digits, \"size\": "
                                           "bytes}}, not {!r}".format(name, entry))


def _check_input(manifest_path, meta):
    """``model_meta.input``: what preprocessing allocates and computes from; bounded sizes, 3 channels."""
    if meta.get("input") is not None and not isinstance(meta["input"], dict):
        raise _bad_manifest(manifest_path, "`model_meta.input` must be an object")
    try:
        spec = ModelMeta.from_dict(meta).input
    except (TypeError, ValueError, AttributeError) as exc:
        raise _bad_manifest(manifest_path, "`model_meta` is not usable ({})".format(exc)) from None
    if not (0 < spec.width <= 16384 and 0 < spec.height <= 16384 and 0 < spec.batch <= 256
            and len(spec.mean) == 3 and len(spec.std) == 3):
        raise _bad_manifest(manifest_path, "`model_meta.input` is out of range ({}x{} batch {}, mean {}, std {})"
                            .format(spec.width, spec.height, spec.batch, spec.mean, spec.std))


def _loaded_files(manifest_path, manifest):
    """The files the runtime may load, each of which must be listed (so hashed) in ``files``."""
    engine = manifest.get("engine") or {}
    names = [("model", manifest.get("model", "model.onnx"))]
    names += [("engine." + key, engine[key]) for key in ("file", "source_model", "calib_cache")
              if engine.get(key) is not None]
    files = manifest.get("files") or {}
    for what, name in names:
        _check_name(manifest_path, name, what)
        if name not in files:
            raise _bad_manifest(manifest_path, "{} '{}' is not listed (with its sha256) in `files`".format(what, name))


def _read_manifest(path, directory):
    manifest_path = os.path.join(directory, MANIFEST_NAME)
    if not os.path.isfile(manifest_path):
        raise BundleError("{} has no {}; it is not a bundle (make one with `edge-sdk build`)"
                          .format(path, MANIFEST_NAME))
    try:
        with open(manifest_path) as handle:
            manifest = json.load(handle)
    except (ValueError, RecursionError) as exc:
        raise BundleError("{} is not valid JSON ({}); rebuild the bundle with `edge-sdk build`"
                          .format(manifest_path, exc)) from None
    if not isinstance(manifest, dict):
        raise _bad_manifest(manifest_path, "the manifest must be a JSON object")
    version = manifest.get("format")
    if not isinstance(version, int) or isinstance(version, bool) or manifest.get("kind") != BUNDLE_KIND:
        raise BundleError("{}: not an edge-sdk bundle manifest (format={!r}, kind={!r}); rebuild the bundle with "
                          "`edge-sdk build`".format(manifest_path, version, manifest.get("kind")))
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError("{}: bundle format {} is newer than this runtime understands ({}); update edge-sdk on "
                          "the device".format(manifest_path, version, BUNDLE_FORMAT_VERSION))
    _check_types(manifest_path, manifest)
    return manifest_path, manifest


def _verify_files(path, directory, manifest_path, manifest):
    """Every listed file: a regular file inside the bundle (no link out of it), of the listed size and sha256."""
    root = os.path.realpath(directory)
    for name in sorted(manifest["files"]):
        entry = manifest["files"][name]
        _check_name(manifest_path, name, "file entry")
        file_path = os.path.join(directory, name)
        real = os.path.realpath(file_path)
        if os.path.islink(file_path) or not real.startswith(root + os.sep):
            raise BundleError("bundle {}: '{}' is a link or leads outside the bundle; bundles hold regular files "
                              "only -- copy the bundle again or rebuild it".format(path, name))
        if not os.path.isfile(file_path):
            raise BundleError("bundle {} is missing '{}' (listed in the manifest); copy the whole bundle again"
                              .format(path, name))
        size = os.path.getsize(file_path)
        if size != entry["size"]:
            raise BundleError("bundle {}: '{}' is {} bytes, the manifest says {}; the copy is incomplete or the "
                              "file was changed -- copy the bundle again".format(path, name, size, entry["size"]))
        if sha256_file(file_path) != entry["sha256"]:
            raise BundleError("bundle {}: sha256 of '{}' does not match the manifest; the file was changed or "
                              "corrupted -- copy the bundle again or rebuild it".format(path, name))


def open_bundle(path: str, expected_target: Optional[str] = None, extract_to: Optional[str] = None) -> Bundle:
    """Open and verify a bundle directory or ``.tar.gz``; raises BundleError saying which file is wrong and
    what to do. ``expected_target``: refuse a bundle built for another device.

    An archive is unpacked into a new temporary directory (under ``extract_to`` when given, else $TMPDIR)
    that belongs to the returned bundle: call ``close()`` (or use ``with``) once the model is loaded. On
    any failure it is removed before the error is raised."""
    if not os.path.exists(path):
        raise BundleError("bundle {} does not exist; build one with `edge-sdk build MODEL.onnx --target T -o DIR`"
                          .format(path))
    if not os.path.isfile(path):
        return _open_directory(path, path, expected_target)
    if not (path.endswith(".tar.gz") or path.endswith(".tgz") or tarfile.is_tarfile(path)):
        raise BundleError("{} is neither a bundle directory nor a .tar.gz bundle".format(path))
    if extract_to and not os.path.isdir(extract_to):
        os.makedirs(extract_to)
    owned = tempfile.mkdtemp(prefix="edge-sdk-bundle-", dir=extract_to)
    try:
        return _open_directory(_unpack_archive(path, owned), path, expected_target, owned_dir=owned)
    except BaseException:
        shutil.rmtree(owned, ignore_errors=True)
        raise


def _open_directory(directory, path, expected_target, owned_dir=None):
    manifest_path, manifest = _read_manifest(path, directory)
    if expected_target is not None and manifest.get("target") != expected_target:
        raise BundleError("bundle {} was built for target '{}', but this device is '{}'; rebuild it with "
                          "`edge-sdk build MODEL.onnx --target {}`".format(path, manifest.get("target"),
                                                                          expected_target, expected_target))
    if not manifest.get("files"):
        raise _bad_manifest(manifest_path, "the manifest lists no files")
    _loaded_files(manifest_path, manifest)
    _verify_files(path, directory, manifest_path, manifest)
    return Bundle(directory, manifest, source=path, owned_dir=owned_dir)
