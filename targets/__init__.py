"""Target device profiles (``targets/*.toml``): load, validate and look up by name.

A profile holds the hardware and software facts a build decision depends on (compute capability, fast
FP16/INT8, DLA cores, JetPack/TensorRT/CUDA/Python versions, memory) plus our defaults for that device
(workspace, model, input size) and hints to recognise a device: ``[detect] model`` (substrings of
``/proc/device-tree/model``) and ``l4t_major`` (the L4T release in ``/etc/nv_tegra_release``), the keys the
flash agent (edge_sdk/deploy) reads too. Host-side code (Python >= 3.10); the bundle manifest carries the profile to the
device so the runtime never reads TOML.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edge_sdk.errors import ConfigError, nearest_names

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 hosts
    import tomli as tomllib

KINDS = ("jetson", "discrete-gpu", "cpu")
BACKENDS = ("tensorrt", "onnxruntime")
#: Environment variable naming an extra directory of profiles (custom boards); searched first.
TARGETS_DIR_ENV = "EDGE_SDK_TARGETS_DIR"


@dataclass(frozen=True)
class SoftwareStack:
    """One JetPack release a board runs (``[[stacks]]`` in the profile): what a build must match on the device."""

    tensorrt: str
    jetpack: str | None = None
    l4t: str | None = None  # "R36.4"; None where NVIDIA's pages we cite do not say
    cuda: str | None = None
    python: str | None = None
    sources: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        parts = ["TensorRT " + self.tensorrt]
        for name, value in (("L4T", self.l4t), ("CUDA", self.cuda), ("Python", self.python)):
            if value:
                parts.append("{} {}".format(name, value))
        head = "JetPack {}".format(self.jetpack) if self.jetpack else "TensorRT {}".format(self.tensorrt)
        return "{} ({})".format(head, ", ".join(parts if self.jetpack else parts[1:]) or "-")

    def to_dict(self) -> dict[str, Any]:
        return {"jetpack": self.jetpack, "l4t": self.l4t, "tensorrt": self.tensorrt, "cuda": self.cuda,
                "python": self.python, "sources": list(self.sources)}


def version_key(text: str | None) -> tuple[int, ...]:
    """"6.2" -> (6, 2); non-numeric parts count as 0 (for ordering releases)."""
    key = []
    for part in str(text or "").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        key.append(int(digits) if digits else 0)
    return tuple(key)


@dataclass(frozen=True)
class Target:
    """One device profile. ``gpu`` fields are None/False/0 for the ``cpu`` target."""

    name: str
    description: str
    kind: str
    backend: str
    compute_capability: str | None = None
    compute_capability_is_minimum: bool = False
    architecture: str | None = None
    fast_fp16: bool = False
    fast_int8: bool = False
    dla_cores: int = 0
    jetpack: str | None = None
    l4t: str | None = None
    tensorrt: str | None = None
    cuda: str | None = None
    python: str | None = None
    memory_mb: int | None = None
    shared_memory: bool = False
    default_workspace_mb: int = 0
    default_model: str = "mobilenet"
    input_width: int = 384
    input_height: int = 256
    soc: str | None = None
    detect_model: tuple[str, ...] = ()
    detect_tegra_release: tuple[str, ...] = ()  # "R32": L4T major releases, as /etc/nv_tegra_release spells them
    onnxruntime: dict[str, Any] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    stacks: tuple[SoftwareStack, ...] = ()  # oldest first; the default (jetpack, tensorrt...) is the newest
    path: str = ""

    def with_stack(self, jetpack: str | None) -> Target:
        """This profile for the JetPack release the device runs (``--jetpack 5.1``; None: the newest)."""
        if jetpack is None:
            return self
        if not self.stacks:
            raise ConfigError("target '{}' lists no JetPack releases; drop --jetpack".format(self.name))
        wanted = str(jetpack).strip()
        found = [s for s in self.stacks if s.jetpack and (s.jetpack == wanted or s.jetpack.startswith(wanted + "."))]
        if not found:
            raise ConfigError("target '{}' runs JetPack {}, not {}; pick one with --jetpack".format(
                self.name, ", ".join(s.jetpack or "?" for s in self.stacks), wanted))
        stack = found[-1]
        return replace(self, jetpack=stack.jetpack, l4t=stack.l4t, tensorrt=stack.tensorrt, cuda=stack.cuda,
                       python=stack.python)

    @property
    def stack(self) -> SoftwareStack | None:
        """The software stack this profile is set for (its jetpack/tensorrt fields)."""
        for stack in self.stacks:
            if stack.jetpack == self.jetpack and stack.tensorrt == self.tensorrt:
                return stack
        return None

    @property
    def has_gpu(self) -> bool:
        return self.backend == "tensorrt"

    @property
    def detect_l4t_major(self) -> tuple[int, ...]:
        """The L4T major releases of ``detect_tegra_release`` as numbers (``[detect] l4t_major`` in the TOML)."""
        return tuple(int(r.lstrip("R").split(".")[0]) for r in self.detect_tegra_release)

    @property
    def sm(self) -> str | None:
        """``sm_87`` style name of the compute capability."""
        return "sm_" + self.compute_capability.replace(".", "") if self.compute_capability else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["detect_model"] = list(self.detect_model)
        data["detect_tegra_release"] = list(self.detect_tegra_release)
        data["detect_l4t_major"] = list(self.detect_l4t_major)
        data["sources"] = list(self.sources)
        data["stacks"] = [s.to_dict() for s in self.stacks]
        data.pop("path")
        return data


def builtin_targets_dir() -> Path:
    """The profiles shipped with the package: the TOML files beside this module (``targets/`` in the sources)."""
    return Path(__file__).resolve().parent


def _targets_dirs() -> list[Path]:
    dirs = []
    if os.environ.get(TARGETS_DIR_ENV):
        dirs.append(Path(os.environ[TARGETS_DIR_ENV]))
    dirs.append(builtin_targets_dir())
    return dirs


def _require(table: dict, key: str, types, where: str, optional=False, default=None):
    if key not in table:
        if optional:
            return default
        raise ConfigError("{}: missing required key '{}'; add it (see targets/jetson-nano.toml for the format)"
                          .format(where, key))
    value = table[key]
    wrong = not isinstance(value, types) or (types is int and isinstance(value, bool))
    if wrong:
        raise ConfigError("{}: key '{}' must be {} (got {!r})".format(where, key, types.__name__, value))
    return value


def load_target_file(path: str | os.PathLike) -> Target:
    """Parse and validate one profile; a bad file raises ConfigError naming the file and the key."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("target profile {} does not exist".format(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("target profile {} is not valid TOML: {}".format(path, exc)) from None
    where = str(path)
    name = _require(data, "name", str, where)
    if name != path.stem:
        raise ConfigError("{}: name '{}' must match the file name '{}'".format(where, name, path.stem))
    kind = _require(data, "kind", str, where)
    if kind not in KINDS:
        raise ConfigError("{}: kind must be one of {} (got {!r})".format(where, ", ".join(KINDS), kind))
    backend = _require(data, "backend", str, where)
    if backend not in BACKENDS:
        raise ConfigError("{}: backend must be one of {} (got {!r})".format(where, ", ".join(BACKENDS), backend))
    gpu = _require(data, "gpu", dict, where, optional=True, default={})
    software = _require(data, "software", dict, where, optional=True, default={})
    memory = _require(data, "memory", dict, where, optional=True, default={})
    model = _require(data, "model", dict, where)
    detect = _require(data, "detect", dict, where, optional=True, default={})
    if backend == "tensorrt":
        for section, table in (("gpu", gpu), ("software", software), ("memory", memory)):
            if not table:
                raise ConfigError("{}: a TensorRT target needs a [{}] table".format(where, section))
        cc = _require(gpu, "compute_capability", str, where + " [gpu]")
        try:
            major, minor = (int(part) for part in cc.split("."))
        except ValueError:
            raise ConfigError("{} [gpu]: compute_capability must look like '8.7' (got {!r})".format(where, cc)) \
                from None
        _require(gpu, "fast_fp16", bool, where + " [gpu]")
        _require(gpu, "fast_int8", bool, where + " [gpu]")
        dla = _require(gpu, "dla_cores", int, where + " [gpu]")
        if dla < 0:
            raise ConfigError("{} [gpu]: dla_cores must be >= 0 (got {})".format(where, dla))
        _require(software, "tensorrt", str, where + " [software]")
        workspace = _require(memory, "default_workspace_mb", int, where + " [memory]")
        if workspace <= 0:
            raise ConfigError("{} [memory]: default_workspace_mb must be > 0".format(where))
    stacks = _read_stacks(data, software, where)
    width = _require(model, "input_width", int, where + " [model]")
    height = _require(model, "input_height", int, where + " [model]")
    if width <= 0 or height <= 0 or width % 8 or height % 8:
        raise ConfigError("{} [model]: input_width/input_height must be positive multiples of 8 (the model "
                          "stride), got {}x{}".format(where, width, height))
    return Target(
        name=name,
        description=_require(data, "description", str, where),
        kind=kind,
        backend=backend,
        compute_capability=gpu.get("compute_capability"),
        compute_capability_is_minimum=bool(gpu.get("compute_capability_is_minimum", False)),
        architecture=gpu.get("architecture"),
        fast_fp16=bool(gpu.get("fast_fp16", False)),
        fast_int8=bool(gpu.get("fast_int8", False)),
        dla_cores=int(gpu.get("dla_cores", 0)),
        jetpack=software.get("jetpack"),
        l4t=software.get("l4t"),
        tensorrt=software.get("tensorrt"),
        cuda=software.get("cuda"),
        python=software.get("python"),
        memory_mb=memory.get("total_mb"),
        shared_memory=bool(memory.get("shared_with_cpu", False)),
        default_workspace_mb=int(memory.get("default_workspace_mb", 0)),
        default_model=_require(model, "default", str, where + " [model]"),
        input_width=width,
        input_height=height,
        soc=data.get("soc"),
        detect_model=tuple(_require(detect, "model", list, where + " [detect]", optional=True, default=[])),
        detect_tegra_release=tuple("R{}".format(int(v)) for v in _require(
            detect, "l4t_major", list, where + " [detect]", optional=True, default=[])),
        onnxruntime=dict(data.get("onnxruntime", {})),
        sources=tuple(_require(data, "sources", list, where)),
        stacks=stacks,
        path=str(path),
    )


