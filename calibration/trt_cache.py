"""TensorRT calibration cache (``calib.cache``), the text format TensorRT's calibrators read and write.

    TRT-8201-EntropyCalibration2
    image: 3c010a14
    stage1_conv: 3d8c6f2a

Line 1: ``TRT-<version>-<algorithm>``, version = major*1000 + minor*100 + patch before TensorRT 10
(8.2.1 -> 8201), major*10000 + minor*100 + patch from 10 on (10.3.0 -> 100300). Then one line per tensor:
``<name>: <scale>``, the scale (amax / 127) as the 8 hex digits of its big-endian IEEE float32. TensorRT
uses it on the implicit-quantisation path (JetPack 4.6 / 5, ``IInt8Calibrator.read_calibration_cache``).
"""

from __future__ import annotations

import struct
from pathlib import Path

from edge_sdk.errors import ConfigError

ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
DEFAULT_TRT_VERSION = "8.2.1"
"""JetPack 4.6's TensorRT, the oldest in the field; pass the device's version when it is known."""

METHOD_ALGORITHM = {"entropy": "EntropyCalibration2", "percentile": "EntropyCalibration2",
                    "minmax": "MinMaxCalibration"}
"""TensorRT has no percentile calibrator: percentile scales are replayed by an IInt8EntropyCalibrator2."""


def trt_version_code(version) -> int:
    """"8.2.1" -> 8201, "10.3.0" -> 100300; an int is returned as is."""
    if isinstance(version, int):
        return version
    try:
        parts = [int(p) for p in str(version).split(".")[:3]]
    except ValueError as exc:
        raise ConfigError("TensorRT version {!r} is not like 8.6.1".format(version)) from exc
    major, minor, patch = (parts + [0, 0])[:3]
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def scale_to_hex(scale: float) -> str:
    return struct.pack(">f", float(scale)).hex()


def hex_to_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text.strip().rjust(8, "0")))[0]


class CalibrationCache:
    """A parsed cache: TensorRT ``version`` code, ``algorithm`` and {tensor name: scale}."""

    def __init__(self, scales, algorithm="EntropyCalibration2", version=DEFAULT_TRT_VERSION):
        if algorithm not in ALGORITHMS:
            raise ConfigError("unknown TensorRT calibration algorithm {!r}; known: {}".format(
                algorithm, ", ".join(ALGORITHMS)))
        self.scales = dict(scales)
        self.algorithm = algorithm
        self.version = trt_version_code(version)

    @property
    def header(self) -> str:
        return "TRT-{}-{}".format(self.version, self.algorithm)

    def to_text(self) -> str:
        lines = [self.header] + ["{}: {}".format(name, scale_to_hex(s)) for name, s in self.scales.items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str, where="calibration cache") -> CalibrationCache:
        lines = [line.rstrip("\r") for line in text.splitlines() if line.strip()]
        if not lines or not lines[0].startswith("TRT-") or lines[0].count("-") < 2:
            raise ConfigError("{} does not start with a TensorRT header like TRT-8201-EntropyCalibration2".format(
                where))
        _, version, algorithm = lines[0].split("-", 2)
        scales = {}
        for number, line in enumerate(lines[1:], start=2):
            name, sep, value = line.rpartition(": ")
            if not sep or not name:
                raise ConfigError("{} line {}: expected 'tensor: hexscale', got {!r}".format(where, number, line))
            try:
                scales[name] = hex_to_scale(value)
            except ValueError as exc:
                raise ConfigError("{} line {}: {!r} is not a hex float32".format(where, number, value)) from exc
        return cls(scales, algorithm, int(version))

    def write(self, path) -> Path:
        path = Path(path)
        path.write_text(self.to_text())
        return path


def write_cache(path, scales: dict, algorithm="EntropyCalibration2", trt_version=DEFAULT_TRT_VERSION) -> Path:
    """Write {tensor: scale} as a TensorRT calibration cache."""
    return CalibrationCache(scales, algorithm, trt_version).write(path)


def read_cache(path) -> CalibrationCache:
    """Parse a TensorRT calibration cache file (ours or one TensorRT wrote)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("calibration cache {} does not exist".format(path))
    return CalibrationCache.from_text(path.read_text(), where=str(path))


def retarget_cache(path, trt_version, out_path=None) -> Path:
    """Rewrite a cache's header for another TensorRT version (the scales do not depend on it)."""
    cache = read_cache(path)
    cache.version = trt_version_code(trt_version)
    return cache.write(out_path or path)
