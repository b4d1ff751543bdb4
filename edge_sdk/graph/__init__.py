"""ONNX rewrite passes (onnx-graphsurgeon) that turn a training export into a deployment graph.

Each pass is ``pass_fn(model, meta, **options) -> (model, meta, changes)``: it takes and returns an
``onnx.ModelProto`` and the model's :class:`~edge_sdk.runtime.model_meta.ModelMeta` (kept in the model's
metadata_props), plus a line per change. :func:`run_passes` runs a list of them by name and reports node
counts before/after each. The order in :data:`DEFAULT_PASSES` is the one ``edge-sdk build`` uses.
This package module imports no onnx at import time (the CLI registers commands from it on devices too).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from edge_sdk.errors import ConfigError, nearest_names

PASS_NAMES = ("fold", "transposes", "normalize", "shape", "prune", "peaks", "limbs", "fp16", "instancenorm", "chanpad")
#: What `edge-sdk build` runs (peaks only with --peaks K, limbs only with --limbs).
DEFAULT_PASSES = ("fold", "transposes", "prune", "normalize", "shape", "fold")


def get_pass(name: str) -> Callable:
    """The pass function registered under ``name``."""
    if name == "fold":
        from edge_sdk.graph.fold import fold_constants
        return fold_constants
    if name == "transposes":
        from edge_sdk.graph.transposes import remove_layout_transposes
        return remove_layout_transposes
    if name == "normalize":
        from edge_sdk.graph.normalize import fold_input_normalization
        return fold_input_normalization
    if name == "shape":
        from edge_sdk.graph.shapes import fix_input_shape
        return fix_input_shape
    if name == "prune":
        from edge_sdk.graph.prune import prune_unused_outputs
        return prune_unused_outputs
    if name == "instancenorm":
        from edge_sdk.graph.instancenorm import batch_stats_to_instance_norm
        return batch_stats_to_instance_norm
    if name == "chanpad":
        from edge_sdk.graph.chanpad import pad_concat_channels
        return pad_concat_channels
    if name == "peaks":
        from edge_sdk.graph.peaks import append_peak_extraction
        return append_peak_extraction
    if name == "limbs":
        from edge_sdk.graph.limbs import append_limb_scoring
        return append_limb_scoring
    if name == "fp16":
        from edge_sdk.graph.fp16 import convert_to_fp16
        return convert_to_fp16
    raise ConfigError("unknown pass '{}'; known: {} (nearest first)".format(
        name, ", ".join(nearest_names(name, list(PASS_NAMES)))))


def parse_pass_list(text: str) -> list[str]:
    """``"fold,transposes"`` -> ["fold", "transposes"], each checked."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise ConfigError("--passes needs at least one of: {}".format(", ".join(PASS_NAMES)))
    for name in names:
        get_pass(name)
    return names


def op_histogram_diff(before, after) -> str:
    """"-4 Transpose, -2 Identity, +1 Cast": how the op mix changed."""
    a = Counter(n.op_type for n in before.graph.node)
    b = Counter(n.op_type for n in after.graph.node)
    parts = []
    for op in sorted(set(a) | set(b)):
        delta = b[op] - a[op]
        if delta:
            parts.append("{:+d} {}".format(delta, op))
    return ", ".join(parts)


def run_passes(model, names, options: dict[str, dict[str, Any]] | None = None, meta=None, progress=None):
    """Run passes in order. ``options``: {pass name: kwargs}. ``progress(report)`` is called after each.
    Returns (model, meta, [PassReport])."""
    from edge_sdk.graph.common import PassReport, count_nodes, get_meta, set_meta

    meta = meta or get_meta(model)
    reports = []
    for name in names:
        fn = get_pass(name)
        before = count_nodes(model)
        new_model, meta, changes = fn(model, meta, **(options or {}).get(name, {}))
        set_meta(new_model, meta)
        ops = op_histogram_diff(model, new_model)
        report = PassReport(name, before, count_nodes(new_model), list(changes) + (["ops: " + ops] if ops else []))
        reports.append(report)
        model = new_model
        if progress:
            progress(report)
    return model, meta, reports
