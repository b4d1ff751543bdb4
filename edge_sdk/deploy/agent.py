#!/usr/bin/env python3
"""edge-sdk device agent: the device-side half of `edge-sdk flash`.

The host sends this file over SSH on stdin (``python3 - --root R COMMAND ...``) and reads one JSON object
per line from its stdout. It must run on every Jetson in the field, so: Python 3.6 syntax, standard library
only, no import of edge_sdk (it is not installed yet when this runs).

Layout under --root (default /opt/edge-sdk)::

    versions/<v>/site/          the runtime wheel, installed (unzipped, RECORD hashes verified)
    versions/<v>/bundle/        the bundle, unpacked, every sha256 from manifest.json verified
    versions/<v>/release.json   what this version is (runtime version, target, precision, installed at)
    versions/<v>/service.json   how to start it (command, mode, health file)
    current -> versions/<v>     switched atomically (symlink to a temporary name + rename)
    history.json                versions that came up healthy, oldest first (rollback walks back along it)
    incoming/<v>/               legacy uploads (install --wheel/--bundle): *.part files renamed when complete
    store/<sha256>              content-addressed files (wheel, each bundle file), verified before they enter
    store/.partial/<sha256>     uploads in progress: the host resumes them at their size
    run/                        health.json, runtime.pid, runtime.log
    deps/site/                  on-device dependencies installed by us when the device lacks them

Commands: info, prepare, install, rollback, stop.
"""

import argparse
import base64
import csv
import errno
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import zipfile

AGENT_VERSION = 1
HEALTH_FILE = "run/health.json"
PID_FILE = "run/runtime.pid"
LOG_FILE = "run/runtime.log"
DEFAULT_COMMAND = ("{python} -m edge_sdk run --bundle {bundle} --health-file {health_file} --device-id {device_id} "
                   "{run_args}")
# Modules the runtime imports -> (pip requirement or None when pip is the wrong way to get it, hint).
RUNTIME_DEPS = [
    ("numpy", "numpy", "sudo apt-get install python3-numpy"),
    ("cv2", None, "JetPack ships OpenCV; on other systems: sudo apt-get install python3-opencv"),
    ("paho.mqtt.client", "paho-mqtt", "python3 -m pip install --user paho-mqtt"),
]

# Device-tree model substrings per target (case-insensitive); extended by hints from targets/*.toml.
KNOWN_TARGETS = {
    "jetson-nano": ["Jetson Nano", "jetson-nano"],
    "jetson-tx2": ["Jetson TX2", "quill", "storm", "lightning"],
    "jetson-tx2-nx": ["Jetson TX2 NX", "lanai"],
    "jetson-xavier-nx": ["Jetson Xavier NX", "jetson-xavier-nx"],
    "jetson-agx-xavier": ["Jetson AGX Xavier", "Jetson-AGX", "jetson-xavier"],
    "jetson-orin-nano": ["Jetson Orin Nano"],
    "jetson-orin-nx": ["Jetson Orin NX"],
    "jetson-agx-orin": ["Jetson AGX Orin"],
    "jetson-thor": ["Jetson AGX Thor", "Jetson Thor"],
}
ANY_DEVICE_TARGETS = ("cpu", "any", "x86_64", "generic")


class AgentError(Exception):
    """A refusal with a message for the user; reported as {"event": "result", "ok": false, ...}."""

    def __init__(self, message, code="error"):
        Exception.__init__(self, message)
        self.code = code


def emit(event, **fields):
    """One JSON line to the host. If the host went away we carry on: a half-done switch is worse."""
    fields["event"] = event
    try:
        sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")
        sys.stdout.flush()
    except (IOError, OSError, ValueError):
        pass


def step(name, message=""):
    emit("step", step=name, message=message)


# ----------------------------------------------------------------------------------------------- files


def read_json(path, default=None):
    try:
        with open(path, "r") as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return default


def write_json_atomic(path, data):
    tmp = "{}.tmp-{}".format(path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_tree(path):
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def safe_member_path(name, where):
    """A relative path inside the extraction dir; refuse absolute paths and '..' (zip/tar slip)."""
    norm = os.path.normpath(name)
    if name.startswith("/") or norm == ".." or norm.startswith(".." + os.sep) or os.path.isabs(norm):
        raise AgentError("{}: unsafe path {!r} in archive; refusing it".format(where, name), "corrupt")
    return norm


class Layout(object):
    def __init__(self, root, sysroot):
        self.root = os.path.abspath(root)
        self.sysroot = os.path.abspath(sysroot)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def version_dir(self, version):
        return self.path("versions", version)

    def current_version(self):
        link = self.path("current")
        if not os.path.islink(link):
            return None
        return os.path.basename(os.readlink(link).rstrip("/"))

    def history(self):
        return list((read_json(self.path("history.json"), {}) or {}).get("versions", []))

    def set_history(self, versions):
        write_json_atomic(self.path("history.json"), {"versions": versions})

    def versions_on_disk(self):
        base = self.path("versions")
        if not os.path.isdir(base):
            return []
        return sorted(v for v in os.listdir(base) if not v.startswith(".")
                      and os.path.isfile(os.path.join(base, v, "release.json")))

    def switch_current(self, version):
        """Point `current` at versions/<version> atomically: a reader sees the old or the new, never neither."""
        tmp = self.path(".current.tmp-{}".format(os.getpid()))
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.join("versions", version), tmp)
        os.rename(tmp, self.path("current"))
        fsync_dir(self.root)

    def clear_current(self):
        if os.path.lexists(self.path("current")):
            os.unlink(self.path("current"))


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Lock(object):
    """One flash/rollback at a time per device root."""

    def __init__(self, layout):
        self.path = layout.path(".lock")
        self.fd = None

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError):
            os.close(self.fd)
            raise AgentError("another edge-sdk flash or rollback is running on this device ({}); wait for it "
                             "to finish".format(self.path), "busy") from None
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


# --------------------------------------------------------------------------------------------- target


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\x00", "").strip()
    except (IOError, OSError):
        return None


def detect_device(layout):
    """What this device says it is: device-tree model, L4T release line, architecture."""
    model = read_text(os.path.join(layout.sysroot, "proc/device-tree/model"))
    tegra = read_text(os.path.join(layout.sysroot, "etc/nv_tegra_release"))
    l4t = None
    if tegra:
        first = tegra.splitlines()[0]
        # "# R32 (release), REVISION: 7.1, GCID: ..., BOARD: t186ref, EABI: aarch64, DATE: ..."
        parts = first.replace("#", "").split(",")
        try:
            major = parts[0].strip().split()[0].lstrip("R")
            minor = parts[1].split(":")[1].strip()
            l4t = "{}.{}".format(major, minor)
        except (IndexError, ValueError):
            l4t = first
    driver = read_text(os.path.join(layout.sysroot, "proc/driver/nvidia/version"))
    return {"model": model, "l4t": l4t, "nv_tegra_release": tegra.splitlines()[0] if tegra else None,
            "nvidia_driver": driver.splitlines()[0] if driver else None,
            "tensorrt": detect_tensorrt(layout.sysroot),
            "machine": os.uname()[4], "hostname": socket.gethostname()}


def detect_tensorrt(sysroot):
    """The installed TensorRT version from the dpkg database (JetPack installs ``libnvinfer8``/``libnvinfer10``
    /``tensorrt`` packages), e.g. '10.3.0.30'; None when there is none."""
    status = read_text(os.path.join(sysroot, "var/lib/dpkg/status")) or ""
    for paragraph in status.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in paragraph.splitlines() if ": " in line and line[0] != " ")
        name = fields.get("Package", "")
        if (name == "tensorrt" or (name.startswith("libnvinfer") and name[10:].isdigit())) \
                and fields.get("Status", "install ok installed").endswith(" installed"):
            version = fields.get("Version", "").split("-")[0].split(":")[-1]
            if version[:1].isdigit():
                return version
    return None


def hints_from_manifest(manifest):
    """Detection hints from the target profile the bundle carries (``edge-sdk build`` writes it)."""
    profile = manifest.get("target_profile") or {}
    return {"model": list(profile.get("detect_model") or []),
            "tegra_release": list(profile.get("detect_tegra_release") or []),
            "l4t_major": list(profile.get("detect_l4t_major") or []), "kind": profile.get("kind"),
            "software": manifest.get("software"), "stacks": list(profile.get("stacks") or [])}


def merge_hints(*many):
    out = {"model": [], "tegra_release": [], "l4t_major": [], "kind": None, "others": {}}
    for hints in many:
        for key in ("model", "tegra_release", "l4t_major"):
            out[key] += [v for v in (hints or {}).get(key) or [] if v not in out[key]]
        out["model"] += [v for v in (hints or {}).get("device_tree_model") or [] if v not in out["model"]]
        out["kind"] = out["kind"] or (hints or {}).get("kind")
        out["others"].update((hints or {}).get("others") or {})
        out["software"] = out.get("software") or (hints or {}).get("software")
        out["stacks"] = out.get("stacks") or (hints or {}).get("stacks") or []
    return out


