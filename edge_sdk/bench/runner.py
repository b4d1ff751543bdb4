"""Run the real runtime pipeline (not a separate loop) on a source and measure it.

`--compare` interleaves the bundles: frames are split into rounds and each round runs every bundle in
turn, so a machine that slows down (thermal throttling, a neighbour's load) hurts every bundle alike.
`mode="both"` also runs the plain sequential loop, so the pipeline's gain is visible on every device.
A file source (image folder, image, video) shorter than the frames asked for is replayed from its start
(:class:`LoopingSource`); a source that ends early and cannot be replayed is reported in ``notes``.
"""

import json
import os
import platform
import socket
import sys
import time
from typing import Any, Dict, List, Optional

from edge_sdk import __version__
from edge_sdk.bench.stats import fps_over_time, latency_summary
from edge_sdk.errors import ConfigError, SourceError
from edge_sdk.runtime.redact import redact_url
from edge_sdk.runtime.sources import Source, open_source
from edge_sdk.runtime.sysmon import SystemSampler

SCHEMA = "edge-sdk-bench/1"
MODES = ("pipelined", "sequential", "both")


class _Collector(object):
    """A sink that keeps per-frame latencies and completion times (the bench's view of the pipeline)."""

    def __init__(self):
        self.latency = {}
        self.done = []
        self.people = 0

    def write(self, message):
        now = time.time()
        self.done.append(now)
        self.people += len(message.get("people", []))
        lat = dict(message.get("latency_ms", {}))
        if "total" in lat:
            lat["end_to_end"] = lat.pop("total")
        else:
            lat["end_to_end"] = (now - float(message["ts"])) * 1000.0
        for stage, value in lat.items():
            self.latency.setdefault(stage, []).append(float(value))

    def close(self):
        pass


class LoopingSource(Source):
    """A file source (image folder, image or video, given as its path) replayed from the start until
    ``total`` frames were delivered; each pass reopens it, so reading is measured like the first time."""

    def __init__(self, spec, total):
        self.spec = spec
        self.total = int(total)
        self._current = open_source(spec)
        self.live = self._current.live
        self.name = self._current.name
        self.passes = 0

    def frames(self):
        produced = 0
        while produced < self.total:
            if self._current is None:
                self._current = open_source(self.spec)
            count = 0
            for index, image in self._current.frames():
                yield index, image
                count += 1
                produced += 1
                if produced >= self.total:
                    break
            self.passes += 1
            self._current.close()
            self._current = None
            if count == 0:
                raise SourceError("source {} delivered no frame; cannot replay it".format(self.spec))

    def close(self):
        if self._current is not None:
            self._current.close()
            self._current = None


def bench_source(source: Any, frames: int) -> Any:
    """``source`` as the bench runs it: a file source path replays up to ``frames`` frames; others as given."""
    if isinstance(source, str) and not source.startswith("synthetic") and os.path.exists(source):
        return LoopingSource(source, frames)
    return source


def _describe_device():
    info = {"hostname": socket.gethostname(), "machine": platform.machine(), "system": platform.system(),
            "python": platform.python_version(), "cpu_count": os.cpu_count()}
    model = "/proc/device-tree/model"
    if os.path.exists(model):
        with open(model, "rb") as f:
            info["model"] = f.read().decode("utf-8", "replace").strip("\x00 \n")
    if os.path.exists("/etc/nv_tegra_release"):
        with open("/etc/nv_tegra_release") as f:
            info["l4t"] = f.readline().strip()
    info["description"] = info.get("model") or "{} {} ({} CPUs)".format(
        info["system"], info["machine"], info["cpu_count"])
    return info


