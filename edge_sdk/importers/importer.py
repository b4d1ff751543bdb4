"""`edge-sdk import` as a Python API: any OpenPose-family model file -> a contract ONNX (see
edge_sdk/importers/__init__.py), checked against the source framework before it is written."""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.importers.check import CheckResult, check_frames, check_import
from edge_sdk.importers.paf_layouts import ChannelLayout, get_layout
from edge_sdk.importers.source import SourceModel
from edge_sdk.runtime.model_meta import InputSpec, ModelMeta
from edge_sdk.runtime.skeleton import STRIDE

FORMATS = ("tf-graphdef", "saved-model", "keras", "onnx")
DEFAULT_OPSET = 13
DEFAULT_ATOL = 1e-2
#: the passes every import runs (instancenorm and chanpad only with optimize=True)
IMPORT_PASSES = ("fold", "transposes", "instancenorm", "fold", "chanpad")
_OPTIMIZE_PASSES = ("instancenorm", "chanpad")
MAX_SOURCE_BYTES = 2 * 1024 ** 3  # protobuf's own limit for one message


@dataclass
class ImportResult:
    path: Path
    format: str
    layout: str
    meta: ModelMeta
    check: CheckResult
    size_bytes: int
    passes: list = field(default_factory=list)


def detect_format(path: str) -> str:
    """The source format of ``path``, from what it is (directory) or what its bytes parse as."""
    from edge_sdk.importers.tf_saved_model import is_saved_model_dir

    if is_saved_model_dir(path):
        return "saved-model"
    if os.path.isdir(path):
        raise ConfigError("{} is a folder without saved_model.pb; pass a .pb, .onnx or .keras file or a "
                          "SavedModel folder".format(path))
    if not os.path.isfile(path):
        raise ConfigError("model {} does not exist".format(path))
    if path.lower().endswith((".keras", ".h5", ".hdf5")):
        return "keras"
    size = os.path.getsize(path)
    if size == 0 or size > MAX_SOURCE_BYTES:
        raise ModelError("{} is {} bytes: not a model file".format(path, size))
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x89HDF"):
        return "keras"  # .keras archives are zip files, legacy Keras files HDF5
    return "protobuf"  # ONNX or GraphDef: told apart by parsing (see _parse_protobuf)


def _parse_protobuf(path: str) -> tuple[str, bytes]:
    from edge_sdk.importers.onnx_source import parse_onnx
    from edge_sdk.importers.tf_graphdef import parse_graphdef

    data = Path(path).read_bytes()
    try:
        parse_onnx(data, path)
        return "onnx", data
    except ModelError:
        pass
    try:
        parse_graphdef(data, path)
        return "tf-graphdef", data
    except ModelError as exc:
        why = str(exc).split(" (", 1)[1].rstrip(")") if " (" in str(exc) else str(exc)
        raise ModelError("{} is not a model file import reads: neither ONNX nor a TensorFlow GraphDef ({})".format(
            path, why)) from None


def _three(name: str, values: Sequence[float] | float | None, positive: bool) -> list[float] | None:
    if values is None:
        return None
    values = [float(values)] * 3 if isinstance(values, (int, float)) else [float(v) for v in values]
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not all(math.isfinite(v) and abs(v) <= 1e4 for v in values) \
            or (positive and not all(v > 0 for v in values)):
        raise ConfigError("--{} takes 1 or 3 finite numbers{} (got {})".format(
            name, " > 0" if positive else "", values))
    return values


def input_spec(layout: ChannelLayout, width: int, height: int, color: str | None, scale: float | None,
               mean, std) -> InputSpec:
    """The preprocessing facts: explicit options first, the layout preset's defaults otherwise."""
    color = (color or layout.color).upper()
    if color not in ("RGB", "BGR"):
        raise ConfigError("--color must be rgb or bgr (got {!r})".format(color.lower()))
    scale = layout.scale if scale is None else float(scale)
    if not (math.isfinite(scale) and 0 < scale <= 1e4):
        raise ConfigError("--scale must be a number in (0, 10000] (got {})".format(scale))
    mean = _three("mean", mean, positive=False) or list(layout.mean)
    std = _three("std", std, positive=True) or list(layout.std)
    return InputSpec(name="image", height=height, width=width, layout="NCHW", dtype="float32", color=color,
                     scale=scale, mean=mean, std=std, batch=1)


