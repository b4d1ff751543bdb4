"""Pass `peaks`: append GPU-side heatmap peak extraction, so the device copies back peaks instead of maps.

The GPU twin of the runtime decoder's host peak finder (:func:`edge_sdk.runtime.decode.find_peaks`), so
``decode_peaks(peaks, pafs)`` gives the same people as ``decode_poses(heatmaps, pafs)``:

* 3x3 max-pool non-maximum suppression + threshold over the 18 part heatmaps; on a plateau of equal
  values only the first cell in raster order is kept;
* the top-K candidates per part (best score first);
* sub-pixel refinement per axis, ``refine`` = ``log_quadratic`` (the decoder's default: parabola through
  the log of the peak and its neighbours, exact for Gaussian peaks; on the map border the curvature comes
  from the other axis or the next cells inwards), ``quadratic`` (parabola through the values, none on the
  border) or ``none``. Offsets are computed for the whole map with elementwise ops and gathered at the
  top-K positions.

New output ``peaks`` float32 [N, 18, K, 3] = (x, y, score) in map cells (all 0 for empty slots); ``pafs``
stays; ``heatmaps`` is no longer an output. Every op used (Slice, Concat, Pad, MaxPool, Equal, Greater,
Less, And, Or, Not, Where, Log, Max, Min, Add, Sub, Mul, Div, Reshape, TopK, Cast, Floor, GatherElements)
has a TensorRT 8.2+ ONNX importer. Bytes copied back per frame drop from 19*h*w*4 (heatmaps) to 18*K*3*4, e.g. a
368x656 input: 286,672 -> 2,160 bytes for K=10.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.graph.common import check_outputs, to_graph, to_model
from edge_sdk.runtime.model_meta import ModelMeta
from edge_sdk.runtime.skeleton import NUM_PARTS

PEAKS_OUTPUT = "peaks"
REFINE = ("log_quadratic", "quadratic", "none")
LOG_FLOOR = 1e-6  # the decoder's floor before the log
EPS = 1e-9  # the decoder's "curved" test: curvature < -EPS


class _Builder:
    """Small helper that appends named nodes to a graphsurgeon graph."""

    def __init__(self, graph: gs.Graph, shape: list[int]):
        self.graph = graph
        self.shape = shape  # [n, 18, h, w]
        self.count = 0

    def const(self, value, dtype=np.float32) -> gs.Constant:
        self.count += 1
        return gs.Constant("peaks_c{}".format(self.count), np.asarray(value, dtype=dtype))

    def op(self, op_type, inputs, dtype=np.float32, shape=None, **attrs) -> gs.Variable:
        self.count += 1
        out = gs.Variable("peaks_{}_{}".format(op_type.lower(), self.count), dtype=dtype,
                          shape=self.shape if shape is None else shape)
        self.graph.nodes.append(gs.Node(op_type, "peaks_{}_{}".format(op_type, self.count), attrs, inputs, [out]))
        return out

    def slice(self, x, axis, start, end, shape):
        return self.op("Slice", [x, self.const([start], np.int64), self.const([end], np.int64),
                                 self.const([axis], np.int64)], shape=shape)

    def concat(self, parts, axis, dtype=np.float32):
        return self.op("Concat", parts, dtype=dtype, axis=axis)

    def mask(self, axis, size, cells):
        """A constant bool mask that broadcasts along ``axis`` (2: rows, 3: columns), True at ``cells``."""
        shape = [1, 1, size, 1] if axis == 2 else [1, 1, 1, size]
        values = np.zeros(shape, dtype=np.bool_)
        values.reshape(-1)[list(cells)] = True
        return self.const(values, np.bool_)


def _axis_maps(b: _Builder, values, axis: int):
    """Clamped neighbours and the second difference of ``values`` along ``axis`` (full-size maps)."""
    n, c, h, w = b.shape
    size = w if axis == 3 else h

    def part(start, end):
        shape = list(b.shape)
        shape[axis] = end - start
        return b.slice(values, axis, start, end, shape)

    before = b.concat([part(0, 1), part(0, size - 1)], axis)  # values[max(i - 1, 0)]
    after = b.concat([part(1, size), part(size - 1, size)], axis)  # values[min(i + 1, size - 1)]
    curvature = b.op("Add", [b.op("Sub", [before, b.op("Mul", [values, b.const(2.0)])]), after])
    inner_shape = list(b.shape)
    inner_shape[axis] = size - 2
    second = b.op("Add", [b.op("Sub", [part(0, size - 2), b.op("Mul", [part(1, size - 1), b.const(2.0)],
                                                                 shape=inner_shape)], shape=inner_shape),
                          part(2, size)], shape=inner_shape)

    def inner(start, end):
        shape = list(b.shape)
        shape[axis] = end - start
        return b.slice(second, axis, start, end, shape)

    inward = b.concat([inner(0, 1), second, inner(size - 3, size - 2)], axis)  # border: next cells inwards
    interior = b.mask(axis, size, range(1, size - 1))
    return before, after, curvature, inward, interior


def _offsets(b: _Builder, values, axis, own, other, log_quadratic):
    """Sub-pixel offset map along ``axis``: the decoder's parabola (interior) and one-sided (border) fits."""
    before, after, curvature, inward, interior = own
    size = b.shape[axis]
    zero, minus_one = b.const(0.0), b.const(-1.0)
    curved = b.op("Less", [curvature, b.const(-EPS)], np.bool_)
    ok = b.op("And", [interior, curved], np.bool_)
    safe = b.op("Where", [ok, curvature, minus_one])
    offset = b.op("Div", [b.op("Mul", [b.op("Sub", [before, after]), b.const(0.5)]), safe])
    offset = b.op("Where", [ok, offset, zero])
    offset = b.op("Min", [b.op("Max", [offset, b.const(-0.5)]), b.const(0.5)])
    if not log_quadratic:
        return offset
    _, _, other_curvature, _, other_interior = other
    other_curved = b.op("And", [other_interior, b.op("Less", [other_curvature, b.const(-EPS)], np.bool_)],
                        np.bool_)
    border_k = b.op("Where", [other_curved, other_curvature, inward])
    border_ok = b.op("Less", [border_k, b.const(-EPS)], np.bool_)
    k = b.op("Where", [border_ok, border_k, minus_one])
    from_start = b.op("Sub", [b.const(0.5), b.op("Div", [b.op("Sub", [after, values]), k])])
    from_end = b.op("Sub", [b.op("Div", [b.op("Sub", [before, values]), k]), b.const(0.5)])
    one_sided = b.op("Where", [b.mask(axis, size, [0]), from_start, from_end])
    one_sided = b.op("Min", [b.op("Max", [one_sided, b.const(-0.5)]), b.const(0.5)])
    one_sided = b.op("Where", [border_ok, one_sided, zero])
    return b.op("Where", [interior, offset, one_sided])


