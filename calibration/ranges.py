"""Per-tensor activation ranges from running the FP32 model in ONNX Runtime (CPU) on calibration frames.

Every float tensor of the graph (the input and each node output) becomes an extra graph output, so one run
per frame sees all of them. Pass 1 records min / max / max|x|; pass 2 (entropy, percentile) builds a
2048-bin histogram of |x| over [0, max|x|] -- the two-pass scheme TensorRT's calibrators use, which makes
the result independent of frame order. Calibrators turn the statistics into ``amax`` (scale = amax / 127):

- ``entropy``: TensorRT's IInt8EntropyCalibrator2 algorithm (as in NVIDIA's reference implementation,
  pytorch-quantization ``_compute_amax_entropy``): for every candidate threshold bin ``i`` in 128..2048,
  the reference distribution is the histogram clipped at ``i`` (outliers folded into the last bin), the
  candidate is the same bins merged into 128 levels and expanded back over the non-empty bins; ``amax`` is
  the edge of the bin with the smallest KL divergence (the last one on ties). The zero bin takes the count
  of bin 1 so ReLU zeros do not dominate.
- ``percentile``: the |x| value below which ``percentile`` % of the values lie.
- ``minmax``: max |x| (TensorRT's MinMaxCalibration).
"""

from __future__ import annotations

import numpy as np

METHODS = ("entropy", "percentile", "minmax")
NUM_BINS = 2048
NUM_QUANT_LEVELS = 128
MIN_AMAX = 1e-6
"""A tensor that is always zero still needs a positive scale."""

FLOAT_TYPES = (1, 10)  # onnx.TensorProto.FLOAT, FLOAT16


class TensorRange:
    """Statistics of one activation tensor and the ``amax`` a calibrator chose for it."""

    def __init__(self, name, minimum, maximum, absmax, amax=None, clipped=0.0):
        self.name = name
        self.min = float(minimum)
        self.max = float(maximum)
        self.absmax = float(absmax)
        self.amax = float(amax if amax is not None else absmax)
        self.clipped = float(clipped)
        self.candidates = {}

    @property
    def scale(self) -> float:
        """The symmetric INT8 scale (zero point 0): amax / 127."""
        return self.amax / 127.0

    def to_dict(self):
        return {"min": self.min, "max": self.max, "absmax": self.absmax, "amax": self.amax,
                "scale": self.scale, "clipped_fraction": self.clipped}


def activation_tensors(model) -> list[str]:
    """Names of the float activation tensors: float graph inputs and float node outputs, in graph order."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    initializers = {init.name for init in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers and types.get(i.name) in FLOAT_TYPES]
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        for out in node.output:
            if out and types.get(out, 1) in FLOAT_TYPES and out not in names:
                names.append(out)
    return names


def augmented_model(model, tensors):
    """A copy of ``model`` whose graph outputs include every tensor in ``tensors``."""
    import onnx
    from onnx import helper

    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    existing = {o.name for o in augmented.graph.output}
    for name in tensors:
        if name not in existing:
            augmented.graph.output.append(helper.make_empty_tensor_value_info(name))
    return augmented


def make_session(model_or_bytes, disable_optimizations=False):
    """A deterministic CPU ONNX Runtime session."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        options.use_deterministic_compute = True
    except AttributeError:  # pragma: no cover - older onnxruntime
        pass
    if disable_optimizations:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model_or_bytes if isinstance(model_or_bytes, bytes) else model_or_bytes.SerializeToString()
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])


def batches(frames, batch_size):
    """Yield [B, ...] float arrays; a fixed batch > 1 is filled up by repeating frames from the start."""
    n = len(frames)
    for start in range(0, n, batch_size):
        chunk = np.asarray(frames[start:start + batch_size])
        if len(chunk) < batch_size:
            extra = np.asarray([frames[i % n] for i in range(batch_size - len(chunk))])
            chunk = np.concatenate([chunk, extra])
        yield chunk