def check_target(target, hints, device):
    """Refuse a bundle made for another device. Returns a short description of the match.

    ``hints``: the target profile's ``detect_model`` substrings of /proc/device-tree/model and
    ``detect_l4t_major`` (32, 35...: the R32 of /etc/nv_tegra_release), plus ``others`` (the patterns of every
    other target, so that the longest match wins: 'Orin Nano' is not a 'Nano')."""
    if not target:
        raise AgentError("the bundle's manifest.json names no target; rebuild it with `edge-sdk build --target`",
                         "wrong-target")
    hints = merge_hints(hints)
    kind = hints.get("kind")
    if target in ANY_DEVICE_TARGETS or kind == "cpu":
        return "target {!r} runs on any device".format(target)
    if kind == "discrete-gpu":
        if device.get("model") and "jetson" in device["model"].lower():
            raise AgentError("wrong target: the bundle is for {!r} (a discrete GPU) but this device is {!r}; "
                             "build a bundle with --target for this device".format(target, device["model"]),
                             "wrong-target")
        if not device.get("nvidia_driver"):
            raise AgentError("the bundle is for {!r} (a discrete NVIDIA GPU) but this machine has no NVIDIA "
                             "driver (/proc/driver/nvidia/version); build with --target cpu for it".format(target),
                             "wrong-target")
        return "NVIDIA driver found for target {!r}".format(target)
    table = dict(KNOWN_TARGETS)
    table.update(hints["others"])
    patterns = hints["model"] + [p for p in table.get(target, []) if p not in hints["model"]]
    if not patterns:
        raise AgentError("target {!r} is unknown to this agent and its profile has no [detect] "
                         "device_tree_model patterns, so the device cannot be checked; add them to targets/{}.toml "
                         "or pass --skip-target-check".format(target, target), "wrong-target")
    model = device.get("model")
    if not model:
        raise AgentError("bundle is for {!r} but this device has no {} (not a Jetson?); flash a bundle built "
                         "for this device, e.g. --target cpu, or pass --skip-target-check"
                         .format(target, "/proc/device-tree/model"), "wrong-target")
    lowered = model.lower()
    matched = [p for p in patterns if p.lower() in lowered]
    best_other = None
    for other, other_patterns in table.items():
        if other == target:
            continue
        for p in other_patterns:
            if p.lower() in lowered and (best_other is None or len(p) > len(best_other[1])):
                best_other = (other, p)
    if not matched or (best_other and len(best_other[1]) > max(len(p) for p in matched)):
        guess = " (looks like {})".format(best_other[0]) if best_other else ""
        raise AgentError("wrong target: the bundle is for {!r} but this device is {!r}{}; build a bundle with "
                         "--target for this device".format(target, model, guess), "wrong-target")
    majors = [str(m).lstrip("R").split(".")[0] for m in hints["l4t_major"] + hints["tegra_release"]]
    if majors and device.get("l4t"):
        major = device["l4t"].split(".")[0]
        if major not in majors:
            raise AgentError("wrong software: the bundle for {!r} needs L4T R{} but this device runs R{} ({}); "
                             "upgrade JetPack or build for this release".format(
                                 target, "/R".join(majors), device["l4t"], device.get("nv_tegra_release")),
                             "wrong-target")
    software = check_software(target, hints.get("software"), hints.get("stacks"), device)
    return "device {!r} matches target {!r}{}".format(model, target, software)


def same_release(wanted, actual):
    """'R36.4' vs '36.4.3' / '10.3' vs '10.3.0.30': the components the bundle states must match."""
    want = str(wanted or "").lstrip("R").split(".")
    have = str(actual or "").lstrip("R").split(".")
    return len(have) >= len(want) and have[:len(want)] == want


def check_software(target, software, stacks, device):
    """Refuse a device whose L4T or TensorRT is not the JetPack release the bundle was built for (an engine,
    or a bundle's choice of Q/DQ vs calibration cache, only holds for that TensorRT); name the --jetpack that
    fits the device when the profile lists one."""
    if not software:
        return ""  # a bundle from before stacks were recorded: the L4T major check above is all there is
    problems = []
    if software.get("l4t") and device.get("l4t") and not same_release(software["l4t"], device["l4t"]):
        problems.append("L4T R{} (needs {})".format(device["l4t"], software["l4t"]))
    if software.get("tensorrt") and device.get("tensorrt") and not same_release(software["tensorrt"],
                                                                                device["tensorrt"]):
        problems.append("TensorRT {} (needs {})".format(device["tensorrt"], software["tensorrt"]))
    built_for = "JetPack {} (TensorRT {})".format(software.get("jetpack") or "?", software.get("tensorrt"))
    if problems:
        fits = [s.get("jetpack") for s in stacks or [] if s.get("jetpack")
                and (not s.get("l4t") or not device.get("l4t") or same_release(s["l4t"], device["l4t"]))
                and (not device.get("tensorrt") or same_release(s.get("tensorrt"), device["tensorrt"]))]
        todo = ("rebuild it with `edge-sdk build --target {} --jetpack {}`".format(target, fits[-1]) if fits else
                "upgrade the device to {} or rebuild the bundle for the release it runs".format(built_for))
        raise AgentError("wrong software: the bundle for {!r} was built for {} but this device runs {}; {}".format(
            target, built_for, ", ".join(problems), todo), "wrong-target")
    return ", built for {}".format(built_for)


# ---------------------------------------------------------------------------------------- wheel + bundle