def append_peak_extraction(model: onnx.ModelProto, meta: ModelMeta, k: int = 10, threshold: float = 0.1,
                           refine: str = "log_quadratic") -> tuple[onnx.ModelProto, ModelMeta, list[str]]:
    if k < 1 or k > 1000:
        raise ConfigError("--peaks K must be between 1 and 1000 (got {})".format(k))
    if refine not in REFINE:
        raise ConfigError("peaks: refine must be one of {} (got {!r})".format(", ".join(REFINE), refine))
    if threshold < 0:
        raise ConfigError("peaks: the threshold must be >= 0 (got {})".format(threshold))
    if "peaks" in meta.outputs:
        return model, meta, ["peaks output already present"]
    if meta.skeleton != "coco18-openpose":  # the pass slices COCO-18's 18 part channels
        raise ConfigError("peaks: GPU peak extraction supports the coco18-openpose skeleton only (this model's is "
                          "{}); build without --peaks".format(meta.skeleton if isinstance(meta.skeleton, str)
                                                              else "a custom one"))
    check_outputs(model, meta)
    graph = to_graph(model)
    hm = next(t for t in graph.outputs if t.name == meta.outputs["heatmaps"])
    shape = list(hm.shape or [])
    if meta.extra.get("output_layout", "NCHW") != "NCHW" or len(shape) != 4 \
            or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ModelError("peaks: heatmaps must be NCHW with a static shape (got {}); run the 'transposes' and "
                         "'shape' passes first".format(shape))
    n, _, h, w = shape
    if h < 3 or w < 3 or h * w < k:
        raise ConfigError("peaks: the heatmap ({}x{} cells) must be at least 3x3 and hold K={} cells"
                          .format(w, h, k))
    maps = [n, NUM_PARTS, h, w]
    b = _Builder(graph, maps)
    parts = b.slice(hm, 1, 0, NUM_PARTS, maps)
    # non-maximum suppression + threshold; a plateau keeps its first cell in raster order (as the decoder)
    pooled = b.op("MaxPool", [parts], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    keep = b.op("And", [b.op("Equal", [parts, pooled], np.bool_),
                        b.op("Greater", [parts, b.const(threshold)], np.bool_)], np.bool_)
    # zero padding (TensorRT's plain padding layer): a kept peak is > threshold >= 0, so never equals a pad
    padded = b.op("Pad", [parts, b.const([0, 0, 1, 1, 0, 0, 0, 1], np.int64)],
                  shape=[n, NUM_PARTS, h + 1, w + 2], mode="constant")
    earlier = None
    for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
        rows = b.slice(padded, 2, 1 + dy, 1 + dy + h, [n, NUM_PARTS, h, w + 2])
        neighbour = b.slice(rows, 3, 1 + dx, 1 + dx + w, maps)
        same = b.op("Equal", [parts, neighbour], np.bool_)
        earlier = same if earlier is None else b.op("Or", [earlier, same], np.bool_)
    keep = b.op("And", [keep, b.op("Not", [earlier], np.bool_)], np.bool_)
    zero = b.const(0.0)
    suppressed = b.op("Where", [keep, parts, zero])
    flat_shape = b.const([n, NUM_PARTS, h * w], np.int64)
    flat = b.op("Reshape", [suppressed, flat_shape], shape=[n, NUM_PARTS, h * w])
    top = [n, NUM_PARTS, k]
    scores = gs.Variable("peaks_scores", dtype=np.float32, shape=top)
    indices = gs.Variable("peaks_indices", dtype=np.int64, shape=top)
    graph.nodes.append(gs.Node("TopK", "peaks_topk", {"axis": -1, "largest": 1, "sorted": 1},
                               [flat, b.const([k], np.int64)], [scores, indices]))
    index = b.op("Cast", [indices], shape=top, to=onnx.TensorProto.FLOAT)
    width = b.const(float(w))
    y = b.op("Floor", [b.op("Div", [index, width], shape=top)], shape=top)
    x = b.op("Sub", [index, b.op("Mul", [y, width], shape=top)], shape=top)
    if refine != "none":
        values = parts
        if refine == "log_quadratic":
            values = b.op("Log", [b.op("Max", [parts, b.const(LOG_FLOOR)])])
        along_x, along_y = _axis_maps(b, values, 3), _axis_maps(b, values, 2)
        for coord, own, other in (("x", along_x, along_y), ("y", along_y, along_x)):
            axis = 3 if coord == "x" else 2
            offset = _offsets(b, values, axis, own, other, refine == "log_quadratic")
            offset_flat = b.op("Reshape", [offset, flat_shape], shape=[n, NUM_PARTS, h * w])
            picked = b.op("GatherElements", [offset_flat, indices], shape=top, axis=2)
            if coord == "x":
                x = b.op("Add", [x, picked], shape=top)
            else:
                y = b.op("Add", [y, picked], shape=top)
    found = b.op("Greater", [scores, zero], np.bool_, shape=top)
    x = b.op("Where", [found, x, zero], shape=top)
    y = b.op("Where", [found, y, zero], shape=top)
    column = b.const([n, NUM_PARTS, k, 1], np.int64)
    columns = [b.op("Reshape", [t, column], shape=[n, NUM_PARTS, k, 1]) for t in (x, y, scores)]
    peaks = gs.Variable(PEAKS_OUTPUT, dtype=np.float32, shape=[n, NUM_PARTS, k, 3])
    graph.nodes.append(gs.Node("Concat", "peaks_concat", {"axis": 3}, columns, [peaks]))
    graph.outputs = [peaks] + [t for t in graph.outputs if t.name != hm.name]
    graph.cleanup().toposort()
    meta.outputs = {"peaks": PEAKS_OUTPUT, "pafs": meta.outputs["pafs"]}
    meta.extra["peaks"] = {"k": k, "threshold": threshold, "refine": refine, "nms": "maxpool3x3"}
    before = n * (NUM_PARTS + 1) * h * w * 4
    after = n * NUM_PARTS * k * 3 * 4
    return to_model(graph, model, meta), meta, [
        "appended peak extraction: top-{} per part, threshold {}, refine {}".format(k, threshold, refine),
        "output 'heatmaps' ({:,} bytes/frame) -> 'peaks' ({:,} bytes/frame)".format(before, after)]
