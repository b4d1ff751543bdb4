"""Latency statistics shared by `bench` and its report (percentiles without numpy quirks across versions)."""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

PERCENTILES = (50, 90, 99)


def latency_summary(values_ms: Sequence[float]) -> Dict[str, float]:
    """{"count", "mean", "min", "max", "p50", "p90", "p99"} of a list of milliseconds (empty -> count 0)."""
    values = np.asarray([v for v in values_ms if v is not None], dtype=np.float64)
    if values.size == 0:
        return {"count": 0}
    out = {
        "count": int(values.size),
        "mean": round(float(values.mean()), 3),
        "min": round(float(values.min()), 3),
        "max": round(float(values.max()), 3),
    }
    for p in PERCENTILES:
        out["p{}".format(p)] = round(float(np.percentile(values, p)), 3)
    return out


def fps_over_time(timestamps: Sequence[float], window: Optional[float] = None) -> List[Tuple[float, float]]:
    """[(t, fps)] from completion times (s): frames completed per ``window``-second bin (default: 1/20 of
    the run, between 0.01 and 1 s, so short runs still show a curve). The last, partial bin is left out."""
    ts = np.sort(np.asarray(timestamps, dtype=np.float64))
    if ts.size < 2:
        return []
    t0 = ts[0]
    if window is None:
        window = float(min(1.0, max(0.01, (ts[-1] - t0) / 20.0)))
    bins = np.floor((ts - t0) / window).astype(int)
    counts = np.bincount(bins)
    return [(round(float(i * window), 3), float(c) / window) for i, c in enumerate(counts[:-1])]