def model_batch(model) -> int:
    """The model's fixed batch size, or 1 when the batch axis is dynamic."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else 1


def collect_ranges(model, frames, method: str = "entropy", percentile: float = 99.99,
                   progress: bool = True, memory_budget: int = 512 << 20) -> dict[str, TensorRange]:
    """Run the FP32 model on ``frames`` [N, ...] and calibrate every activation tensor with ``method``.

    Every range also carries ``candidates``: the amax each of the three calibrators would choose from the
    same statistics (one set of model runs), so the report can compare calibrators for free.
    """
    from tqdm import tqdm

    if method not in METHODS:
        from edge_sdk.errors import ConfigError, nearest_names

        raise ConfigError("unknown calibration method {!r}; known: {}".format(method, ", ".join(
            nearest_names(method, METHODS))))
    tensors = activation_tensors(model)
    session = make_session(augmented_model(model, tensors), disable_optimizations=True)
    input_name = model.graph.input[0].name
    wanted = [o.name for o in session.get_outputs() if o.name in set(tensors)]
    batch_size = model_batch(model)
    n_batches = (len(frames) + batch_size - 1) // batch_size

    lo = {n: np.inf for n in wanted}
    hi = {n: -np.inf for n in wanted}
    kept, kept_bytes = [], 0
    for batch in tqdm(batches(frames, batch_size), total=n_batches, desc="ranges (pass 1)", unit="batch",
                      disable=not progress, leave=False):
        outputs = session.run(wanted, {input_name: batch})
        for name, value in zip(wanted, outputs):
            if value.size and np.issubdtype(value.dtype, np.floating):
                lo[name] = min(lo[name], float(value.min()))
                hi[name] = max(hi[name], float(value.max()))
        if kept_bytes <= memory_budget:
            kept_bytes += sum(v.nbytes for v in outputs)
            kept.append(outputs)
    floats = [n for n in tensors if n in lo and np.isfinite(lo[n])]
    absmax = {n: max(abs(lo[n]), abs(hi[n])) for n in floats}

    hists = {n: np.zeros(NUM_BINS, dtype=np.int64) for n in floats}
    index = {n: i for i, n in enumerate(wanted)}
    source = kept if kept_bytes <= memory_budget else (
        session.run(wanted, {input_name: b}) for b in batches(frames, batch_size))
    for outputs in tqdm(source, total=n_batches, desc="ranges (pass 2)", unit="batch", disable=not progress,
                        leave=False):
        for name in floats:
            if absmax[name] <= 0:
                continue
            values = np.abs(outputs[index[name]].ravel().astype(np.float64))
            bins = np.minimum((values * (NUM_BINS / absmax[name])).astype(np.int64), NUM_BINS - 1)
            hists[name] += np.bincount(bins, minlength=NUM_BINS)
    ranges = {}
    for name in floats:
        if absmax[name] <= 0:
            ranges[name] = TensorRange(name, lo[name], hi[name], 0.0, MIN_AMAX)
            ranges[name].candidates = {m: MIN_AMAX for m in METHODS}
            continue
        edges = np.linspace(0.0, absmax[name], NUM_BINS + 1)
        candidates = {
            "entropy": max(entropy_amax(hists[name], edges), MIN_AMAX),
            "percentile": max(percentile_amax(hists[name], edges, percentile), MIN_AMAX),
            "minmax": max(absmax[name], MIN_AMAX),
        }
        amax = candidates[method]
        clipped = float(hists[name][np.searchsorted(edges, amax, side="left"):].sum()) / max(1, hists[name].sum())
        ranges[name] = TensorRange(name, lo[name], hi[name], absmax[name], amax, clipped if amax < absmax[name]
                                   else 0.0)
        ranges[name].candidates = candidates
    return ranges


def percentile_amax(hist, edges, percentile: float) -> float:
    """The right edge of the first bin at which the cumulative count reaches ``percentile`` %."""
    cdf = np.cumsum(hist, dtype=np.float64)
    if cdf[-1] == 0:
        return float(edges[-1])
    idx = int(np.searchsorted(cdf, cdf[-1] * percentile / 100.0, side="left"))
    return float(edges[min(idx + 1, len(edges) - 1)])


def entropy_amax(hist, edges, num_quant_levels: int = NUM_QUANT_LEVELS, start_bin: int = NUM_QUANT_LEVELS) -> float:
    """TensorRT's entropy (KL divergence) calibration threshold for a histogram of |x| (see module doc).

    All candidate thresholds at once: with prefix sums, KL(P || Q) = sum p log p - sum p log q reduces to
    per-level sums, so 2048 bins cost a few [1921, 128] array operations instead of a Python loop
    (tests check it against a direct port of the reference loop).
    """
    bins = np.asarray(hist, dtype=np.float64).copy()
    n = len(bins)
    if n <= start_bin:
        return float(edges[-1])
    bins[0] = bins[1]
    total = bins.sum()
    if total <= 0:
        return float(edges[-1])
    cum = np.concatenate([[0.0], np.cumsum(bins)])                       # cum[i] = bins[:i].sum()
    nonzero = np.concatenate([[0.0], np.cumsum(bins > 0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        blogb = np.where(bins > 0, bins * np.log(bins), 0.0)
    cum_blogb = np.concatenate([[0.0], np.cumsum(blogb)])
    cand = np.arange(start_bin, n + 1)                                    # candidate i
    k = np.arange(num_quant_levels + 1)
    starts = np.ceil(k[None, :] * cand[:, None] / num_quant_levels).astype(np.int64)  # [C, 129], last = i
    sums = cum[starts[:, 1:]] - cum[starts[:, :-1]]                        # [C, 128]
    counts = nonzero[starts[:, 1:]] - nonzero[starts[:, :-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        level_value = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        s_log_v = np.where(sums > 0, sums * np.log(np.where(level_value > 0, level_value, 1.0)), 0.0).sum(axis=1)
    tail = total - cum[cand]
    last = bins[cand - 1]
    merged = last + tail
    # sum p log p (unnormalised by total): bins before i-1 plus the merged last bin
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = cum_blogb[cand - 1] + np.where(merged > 0, merged * np.log(merged), 0.0)
        last_level = level_value[:, -1]
        cross = s_log_v + np.where(tail > 0, tail * np.log(np.where(last_level > 0, last_level, 1.0)), 0.0)
        kl = (plogp - cross) / total - np.log(total) + np.log(cum[cand])
    kl = np.where((tail > 0) & (last <= 0), np.inf, kl)
    best = np.min(kl)
    tol = 1e-9 * max(1.0, abs(best)) if np.isfinite(best) else 0.0
    index = np.nonzero(kl <= best + tol)[0][-1] if np.isfinite(best) else len(cand) - 1
    return float(edges[cand[index]])