def install_wheel(wheel_path, site_dir):
    """Install a pure-Python wheel by unzipping it into site_dir, verifying every hash in its RECORD.

    This is what `pip install --no-deps --target` does for a pure wheel, without needing pip on the device
    (many JetPack images have none)."""
    try:
        zf = zipfile.ZipFile(wheel_path)
    except (zipfile.BadZipfile, IOError, OSError) as exc:
        raise AgentError("runtime wheel {} is not a valid zip ({}); the upload was damaged, flash again"
                         .format(wheel_path, exc), "corrupt") from None
    with zf:
        names = zf.namelist()
        record_name = [n for n in names if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
        wheel_meta = [n for n in names if n.endswith(".dist-info/WHEEL") and n.count("/") == 1]
        if not record_name or not wheel_meta:
            raise AgentError("{} is not a wheel (no .dist-info/RECORD)".format(wheel_path), "corrupt")
        dist = record_name[0].split("/")[0].split("-", 1)[0]
        if dist != "edge_sdk_runtime":  # the host package (edge_sdk) needs Python 3.10 and host libraries
            raise AgentError("{} is the {} wheel; devices take only the runtime wheel edge_sdk_runtime-*.whl "
                             "(`pip wheel --no-deps runtime/`)".format(wheel_path, dist), "corrupt")
        meta = zf.read(wheel_meta[0]).decode("utf-8")
        if "Root-Is-Purelib: true" not in meta:
            raise AgentError("runtime wheel {} is not pure Python; build it with `pip wheel --no-deps runtime/`"
                             .format(wheel_path), "corrupt")
        records = {}
        for row in csv.reader(io.StringIO(zf.read(record_name[0]).decode("utf-8"))):
            if len(row) >= 2 and row[1]:
                records[row[0]] = row[1]
        data_prefix = record_name[0].split("/")[0].replace(".dist-info", ".data") + "/"
        for name in names:
            if name.endswith("/"):
                continue
            payload = zf.read(name)
            expected = records.get(name)
            if expected:
                algo, _, value = expected.partition("=")
                digest = base64.urlsafe_b64encode(hashlib.new(algo, payload).digest()).rstrip(b"=").decode()
                if digest != value:
                    raise AgentError("runtime wheel: {} does not match its RECORD hash; the upload was damaged, "
                                     "flash again".format(name), "corrupt")
            elif name != record_name[0]:
                raise AgentError("runtime wheel: {} is not listed in RECORD".format(name), "corrupt")
            rel = name
            if name.startswith(data_prefix):
                kind, _, rest = name[len(data_prefix):].partition("/")
                if kind not in ("purelib", "platlib"):
                    continue  # scripts/headers/data: the service runs `python -m edge_sdk`
                rel = rest
            dest = os.path.join(site_dir, safe_member_path(rel, "runtime wheel"))
            if not os.path.isdir(os.path.dirname(dest)):
                os.makedirs(os.path.dirname(dest))
            with open(dest, "wb") as f:
                f.write(payload)
    return os.path.basename(wheel_path)


# Bounds on what a bundle archive may unpack to. Engines are hundreds of MB; a bundle beyond these is not one
# `edge-sdk build` made, and unpacking it anyway could fill the device's disk.
MAX_BUNDLE_BYTES = 8 << 30  # total of every file's size
MAX_MANIFEST_BYTES = 4 << 20
SIGNATURE_NAME = "manifest.sig"  # detached Ed25519 signature of manifest.json's bytes (edge_sdk/signing.py)
MAX_SIGNATURE_BYTES = 4096
MAX_BUNDLE_MEMBERS = 1000
DISK_MARGIN_BYTES = 32 << 20  # left free after unpacking, so logs and the health file can still be written


def human_bytes(n):
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024:
            return "{:.0f} {}".format(size, unit) if unit == "bytes" else "{:.1f} {}".format(size, unit)
        size /= 1024
    return "{:.1f} TiB".format(size)


def refuse_archive(tar_path, why):
    """A bundle archive we will not unpack: its content is wrong, not the transfer (flashing again cannot help)."""
    return AgentError("bundle archive {} refused: {}; bundles made by `edge-sdk build` hold only regular files "
                      "listed in manifest.json -- rebuild the bundle".format(tar_path, why), "refused")


def check_member(member, tar_path):
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


def read_manifest_member(tf, member, tar_path):
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


def expected_size(files, rel, member, tar_path):
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


def plan_unpack(tf, tar_path, max_bytes):
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


def is_signature_member(member, rel):
    """The detached signature of manifest.json (``edge-sdk sign``): the one file the manifest cannot list."""
    return member.isfile() and rel.split(os.sep)[-1] == SIGNATURE_NAME and rel.count(os.sep) <= 1


def bundle_name(rel, prefix, member, tar_path):
    """A member's name relative to the bundle root (the directory holding manifest.json), '/'-separated."""
    if prefix and not rel.startswith(prefix):
        raise refuse_archive(tar_path, "{!r} is outside the bundle directory {!r}".format(member.name, prefix))
    return rel[len(prefix or ""):].replace(os.sep, "/")


def check_disk_space(where, needed):
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    if free < needed + DISK_MARGIN_BYTES:
        raise AgentError("not enough disk space under {} to unpack the bundle: {} needed (+{} kept free), {} "
                         "free; remove old versions (flash with --keep 1) or free space".format(
                             where, human_bytes(needed), human_bytes(DISK_MARGIN_BYTES), human_bytes(free)), "disk")


def write_member(tf, member, target):
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


def unpack_bundle(tar_path, dest, max_bytes=MAX_BUNDLE_BYTES):
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


def bundle_has_engine(manifest):
    return bool((manifest.get("engine") or {}).get("file")) or any(
        rel.endswith((".plan", ".engine")) for rel in manifest.get("files", {}))


def precision_of(manifest):
    precision = manifest.get("precision")
    return precision.get("used") if isinstance(precision, dict) else precision


def zlib_error():
    import zlib

    return zlib.error


def referenced_files(manifest):
    """The files manifest.json tells the runtime to load: each must be listed (and so hashed) too."""
    engine = manifest.get("engine") if isinstance(manifest.get("engine"), dict) else {}
    names = [manifest.get("model")] + [engine.get(k) for k in ("file", "source_model", "calib_cache")]
    return [n if isinstance(n, str) else repr(n) for n in names if n is not None]


def verify_bundle(bundle_dir):
    """Check every file against manifest.json (size and sha256); refuse missing or unlisted files."""
    manifest = read_json(os.path.join(bundle_dir, "manifest.json"))
    if not isinstance(manifest, dict):
        raise AgentError("bundle manifest.json is not valid JSON", "corrupt")
    fmt, fmt_version = manifest.get("format"), manifest.get("format_version", 1)
    if fmt not in (1, "edge-sdk-bundle") or not isinstance(fmt_version, int) or fmt_version > 1:
        raise AgentError("bundle format {!r} version {!r} is not supported by this agent (knows edge-sdk-bundle "
                         "1); update edge-sdk".format(fmt, fmt_version), "corrupt")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files or not all(isinstance(e, dict) for e in files.values()):
        raise AgentError("bundle manifest.json lists no files (expected `files`: {name: {sha256, size}})",
                         "corrupt")
    for rel in referenced_files(manifest):
        if rel not in files:
            raise AgentError("bundle manifest.json names {!r} as a file the runtime loads but does not list and "
                             "hash it; rebuild the bundle with `edge-sdk build`".format(rel), "corrupt")
    present = set()
    for dirpath, _dirs, names in os.walk(bundle_dir):
        for name in names:
            rel = os.path.relpath(os.path.join(dirpath, name), bundle_dir).replace(os.sep, "/")
            if rel not in ("manifest.json", SIGNATURE_NAME):
                present.add(rel)
    problems = []
    for rel, entry in sorted(files.items()):
        path = os.path.join(bundle_dir, safe_member_path(rel, "manifest.json"))
        if rel not in present:
            problems.append("{}: missing".format(rel))
            continue
        size = os.path.getsize(path)
        if "size" in entry and size != entry["size"]:
            problems.append("{}: {} bytes, manifest says {}".format(rel, size, entry["size"]))
            continue
        if sha256_file(path) != entry.get("sha256"):
            problems.append("{}: sha256 mismatch".format(rel))
    for rel in sorted(present - set(files)):
        problems.append("{}: not listed in manifest.json".format(rel))
    if problems:
        raise AgentError("bundle verification failed, nothing was switched: {}; rebuild the bundle or flash "
                         "again if the upload was damaged".format("; ".join(problems)), "corrupt")
    return manifest


# ----------------------------------------------------------------------------------------------- signatures

# Ed25519 verification (RFC 8032, section 6 reference arithmetic), verification only: no secret ever reaches
# the device. Pure Python because the agent is one standard-library file and JetPack 4.6's Python 3.6 with its
# pip 9 cannot install the manylinux2014 wheels of `cryptography` or PyNaCl; the host signs with `cryptography`
# and tests/test_signing.py checks this code against it.
ED_P = 2 ** 255 - 19
ED_Q = 2 ** 252 + 27742317777372353535851937790883648493  # the group order (L)
ED_D = -121665 * pow(121666, ED_P - 2, ED_P) % ED_P
ED_SQRT_M1 = pow(2, (ED_P - 1) // 4, ED_P)


def ed_add(a, b):
    """Add two points in extended coordinates (X, Y, Z, T)."""
    p = ED_P
    aa, bb = (a[1] - a[0]) * (b[1] - b[0]) % p, (a[1] + a[0]) * (b[1] + b[0]) % p
    cc, dd = 2 * a[3] * b[3] * ED_D % p, 2 * a[2] * b[2] % p
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def ed_mul(scalar, point):
    result = (0, 1, 1, 0)
    while scalar > 0:
        if scalar & 1:
            result = ed_add(result, point)
        point = ed_add(point, point)
        scalar >>= 1
    return result


def ed_equal(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % ED_P == 0 and (a[1] * b[2] - b[1] * a[2]) % ED_P == 0


def ed_recover_x(y, sign):
    if y >= ED_P:
        return None
    x2 = (y * y - 1) * pow(ED_D * y * y + 1, ED_P - 2, ED_P) % ED_P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (ED_P + 3) // 8, ED_P)
    if (x * x - x2) % ED_P != 0:
        x = x * ED_SQRT_M1 % ED_P
    if (x * x - x2) % ED_P != 0:
        return None
    if (x & 1) != sign:
        x = ED_P - x
    return x


def ed_decompress(data):
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = ed_recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % ED_P)


ED_GY = 4 * pow(5, ED_P - 2, ED_P) % ED_P
ED_G = (ed_recover_x(ED_GY, 0), ED_GY, 1, ed_recover_x(ED_GY, 0) * ED_GY % ED_P)


def ed25519_verify(public, message, signature):
    """True when ``signature`` (64 bytes) is ``public``'s (32 bytes) Ed25519 signature of ``message``."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = ed_decompress(public)
    r = ed_decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= ED_Q:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % ED_Q
    return ed_equal(ed_mul(s, ED_G), ed_add(r, ed_mul(h, a)))


KEY_ID_RE = re.compile(r"\A[0-9a-f]{16}\Z")
KEYRING_FILE = "keys/trusted.json"


def key_id_of(public):
    """The id of a public key: the first 16 hex digits of the sha256 of its 32 raw bytes."""
    return hashlib.sha256(public).hexdigest()[:16]


def decode_public_key(text, where):
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True) if isinstance(text, str) else b""
    except (ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) != 32 or ed_decompress(raw) is None:
        raise AgentError("{}: not an Ed25519 public key (32 bytes, base64)".format(where), "config")
    return raw


def read_keyring(layout):
    """The device's trusted keys {id: public bytes} and revoked ids; a damaged keyring trusts nothing."""
    data = read_json(layout.path(KEYRING_FILE), None)
    keys, revoked = {}, set()
    if isinstance(data, dict):
        for key_id, entry in (data.get("keys") or {}).items():
            try:
                raw = decode_public_key((entry or {}).get("public"), "keyring")
            except (AgentError, AttributeError):
                continue
            if key_id_of(raw) == key_id:
                keys[key_id] = raw
        revoked = set(k for k in data.get("revoked") or [] if isinstance(k, str) and KEY_ID_RE.match(k))
    return keys, revoked


def update_keyring(layout, spec_json):
    """Merge the fleet's keys (``--keyring``: {"keys": [base64...], "revoked": [ids]}) into the device's keyring.

    Keys are added, never dropped by omission; a revocation is permanent on the device (a revoked id cannot be
    trusted again by listing it), so a key that leaked stays refused even if an old fleet file lists it."""
    keys, revoked = read_keyring(layout)
    if not spec_json:
        return keys, revoked
    try:
        spec = json.loads(spec_json)
    except ValueError:
        raise AgentError("--keyring is not JSON", "config") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("keys", []), list) \
            or not isinstance(spec.get("revoked", []), list) or len(spec.get("keys", [])) > 64:
        raise AgentError("--keyring: expected {\"keys\": [up to 64 base64 keys], \"revoked\": [key ids]}", "config")
    for text in spec.get("keys", []):
        raw = decode_public_key(text, "trusted key")
        keys[key_id_of(raw)] = raw
    for key_id in spec.get("revoked", []):
        if not isinstance(key_id, str) or not KEY_ID_RE.match(key_id):
            raise AgentError("revoked key id {!r}: expected 16 hex digits".format(key_id), "config")
        revoked.add(key_id)
    if not os.path.isdir(layout.path("keys")):
        os.makedirs(layout.path("keys"), 0o755)
    write_json_atomic(layout.path(KEYRING_FILE), {
        "keys": dict((k, {"public": base64.b64encode(v).decode("ascii")}) for k, v in sorted(keys.items())),
        "revoked": sorted(revoked)})
    return keys, revoked


def verify_signature(bundle_dir, keys, revoked, allow_unsigned):
    """Refuse a bundle whose manifest.json is not signed by a trusted, unrevoked key (manifest.json hashes
    every file, so its signature covers them all). Unsigned bundles pass only under ``allow_unsigned``; a
    signature that is present is always checked."""
    path = os.path.join(bundle_dir, SIGNATURE_NAME)
    if not os.path.isfile(path):
        if allow_unsigned:
            return "unsigned bundle accepted (the fleet allows unsigned bundles)"
        raise AgentError("the bundle is not signed and this fleet requires signed bundles: sign it with "
                         "`edge-sdk sign BUNDLE --key KEY` (or `edge-sdk build --sign KEY`) and trust the public key "
                         "(trusted_keys in the fleet file), or set allow_unsigned = true", "signature")
    if os.path.getsize(path) > MAX_SIGNATURE_BYTES:
        raise AgentError("{} is larger than {} bytes".format(SIGNATURE_NAME, MAX_SIGNATURE_BYTES), "signature")
    sig = read_json(path)
    try:
        key_id, algorithm = sig["key_id"], sig["algorithm"]
        signature = base64.b64decode(sig["signature"].encode("ascii"), validate=True)
    except (TypeError, KeyError, ValueError, AttributeError):
        raise AgentError("{} is not a valid signature file (JSON with algorithm, key_id, signature)".format(
            SIGNATURE_NAME), "signature") from None
    if algorithm != "ed25519" or not isinstance(key_id, str) or not KEY_ID_RE.match(key_id):
        raise AgentError("{}: unsupported algorithm {!r} or bad key id".format(SIGNATURE_NAME, algorithm),
                         "signature")
    if key_id in revoked:
        raise AgentError("the bundle is signed with key {}, which is REVOKED on this device; sign it with a current "
                         "key".format(key_id), "signature")
    if key_id not in keys:
        raise AgentError("the bundle is signed with key {}, which this device does not trust (trusted: {}); add its "
                         "public key to trusted_keys".format(key_id, ", ".join(sorted(keys)) or "none"), "signature")
    with open(os.path.join(bundle_dir, "manifest.json"), "rb") as f:
        manifest_bytes = f.read(MAX_MANIFEST_BYTES + 1)
    if not ed25519_verify(keys[key_id], manifest_bytes, signature):
        raise AgentError("the signature of manifest.json does NOT match key {}: the bundle was changed after it was "
                         "signed; refusing it".format(key_id), "signature")
    return "signature ok (ed25519 key {})".format(key_id)


# --------------------------------------------------------------------------------------------- deps


def missing_deps(python, layout):
    """The runtime's dependencies that `python` cannot import (one subprocess for all of them)."""
    code = ("import importlib, json, sys\nmissing = []\nfor name in sys.argv[1:]:\n    try:\n"
            "        importlib.import_module(name)\n    except Exception:\n        missing.append(name)\n"
            "print(json.dumps(missing))")
    proc = subprocess.run([python, "-c", code] + [m[0] for m in RUNTIME_DEPS], env=runtime_env(layout, None),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        names = json.loads(proc.stdout.decode("utf-8").strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AgentError("could not run the device's python {!r}: {}".format(
            python, proc.stderr.decode("utf-8", "replace").strip()[-300:]), "deps") from None
    return [m for m in RUNTIME_DEPS if m[0] in names]


def ensure_deps(python, layout, mode, wheelhouse):
    """Install the runtime's on-device dependencies into deps/site only when the device lacks them."""
    if mode == "skip":
        return "skipped"
    missing = missing_deps(python, layout)
    if not missing:
        return "all present"
    names = ", ".join(m[0] for m in missing)
    if mode == "check":
        raise AgentError("the device lacks {} ({}); install them or flash with --deps install".format(
            names, "; ".join(m[2] for m in missing)), "deps")
    not_pip = [m for m in missing if m[1] is None]
    if not_pip:
        raise AgentError("the device lacks {}: {}".format(", ".join(m[0] for m in not_pip),
                                                          "; ".join(m[2] for m in not_pip)), "deps")
    site = layout.path("deps", "site")
    cmd = [python, "-m", "pip", "install", "--no-warn-script-location", "--target", site]
    if wheelhouse:
        cmd += ["--no-index", "--find-links", wheelhouse]
    cmd += [m[1] for m in missing]
    step("deps", "installing {} into {}".format(", ".join(m[1] for m in missing), site))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = proc.stdout.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise AgentError("could not install {} on the device ({}); {}".format(
            names, " | ".join(tail), "; ".join(m[2] for m in missing)), "deps")
    return "installed " + names


# ------------------------------------------------------------------------------------------- service

# The device id rule of edge_sdk/runtime/ids.py (the agent imports nothing from edge_sdk): it names MQTT topics,
# broker users, the systemd unit and files, so nothing else gets through.
DEVICE_ID_RE = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")
VERSION_RE = re.compile(r"\A[A-Za-z0-9_.+-]{1,128}\Z")  # the host's version label rule (release.py)


def check_device_id(device_id, what="device id"):
    if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id) or device_id in (".", ".."):
        raise AgentError("{} {!r} is not usable: use 1-64 letters, digits, '_', '.', '-' (not '.' or '..'); it "
                         "names MQTT topics, broker users and files".format(what, device_id), "config")
    return device_id



def runtime_env(layout, version):
    env = dict(os.environ)
    paths = []
    if version:
        paths.append(layout.path("versions", version, "site"))
    paths.append(layout.path("deps", "site"))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def resolve_python(python):
    """An absolute path (systemd before v239, JetPack 4's, wants one in ExecStart)."""
    if not python:
        return sys.executable
    return python if os.path.isabs(python) else (shutil.which(python) or python)


def systemd_escape(arg):
    """Quote one ExecStart argument: shell-like quotes, and % / $ are specifier / variable characters there.

    A unit file is line-based and quotes do not span lines, so a newline (or any other control character)
    would start a new directive (``ExecStartPre=...``): such an argument is refused, never written."""
    bad = [i for i, c in enumerate(arg) if ord(c) < 0x20 or ord(c) == 0x7f]
    if bad:  # the argument itself is not shown: run_args may hold a camera password
        raise AgentError("refusing to write a systemd unit: an argument (from the inventory's run_args, python, "
                         "root or device_id) contains the control character {!r} at position {}; remove it".format(
                             arg[bad[0]], bad[0]), "config")
    return shlex.quote(arg).replace("%", "%%").replace("$", "$$")


def render_command(service, layout, version):
    """The runtime's argv: the command template with paths of this version filled in (shell-quoted)."""
    vdir = layout.path("versions", version)
    values = {
        "python": resolve_python(service.get("python")),
        "root": layout.root,
        "version_dir": vdir,
        "site": os.path.join(vdir, "site"),
        "bundle": os.path.join(vdir, "bundle"),
        "health_file": layout.path(HEALTH_FILE),
        "device_id": check_device_id(service.get("device_id") or socket.gethostname()),
        "version": version,
    }
    template = service.get("command") or DEFAULT_COMMAND
    quoted = dict((k, shlex.quote(v)) for k, v in values.items())
    quoted["run_args"] = service.get("run_args") or ""
    try:
        return shlex.split(template.format(**quoted))
    except (KeyError, IndexError, ValueError) as exc:
        raise AgentError("service command {!r} is invalid ({}); placeholders: {}".format(
            template, exc, ", ".join("{" + k + "}" for k in sorted(quoted))), "config") from None


def unit_text(service, layout, version):
    """A systemd unit that runs this version; Restart=on-failure keeps it up across crashes."""
    argv = render_command(service, layout, version)
    env = "PYTHONPATH={}:{}".format(layout.path("versions", version, "site"), layout.path("deps", "site"))
    systemd_escape(layout.path("versions", version))  # WorkingDirectory= is written unquoted: check it all the same
    return "\n".join([
        "[Unit]",
        "Description=edge-sdk pose runtime ({})".format(version),
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        "Environment=" + systemd_escape(env),
        "WorkingDirectory=" + layout.path("versions", version),
        "ExecStart=" + " ".join(systemd_escape(a) for a in argv),
        "Restart=on-failure",
        "RestartSec=3",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def systemctl(service, *args):
    cmd = [service.get("systemctl") or "systemctl"] + list(args)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as exc:
        return 127, "{} not found ({}): on devices without systemd flash with --no-service".format(cmd[0], exc)
    return proc.returncode, proc.stdout.decode("utf-8", "replace").strip()


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    stat = read_text("/proc/{}/stat".format(pid))
    if stat:
        state = stat.rsplit(")", 1)[-1].split()[0]
        return state not in ("Z", "X")
    return True


def read_pid(layout):
    info = read_json(layout.path(PID_FILE))
    if not info or not isinstance(info.get("pid"), int):
        return None
    return info


def runtime_running(layout, service):
    """(running?, detail) for the runtime of this device."""
    mode = (service or {}).get("mode", "process")
    if mode == "systemd":
        code, out = systemctl(service, "is-active", service["name"])
        return code == 0, out
    info = read_pid(layout)
    if not info:
        return False, "no pid file"
    alive = process_alive(info["pid"])
    return alive, "pid {}{}".format(info["pid"], "" if alive else " (exited)")


def stop_runtime(layout, service):
    mode = (service or {}).get("mode", "process")
    if mode == "systemd":
        systemctl(service, "stop", service["name"])
        return
    info = read_pid(layout)
    if not info:
        return
    pid = info["pid"]
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if not process_alive(pid):
            break
        try:
            os.killpg(pid, sig)
        except OSError:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.time() + wait
        while time.time() < deadline and process_alive(pid):
            reap(pid)
            time.sleep(0.05)
    os.unlink(layout.path(PID_FILE))


def reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except OSError:
        pass


def start_runtime(layout, service, version):
    """Start the runtime of `version` (systemd unit or background process); return a liveness probe."""
    health = layout.path(HEALTH_FILE)
    if os.path.exists(health):
        os.unlink(health)
    if service.get("mode") == "systemd":
        unit_path = os.path.join(layout.sysroot, "etc/systemd/system", service["name"] + ".service")
        if not os.path.isdir(os.path.dirname(unit_path)):
            os.makedirs(os.path.dirname(unit_path))
        with open(unit_path + ".tmp", "w") as f:
            f.write(unit_text(service, layout, version))
        os.rename(unit_path + ".tmp", unit_path)
        for args in (("daemon-reload",), ("enable", service["name"]), ("restart", service["name"])):
            code, out = systemctl(service, *args)
            if code != 0:
                raise AgentError("systemctl {} failed: {}".format(" ".join(args), out), "service")

        def alive():
            code, out = systemctl(service, "is-active", service["name"])
            return out not in ("failed", "inactive"), "systemd unit {} is {} (see `journalctl -u {}`)".format(
                service["name"], out, service["name"])

        return alive
    argv = render_command(service, layout, version)
    log = open(layout.path(LOG_FILE), "ab")
    log.write("\n=== {} starting {}: {}\n".format(time.strftime("%Y-%m-%d %H:%M:%S"), version,
                                                 " ".join(argv)).encode("utf-8"))
    log.flush()
    try:
        proc = subprocess.Popen(argv, cwd=layout.path("versions", version), env=runtime_env(layout, version),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    except OSError as exc:
        raise AgentError("could not start the runtime {!r}: {}".format(argv[0], exc), "service") from None
    finally:
        log.close()
    write_json_atomic(layout.path(PID_FILE), {"pid": proc.pid, "version": version, "started": time.time()})

    def alive():
        code = proc.poll()
        if code is None:
            return True, "pid {}".format(proc.pid)
        return False, "runtime exited with code {}; last log lines: {}".format(code, log_tail(layout))

    return alive


def log_tail(layout, lines=5):
    text = read_text(layout.path(LOG_FILE)) or ""
    return " | ".join(text.splitlines()[-lines:])


def read_health(layout):
    return read_json(layout.path(HEALTH_FILE))


def wait_healthy(layout, alive, started_at, timeout):
    """Wait for the runtime's health file to say 'running' with a timestamp newer than our start."""
    deadline = time.time() + timeout
    last = None
    while True:
        health = read_health(layout)
        if isinstance(health, dict):
            last = health
            ts = health.get("ts") or 0
            fresh = isinstance(ts, (int, float)) and ts >= started_at
            # "running" is written once the model is loaded (engine built) and the source opened; a frame
            # counter, when the runtime reports one, must also move: it really processes video.
            if fresh and health.get("status") == "running" and (health.get("frames") is None
                                                                or health.get("frames", 0) >= 1):
                return True, health
            if fresh and health.get("status") in ("error", "failed", "stopped"):
                return False, "runtime reported {}{}".format(
                    health.get("status"), ": " + str(health["error"]) if health.get("error") else "")
        ok, detail = alive()
        if not ok:
            return False, detail
        if time.time() >= deadline:
            return False, "no health signal within {:.0f}s (last health file: {}); the runtime log is {}".format(
                timeout, json.dumps(last) if last else "none", layout.path(LOG_FILE))
        time.sleep(0.1)


PROBATION_FILE = "run/probation.json"


def probation_problem(layout, service, min_fps, now):
    """What is wrong with the running version right now, from the runtime's own health file, or None."""
    running, detail = runtime_running(layout, service)
    if not running:
        return "the runtime stopped ({}); last log lines: {}".format(detail, log_tail(layout)), True
    health = read_health(layout)
    if not isinstance(health, dict):
        return "no health file", False
    ts = health.get("ts") if isinstance(health.get("ts"), (int, float)) else 0
    if now - ts > 10:
        return "the health file is {:.0f}s old (the runtime hangs)".format(now - ts), False
    if health.get("status") != "running":
        return "the runtime reports {}".format(health.get("status")), health.get("status") in ("error", "failed")
    if not isinstance(health.get("frames"), int) or health["frames"] < 1:
        return "no inference done yet", False
    mqtt = health.get("mqtt")
    if isinstance(mqtt, dict) and mqtt.get("connected") is False:
        return "MQTT is not connected", False
    fps = health.get("fps")
    if min_fps > 0 and (not isinstance(fps, (int, float)) or fps < min_fps):
        return "{} fps, below the floor of {:g}".format(fps, min_fps), False
    return None, False


def probation(layout, version, previous, seconds, min_fps):
    """Watch a version that came up healthy for ``seconds`` before committing it. A runtime that exits or reports
    an error fails at once; a problem that lasts (stale health file, MQTT down, fps below ``min_fps``) fails
    after a grace of min(10 s, a third of the window). ``devices status`` reads run/probation.json meanwhile."""
    service = read_json(layout.path("versions", version, "service.json"), {})
    started = time.time()
    write_json_atomic(layout.path(PROBATION_FILE), {"version": version, "previous": previous, "started": started,
                                                  "until": started + seconds, "agent_pid": os.getpid(),
                                                  "min_fps": min_fps})
    step("probation", "watching {} for {:.0f}s before committing it".format(version, seconds))
    grace = min(10.0, seconds / 3.0)
    bad_since = None
    try:
        while True:
            now = time.time()
            problem, fatal = probation_problem(layout, service, min_fps, now)
            if problem is None:
                bad_since = None
            else:
                bad_since = bad_since or now
                if fatal or now - bad_since >= grace:
                    return False, "failed probation after {:.0f}s: {}".format(now - started, problem)
            if now - started >= seconds:
                return True, None
            time.sleep(0.2)
    finally:
        remove_tree(layout.path(PROBATION_FILE))


def health_summary(health):
    parts = ["healthy"]
    if health.get("frames") is not None:
        parts.append("{} frame{}".format(health["frames"], "" if health["frames"] == 1 else "s"))
    if health.get("fps") is not None:
        parts.append("{} fps".format(health["fps"]))
    if health.get("mqtt"):
        parts.append("MQTT " + health["mqtt"])
    return ", ".join(parts)


UPDATE_LOCK_FILE = "run/update.lock"  # edge_sdk/runtime/update_lock.py: beside the health file


def wait_update_lock(layout, timeout):
    """Wait (at most ``timeout`` s) until no runtime holds its update lock (shared flock held around work that
    must not be cut, e.g. a spill-queue write). Returns what to report, or None when nobody held it."""
    import fcntl

    try:
        fd = os.open(layout.path(UPDATE_LOCK_FILE), os.O_CREAT | os.O_RDWR, 0o644)
    except OSError:
        return None
    start, blocked = time.time(), False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return "waited {:.1f}s for the runtime's update lock".format(time.time() - start) if blocked else None
            except (IOError, OSError):
                blocked = True
                if time.time() - start >= timeout:
                    return "the runtime still holds its update lock after {:.0f}s; going on".format(timeout)
                time.sleep(0.05)
    finally:
        os.close(fd)  # releases it: the runtime never waits for us (it works unlocked meanwhile)


def activate(layout, version, timeout, lock_timeout=30.0):
    """Stop what runs, switch `current` to `version`, start it and wait for health. Returns (ok, detail)."""
    service = read_json(layout.path("versions", version, "service.json"), {})
    current = layout.current_version()
    if current or read_pid(layout):
        waited = wait_update_lock(layout, lock_timeout)
        if waited:
            step("lock", waited)
    remove_tree(layout.path(PROBATION_FILE))  # left by an agent killed mid-probation: this switch supersedes it
    if current:
        old = read_json(layout.path("versions", current, "service.json"), {})
        stop_runtime(layout, old)
        if old.get("mode") == "systemd" and (service.get("mode") != "systemd" or service.get("name") !=
                                             old.get("name")):
            systemctl(old, "disable", old["name"])  # else both would start at the next boot
    elif read_pid(layout):
        stop_runtime(layout, {"mode": "process"})
    layout.switch_current(version)
    step("start", "starting {} ({})".format(version, service.get("mode", "process")))
    started_at = time.time()
    try:
        alive = start_runtime(layout, service, version)
    except (AgentError, IOError, OSError) as exc:
        return False, "could not start it: {}".format(exc)
    step("health", "waiting up to {:.0f}s for the health signal".format(timeout))
    deadline = time.time() + timeout
    ok, detail = wait_healthy(layout, alive, started_at, timeout)
    if ok and service.get("health_mqtt"):
        topic = "{}/{}/status".format(service.get("mqtt_prefix") or "edge-sdk",
                                      service.get("device_id") or socket.gethostname())
        step("health", "health file ok; waiting for 'online' on {} at {}".format(topic, service["health_mqtt"]))
        mqtt_ok, mqtt_detail = wait_mqtt_online(layout, service, version, topic, started_at,
                                                max(1.0, deadline - time.time()))
        if not mqtt_ok:
            return False, mqtt_detail
        detail = dict(detail, mqtt=mqtt_detail)
    return ok, detail


# Run by the device's python with the runtime's PYTHONPATH: paho-mqtt is a runtime dependency, so the
# agent itself stays standard-library only. argv: url topic since timeout. Python 3.6, paho 1.x and 2.x.
MQTT_WAIT_SCRIPT = """
import json, ssl, sys, threading, time
try:
    from urllib.parse import urlparse
except ImportError:
    from urlparse import urlparse
import paho.mqtt.client as mqtt
url, topic, since, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
u = urlparse(url)
done = threading.Event()
seen = []
def on_connect(client, userdata, flags, rc, *rest):
    client.subscribe(topic, qos=1)
def on_message(client, userdata, msg):
    try:
        data = json.loads(msg.payload.decode("utf-8"))
    except ValueError:
        data = {"state": msg.payload.decode("utf-8", "replace")}
    seen.append(data)
    if data.get("state", data.get("status")) in ("online", "running") and (data.get("ts") or 0) >= since:
        done.set()
if hasattr(mqtt, "CallbackAPIVersion"):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1)
else:
    client = mqtt.Client()
client.on_connect, client.on_message = on_connect, on_message
if u.scheme in ("mqtts", "ssl"):
    client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
try:
    client.connect(u.hostname, u.port or (8883 if u.scheme in ("mqtts", "ssl") else 1883), 30)
except Exception as exc:
    print(json.dumps({"ok": False, "error": "cannot reach the broker {}: {}".format(url, exc)}))
    sys.exit(0)
client.loop_start()
ok = done.wait(timeout)
client.loop_stop()
print(json.dumps({"ok": ok, "last": seen[-1] if seen else None}))
"""


def wait_mqtt_online(layout, service, version, topic, since, timeout):
    """The runtime's retained status must say online, published after we started it (the device's clock)."""
    cmd = [resolve_python(service.get("python")), "-c", MQTT_WAIT_SCRIPT, service["health_mqtt"], topic,
           repr(since), repr(timeout)]
    proc = subprocess.run(cmd, env=runtime_env(layout, version), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        answer = json.loads(proc.stdout.decode("utf-8").strip().splitlines()[-1])
    except (ValueError, IndexError):
        return False, "MQTT health check could not run: {}".format(
            proc.stderr.decode("utf-8", "replace").strip()[-300:])
    if answer.get("ok"):
        return True, "online on {}".format(topic)
    if answer.get("error"):
        return False, answer["error"]
    return False, "no fresh 'online' status on {} within {:.0f}s (last: {})".format(
        topic, timeout, json.dumps(answer.get("last")))


def prune(layout, keep):
    """Keep the newest `keep` healthy versions (and whatever is current); delete the rest."""
    history = layout.history()
    keep_set = set(history[-keep:]) if keep > 0 else set()
    current = layout.current_version()
    if current:
        keep_set.add(current)
    removed = []
    for version in layout.versions_on_disk():
        if version not in keep_set:
            remove_tree(layout.version_dir(version))
            removed.append(version)
    layout.set_history([v for v in history if v in keep_set or v == current])
    return removed


# --------------------------------------------------------------------------------------------- commands


def release_info(layout, version):
    return read_json(layout.path("versions", version, "release.json"), {}) if version else {}


def device_info(args, layout):
    """What the host wants to know before deciding anything: version, runtime, health, target match."""
    device = detect_device(layout)
    current = layout.current_version()
    service = read_json(layout.path("versions", current, "service.json"), {}) if current else {}
    running, detail = runtime_running(layout, service) if current else (False, "nothing installed")
    out = {
        "agent": AGENT_VERSION, "python": sys.version.split()[0], "device": device,
        "root": layout.root, "current": current, "release": release_info(layout, current),
        "history": layout.history(), "versions": layout.versions_on_disk(),
        "running": running, "running_detail": detail, "health": read_health(layout), "now": time.time(),
    }
    watch = read_json(layout.path(PROBATION_FILE))
    if isinstance(watch, dict):
        watch["agent_alive"] = isinstance(watch.get("agent_pid"), int) and process_alive(watch["agent_pid"])
        out["probation"] = watch
    if getattr(args, "target", None):
        try:
            out["target_check"] = {"ok": True, "detail": check_target(args.target, parse_hints(args), device)}
        except AgentError as exc:
            out["target_check"] = {"ok": False, "detail": str(exc)}
    try:
        st = os.statvfs(layout.root if os.path.isdir(layout.root) else layout.sysroot)
        out["free_bytes"] = st.f_bavail * st.f_frsize
    except OSError:
        pass
    return out


def cmd_info(args, layout):
    emit("result", ok=True, **device_info(args, layout))


def cmd_prepare(args, layout):
    """Before any upload: refuse a wrong target, skip a version already running, then create the upload dir
    (owned by the SSH user when we run under sudo), clean stale uploads, check disk space and dependencies."""
    info = device_info(args, layout)
    check = info.get("target_check") or {"ok": True}
    if not check["ok"] and not args.skip_target_check:
        info.update(ok=False, status="refused", code="wrong-target", error=check["detail"])
        emit("result", **info)
        return
    if info["current"] == args.version and info["running"] and not args.force:
        info.update(ok=True, status="unchanged")
        emit("result", **info)
        return
    ensure_dirs(layout)
    incoming = layout.path("incoming")
    stale = []
    with Lock(layout):
        for name in os.listdir(incoming):
            if name != args.version:
                remove_tree(os.path.join(incoming, name))
                stale.append(name)
        for name in os.listdir(layout.path("versions")):
            if name.startswith("."):
                remove_tree(layout.path("versions", name))  # leftovers of an interrupted install
    upload = os.path.join(incoming, args.version)
    if not os.path.isdir(upload):
        os.makedirs(upload)
    store = store_status(layout, parse_blobs(args.blobs))
    uid = os.environ.get("SUDO_UID")
    if uid and os.getuid() == 0:
        gid = int(os.environ.get("SUDO_GID", uid))
        for path in (incoming, upload, layout.path("store"), layout.path("store", ".partial")):
            os.chown(path, int(uid), gid)
    st = os.statvfs(layout.root)
    free = st.f_bavail * st.f_frsize
    if args.need_bytes and free < args.need_bytes:
        raise AgentError("not enough disk space under {}: {} MB free, {} MB needed; remove old versions or pass "
                         "--keep 1".format(layout.root, free >> 20, args.need_bytes >> 20), "disk")
    deps = ensure_deps(args.python or sys.executable, layout, args.deps, None)
    info.update(ok=True, status="prepared", upload_dir=upload, removed_stale=stale, deps=deps, free_bytes=free,
                store_dir=layout.path("store"), **store)
    emit("result", **info)


# ----------------------------------------------------------------------------------- content-addressed store

SHA256_RE = re.compile(r"\A[0-9a-f]{64}\Z")


def parse_blobs(text):
    """--blobs: JSON [[sha256, size], ...] of the files the host wants on the device."""
    if not text:
        return []
    try:
        blobs = json.loads(text)
    except ValueError:
        raise AgentError("--blobs is not JSON", "usage") from None
    if not isinstance(blobs, list) or len(blobs) > MAX_BUNDLE_MEMBERS + 1 or not all(
            isinstance(b, list) and len(b) == 2 and isinstance(b[0], str) and SHA256_RE.match(b[0])
            and isinstance(b[1], int) and not isinstance(b[1], bool) and 0 <= b[1] <= MAX_BUNDLE_BYTES for b in blobs):
        raise AgentError("--blobs: expected [[sha256 hex, size], ...] (at most {})".format(MAX_BUNDLE_MEMBERS + 1),
                         "usage")
    return blobs


def store_status(layout, blobs):
    """Which wanted files the store holds ("have") and how much of the others an earlier, cut upload left
    ("partial": sha256 -> bytes, where the host resumes). Partial files nobody wants any more are removed."""
    partial_dir = layout.path("store", ".partial")
    if not os.path.isdir(partial_dir):
        os.makedirs(partial_dir)
    wanted = dict((sha, size) for sha, size in blobs)
    have, partial = [], {}
    for sha, size in sorted(wanted.items()):
        path = layout.path("store", sha)
        if os.path.isfile(path) and os.path.getsize(path) == size:
            have.append(sha)
    for name in os.listdir(partial_dir):
        path = os.path.join(partial_dir, name)
        if name in wanted and name not in have and os.path.isfile(path) and os.path.getsize(path) <= wanted[name]:
            partial[name] = os.path.getsize(path)
        else:
            remove_tree(path)
    return {"have": have, "partial": partial}


def promote_blob(layout, sha):
    """The stored file of ``sha``: already in the store, or an upload whose content hashes to its name (made
    durable, then renamed in: a power cut leaves the partial file or the whole one, never a wrong one)."""
    final = layout.path("store", sha)
    if os.path.isfile(final):
        return final
    partial = layout.path("store", ".partial", sha)
    if not os.path.isfile(partial):
        raise AgentError("file {} was not uploaded; flash again".format(sha[:16]), "corrupt")
    if sha256_file(partial) != sha:
        remove_tree(partial)
        raise AgentError("uploaded file {} does not match its sha256 (damaged in transfer); it was removed, flash "
                         "again".format(sha[:16]), "corrupt")
    with open(partial, "rb+") as f:
        os.fsync(f.fileno())
    os.rename(partial, final)
    fsync_dir(layout.path("store"))
    return final


def parse_store_plan(text):
    """--store-plan: {"wheel": [sha256, file name], "files": {bundle path: sha256}}."""
    try:
        plan = json.loads(text)
        wheel_sha, wheel_name = plan["wheel"]
        files = plan["files"]
    except (ValueError, TypeError, KeyError):
        raise AgentError("--store-plan: expected {\"wheel\": [sha256, name], \"files\": {path: sha256}}",
                         "usage") from None
    if not (isinstance(wheel_sha, str) and SHA256_RE.match(wheel_sha) and isinstance(wheel_name, str)
            and wheel_name.endswith(".whl") and "/" not in wheel_name and isinstance(files, dict)
            and 0 < len(files) <= MAX_BUNDLE_MEMBERS
            and all(isinstance(v, str) and SHA256_RE.match(v) for v in files.values())):
        raise AgentError("--store-plan: bad wheel entry or file table", "usage")
    for rel in files:
        safe_member_path(rel, "--store-plan")
    return wheel_sha, wheel_name, files


def assemble_bundle(layout, files, dest):
    """The bundle directory from stored files (copies: the runtime may add files next to them), bounded like an
    archive: a safe path for each, the total under MAX_BUNDLE_BYTES and the free disk space."""
    sources = [(rel, promote_blob(layout, sha)) for rel, sha in sorted(files.items())]
    total = sum(os.path.getsize(src) for _rel, src in sources)
    if total > MAX_BUNDLE_BYTES:
        raise AgentError("the bundle's files add up to {} (at most {})".format(
            human_bytes(total), human_bytes(MAX_BUNDLE_BYTES)), "refused")
    os.makedirs(dest)
    check_disk_space(dest, total)
    for rel, src in sources:
        target = os.path.join(dest, safe_member_path(rel, "bundle"))
        if not os.path.isdir(os.path.dirname(target)):
            os.makedirs(os.path.dirname(target), 0o755)
        shutil.copyfile(src, target)
        os.chmod(target, 0o644)
    return dest


def collect_store(layout):
    """Drop stored files no kept version uses (each version's release.json lists its own)."""
    used = set()
    for version in layout.versions_on_disk():
        used.update(release_info(layout, version).get("blobs") or [])
    removed = 0
    base = layout.path("store")
    for name in os.listdir(base) if os.path.isdir(base) else []:
        if SHA256_RE.match(name) and name not in used:
            os.unlink(os.path.join(base, name))
            removed += 1
    return removed


def parse_hints(args):
    if not getattr(args, "target_hints", None):
        return {}
    try:
        return json.loads(args.target_hints)
    except ValueError:
        raise AgentError("--target-hints is not JSON", "config") from None


def cmd_install(args, layout):
    with Lock(layout):
        return install_locked(args, layout)


def ensure_dirs(layout):
    for sub in ("versions", "run", "incoming", "store"):
        if not os.path.isdir(layout.path(sub)):
            os.makedirs(layout.path(sub))


def release_files(args, layout):
    """(wheel path, wheel name, bundle files by name -> sha256 or None, blobs kept) of the release to install:
    from the content-addressed store (--store-plan) or from uploaded --wheel and --bundle files."""
    if args.store_plan:
        wheel_sha, wheel_name, files = parse_store_plan(args.store_plan)
        wheel_path = promote_blob(layout, wheel_sha)
        return wheel_path, wheel_name, files, sorted(set([wheel_sha] + list(files.values())))
    if not args.wheel or not args.bundle:
        raise AgentError("install needs --store-plan, or --wheel and --bundle", "usage")
    if not os.path.isfile(args.wheel):
        raise AgentError("uploaded runtime wheel {} is missing; flash again".format(args.wheel), "corrupt")
    if not os.path.isfile(args.bundle):
        raise AgentError("uploaded bundle {} is missing; flash again".format(args.bundle), "corrupt")
    return args.wheel, os.path.basename(args.wheel), None, []


def install_locked(args, layout):
    version = args.version
    if not (0 <= args.probation <= 86400 and 0 <= args.min_fps <= 10000 and 0 <= args.lock_timeout <= 3600):
        raise AgentError("--probation must be 0..86400 s, --min-fps 0..10000, --lock-timeout 0..3600 s", "usage")
    ensure_dirs(layout)
    device = detect_device(layout)
    previous = layout.current_version()
    if previous == version and not args.force:
        running, detail = runtime_running(layout, read_json(layout.path("versions", version, "service.json"), {}))
        if running:
            emit("result", ok=True, status="unchanged", version=version, previous=previous,
                 message="{} is already current and running".format(version))
            return
    wheel_path, wheel_name, files, blobs = release_files(args, layout)
    stage = layout.path("versions", ".{}.tmp-{}".format(version, os.getpid()))
    remove_tree(stage)
    os.makedirs(stage)
    try:
        step("install-runtime", "installing {} into {}".format(wheel_name, layout.path("versions", version, "site")))
        install_wheel(wheel_path, os.path.join(stage, "site"))
        if args.store_plan:
            step("unpack", "assembling the bundle from {} stored file(s)".format(len(files)))
            bundle_dir = assemble_bundle(layout, files, os.path.join(stage, "bundle"))
        else:
            step("unpack", "unpacking the bundle")
            bundle_dir = unpack_bundle(args.bundle, os.path.join(stage, "bundle"))
        step("verify", "verifying sha256 of every bundle file")
        manifest = verify_bundle(bundle_dir)
        keys, revoked = update_keyring(layout, args.keyring)
        step("signature", verify_signature(bundle_dir, keys, revoked, args.allow_unsigned))
        if args.skip_target_check:
            match = "target check skipped (--skip-target-check)"
        else:
            match = check_target(manifest.get("target"), merge_hints(parse_hints(args),
                                                                     hints_from_manifest(manifest)), device)
        step("target", match)
        has_engine = bundle_has_engine(manifest)
        if (manifest.get("engine") or {}).get("status") == "build-on-device":
            step("engine", "the bundle has no TensorRT engine: the runtime builds it on the device at first start "
                           "(minutes on a Nano; the health check waits for it)")
        write_json_atomic(os.path.join(stage, "release.json"), {
            "version": version, "runtime_wheel": wheel_name, "blobs": blobs,
            "runtime_version": args.runtime_version, "target": manifest.get("target"),
            "precision": precision_of(manifest), "has_engine": has_engine,
            "installed_at": time.time(), "manifest_sha256": sha256_file(os.path.join(bundle_dir, "manifest.json")),
        })
        service = {"mode": args.service, "name": args.service_name, "command": args.service_command,
                   "python": args.python or sys.executable, "run_args": args.run_args, "device_id": args.device_id,
                   "systemctl": args.systemctl, "health_mqtt": args.health_mqtt, "mqtt_prefix": args.mqtt_prefix}
        write_json_atomic(os.path.join(stage, "service.json"), service)
        check_device_id(args.service_name, "service name")  # a unit file name
        render_command(service, layout, version)  # refuse a bad template before touching anything
        unit_text(service, layout, version)  # ... and a unit that newlines would rewrite
        if args.service == "systemd" and not shutil.which(args.systemctl):
            raise AgentError("this device has no systemd ({} not found); flash it with --no-service (the runtime "
                             "then runs as a background process with a pid file)".format(args.systemctl), "config")
        final = layout.version_dir(version)
        if previous == version:
            # re-installing the running version (--force): switch away first is impossible; replace in place
            stop_runtime(layout, service)
            layout.clear_current()
        remove_tree(final)
        os.sync()  # every file of the new version on disk before anything can point at it (power cuts)
        os.rename(stage, final)
        fsync_dir(layout.path("versions"))
    except Exception:
        remove_tree(stage)
        raise
    step("switch", "{} -> {}".format(previous or "(none)", version))
    ok, detail = activate(layout, version, args.health_timeout, args.lock_timeout)
    if ok and args.probation > 0:
        ok, watched = probation(layout, version, previous, args.probation, args.min_fps)
        detail = watched if not ok else dict(detail, probation="{:.0f}s".format(args.probation))
    if ok:
        history = [v for v in layout.history() if v != version] + [version]
        layout.set_history(history)
        removed = prune(layout, args.keep)
        collect_store(layout)
        remove_tree(layout.path("incoming", version))
        emit("result", ok=True, status="updated", version=version, previous=previous, health=detail,
             removed=removed, message=health_summary(detail))
        return
    step("rollback", "{} did not become healthy: {}".format(version, detail))
    stop_runtime(layout, read_json(layout.path("versions", version, "service.json"), {}))
    if previous == version:  # a forced reinstall of the running version: go back to the one before it
        older = [v for v in layout.history() if v != version and os.path.isdir(layout.version_dir(v))]
        previous = older[-1] if older else None
    if previous and os.path.isdir(layout.version_dir(previous)):
        back_ok, back_detail = activate(layout, previous, args.health_timeout, args.lock_timeout)
        emit("result", ok=False, status="rolled-back", code="unhealthy", version=version, previous=previous,
             rollback_healthy=back_ok,
             error="{} did not become healthy ({}); rolled back to {}{}".format(
                 version, detail, previous, "" if back_ok else " which is NOT healthy either: " + str(back_detail)))
    else:
        layout.clear_current()
        emit("result", ok=False, status="failed", code="unhealthy", version=version, previous=previous,
             error="{} did not become healthy ({}); no previous version to roll back to, runtime stopped".format(
                 version, detail))
    remove_tree(layout.path("incoming", version))


def cmd_rollback(args, layout):
    if not 0 <= args.lock_timeout <= 3600:
        raise AgentError("--lock-timeout must be 0..3600 s", "usage")
    with Lock(layout):
        current = layout.current_version()
        history = layout.history()
        on_disk = layout.versions_on_disk()
        if args.to:
            if args.to not in on_disk:
                raise AgentError("version {!r} is not on the device; versions here: {}".format(
                    args.to, ", ".join(on_disk) or "none"), "no-version")
            target = args.to
        else:
            older = [v for v in history if v != current and v in on_disk]
            if current in history:
                older = [v for v in history[:history.index(current)] if v in on_disk]
            if not older:
                raise AgentError("nothing to roll back to: {} is the only version kept on the device".format(
                    current or "nothing"), "no-version")
            target = older[-1]
        step("switch", "{} -> {}".format(current or "(none)", target))
        ok, detail = activate(layout, target, args.health_timeout, args.lock_timeout)
        if ok:
            if current in history:
                history = history[:history.index(current)]
            history = [v for v in history if v != target] + [target]
            layout.set_history(history)
        emit("result", ok=ok, status="rolled-back" if ok else "failed", version=target, previous=current,
             health=detail if ok else None, error=None if ok else "{} did not become healthy: {}".format(
                 target, detail))


def cmd_stop(args, layout):
    current = layout.current_version()
    service = read_json(layout.path("versions", current, "service.json"), {}) if current else {"mode": "process"}
    stop_runtime(layout, service)
    emit("result", ok=True, status="stopped", version=current)


def build_parser():
    parser = argparse.ArgumentParser(prog="edge-sdk-agent", description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="/opt/edge-sdk", help="install root on the device")
    parser.add_argument("--sysroot", default="/", help="where /etc and /proc are (tests fake a device here)")
    sub = parser.add_subparsers(dest="action")
    info = sub.add_parser("info")
    info.add_argument("--target")
    info.add_argument("--target-hints")
    prepare = sub.add_parser("prepare")
    prepare.add_argument("--version", required=True)
    prepare.add_argument("--need-bytes", type=int, default=0)
    prepare.add_argument("--python")
    prepare.add_argument("--deps", choices=("install", "check", "skip"), default="install")
    prepare.add_argument("--target")
    prepare.add_argument("--target-hints")
    prepare.add_argument("--skip-target-check", action="store_true")
    prepare.add_argument("--force", action="store_true")
    prepare.add_argument("--blobs", help="JSON [[sha256, size], ...]: report which the store has")
    install = sub.add_parser("install")
    install.add_argument("--version", required=True)
    install.add_argument("--wheel")
    install.add_argument("--bundle")
    install.add_argument("--store-plan", help="JSON: the wheel and bundle files by sha256, from store/")
    install.add_argument("--runtime-version")
    install.add_argument("--target-hints")
    install.add_argument("--skip-target-check", action="store_true")
    install.add_argument("--service", choices=("systemd", "process"), default="systemd")
    install.add_argument("--service-name", default="edge-sdk")
    install.add_argument("--systemctl", default="systemctl")
    install.add_argument("--service-command", default=None)
    install.add_argument("--python")
    install.add_argument("--run-args", default="")
    install.add_argument("--device-id")
    install.add_argument("--health-timeout", type=float, default=90.0)
    install.add_argument("--health-mqtt", help="also wait for the runtime's retained MQTT status on this broker")
    install.add_argument("--mqtt-prefix", default="edge-sdk")
    install.add_argument("--keep", type=int, default=3)
    install.add_argument("--force", action="store_true")
    install.add_argument("--probation", type=float, default=0.0, help="seconds to watch the new version before "
                         "committing it (rolled back if its health fails meanwhile)")
    install.add_argument("--lock-timeout", type=float, default=30.0,
                         help="seconds to wait for the runtime's update lock before stopping it")
    install.add_argument("--min-fps", type=float, default=0.0, help="fps floor during the probation")
    install.add_argument("--keyring", help="JSON: trusted public keys and revoked key ids from the fleet file")
    install.add_argument("--allow-unsigned", action="store_true", help="the fleet accepts unsigned bundles")
    rollback = sub.add_parser("rollback")
    rollback.add_argument("--to")
    rollback.add_argument("--health-timeout", type=float, default=90.0)
    rollback.add_argument("--lock-timeout", type=float, default=30.0)
    sub.add_parser("stop")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if argv is None:
        # A dropped SSH connection must not kill us between "stop the old runtime" and "health or roll back".
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    layout = Layout(args.root, args.sysroot)
    handlers = {"info": cmd_info, "prepare": cmd_prepare, "install": cmd_install, "rollback": cmd_rollback,
                "stop": cmd_stop}
    if args.action not in handlers:
        emit("result", ok=False, code="usage", error="no command given")
        return 2
    try:
        for label in (getattr(args, "version", None), getattr(args, "to", None)):
            if label is not None and (not VERSION_RE.match(label) or label in (".", "..")):
                raise AgentError("version label {!r}: use letters, digits and . - _ + only (it names a directory "
                                 "and the systemd unit's description)".format(label), "usage")
        if args.action != "info" and not os.path.isdir(layout.root):
            os.makedirs(layout.root)
        handlers[args.action](args, layout)
    except AgentError as exc:
        emit("result", ok=False, code=exc.code, error=str(exc))
        return 1
    except (IOError, OSError) as exc:
        emit("result", ok=False, code="os", error="{} failed on the device: {}".format(args.action, exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
