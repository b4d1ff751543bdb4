"""`edge-sdk doctor`: what this machine has for the runtime, and which backend the runtime will use and why.

Everything is probed defensively: a missing or broken package is reported, never raised. Python 3.6 syntax;
heavy packages (onnxruntime, tensorrt) are imported only inside the probes.
"""

import ctypes
import json
import platform
import re
import sys
from typing import Any, Dict, List, Optional, TextIO

NV_TEGRA_RELEASE = "/etc/nv_tegra_release"

# L4T (Jetson Linux) release -> JetPack, from NVIDIA's JetPack archive. Keys are (major, "revision").
L4T_TO_JETPACK = {
    (32, "5"): "4.5", (32, "5.1"): "4.5.1", (32, "6.1"): "4.6", (32, "7.1"): "4.6.1", (32, "7.2"): "4.6.2",
    (32, "7.3"): "4.6.3", (32, "7.4"): "4.6.4", (32, "7.5"): "4.6.5", (32, "7.6"): "4.6.6",
    (35, "1.0"): "5.0.2", (35, "2.1"): "5.1", (35, "3.1"): "5.1.1", (35, "4.1"): "5.1.2", (35, "5.0"): "5.1.3",
    (35, "6.0"): "5.1.4", (35, "6.1"): "5.1.5",
    (36, "2.0"): "6.0 DP", (36, "3.0"): "6.0", (36, "4.0"): "6.1", (36, "4.3"): "6.2", (36, "4.4"): "6.2.1",
}


def parse_nv_tegra_release(text: str) -> Dict[str, Any]:
    """Parse /etc/nv_tegra_release, e.g. ``# R32 (release), REVISION: 7.1, GCID: ..., BOARD: t210ref, ...``.

    Returns {l4t: "32.7.1", major, revision, board, jetpack (or None)}, or None when the text is not one.
    """
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    if not match:
        return None
    major, revision = int(match.group(1)), match.group(2).rstrip(".")
    board = re.search(r"BOARD:\s*([^,\s]+)", text)
    jetpack = L4T_TO_JETPACK.get((major, revision))
    if jetpack is None and revision.endswith(".0"):
        jetpack = L4T_TO_JETPACK.get((major, revision[:-2]))
    return {"l4t": "{}.{}".format(major, revision), "major": major, "revision": revision,
            "board": board.group(1) if board else None, "jetpack": jetpack}


def _version_of(module_name, attr="__version__"):
    import importlib

    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - report, never raise
        return None, "{}: {}".format(type(exc).__name__, exc)
    return str(getattr(module, attr, "unknown")), ""


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace").strip("\0\n ")
    except OSError:
        return None


def probe_jetson(release_path: str = NV_TEGRA_RELEASE, model_path: str = "/proc/device-tree/model") -> Dict[str, Any]:
    text = _read(release_path)
    info = parse_nv_tegra_release(text) if text else None
    if info is None:
        return {"is_jetson": False}
    info["is_jetson"] = True
    info["model"] = _read(model_path)
    return info


def probe_cuda() -> Dict[str, Any]:
    """CUDA binding, driver/runtime versions and GPUs (through edge_sdk.runtime.cuda), or why not."""
    from edge_sdk.runtime.cuda import CudaDevice, available_backends, get_api

    result = {"bindings": available_backends(), "binding": None, "driver": None, "runtime": None, "gpus": [],
              "error": ""}
    for name, module, attr in (("cuda-python", "cuda.bindings", "__version__"), ("pycuda", "pycuda", "VERSION_TEXT")):
        version, _ = _version_of(module, attr)
        if version is None and name == "cuda-python":
            version, _ = _version_of("cuda", "__version__")
        result[name] = version
    if not result["bindings"]:
        result["error"] = "neither cuda-python nor pycuda is importable"
        result["driver"] = _driver_version_ctypes()
        return result
    try:
        api = get_api(0)
        result["binding"] = "{} ({})".format(api.name, getattr(api, "layout", ""))
        result.update(api.versions())
        device = CudaDevice(0, api=api)
        info = dict(device.info)
        info["compute_capability"] = "{}.{}".format(*info["compute_capability"])
        info["zero_copy"] = device.zero_copy
        result["gpus"].append(info)
    except Exception as exc:  # noqa: BLE001 - no GPU / no driver: report it
        result["error"] = str(exc)
        result["driver"] = result["driver"] or _driver_version_ctypes()
    return result