def _software():
    out = {"edge_sdk": __version__}
    for name in ("numpy", "cv2", "onnxruntime", "tensorrt"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            out[name] = module.__version__
    return out


def _gpu_memory_probe(backends):
    """A sampler callback giving GPU memory in use (MB) when a backend holds a CUDA device (TensorRT), else
    None. On Jetson the GPU shares DRAM: tegrastats' RAM figure is the one to read there."""
    for _path, backend in backends:
        device = getattr(backend, "device", None)
        if device is not None and hasattr(device, "mem_get_info"):
            def probe(device=device):
                free, total = device.mem_get_info()
                return {"gpu_mem_used_mb": round((total - free) / 1048576.0, 1)}
            return probe
    return None


def _label(path):
    return os.path.basename(os.path.normpath(str(path))) or str(path)


def paced_source(source: str, rate: float) -> str:
    """The synthetic source spec ``source`` made live at ``rate`` frames per second (a camera's pace), so
    that latency is measured at the rate frames really arrive, not only at full speed."""
    source = str(source)
    if not source.startswith("synthetic"):
        raise ConfigError("--rate paces the synthetic source only (got --source {}); a camera or stream is "
                          "paced by itself".format(source))
    if not 0 < float(rate) <= 1000:
        raise ConfigError("--rate must be between 0 and 1000 frames per second (got {})".format(rate))
    rest = source[len("synthetic"):]
    rest = rest[len(":live"):] if rest.startswith(":live") else rest
    options = [item for item in rest.lstrip("?").split("&") if item and not item.startswith("fps=")]
    return "synthetic:live?" + "&".join(options + ["fps={:g}".format(float(rate))])


def run_bench(bundles: List[str], frames: int = 1000, warmup: int = 50, source: str = "synthetic", workers: int = 2,
              mode: str = "pipelined", prefer: str = "auto", rounds: Optional[int] = None,
              command: Optional[str] = None, sample_interval: float = 0.5, threads: Optional[int] = None,
              rate: Optional[float] = None, decoder_settings: Any = None,
              fit: Optional[str] = None, max_in_flight: Optional[int] = None) -> Dict[str, Any]:
    """Benchmark each of ``bundles`` (bundle dirs or .onnx files) and return the result dict (schema
    ``edge-sdk-bench/1``). ``rounds`` splits the frames into interleaved rounds (default: 1 for a single
    bundle, 5 when comparing). ``threads``: ONNX Runtime intra-op threads (None: its default, all cores);
    ``rate``: pace the synthetic source at this many frames per second (see paced_source);
    ``decoder_settings`` and ``fit`` override each model's metadata; ``max_in_flight``: the pipelined runs'
    in-flight bound (None: the runtime's default, DEFAULT_MAX_IN_FLIGHT)."""
    from edge_sdk.runtime.decoder_settings import apply_run_settings
    from edge_sdk.runtime.pipeline import DEFAULT_MAX_IN_FLIGHT, check_max_in_flight

    _check_request(bundles, frames, mode, threads)
    in_flight = DEFAULT_MAX_IN_FLIGHT if max_in_flight is None else check_max_in_flight(max_in_flight)
    if rate is not None:
        source = paced_source(source, rate)
    modes = ["pipelined", "sequential"] if mode == "both" else [mode]
    rounds = int(rounds or (5 if len(bundles) > 1 else 1))
    per_round = max(1, frames // rounds)
    backends = []
    try:
        for path, backend in _load_backends(bundles, prefer, threads):
            backends.append((path, backend))
            apply_run_settings(backend.meta, decoder_settings, fit)
        runs = {(path, m): {"collector": _Collector(), "elapsed": 0.0, "drops": 0}
                for path, _backend in backends for m in modes}
        _warm_up(backends, source, warmup, workers, in_flight)
        with SystemSampler(sample_interval, extra=_gpu_memory_probe(backends)) as sampler:
            _measure(backends, modes, runs, rounds, per_round, source, workers, in_flight)
    finally:
        for _path, backend in backends:
            backend.close()
    result_runs = [_run_summary(path, backend, m, runs[(path, m)], len(modes) == 1, rounds)
                   for path, backend in backends for m in modes]
    notes = ["{}: the source {} gave {} of the {} frames asked for; only file sources (image folder, image, "
             "video) are replayed, so the figures cover fewer frames".format(
                 run["name"], source, run["frames"], per_round * rounds)
             for run in result_runs if run["frames"] < per_round * rounds]
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "device": _describe_device(),
        "software": _software(),
        "settings": {"frames": frames, "warmup": warmup, "source": redact_url(str(source)), "workers": workers,
                     "mode": mode, "rounds": rounds, "backend": prefer, "threads": threads, "rate": rate,
                     "max_in_flight": in_flight},
        "runs": result_runs,
        "ratios": _ratios(result_runs, [path for path, _backend in backends], mode),
        "notes": notes,
        "system": {"summary": sampler.summary(), "samples": sampler.samples},
    }


def _check_request(bundles, frames, mode, threads):
    if mode not in MODES:
        raise ConfigError("unknown bench mode {!r}; use one of {}".format(mode, ", ".join(MODES)))
    if not bundles:
        raise ConfigError("nothing to benchmark: pass --bundle B (or --model M.onnx), or --compare B1 B2")
    if frames < 1:
        raise ConfigError("--frames must be at least 1")
    if threads is not None and int(threads) < 1:
        raise ConfigError("--threads must be at least 1 (got {})".format(threads))


def _load_backends(bundles, prefer, threads):
    """Yield (path, backend) per bundle dir or .onnx file, so the caller can close the ones already loaded."""
    from edge_sdk.runtime.backends.loader import load_backend

    for path in bundles:
        path = str(path)
        if path.endswith(".onnx"):
            yield path, load_backend(model=path, prefer=prefer, threads=threads)
        else:
            yield path, load_backend(bundle=path, prefer=prefer, threads=threads)


def _warm_up(backends, source, warmup, workers, max_in_flight=None):
    from edge_sdk.runtime.pipeline import run_pipeline

    if warmup <= 0:
        return
    for _path, backend in backends:
        run_pipeline(backend=backend, source=bench_source(source, warmup), max_frames=warmup, workers=workers,
                     handle_signals=False, sequential=False, max_in_flight=max_in_flight)


def _measure(backends, modes, runs, rounds, per_round, source, workers, max_in_flight=None):
    """Round by round, every bundle in every mode: a machine that slows down hurts every side alike."""
    from edge_sdk.runtime.pipeline import run_pipeline

    for _ in range(rounds):
        for path, backend in backends:
            for m in modes:
                run = runs[(path, m)]
                stats = run_pipeline(backend=backend, source=bench_source(source, per_round), max_frames=per_round,
                                     workers=workers, sinks=[run["collector"]], handle_signals=False,
                                     sequential=(m == "sequential"), max_in_flight=max_in_flight)
                run["elapsed"] += stats.elapsed_s
                run["drops"] += stats.drops


def _run_summary(path, backend, mode, run, single_mode, rounds):
    col = run["collector"]
    n = len(col.done)
    return {
        "name": _label(path) + ("" if single_mode else " ({})".format(mode)),
        "bundle": path,
        "backend": backend.describe(),
        "mode": mode,
        "frames": n,
        "duration_s": round(run["elapsed"], 3),
        "fps": round(n / run["elapsed"], 2) if run["elapsed"] > 0 else 0.0,
        "drops": run["drops"],
        "people_per_frame": round(col.people / float(n), 2) if n else 0.0,
        "latency_ms": {stage: latency_summary(v) for stage, v in col.latency.items()},
        "fps_over_time": fps_over_time(col.done) if rounds == 1 else [],
    }


def _ratios(result_runs, paths, mode):
    """pipelined / sequential per bundle (mode "both"), and every other bundle / the first one."""
    ratios = {}
    if mode == "both":
        for path in paths:
            by_mode = {r["mode"]: r for r in result_runs if r["bundle"] == path}
            if by_mode["sequential"]["fps"] > 0:
                ratios["{}: pipelined / sequential fps".format(_label(path))] = (
                    by_mode["pipelined"]["fps"] / by_mode["sequential"]["fps"])
            p50 = [by_mode[m]["latency_ms"].get("end_to_end", {}).get("p50") for m in ("pipelined", "sequential")]
            if p50[0] is not None and p50[1]:
                ratios["{}: pipelined / sequential end-to-end p50 latency".format(_label(path))] = p50[0] / p50[1]
    if len(paths) > 1:
        base = result_runs[0]
        for other in result_runs[1:]:
            if base["fps"] > 0 and other["mode"] == base["mode"]:
                ratios["{} / {} fps".format(other["name"], base["name"])] = other["fps"] / base["fps"]
    return ratios


def write_result(result: Dict[str, Any], path: str) -> str:
    """Write the bench JSON (creating the folder)."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        os.makedirs(parent)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    return path


def format_table(result: Dict[str, Any]) -> str:
    """Human-readable table for the terminal."""
    lines = ["{:<28} {:<26} {:>7} {:>8} {:>9} {:>9} {:>9}".format(
        "run", "backend", "frames", "fps", "e2e p50", "e2e p90", "e2e p99")]
    for run in result["runs"]:
        e2e = run["latency_ms"].get("end_to_end", {})
        lines.append("{:<28} {:<26} {:>7} {:>8.1f} {:>9} {:>9} {:>9}".format(
            run["name"][:28], run["backend"][:26], run["frames"], run["fps"], e2e.get("p50", "-"),
            e2e.get("p90", "-"), e2e.get("p99", "-")))
    for name, ratio in sorted(result.get("ratios", {}).items()):
        lines.append("{}: {:.2f}x".format(name, ratio))
    for note in result.get("notes", []):
        lines.append("note: " + note)
    return "\n".join(lines)
