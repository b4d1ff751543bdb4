"""ONNX Runtime backend: runs the model on the CPU (any host, and the ``cpu`` target).

``onnxruntime`` is imported when a backend is created, never at module import, so the runtime works on a
Jetson image that only has TensorRT. The model's I/O is checked against the contract (DESIGN.md, "Model
I/O") when it is loaded, so a wrong model fails at start with a message saying what is wrong instead of
producing garbage poses later.
"""

import os
from typing import Any, List, Optional

import numpy as np

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.runtime.backends import Backend
from edge_sdk.runtime.model_meta import METADATA_KEY, MetaAssumptionError, ModelMeta, assume_meta
from edge_sdk.runtime.skeleton import get_skeleton

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")

_ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "uint8": "tensor(uint8)"}


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("the ONNX Runtime backend needs the `onnxruntime` package: "
                          "`pip install onnxruntime` (or a bundle's TensorRT engine: --backend tensorrt)") from None
    return onnxruntime


_LEVEL_NAMES = {"ORT_DISABLE_ALL": "disable", "ORT_ENABLE_BASIC": "basic", "ORT_ENABLE_EXTENDED": "extended",
                "ORT_ENABLE_ALL": "all"}


def session_options(threads: Optional[int] = None, optimization: Optional[str] = None,
                    config: Optional[dict] = None) -> Any:
    """ONNX Runtime SessionOptions from a bundle's ``onnxruntime`` manifest section (``config``: the target
    profile's ``graph_optimization_level``, ``execution_mode``, ``intra_op_num_threads``,
    ``inter_op_num_threads``), overridden by ``threads`` (intra-op; None/0 = one per core) and
    ``optimization`` (disable | basic | extended | all, or the ORT_* names)."""
    ort = _import_onnxruntime()
    config = dict(config or {})
    level = optimization or config.get("graph_optimization_level") or "all"
    level = _LEVEL_NAMES.get(level, level)
    if level not in OPTIMIZATION_LEVELS:
        raise ConfigError("unknown graph optimisation level {!r}; known: {}".format(
            level, ", ".join(OPTIMIZATION_LEVELS)))
    options = ort.SessionOptions()
    intra = threads if threads else config.get("intra_op_num_threads")
    if intra:
        options.intra_op_num_threads = int(intra)
    inter = config.get("inter_op_num_threads", 1 if threads else None)
    if inter:
        options.inter_op_num_threads = int(inter)
    mode = config.get("execution_mode")
    if mode is not None:
        if mode not in ("ORT_SEQUENTIAL", "ORT_PARALLEL"):
            raise ConfigError("unknown ONNX Runtime execution_mode {!r}; known: ORT_SEQUENTIAL, ORT_PARALLEL".format(
                mode))
        options.execution_mode = getattr(ort.ExecutionMode, mode)
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    options.log_severity_level = 3  # errors only: warnings about unused initialisers are noise here
    return options


def _static(dim):
    """An ONNX Runtime shape entry as an int, or None when it is symbolic (a name) or unknown."""
    return dim if isinstance(dim, int) and dim > 0 else None


def _shape_text(shape):
    return "[" + ", ".join(str(d) if d is not None else "?" for d in shape) + "]"


def check_model_io(path: str, meta: ModelMeta, inputs: List[Any], outputs: List[Any]) -> None:
    """Raise ModelError unless the session's inputs/outputs follow the model I/O contract for ``meta``.

    ``inputs`` / ``outputs``: {name: (ort type string, shape list)} as ONNX Runtime reports them.
    """
    where = "model {}".format(path)
    _check_model_input(where, meta, inputs)
    _check_model_outputs(where, meta, outputs)


def _check_model_input(where, meta, inputs):
    spec = meta.input
    says = "edge-sdk assumed (the model has no metadata)" if getattr(meta, "assumed", False) else \
        "its metadata says"
    if spec.name not in inputs:
        raise ModelError("{}: no input named {!r} (it has {}); the runtime feeds the input named in the model "
                         "metadata -- re-export the model with an input called 'image'".format(
                             where, spec.name, ", ".join(sorted(inputs)) or "none"))
    kind, shape = inputs[spec.name]
    if kind != _ORT_TYPES[spec.dtype]:
        raise ModelError("{}: input {!r} is {} but {} {} ({})".format(
            where, spec.name, kind, says, spec.dtype, spec.layout))
    if len(shape) != 4:
        raise ModelError("{}: input {!r} has rank {} {}; expected {} {}".format(
            where, spec.name, len(shape), _shape_text(shape), spec.layout, list(spec.shape)))
    for got, want in zip(shape[1:], spec.shape[1:]):
        if _static(got) is not None and got != want:
            raise ModelError("{}: input {!r} has shape {} but {} {} {}; fix the metadata (`edge-sdk meta set`) "
                             "or re-export at that size".format(where, spec.name, _shape_text(shape), says,
                                                                 spec.layout, list(spec.shape)))
    if _static(shape[0]) is not None and shape[0] != spec.batch:
        raise ModelError("{}: input batch is {} but {} {}".format(where, shape[0], says, spec.batch))