def _resolve_size(requested: tuple[int, int] | None, static: tuple[int | None, int | None],
                  layout: ChannelLayout, path: str) -> tuple[int, int]:
    """(width, height): --input-size, else the graph's own static size, else the preset's usual size."""
    sw, sh = static
    if requested and not all(v % STRIDE == 0 and 32 <= v <= 4096 for v in requested):
        raise ConfigError("--input-size {}x{}: width and height must be multiples of {} in 32..4096".format(
            requested[0], requested[1], STRIDE))
    if requested:
        if (sw and sw != requested[0]) or (sh and sh != requested[1]):
            raise ConfigError("{} has a fixed input of {}x{}; --input-size {}x{} does not fit it".format(
                path, sw, sh, *requested))
        return requested
    if sw and sh:
        return sw, sh
    if layout.input_size:
        return layout.input_size
    raise ConfigError("{} takes any input size; choose one with --input-size WxH (e.g. 432x368)".format(path))


def _load_source(path: str, fmt: str, data: bytes | None, size: tuple[int, int] | None, layout: ChannelLayout,
                 input_name: str | None, output_names: list[str] | None, opset: int) -> SourceModel:
    if fmt == "tf-graphdef":
        from edge_sdk.importers import tf_graphdef as tg

        graph_def = tg.parse_graphdef(data, path)
        name = tg.find_input(graph_def, input_name, path)
        outputs = tg.find_outputs(graph_def, output_names, path)
        in_layout, h, w = tg.input_geometry(graph_def, name, path)
        width, height = _resolve_size(size, (w, h), layout, path)
        return tg.load_tf_graphdef(path, data, height, width, name, outputs, in_layout, opset)
    if fmt == "onnx":
        from edge_sdk.importers import onnx_source as os_

        model = os_.parse_onnx(data, path)
        value = os_.find_input(model, input_name, path)
        outputs = os_.find_outputs(model, output_names, path)
        in_layout, h, w = os_.input_geometry(value, path)
        width, height = _resolve_size(size, (w, h), layout, path)
        return os_.load_onnx(path, data, height, width, value.name, outputs, in_layout)
    from edge_sdk.importers import tf_saved_model as ts

    if input_name or output_names:
        raise ConfigError("--input/--output name tensors of a GraphDef or ONNX file; a {} is called through "
                          "its own signature".format(fmt))
    in_layout, h, w = ts.saved_model_geometry(path, fmt)
    width, height = _resolve_size(size, (w, h), layout, path)
    return ts.load_tf_saved_model(path, fmt, height, width, in_layout, opset)


