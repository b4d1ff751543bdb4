"""Pass `limbs`: score every candidate limb in the engine, so the device copies back peaks + limb scores
instead of the part affinity fields, and the CPU only assembles people.

Runs after the `peaks` pass (it reads its ``peaks`` [N, 18, K, 3] output). For each of the 19 limbs (parts
a -> b) and every pair of slots (i of part a, j of part b) it computes what the host decoder computes
(:func:`edge_sdk.runtime.decode._score_pairs`): ``samples`` points on the segment, each rounded to the
nearest cell (half to even, as ``np.rint``) and clipped to the map, the PAF there projected on the segment's
unit vector; the mean plus the distance prior ``min(max_limb_fraction * H / length - 1, 0)``. A pair is a
limb when at least ``min_fraction`` of the samples exceed ``sample_threshold``, the score exceeds
``min_limb_score`` and the length is not zero; other pairs get ``INVALID_LIMB_SCORE``.

New output ``limb_scores`` float32 [N, 19, K, K]; ``pafs`` is no longer an output (``keep_pafs=True``
keeps it). Ops: Gather, Slice, Reshape, Sub, Mul, Add, Div, Round, Clip, Cast, GatherElements, Sqrt, Max,
Min, ReduceMean, ReduceSum, Greater, GreaterOrEqual, And, Where: all have TensorRT 8.2+ ONNX importers
(Round: TensorRT 8.5+; see docs/decoder.md). The thresholds are baked into the engine and recorded in
the metadata (``extra["limbs"]``), since the decoder no longer sees the PAFs.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.graph.common import check_outputs, to_graph, to_model
from edge_sdk.runtime.decode import DEFAULT_CONFIG, INVALID_LIMB_SCORE
from edge_sdk.runtime.model_meta import ModelMeta
from edge_sdk.runtime.skeleton import LIMBS, NUM_LIMBS

LIMB_SCORES_OUTPUT = "limb_scores"
MAX_SAMPLES = 20_000_000
"""PAF samples per image above which the pass refuses (K=300 at 10 samples is 17 million)."""


class _Builder:
    """Appends named nodes to a graphsurgeon graph (names prefixed ``limbs_``)."""

    def __init__(self, graph: gs.Graph):
        self.graph = graph
        self.count = 0

    def const(self, value, dtype=np.float32) -> gs.Constant:
        self.count += 1
        return gs.Constant("limbs_c{}".format(self.count), np.asarray(value, dtype=dtype))

    def op(self, op_type, inputs, shape, dtype=np.float32, **attrs) -> gs.Variable:
        self.count += 1
        out = gs.Variable("limbs_{}_{}".format(op_type.lower(), self.count), dtype=dtype, shape=list(shape))
        self.graph.nodes.append(gs.Node(op_type, "limbs_{}_{}".format(op_type, self.count), attrs, inputs, [out]))
        return out

    def reshape(self, x, shape, dtype=np.float32):
        return self.op("Reshape", [x, self.const(shape, np.int64)], shape, dtype=dtype)

    def slice(self, x, axis, start, end, shape):
        return self.op("Slice", [x, self.const([start], np.int64), self.const([end], np.int64),
                                 self.const([axis], np.int64)], shape)


_FROM_META = object()
"""An option not given: the model metadata's decoder setting (``decoder`` section), else the decoder default."""

_DECODER_SETTING = {"samples": "paf_samples", "sample_threshold": "paf_sample_threshold",
                    "min_fraction": "paf_min_fraction", "max_limb_fraction": "max_limb_fraction",
                    "min_limb_score": "min_limb_score"}


def _resolve_settings(given: dict, meta: ModelMeta) -> tuple:
    """(samples, sample_threshold, min_fraction, max_limb_fraction, min_limb_score): each option given, else
    the metadata's decoder setting, else the decoder default; checked against its bounds."""
    decoder = getattr(meta, "decoder", None) or {}
    for option, setting in _DECODER_SETTING.items():
        if given[option] is _FROM_META:
            given[option] = decoder.get(setting, getattr(DEFAULT_CONFIG, setting))
    samples, min_fraction, max_limb_fraction = int(given["samples"]), given["min_fraction"], given["max_limb_fraction"]
    if not 2 <= samples <= 64:
        raise ConfigError("limbs: samples must be between 2 and 64 (got {})".format(samples))
    if not 0.0 <= min_fraction <= 1.0:
        raise ConfigError("limbs: min_fraction must be within [0, 1] (got {})".format(min_fraction))
    if max_limb_fraction is not None and max_limb_fraction <= 0:
        raise ConfigError("limbs: max_limb_fraction must be > 0 or None (got {})".format(max_limb_fraction))
    return samples, given["sample_threshold"], min_fraction, max_limb_fraction, given["min_limb_score"]