def _check_model_outputs(where, meta, outputs):
    spec = meta.input
    roles = meta.outputs
    scored = "limb_scores" in roles and "peaks" in roles  # the 'limbs' pass: limbs scored in the graph
    if not ("pafs" in roles or scored) or not ({"heatmaps", "peaks"} & set(roles)):
        raise ModelError("{}: metadata outputs {} must name 'pafs' and 'heatmaps' (or 'peaks', or 'peaks' and "
                         "'limb_scores')".format(where, roles))
    map_h, map_w = spec.height // meta.stride, spec.width // meta.stride
    try:
        skeleton = get_skeleton(meta.skeleton)
    except ValueError as exc:
        raise ModelError("{}: {}".format(where, exc)) from None
    expect = {"pafs": (skeleton.num_pafs, map_h, map_w)} if "pafs" in roles else {}
    if scored:
        expect["limb_scores"] = (skeleton.num_limbs, None, None)
    if "peaks" in roles:
        expect["peaks"] = (skeleton.num_parts, None, 3)
    else:
        expect["heatmaps"] = (skeleton.num_heatmaps, map_h, map_w)
    for role, dims in sorted(expect.items()):
        name = roles[role]
        if name not in outputs:
            raise ModelError("{}: no output named {!r} for {} (outputs: {}); a pose model must output heatmaps "
                             "[N, {}, H/8, W/8] and pafs [N, {}, H/8, W/8]".format(
                                 where, name, role, ", ".join(sorted(outputs)) or "none", skeleton.num_heatmaps,
                                 skeleton.num_pafs))
        kind, shape = outputs[name]
        if kind not in ("tensor(float)", "tensor(float16)"):
            raise ModelError("{}: output {!r} ({}) is {}; expected float".format(where, name, role, kind))
        wanted = "[N, {}]".format(", ".join("?" if d is None else str(d) for d in dims))
        if len(shape) != 4:
            raise ModelError("{}: output {!r} ({}) has shape {}; expected {}".format(
                where, name, role, _shape_text(shape), wanted))
        for got, want in zip(shape[1:], dims):
            if want is not None and _static(got) is not None and got != want:
                raise ModelError("{}: output {!r} ({}) has shape {}; expected {} (stride {} of the {}x{} input)"
                                 .format(where, name, role, _shape_text(shape), wanted, meta.stride,
                                         spec.height, spec.width))


class OnnxRuntimeBackend(Backend):
    """Runs an ONNX pose model with ONNX Runtime (CPU execution provider by default)."""

    name = "onnxruntime"

    def __init__(self, model_path, meta=None, threads=None, optimization=None, providers=None, config=None):
        """``meta`` overrides the model's own metadata (a bundle's manifest carries it); ``threads``: ONNX
        Runtime intra-op threads (None: its default); ``optimization``: graph optimisation level;
        ``config``: a bundle's ``onnxruntime`` section (session options and ``providers``)."""
        model_path = str(model_path)
        if not os.path.isfile(model_path):
            raise ModelError("model file {} not found; pass the path of an exported .onnx model".format(model_path))
        ort = _import_onnxruntime()
        config = dict(config or {})
        options = session_options(threads, optimization, config)
        requested = list(providers or config.get("providers") or ["CPUExecutionProvider"])
        available = set(ort.get_available_providers())
        self.providers = [p for p in requested if p in available] or ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(model_path, options, providers=self.providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
            text = str(exc).strip()
            if "opset" in text.lower() or "ValidateOpsetForDomain" in text:
                raise ModelError("cannot load ONNX model {}: it uses an ONNX opset newer than this onnxruntime {} "
                                 "supports; upgrade onnxruntime, or export/rewrite the model with a lower opset "
                                 "(>= 13)".format(model_path, getattr(ort, "__version__", "?"))) from exc
            raise ModelError("cannot load ONNX model {}: {}; the file is corrupt or not an ONNX model -- "
                             "re-export it (or re-copy it if it was truncated)".format(
                                 model_path, text.splitlines()[0][:300])) from exc
        inputs = {i.name: (i.type, list(i.shape)) for i in session.get_inputs()}
        outputs = {o.name: (o.type, list(o.shape)) for o in session.get_outputs()}
        if meta is None:
            props = session.get_modelmeta().custom_metadata_map or {}
            if METADATA_KEY not in props:  # a plain ONNX: read what the graph says, the rest is assumed
                try:
                    meta = assume_meta(inputs, outputs, model_path)
                except MetaAssumptionError as exc:
                    raise ModelError(str(exc)) from None
            try:
                meta = meta or ModelMeta.from_props(props)
            except (ValueError, TypeError, KeyError) as exc:
                raise ModelError("model {}: metadata key {!r} is not valid ModelMeta JSON ({}); fix it with "
                                 "`edge-sdk meta set {} --json ...` or re-export the model with edge-sdk".format(
                                     model_path, METADATA_KEY, exc, model_path)) from None
        check_model_io(model_path, meta, inputs, outputs)
        Backend.__init__(self, meta)
        self.model_path = model_path
        self.session = session
        self.threads = options.intra_op_num_threads or None
        self.optimization = _LEVEL_NAMES.get(str(options.graph_optimization_level).split(".")[-1], "all")
        self._output_names = [meta.outputs[role] for role in sorted(meta.outputs)]
        self._input_name = meta.input.name

    def infer(self, batch):
        """One batch (``input_spec.shape``) -> {output name: float32 array}; arrays are new, owned by the caller."""
        batch = np.asarray(batch)
        try:
            results = self.session.run(self._output_names, {self._input_name: batch})
        except Exception as exc:
            raise ModelError("inference failed on model {} with input {} {}: {}".format(
                self.model_path, batch.dtype, list(batch.shape), str(exc).strip().splitlines()[0][:300])) from exc
        return dict(zip(self._output_names, results))

    def describe(self):
        threads = self.threads or "auto"
        return "onnxruntime {} ({}, {} threads, optimisation {})".format(
            getattr(_import_onnxruntime(), "__version__", "?"), ",".join(self.providers), threads,
            self.optimization)

    def close(self):
        self.session = None