def _output_shapes(source: SourceModel) -> dict[str, tuple[int, ...]]:
    """Run the converted graph once on zeros: the surest way to know every output's shape."""
    import onnxruntime as ort

    shape = (1, 3, source.height, source.width) if source.input_layout == "NCHW" else \
        (1, source.height, source.width, 3)
    try:
        session = ort.InferenceSession(source.onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
        values = session.run(source.output_names, {source.input_name: np.zeros(shape, np.float32)})
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        from edge_sdk.importers.source import first_line

        raise ModelError("the converted graph does not run in ONNX Runtime at {}x{}: {}".format(
            source.width, source.height, first_line(exc))) from None
    return {name: tuple(v.shape) for name, v in zip(source.output_names, values)}


def canonical_names(model) -> None:
    """Rename what converters number with process-wide counters, so the same source gives the same bytes.

    tf2onnx suffixes the nodes it adds with a global counter ("Resize__694"), merges identical constants
    under whichever name its hash order meets first, and notes the traced function's numbered name in the
    doc strings; all change between runs. Nodes keep their source name without the counter (plus their
    position when it was numbered), intermediate tensors are named after their node ("<node>:<i>"), weights
    after their first use ("<node>/input<i>").
    """
    import re

    graph = model.graph
    keep = {v.name for v in list(graph.input) + list(graph.output)}
    tensors: dict[str, str] = {}
    used: set[str] = set()
    for index, node in enumerate(graph.node):
        base = re.sub(r"_*_\d+$", "", node.name) if node.name else node.op_type
        node.name = base if base == node.name and base not in used else "{}_{}".format(base, index)
        used.add(node.name)
        for i, out in enumerate(node.output):
            if out and out not in keep:
                tensors[out] = "{}:{}".format(node.name, i)
    weights = {w.name: w for w in graph.initializer}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in weights and name not in tensors and name not in keep:
                tensors[name] = "{}/input{}".format(node.name, i)
    for node in graph.node:
        node.input[:] = [tensors.get(n, n) for n in node.input]
        node.output[:] = [tensors.get(n, n) for n in node.output]
    for weight in graph.initializer:
        weight.name = tensors.get(weight.name, weight.name)
    ordered = sorted(graph.initializer, key=lambda w: w.name)
    del graph.initializer[:]
    graph.initializer.extend(ordered)
    for value in graph.value_info:
        value.name = tensors.get(value.name, value.name)
    # converters' notes name the traced TF function, whose number grows with every trace in the process
    model.doc_string = graph.doc_string = ""
    for node in graph.node:
        node.doc_string = ""


def _write_atomically(data: bytes, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=output.name, suffix=".tmp", dir=str(output.parent))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def import_model(source: str | Path, output: str | Path, paf_order: str = "ours", input_name: str | None = None,
                 output_names: list[str] | None = None, color: str | None = None, scale: float | None = None,
                 mean=None, std=None, input_size: tuple[int, int] | None = None,
                 check_images: str | Path | None = None, check_count: int = 10, atol: float = DEFAULT_ATOL,
                 opset: int = DEFAULT_OPSET, optimize: bool = True, name: str | None = None,
                 log: Callable[[str], None] = print, progress: bool = True) -> ImportResult:
    """Import ``source`` into a contract ONNX at ``output``; nothing is written unless the check passes."""
    import onnx

    from edge_sdk.graph import run_passes
    from edge_sdk.graph.common import set_meta
    from edge_sdk.graph.rewrite import format_report
    from edge_sdk.importers.contract import locate_maps, to_contract

    layout = get_layout(paf_order)
    if not (0 < atol <= 1.0):
        raise ConfigError("--atol must be in (0, 1] (got {})".format(atol))
    if not 1 <= check_count <= 64:
        raise ConfigError("--check-count must be in 1..64 (got {})".format(check_count))
    if not 13 <= opset <= 21:
        raise ConfigError("--opset must be in 13..21 (got {})".format(opset))
    source, output = str(source), Path(output)
    if output.suffix != ".onnx":
        raise ConfigError("-o {}: the output must be an .onnx file".format(output))
    input_spec(layout, 64, 64, color, scale, mean, std)  # bad preprocessing options fail before any work
    fmt, data = detect_format(source), None
    if fmt == "protobuf":
        fmt, data = _parse_protobuf(source)
    log("{}: {} ({} channel layout); converting{}".format(
        source, fmt, layout.name, "" if fmt == "onnx" else " with tf2onnx, opset {}".format(opset)))
    src = _load_source(source, fmt, data, input_size, layout, input_name, output_names, opset)
    try:
        shapes = _output_shapes(src)
        maps = locate_maps(shapes, layout, src.height, src.width)
        log("input {!r} {} -> image NCHW 1x3x{}x{}; heatmaps from {!r}, pafs from {!r}".format(
            src.input_name, src.input_layout, src.height, src.width, maps[0].tensor, maps[1].tensor))
        spec = input_spec(layout, src.width, src.height, color, scale, mean, std)
        extra = {"imported_from": {
            "file": os.path.basename(source.rstrip("/")), "format": fmt, "channel_layout": layout.name,
            "sha256": hashlib.sha256(data).hexdigest() if data is not None else None,
            "input": src.input_name, "outputs": [maps[0].tensor, maps[1].tensor]}}
        meta = ModelMeta(input_spec=spec, model=name or Path(source.rstrip("/")).stem, extra=extra,
                         decoder=dict(layout.decoder))
        model = to_contract(src.onnx_model, src.input_name, src.input_layout, maps, shapes, src.height, src.width)
        model.producer_name, model.producer_version = "edge-sdk import", ""
        set_meta(model, meta)
        passes = [p for p in IMPORT_PASSES if optimize or p not in _OPTIMIZE_PASSES]
        model, meta, reports = run_passes(model, passes, meta=meta,
                                          progress=lambda r: log("  " + format_report(r)))
        canonical_names(model)
        onnx.checker.check_model(model)
        model_bytes = model.SerializeToString()
        frames, what = check_frames(check_images, check_count, src.width, src.height)
        bar = None
        if progress:
            from tqdm import tqdm

            def bar(items):
                return tqdm(items, desc="check", unit="img", leave=False)
        result = check_import(model_bytes, src, maps, spec, frames, what, progress=bar)
    finally:
        src.close()
    log("checked against {} on {}: max abs diff heatmaps {:.3g}, pafs {:.3g} (tolerance {:g})".format(
        src.framework, result.what, result.heatmaps, result.pafs, atol))
    if not math.isfinite(result.max_abs_diff) or result.max_abs_diff > atol:
        raise ModelError("the imported graph does not match {} (max abs diff {:.3g} > {:g}); not writing "
                         "{}".format(src.framework, result.max_abs_diff, atol, output))
    _write_atomically(model_bytes, output)
    log("wrote {} ({:.1f} MB; input {} {} {}x{}, scale {:g}, mean {}, std {})".format(
        output, len(model_bytes) / 1e6, spec.color, spec.layout, spec.width, spec.height, spec.scale,
        ",".join("{:g}".format(v) for v in spec.mean), ",".join("{:g}".format(v) for v in spec.std)))
    return ImportResult(output, fmt, layout.name, meta, result, len(model_bytes), reports)
