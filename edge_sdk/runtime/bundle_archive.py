"""Unpack a bundle ``.tar.gz`` safely: the bounded, header-checked unpack of the runtime and the flash agent.

Python 3.6 has no tarfile filters, so every check is made here on the headers before a byte is written: regular
files and directories only, paths inside the bundle, each file the size manifest.json says, a bounded total and
enough free disk; nothing is left behind on failure. :mod:`edge_sdk.runtime.bundle` opens archives with it.

The flash agent (``edge_sdk/deploy/agent.py``) runs on the device before anything is installed, read from stdin,
so it cannot import this module: it carries the same functions, and tests/test_flash_units.py checks that the two
copies stay the same code (annotations and the error class's name aside). Change both together.
Python 3.6 syntax, standard library only.
"""

import errno
import json
import os
import shutil
import tarfile
from typing import Any, Dict, List, Optional, Tuple


class AgentError(Exception):
    """A refused or damaged archive, with a message for the user; ``code``: refused, corrupt or disk (the flash
    agent's error codes; the name is the agent's, so both copies of the code below read the same)."""

    def __init__(self, message: str, code: str = "error") -> None:
        Exception.__init__(self, message)
        self.code = code


def remove_tree(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def safe_member_path(name: str, where: str) -> str:
    """A relative path inside the extraction dir; refuse absolute paths and '..' (zip/tar slip)."""
    norm = os.path.normpath(name)
    if name.startswith("/") or norm == ".." or norm.startswith(".." + os.sep) or os.path.isabs(norm):
        raise AgentError("{}: unsafe path {!r} in archive; refusing it".format(where, name), "corrupt")
    return norm


def zlib_error() -> type:
    import zlib

    return zlib.error


# Bounds on what a bundle archive may unpack to. Engines are hundreds of MB; a bundle beyond these is not one
# `edge-sdk build` made, and unpacking it anyway could fill the device's disk.
MAX_BUNDLE_BYTES = 8 << 30  # total of every file's size
MAX_MANIFEST_BYTES = 4 << 20
SIGNATURE_NAME = "manifest.sig"  # detached Ed25519 signature of manifest.json's bytes (edge_sdk/signing.py)
MAX_SIGNATURE_BYTES = 4096
MAX_BUNDLE_MEMBERS = 1000
DISK_MARGIN_BYTES = 32 << 20  # left free after unpacking, so logs and the health file can still be written


def human_bytes(n: float) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024:
            return "{:.0f} {}".format(size, unit) if unit == "bytes" else "{:.1f} {}".format(size, unit)
        size /= 1024
    return "{:.1f} TiB".format(size)


def refuse_archive(tar_path: str, why: str) -> "AgentError":
    """A bundle archive we will not unpack: its content is wrong, not the transfer (flashing again cannot help)."""
    return AgentError("bundle archive {} refused: {}; bundles made by `edge-sdk build` hold only regular files "
                      "listed in manifest.json -- rebuild the bundle".format(tar_path, why), "refused")


def check_member(member: tarfile.TarInfo, tar_path: str) -> str:
    """A regular file or directory with a safe relative path; never a link, device node, FIFO or sparse file."""
    rel = safe_member_path(member.name, "bundle")
    if member.issparse():
        raise refuse_archive(tar_path, "{!r} is a sparse file declaring {}".format(member.name,
                                                                                 human_bytes(member.size)))
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
        raise AgentError("bundle: {!r} is a link or special file; bundles hold regular files only"
                         .format(member.name), "refused")
    if member.mode & 0o7000:
        raise refuse_archive(tar_path, "{!r} has the setuid/setgid/sticky bits (mode {:o})".format(
            member.name, member.mode))
    return rel


def read_manifest_member(tf: tarfile.TarFile, member: tarfile.TarInfo, tar_path: str) -> Dict[str, Any]:
    if member.size > MAX_MANIFEST_BYTES:
        raise refuse_archive(tar_path, "manifest.json declares {} (at most {})".format(
            human_bytes(member.size), human_bytes(MAX_MANIFEST_BYTES)))
    try:
        manifest = json.loads(tf.extractfile(member).read(MAX_MANIFEST_BYTES + 1).decode("utf-8"))
    except ValueError:
        raise refuse_archive(tar_path, "its manifest.json is not valid JSON") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(isinstance(e, dict) for e in files.values()):
        return {}  # lists nothing: every other file is refused, and an empty bundle after the last header
    return files


def expected_size(files: Dict[str, Any], rel: str, member: tarfile.TarInfo, tar_path: str) -> int:
    """The manifest's size for ``rel``: a file it does not list, or one of another size, is refused before a
    byte of it is written (a compression bomb declares far more than the manifest)."""
    entry = files.get(rel)
    if entry is None:
        raise refuse_archive(tar_path, "{!r} is not listed in manifest.json".format(member.name))
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size != member.size:
        raise refuse_archive(tar_path, "{!r} unpacks to {} but manifest.json says {!r} bytes".format(
            member.name, human_bytes(member.size), size))
    return size


def plan_unpack(tf: tarfile.TarFile, tar_path: str,
                max_bytes: int) -> Tuple[List[Tuple[tarfile.TarInfo, str]], Optional[str], int]:
    """Read the archive's headers (never its data beyond manifest.json), checking each one as it comes:
    path, type, the running total against ``max_bytes`` and, once the manifest is seen, its size."""
    members, seen, total, files, prefix = [], set(), 0, None, None
    for member in tf:
        rel = check_member(member, tar_path)
        if len(members) >= MAX_BUNDLE_MEMBERS:
            raise refuse_archive(tar_path, "more than {} entries".format(MAX_BUNDLE_MEMBERS))
        if rel in seen:
            raise refuse_archive(tar_path, "{!r} appears twice".format(member.name))
        seen.add(rel)
        total += member.size if member.isfile() else 0
        if total > max_bytes:
            raise refuse_archive(tar_path, "it unpacks to more than {} (at {!r}, declaring {})".format(
                human_bytes(max_bytes), member.name, human_bytes(member.size)))
        if is_signature_member(member, rel):
            if member.size > MAX_SIGNATURE_BYTES:
                raise refuse_archive(tar_path, "{} declares {} (at most {})".format(
                    SIGNATURE_NAME, human_bytes(member.size), human_bytes(MAX_SIGNATURE_BYTES)))
        elif member.isfile() and rel.split(os.sep)[-1] == "manifest.json" and rel.count(os.sep) <= 1:
            if files is not None:
                raise refuse_archive(tar_path, "it holds more than one manifest.json")
            files = read_manifest_member(tf, member, tar_path)
            prefix = rel[:-len("manifest.json")]
            for earlier, earlier_rel in members:
                if earlier.isfile() and not is_signature_member(earlier, earlier_rel):
                    expected_size(files, bundle_name(earlier_rel, prefix, earlier, tar_path), earlier, tar_path)
        elif member.isfile() and files is not None:
            expected_size(files, bundle_name(rel, prefix, member, tar_path), member, tar_path)
        members.append((member, rel))
    if files is None:
        raise AgentError("bundle {} has no manifest.json; make it with `edge-sdk build`".format(tar_path),
                         "refused")
    if not files:
        raise refuse_archive(tar_path, "its manifest.json has no `files` table of {name: {sha256, size}}")
    return members, prefix, total


def is_signature_member(member: tarfile.TarInfo, rel: str) -> bool:
    """The detached signature of manifest.json (``edge-sdk sign``): the one file the manifest cannot list."""
    return member.isfile() and rel.split(os.sep)[-1] == SIGNATURE_NAME and rel.count(os.sep) <= 1


def bundle_name(rel: str, prefix: Optional[str], member: tarfile.TarInfo, tar_path: str) -> str:
    """A member's name relative to the bundle root (the directory holding manifest.json), '/'-separated."""
    if prefix and not rel.startswith(prefix):
        raise refuse_archive(tar_path, "{!r} is outside the bundle directory {!r}".format(member.name, prefix))
    return rel[len(prefix or ""):].replace(os.sep, "/")


def check_disk_space(where: str, needed: int) -> None:
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    if free < needed + DISK_MARGIN_BYTES:
        raise AgentError("not enough disk space under {} to unpack the bundle: {} needed (+{} kept free), {} "
                         "free; remove old versions (flash with --keep 1) or free space".format(
                             where, human_bytes(needed), human_bytes(DISK_MARGIN_BYTES), human_bytes(free)), "disk")


def write_member(tf: tarfile.TarFile, member: tarfile.TarInfo, target: str) -> None:
    """Copy one regular file out, never more bytes than its header declared, with plain 0644 permissions
    (no setuid/setgid bits, whatever the archive says)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    src = tf.extractfile(member)
    remaining = member.size
    with os.fdopen(fd, "wb") as f:
        while remaining > 0:
            block = src.read(min(remaining, 1 << 20))
            if not block:
                raise IOError("{}: archive ends {} bytes early".format(member.name, remaining))
            f.write(block)
            remaining -= len(block)


def unpack_bundle(tar_path: str, dest: str, max_bytes: int = MAX_BUNDLE_BYTES) -> str:
    """Unpack a bundle .tar.gz and return the dir with manifest.json (``dest``).

    Python 3.6 has no tarfile filters, so every check is done here, on the headers, before anything is written:
    regular files and directories only (no links, FIFOs, device nodes, sparse files), paths inside the bundle,
    each file's size equal to the manifest's, the total under ``max_bytes`` and the free disk space. Nothing is
    left behind on failure."""
    tmp = dest + ".unpack"
    remove_tree(tmp)
    os.makedirs(tmp)
    try:
        with tarfile.open(tar_path, "r:*") as tf:
            members, prefix, total = plan_unpack(tf, tar_path, max_bytes)
            check_disk_space(tmp, total)
            for member, rel in members:
                target = os.path.join(tmp, rel)
                if member.isdir():
                    if not os.path.isdir(target):
                        os.makedirs(target, 0o755)
                    continue
                if not os.path.isdir(os.path.dirname(target)):
                    os.makedirs(os.path.dirname(target), 0o755)
                write_member(tf, member, target)
    except AgentError:
        remove_tree(tmp)
        raise
    except (IOError, OSError) as exc:
        remove_tree(tmp)
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise AgentError("the disk under {} filled up while unpacking the bundle; free space or remove old "
                             "versions (flash with --keep 1)".format(os.path.dirname(dest)), "disk") from None
        raise AgentError("bundle archive {} is damaged ({}); the upload was cut or the file is corrupt, flash "
                         "again".format(tar_path, exc), "corrupt") from None
    except (tarfile.TarError, EOFError, zlib_error()) as exc:
        remove_tree(tmp)
        raise AgentError("bundle archive {} is damaged ({}); the upload was cut or the file is corrupt, flash "
                         "again".format(tar_path, exc), "corrupt") from None
    root = os.path.join(tmp, prefix) if prefix else tmp
    os.rename(root.rstrip(os.sep), dest)
    remove_tree(tmp)
    return dest