def _driver_version_ctypes():
    """The CUDA driver version from libcuda directly (works without any CUDA Python binding)."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        version = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(version)) == 0:
            return "{}.{}".format(version.value // 1000, (version.value % 1000) // 10)
    return None


def probe_tensorrt_details() -> Dict[str, Any]:
    version, reason = _version_of("tensorrt")
    result = {"version": version, "error": reason, "dla_cores": None}
    if version is not None:
        try:
            import tensorrt as trt

            builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
            result["dla_cores"] = int(builder.num_DLA_cores)
        except Exception as exc:  # noqa: BLE001
            result["error"] = "could not create a TensorRT builder: {}".format(exc)
    return result


def probe_onnxruntime() -> Dict[str, Any]:
    version, reason = _version_of("onnxruntime")
    result = {"version": version, "error": reason, "providers": []}
    if version is not None:
        try:
            import onnxruntime

            result["providers"] = list(onnxruntime.get_available_providers())
        except Exception as exc:  # noqa: BLE001
            result["error"] = str(exc)
    return result


def collect(bundle: Any = None, prefer: str = "auto", root: Optional[str] = None) -> Dict[str, Any]:
    """The whole report as a dict (JSON-serialisable)."""
    from edge_sdk.runtime.backends.selection import select_backend

    numpy_version, numpy_error = _version_of("numpy")
    cv2_version, cv2_error = _version_of("cv2")
    paho_version, paho_error = _version_of("paho.mqtt")
    trt = probe_tensorrt_details()
    cuda = probe_cuda()
    choice, reason = select_backend(
        prefer, bundle=bundle,
        tensorrt_probe=lambda: (trt["version"], "TensorRT is not importable ({})".format(trt["error"])),
        cuda_probe=lambda: ((cuda["bindings"] or [None])[0], cuda["error"] or "no CUDA binding"),
        has_bundle=bundle is not None)
    if choice == "tensorrt" and not cuda["gpus"] and cuda["error"]:
        choice, reason = "onnxruntime", "TensorRT is installed but CUDA is not usable: {}".format(cuda["error"])
    return {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": {"machine": platform.machine(), "system": platform.system(), "release": platform.release()},
        "packages": {"numpy": numpy_version, "opencv": cv2_version, "paho-mqtt": paho_version},
        "package_errors": dict((k, v) for k, v in (("numpy", numpy_error), ("opencv", cv2_error),
                                                   ("paho-mqtt", paho_error)) if v),
        "tensorrt": trt,
        "cuda": cuda,
        "jetson": probe_jetson(),
        "onnxruntime": probe_onnxruntime(),
        "bundle": getattr(bundle, "source", None),
        "bundle_software": bundle_stack(bundle, trt["version"]),
        "installed": installed_bundles(root or DEFAULT_ROOT, trt["version"]),
        "runtime_will_use": {"backend": choice, "because": reason},
    }


def bundle_stack(bundle: Any, tensorrt_version: Optional[str]) -> Optional[Dict[str, Any]]:
    """The software stack a bundle was built for and whether this device's TensorRT is it (None without a
    bundle, or for a bundle that records none)."""
    return None if bundle is None else manifest_stack(bundle.manifest, tensorrt_version)


def manifest_stack(manifest: Dict[str, Any], tensorrt_version: Optional[str]) -> Optional[Dict[str, Any]]:
    from edge_sdk.runtime.backends.tensorrt_backend import (
        bundle_software,
        describe_software,
        same_release,
        version_compatible_engine,
    )

    software = bundle_software(manifest)
    if software is None:
        return None
    if tensorrt_version is None:
        verdict = "this machine has no TensorRT"
    elif same_release(software["tensorrt"], tensorrt_version):
        verdict = "matches this TensorRT {}".format(tensorrt_version)
    elif version_compatible_engine(manifest, tensorrt_version):
        verdict = "runs on this TensorRT {} (version-compatible engine)".format(tensorrt_version)
    else:
        verdict = "does NOT match this TensorRT {}: rebuild with --jetpack for this device".format(tensorrt_version)
    return {"software": software, "built_for": describe_software(software), "verdict": verdict}


DEFAULT_ROOT = "/opt/edge-sdk"  # where `edge-sdk flash` installs releases (the agent's --root)


def installed_bundles(root: Optional[str], tensorrt_version: Optional[str]) -> List[Dict[str, Any]]:
    """The releases `edge-sdk flash` installed under ``root`` (versions/<v>/bundle/...), newest name last, each
    with the stack its bundle was built for and whether this device runs it."""
    import os

    versions_dir = os.path.join(root, "versions")
    if not os.path.isdir(versions_dir):
        return []
    current = os.path.basename(os.path.realpath(os.path.join(root, "current")))
    found = []
    for version in sorted(os.listdir(versions_dir)):
        bundle_dir = os.path.join(versions_dir, version, "bundle")
        for directory, _subdirs, files in os.walk(bundle_dir):
            if directory[len(bundle_dir):].count(os.sep) > 2:
                continue
            if "manifest.json" in files:
                try:
                    with open(os.path.join(directory, "manifest.json")) as handle:
                        manifest = json.load(handle)
                except (IOError, OSError, ValueError):
                    break
                stack = manifest_stack(manifest, tensorrt_version) or {"built_for": "an unrecorded stack",
                                                                        "verdict": "not checked"}
                found.append({"version": version, "current": version == current, "target": manifest.get("target"),
                              "built_for": stack["built_for"], "verdict": stack["verdict"]})
                break
    return found


def _missing(value, error=""):
    return value if value else "not available ({})".format(error) if error else "not available"


def format_report(report: Dict[str, Any]) -> str:
    """Human-readable lines, one fact a line, the decision last."""
    cuda, trt, ort, jetson = report["cuda"], report["tensorrt"], report["onnxruntime"], report["jetson"]
    lines = [
        ("Python", "{} ({})".format(report["python"]["version"], report["python"]["executable"])),
        ("Platform", "{} {}".format(report["platform"]["system"], report["platform"]["machine"])),
        ("numpy", _missing(report["packages"]["numpy"], report["package_errors"].get("numpy", ""))),
        ("OpenCV", _missing(report["packages"]["opencv"], report["package_errors"].get("opencv", ""))),
        ("paho-mqtt", _missing(report["packages"]["paho-mqtt"], report["package_errors"].get("paho-mqtt", ""))),
        ("TensorRT", _missing(trt["version"], trt["error"])),
        ("DLA cores", "n/a" if trt["dla_cores"] is None else str(trt["dla_cores"])),
        ("cuda-python", _missing(cuda.get("cuda-python"))),
        ("pycuda", _missing(cuda.get("pycuda"))),
        ("CUDA driver", _missing(cuda["driver"], cuda["error"] if not cuda["driver"] else "")),
        ("CUDA runtime", _missing(cuda["runtime"])),
    ]
    for index, gpu in enumerate(cuda["gpus"]):
        lines.append(("GPU {}".format(index), "{}, compute capability {}, {}, {:.1f} GiB{}".format(
            gpu["name"], gpu["compute_capability"], "integrated" if gpu["integrated"] else "discrete",
            gpu["total_memory"] / float(1 << 30), ", zero-copy buffers" if gpu["zero_copy"] else "")))
    if not cuda["gpus"]:
        lines.append(("GPU", "none usable ({})".format(cuda["error"] or "no CUDA binding")))
    if jetson.get("is_jetson"):
        lines.append(("Jetson", "{}, L4T {}, JetPack {}".format(jetson.get("model") or jetson.get("board"),
                                                               jetson["l4t"], jetson["jetpack"] or "unknown")))
    else:
        lines.append(("Jetson", "no ({} not found)".format(NV_TEGRA_RELEASE)))
    lines.append(("ONNX Runtime", "{} (providers: {})".format(ort["version"], ", ".join(ort["providers"]))
                  if ort["version"] else _missing(None, ort["error"])))
    if report.get("bundle"):
        lines.append(("Bundle", report["bundle"]))
    if report.get("bundle_software"):
        stack = report["bundle_software"]
        lines.append(("Built for", "{}: {}".format(stack["built_for"], stack["verdict"])))
    for release in report.get("installed") or []:
        lines.append(("Installed", "{}{} {}, built for {}: {}".format(
            release["version"], " (current)" if release["current"] else "", release["target"],
            release["built_for"], release["verdict"])))
    width = max(len(k) for k, _ in lines)
    text = ["{}  {}".format(k.ljust(width), v) for k, v in lines]
    decision = report["runtime_will_use"]
    text.append("")
    text.append("The runtime will use: {} because {}.".format(decision["backend"], decision["because"]))
    return "\n".join(text)


def run_doctor(bundle_path: Optional[str] = None, prefer: str = "auto", as_json: bool = False,
               out: Optional[TextIO] = None, root: Optional[str] = None) -> Dict[str, Any]:
    """Collect and print the report (text or JSON); returns the report dict."""
    bundle = None
    if bundle_path:
        from edge_sdk.runtime.bundle import open_bundle

        bundle = open_bundle(str(bundle_path))
    try:
        report = collect(bundle=bundle, prefer=prefer, root=root)
    finally:
        if bundle is not None:
            bundle.close()  # an archive's temporary copy
    stream = out or sys.stdout
    if as_json:
        stream.write(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    else:
        stream.write(format_report(report) + "\n")
    return report


