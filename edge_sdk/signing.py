"""Ed25519 signing of bundles: key generation, `manifest.sig`, public key files (host side, `cryptography`).

A bundle's manifest.json already holds the sha256 and size of every file, so one signature over its exact
bytes covers the whole bundle: a changed file fails its hash, and a manifest re-hashed to match fails the
signature. The signature is a detached JSON file next to it (``manifest.sig``: algorithm, key id, base64
signature) that the manifest cannot list. The device verifies it with the agent's own standard-library
Ed25519 code (``edge_sdk.deploy.agent.ed25519_verify``; see docs/flash.md for why not a library there).

Files: ``signing.key`` (PKCS#8 PEM, mode 0600, never leaves the build machine) and ``signing.pub`` (one
line: ``edge-sdk-ed25519 BASE64 KEY_ID``, the form the fleet file's ``trusted_keys`` point at).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from edge_sdk.deploy import agent
from edge_sdk.errors import BundleError, ConfigError

PUBLIC_PREFIX = "edge-sdk-ed25519"
SIGNATURE_NAME = agent.SIGNATURE_NAME
MAX_KEY_FILE_BYTES = 16 << 10


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise ConfigError("signing needs the `cryptography` package: pip install 'edge-sdk[host]'") from None
    return serialization, ed25519


def key_id(public: bytes) -> str:
    """16 hex digits naming a public key (the agent computes the same: ``agent.key_id_of``)."""
    return agent.key_id_of(public)


def public_key_line(public: bytes) -> str:
    return "{} {} {}\n".format(PUBLIC_PREFIX, base64.b64encode(public).decode("ascii"), key_id(public))


def generate_keys(out_dir: str | os.PathLike, name: str = "signing") -> tuple[Path, Path, str]:
    """Write ``NAME.key`` (0600) and ``NAME.pub`` in ``out_dir``; refuse to overwrite either. Returns
    (private path, public path, key id)."""
    serialization, ed25519 = _crypto()
    out = Path(out_dir)
    private_path, public_path = out / (name + ".key"), out / (name + ".pub")
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise ConfigError("{} already exists; refusing to overwrite a key (move it away first)".format(path))
    out.mkdir(parents=True, exist_ok=True)
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    public_path.write_text(public_key_line(public))
    return private_path, public_path, key_id(public)


def load_private_key(path: str | os.PathLike):
    serialization, ed25519 = _crypto()
    path = Path(path)
    if not path.is_file():
        raise ConfigError("signing key {} not found; make one with `edge-sdk keys generate -o keys/`".format(path))
    if path.stat().st_mode & 0o077:
        raise ConfigError("signing key {} is readable by other users (mode {:o}); chmod 600 it".format(
            path, path.stat().st_mode & 0o777))
    data = path.read_bytes()[:MAX_KEY_FILE_BYTES + 1]
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError("{} is not an unencrypted PEM private key".format(path)) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError("{} is not an Ed25519 key; make one with `edge-sdk keys generate`".format(path))
    return key


def load_public_key(spec: str | os.PathLike) -> bytes:
    """A ``.pub`` file written by `keys generate` -> the 32 raw bytes (checked to be a curve point)."""
    path = Path(spec)
    if not path.is_file():
        raise ConfigError("public key file {} not found".format(path))
    fields = path.read_text(errors="replace")[:MAX_KEY_FILE_BYTES].split()
    if len(fields) < 2 or fields[0] != PUBLIC_PREFIX:
        raise ConfigError("{}: not an edge-sdk public key (expected `{} BASE64 KEY_ID`)".format(path, PUBLIC_PREFIX))
    try:
        return agent.decode_public_key(fields[1], str(path))
    except agent.AgentError as exc:
        raise ConfigError(str(exc)) from None


def key_id_or_file(spec: str) -> str:
    """A revoked key given as its 16-hex id or as its ``.pub`` file -> the id."""
    if agent.KEY_ID_RE.match(spec):
        return spec
    return key_id(load_public_key(spec))


def signature_for(manifest_bytes: bytes, private) -> dict:
    _serialization, _ed25519 = _crypto()
    public = private.public_key().public_bytes(_serialization.Encoding.Raw, _serialization.PublicFormat.Raw)
    return {"format": "edge-sdk-signature", "version": 1, "algorithm": "ed25519", "key_id": key_id(public),
            "signature": base64.b64encode(private.sign(manifest_bytes)).decode("ascii")}


def sign_directory(bundle_dir: Path, private) -> str:
    """Verify the bundle's hashes, then write manifest.sig (atomically) over its manifest.json bytes."""
    try:
        agent.verify_bundle(str(bundle_dir))
    except agent.AgentError as exc:
        raise BundleError("bundle {}: {}; not signing it".format(bundle_dir, exc)) from None
    sig = signature_for((bundle_dir / "manifest.json").read_bytes(), private)
    tmp = bundle_dir / (SIGNATURE_NAME + ".tmp")
    tmp.write_text(json.dumps(sig, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, bundle_dir / SIGNATURE_NAME)
    return sig["key_id"]


def _repack(bundle_dir: Path, archive: Path) -> None:
    """Rewrite ``archive`` from ``bundle_dir`` as `edge-sdk build` writes it (manifest.json first)."""
    tmp = archive.with_name(archive.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(str(bundle_dir), arcname=bundle_dir.name, recursive=False)
        names = sorted(os.listdir(bundle_dir), key=lambda n: (n != "manifest.json", n))
        for name in names:
            tar.add(str(bundle_dir / name), arcname="{}/{}".format(bundle_dir.name, name))
    os.replace(tmp, archive)


def sign_bundle(bundle: str | os.PathLike, key_path: str | os.PathLike) -> str:
    """Sign a bundle directory (and its sibling ``DIR.tar.gz`` if there is one) or a bundle ``.tar.gz``.
    Returns the key id."""
    private = load_private_key(key_path)
    bundle = Path(bundle)
    if bundle.is_dir():
        kid = sign_directory(bundle, private)
        sibling = bundle.parent / (bundle.name + ".tar.gz")
        if sibling.is_file():
            _repack(bundle, sibling)
        return kid
    if not bundle.is_file() or not tarfile.is_tarfile(bundle):
        raise BundleError("{}: not a bundle (a directory with manifest.json or its .tar.gz)".format(bundle))
    scratch = Path(tempfile.mkdtemp(prefix=".sign-", dir=str(bundle.parent)))
    try:
        name = bundle.name[:-len(".tar.gz")] if bundle.name.endswith(".tar.gz") else bundle.stem
        try:
            unpacked = Path(agent.unpack_bundle(str(bundle), str(scratch / name)))
        except agent.AgentError as exc:
            raise BundleError("bundle {}: {}".format(bundle, exc)) from None
        kid = sign_directory(unpacked, private)
        _repack(unpacked, bundle)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return kid
