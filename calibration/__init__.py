"""INT8 calibration: representative frames -> activation ranges -> Q/DQ ONNX, TensorRT cache, report.

``calibrate(onnx_path, source, out_dir, method="entropy", count=500, seed=0, threshold=0.1) -> dict`` is the
entry point (``edge-sdk calibrate`` and ``edge-sdk build --int8 --calib DIR`` call it). Heavy imports happen
on first use so ``import calibration`` stays cheap.
"""

DEFAULT_THRESHOLD = 0.1
"""Largest accepted agreement drop: INT8 pose AP against FP32 poses >= 0.90. (Sub-pixel map differences
already cost a few AP points at the strict OKS thresholds, so 0.05 would flag harmless INT8 models.)"""

__all__ = ["calibrate", "read_cache", "write_cache", "DEFAULT_THRESHOLD"]


def calibrate(onnx_path, source, out_dir, method="entropy", count=500, seed=0, threshold=DEFAULT_THRESHOLD,
              **options):
    """See :func:`edge_sdk.calibration.api.calibrate`."""
    from edge_sdk.calibration.api import calibrate as _calibrate

    return _calibrate(onnx_path, source, out_dir, method=method, count=count, seed=seed, threshold=threshold,
                      **options)


def read_cache(path):
    """Parse a TensorRT calibration cache (see :mod:`edge_sdk.calibration.trt_cache`)."""
    from edge_sdk.calibration.trt_cache import read_cache as _read

    return _read(path)


def write_cache(path, scales, algorithm="EntropyCalibration2", trt_version=None):
    """Write {tensor: scale} as a TensorRT calibration cache."""
    from edge_sdk.calibration.trt_cache import DEFAULT_TRT_VERSION
    from edge_sdk.calibration.trt_cache import write_cache as _write

    return _write(path, scales, algorithm, trt_version or DEFAULT_TRT_VERSION)
