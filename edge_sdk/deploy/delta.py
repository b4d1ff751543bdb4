"""Delta transfer: a release as content-addressed files, and the upload of only those a device lacks.

The device keeps every file of the versions it holds in ``store/<sha256>`` (see the agent). A release is the
runtime wheel plus each bundle file, named by its sha256, so a new model with the same runtime and calibration
sends only the model and the manifest. A file cut mid-upload stays in ``store/.partial/<sha256>`` and the next
attempt continues at its size; the device checks each file's sha256 before it enters the store.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_sdk.deploy import agent
from edge_sdk.deploy.release import Release
from edge_sdk.deploy.ssh import DeviceError, _why

BLOCK = 1 << 18  # bytes per SFTP write


@dataclass(frozen=True)
class Blob:
    sha256: str
    size: int
    path: Path


@dataclass
class ReleaseFiles:
    """The wheel and the bundle's files (path in the bundle -> blob), unpacked once per release."""

    wheel: Blob
    files: dict[str, Blob]

    @property
    def blobs(self) -> list[Blob]:
        unique = {self.wheel.sha256: self.wheel}
        unique.update((b.sha256, b) for b in self.files.values())
        return [unique[k] for k in sorted(unique)]

    def plan(self) -> dict:
        """The agent's --store-plan."""
        return {"wheel": [self.wheel.sha256, self.wheel.path.name],
                "files": {rel: b.sha256 for rel, b in sorted(self.files.items())}}


def _blob(path: Path) -> Blob:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return Blob(digest.hexdigest(), path.stat().st_size, path)


_cache: dict[tuple, ReleaseFiles] = {}


def release_files(release: Release) -> ReleaseFiles:
    """Unpack the release's bundle archive (the agent's own bounded unpack) into a scratch dir kept until exit."""
    key = (str(release.bundle_tar), release.bundle_tar.stat().st_mtime_ns, str(release.wheel))
    if key not in _cache:
        scratch = tempfile.mkdtemp(prefix="edge-sdk-delta-")
        atexit.register(shutil.rmtree, scratch, True)
        bundle = Path(agent.unpack_bundle(str(release.bundle_tar), scratch + "/bundle"))
        files = {p.relative_to(bundle).as_posix(): _blob(p) for p in sorted(bundle.rglob("*")) if p.is_file()}
        _cache[key] = ReleaseFiles(_blob(Path(release.wheel)), files)
    return _cache[key]


async def upload_missing(conn, store_dir: str, blobs: list[Blob], have: set[str], partial: dict[str, int],
                         on_progress: Callable[[int], None], note: Callable[[str], None] | None = None) -> int:
    """Upload each blob the device lacks to ``store/.partial/<sha256>``, resuming at what it already holds.
    Returns the bytes sent. A dropped connection raises DeviceError(kind="lost")."""
    import asyncssh

    sent = 0
    try:
        async with conn.start_sftp_client() as sftp:
            for blob in blobs:
                if blob.sha256 in have:
                    continue
                offset = partial.get(blob.sha256, 0)
                if offset and note:
                    note("resuming {} at {:.1f} MB".format(blob.path.name, offset / 1e6))
                remote = "{}/.partial/{}".format(store_dir, blob.sha256)
                async with sftp.open(remote, "r+b" if offset else "wb") as dst:
                    with open(blob.path, "rb") as src:
                        src.seek(offset)
                        position = offset
                        for block in iter(lambda: src.read(BLOCK), b""):
                            await dst.write(block, position)
                            position += len(block)
                            sent += len(block)
                            on_progress(sent)
    except (asyncssh.Error, OSError) as exc:
        raise DeviceError("connection lost during upload: {}".format(_why(exc)), "lost") from None
    return sent