def _read_stacks(data: dict, software: dict, where: str) -> tuple[SoftwareStack, ...]:
    """``[[stacks]]``: every JetPack release the board runs, each with its sources; ``[software]`` must be the
    newest of them (the default a build picks)."""
    tables = _require(data, "stacks", list, where, optional=True, default=[])
    stacks = []
    for index, table in enumerate(tables):
        at = "{} [[stacks]] #{}".format(where, index + 1)
        if not isinstance(table, dict):
            raise ConfigError("{}: must be a table".format(at))
        optional = {key: _require(table, key, str, at, optional=True) for key in ("jetpack", "l4t", "cuda", "python")}
        sources = _require(table, "sources", list, at)
        if not sources:
            raise ConfigError("{}: cite at least one source for this stack".format(at))
        stacks.append(SoftwareStack(tensorrt=_require(table, "tensorrt", str, at), sources=tuple(sources),
                                    **optional))
    stacks.sort(key=lambda s: version_key(s.jetpack))
    if stacks:
        newest = stacks[-1]
        if (software.get("jetpack"), software.get("tensorrt")) != (newest.jetpack, newest.tensorrt):
            raise ConfigError("{}: [software] must repeat the newest [[stacks]] entry (JetPack {}, TensorRT {}), "
                              "the default a build picks".format(where, newest.jetpack, newest.tensorrt))
    return tuple(stacks)