def _check_scorable(model: onnx.ModelProto, meta: ModelMeta) -> int:
    """The pass needs COCO-18, a ``peaks`` output (the ``peaks`` pass) and opset 13+; returns the opset."""
    if meta.skeleton != "coco18-openpose":  # the pass scores COCO-18's 19 limbs
        raise ConfigError("limbs: in-engine limb scoring supports the coco18-openpose skeleton only (this model's "
                          "is {}); build without --limbs".format(meta.skeleton if isinstance(meta.skeleton, str)
                                                                 else "a custom one"))
    if "peaks" not in meta.outputs:
        raise ModelError("limbs: the model has no 'peaks' output; run the 'peaks' pass first (build --peaks K)")
    check_outputs(model, meta)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise ModelError("limbs: the model's opset is {}; 13 or newer is needed (ReduceSum with axes as an input)"
                         .format(opset))
    return opset


def append_limb_scoring(model: onnx.ModelProto, meta: ModelMeta, samples=_FROM_META, sample_threshold=_FROM_META,
                        min_fraction=_FROM_META, max_limb_fraction=_FROM_META, min_limb_score=_FROM_META,
                        keep_pafs: bool = False) -> tuple[onnx.ModelProto, ModelMeta, list[str]]:
    """Options not given take the model metadata's decoder settings (paf_samples, paf_sample_threshold,
    paf_min_fraction, max_limb_fraction, min_limb_score), else the decoder defaults: the engine bakes them in."""
    given = {"samples": samples, "sample_threshold": sample_threshold, "min_fraction": min_fraction,
             "max_limb_fraction": max_limb_fraction, "min_limb_score": min_limb_score}
    samples, sample_threshold, min_fraction, max_limb_fraction, min_limb_score = _resolve_settings(given, meta)
    if "limb_scores" in meta.outputs:
        return model, meta, ["limb_scores output already present"]
    opset = _check_scorable(model, meta)
    graph = to_graph(model)
    peaks = next(t for t in graph.outputs if t.name == meta.outputs["peaks"])
    pafs = next(t for t in graph.outputs if t.name == meta.outputs["pafs"])
    n, _, k, _ = [int(d) for d in peaks.shape]
    pafs_shape = list(pafs.shape or [])
    if len(pafs_shape) != 4 or not all(isinstance(d, int) and d > 0 for d in pafs_shape) or pafs_shape[0] != n:
        raise ModelError("limbs: pafs must be NCHW with a static shape and the peaks' batch (got {})".format(
            pafs_shape))
    _, channels, h, w = pafs_shape
    if channels != 2 * NUM_LIMBS:
        raise ModelError("limbs: pafs must have {} channels (got {})".format(2 * NUM_LIMBS, channels))
    if NUM_LIMBS * k * k * samples > MAX_SAMPLES:
        raise ConfigError("limbs: {} limbs x {}x{} pairs x {} samples is more than {:,} PAF samples per image; "
                          "use a smaller --peaks K".format(NUM_LIMBS, k, k, samples, MAX_SAMPLES))
    b = _Builder(graph)
    pairs = [n, NUM_LIMBS, k, k, 1]
    points = [n, NUM_LIMBS, k, k, samples]

    def ends(column_of_part):
        gathered = b.op("Gather", [peaks, b.const(column_of_part, np.int64)], [n, NUM_LIMBS, k, 3], axis=1)
        return [b.slice(gathered, 3, c, c + 1, [n, NUM_LIMBS, k, 1]) for c in (0, 1)]

    (ax, ay), (bx, by) = ends([a for a, _ in LIMBS]), ends([b_ for _, b_ in LIMBS])
    start_x, start_y = (b.reshape(v, [n, NUM_LIMBS, k, 1, 1]) for v in (ax, ay))
    end_x, end_y = (b.reshape(v, [n, NUM_LIMBS, 1, k, 1]) for v in (bx, by))
    dx, dy = b.op("Sub", [end_x, start_x], pairs), b.op("Sub", [end_y, start_y], pairs)
    t = b.const(np.linspace(0.0, 1.0, samples, dtype=np.float32).reshape(1, 1, 1, 1, samples))

    def cells(start, delta, size):
        along = b.op("Add", [start, b.op("Mul", [delta, t], points)], points)
        rounded = b.op("Clip", [b.op("Round", [along], points), b.const(0.0), b.const(float(size - 1))], points)
        return b.op("Cast", [rounded], points, dtype=np.int64, to=onnx.TensorProto.INT64)

    ix, iy = cells(start_x, dx, w), cells(start_y, dy, h)
    cell = b.op("Add", [b.op("Mul", [iy, b.const(w, np.int64)], points, dtype=np.int64), ix], points,
                dtype=np.int64)
    flat_cell = b.reshape(cell, [n, NUM_LIMBS, k * k * samples], np.int64)
    fields = b.reshape(pafs, [n, NUM_LIMBS, 2, h * w])  # channel 2l = x, 2l+1 = y of limb l

    def sample(axis_index):
        field = b.reshape(b.slice(fields, 2, axis_index, axis_index + 1, [n, NUM_LIMBS, 1, h * w]),
                          [n, NUM_LIMBS, h * w])
        picked = b.op("GatherElements", [field, flat_cell], [n, NUM_LIMBS, k * k * samples], axis=2)
        return b.reshape(picked, points)

    length = b.op("Sqrt", [b.op("Add", [b.op("Mul", [dx, dx], pairs), b.op("Mul", [dy, dy], pairs)], pairs)], pairs)
    safe = b.op("Max", [length, b.const(1e-6)], pairs)
    ux, uy = b.op("Div", [dx, safe], pairs), b.op("Div", [dy, safe], pairs)
    proj = b.op("Add", [b.op("Mul", [sample(0), ux], points), b.op("Mul", [sample(1), uy], points)], points)
    scores_shape = [n, NUM_LIMBS, k, k]
    if opset >= 18:  # ReduceMean's axes: an input from opset 18, an attribute before
        score = b.op("ReduceMean", [proj, b.const([4], np.int64)], scores_shape, keepdims=0)
    else:
        score = b.op("ReduceMean", [proj], scores_shape, axes=[4], keepdims=0)
    agree = b.op("ReduceSum", [b.op("Cast", [b.op("Greater", [proj, b.const(sample_threshold)], points,
                                                 dtype=np.bool_)], points, to=onnx.TensorProto.FLOAT),
                               b.const([4], np.int64)], scores_shape, keepdims=0)
    safe_flat, length_flat = b.reshape(safe, scores_shape), b.reshape(length, scores_shape)
    if max_limb_fraction is not None:
        prior = b.op("Min", [b.op("Sub", [b.op("Div", [b.const(max_limb_fraction * h), safe_flat], scores_shape),
                                          b.const(1.0)], scores_shape), b.const(0.0)], scores_shape)
        score = b.op("Add", [score, prior], scores_shape)
    needed = float(math.ceil(min_fraction * samples - 1e-6))
    ok = b.op("And", [b.op("GreaterOrEqual", [agree, b.const(needed)], scores_shape, dtype=np.bool_),
                      b.op("Greater", [score, b.const(min_limb_score)], scores_shape, dtype=np.bool_)],
              scores_shape, dtype=np.bool_)
    ok = b.op("And", [ok, b.op("Greater", [length_flat, b.const(1e-6)], scores_shape, dtype=np.bool_)],
              scores_shape, dtype=np.bool_)
    out = gs.Variable(LIMB_SCORES_OUTPUT, dtype=np.float32, shape=scores_shape)
    graph.nodes.append(gs.Node("Where", "limbs_scores", {}, [ok, score, b.const(INVALID_LIMB_SCORE)], [out]))
    graph.outputs = [t_ for t_ in graph.outputs if keep_pafs or t_.name != pafs.name] + [out]
    graph.cleanup().toposort()
    meta.outputs = dict(meta.outputs, limb_scores=LIMB_SCORES_OUTPUT)
    if not keep_pafs:
        meta.outputs.pop("pafs")
    meta.extra["limbs"] = {"samples": samples, "sample_threshold": sample_threshold, "min_fraction": min_fraction,
                           "max_limb_fraction": max_limb_fraction, "min_limb_score": min_limb_score,
                           "map_height": h, "map_width": w}
    before = n * 2 * NUM_LIMBS * h * w * 4
    after = n * NUM_LIMBS * k * k * 4
    model = to_model(graph, model, meta)
    return model, meta, [
        "appended limb scoring: {} limbs x {}x{} candidate pairs, {} samples each".format(NUM_LIMBS, k, k, samples),
        "output 'pafs' ({:,} bytes/frame) -> 'limb_scores' ({:,} bytes/frame)".format(
            before, after) if not keep_pafs else "output 'limb_scores' added ({:,} bytes/frame)".format(after)]