def load_targets() -> dict[str, Target]:
    """Every known profile by name (a profile in $EDGE_SDK_TARGETS_DIR overrides a built-in one)."""
    found: dict[str, Target] = {}
    for directory in reversed(_targets_dirs()):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            target = load_target_file(path)
            found[target.name] = target
    return dict(sorted(found.items()))


def target_names() -> list[str]:
    return list(load_targets())


def get_target(name: str) -> Target:
    """The profile called ``name`` (or a path to a ``.toml`` profile); unknown -> ConfigError, nearest first."""
    if name.endswith(".toml") and os.path.exists(name):
        return load_target_file(name)
    known = load_targets()
    if name in known:
        return known[name]
    raise ConfigError("unknown target '{}'; known: {} (nearest first). `edge-sdk targets` lists them."
                      .format(name, ", ".join(nearest_names(name, list(known)))))


def match_device(device_tree_model: str, tegra_release: str | None = None) -> Target | None:
    """The Jetson profile a device reports itself as, from ``/proc/device-tree/model`` and, optionally,
    the first line of ``/etc/nv_tegra_release`` (e.g. ``# R32 (release), REVISION: 7.1``).

    The longest matching model hint wins ("Orin Nano" beats "Nano"); None when nothing matches.
    """
    model = (device_tree_model or "").strip("\x00 \n").lower()
    best, best_len = None, 0
    for target in load_targets().values():
        for hint in target.detect_model:
            if hint.lower() in model and len(hint) > best_len:
                best, best_len = target, len(hint)
    return best


def release_supported(target: Target, tegra_release: str) -> bool:
    """Whether an ``/etc/nv_tegra_release`` line (``# R32 (release), REVISION: 7.1``) names an L4T major
    release the profile lists (``[detect] l4t_major``)."""
    import re

    found = re.search(r"R(\d+)", tegra_release or "")
    return bool(found) and int(found.group(1)) in target.detect_l4t_major


def detect_local_target() -> Target | None:
    """The profile of the machine we run on: a Jetson by its device tree, else ``x86-gpu`` when
    ``nvidia-smi`` sees a GPU, else None (callers then treat the target as remote)."""
    try:
        with open("/proc/device-tree/model", "rb") as handle:
            model = handle.read().decode("utf-8", "replace")
        return match_device(model)
    except OSError:
        pass
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        if out.returncode == 0 and out.stdout.strip():
            return load_targets().get("x86-gpu")
    return None


def local_compute_capability() -> str | None:
    """Compute capability of the first local NVIDIA GPU (``nvidia-smi``), or None."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None
