"""Read and edit a model's edge_sdk metadata (host side, with ``onnx``): what ``edge-sdk meta`` runs.

A model without metadata is shown with what the runtime would assume for it (read off its graph by
:func:`edge_sdk.runtime.model_meta.assume_meta`), and ``update_meta`` starts from that, so
``edge-sdk meta set plain.onnx --color bgr --scale 1 --mean 0,0,0 --std 1,1,1`` is all a plain ONNX needs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.runtime.decoder_settings import check_decoder_settings
from edge_sdk.runtime.model_meta import (
    FITS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    METADATA_KEY,
    InputSpec,
    MetaAssumptionError,
    ModelMeta,
    assume_meta,
)

_ONNX_TYPES = {1: "tensor(float)", 10: "tensor(float16)", 2: "tensor(uint8)"}


def _load(path: str | os.PathLike):
    import onnx

    path = str(path)
    if not os.path.isfile(path):
        raise ConfigError(f"model {path} not found; pass an .onnx file")
    try:
        model = onnx.load(path)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for garbage
        raise ModelError(f"{path} is not an ONNX model ({type(exc).__name__}); pass an .onnx file") from None
    if not model.graph.input or not model.graph.output:
        raise ModelError(f"{path} is not an ONNX model with a graph (no inputs or outputs); pass an .onnx file")
    return model


def graph_io(model) -> tuple[dict, dict]:
    """({input name: (type, shape)}, {output name: (type, shape)}) as ONNX Runtime reports them: dims are
    ints when static, names (or None) when symbolic; initialisers are not inputs."""
    initializers = {t.name for t in model.graph.initializer}

    def describe(value):
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
        return _ONNX_TYPES.get(tensor.elem_type, f"tensor(type {tensor.elem_type})"), shape

    inputs = {v.name: describe(v) for v in model.graph.input if v.name not in initializers}
    outputs = {v.name: describe(v) for v in model.graph.output}
    return inputs, outputs


def meta_of(model, name: str = "model") -> ModelMeta:
    """The model's own ModelMeta, or (``assumed`` True) what the runtime would assume for it."""
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY in props:
        try:
            return ModelMeta.from_props(props)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"{name}: its '{METADATA_KEY}' metadata is not valid ({exc}); replace it: "
                             f"`edge-sdk meta set {name} --json FILE`") from None
    inputs, outputs = graph_io(model)
    try:
        return assume_meta(inputs, outputs, name)
    except MetaAssumptionError as exc:
        raise ModelError(str(exc)) from None


def read_meta(path: str | os.PathLike) -> ModelMeta:
    """The metadata of the model at ``path`` (``.assumed`` True when it has none)."""
    return meta_of(_load(path), str(path))


def format_meta(meta: ModelMeta, path: str | os.PathLike) -> str:
    """Human lines: where the metadata came from, the input, the outputs, the decoder settings."""
    head = (f"{path}: no edge_sdk metadata; the runtime assumes:" if meta.assumed
            else f"{path}: edge_sdk metadata (model {meta.model!r}):")
    from edge_sdk.runtime.skeleton import get_skeleton

    skeleton = get_skeleton(meta.skeleton)
    lines = [head, "  " + meta.describe_input(),
             "  outputs: " + ", ".join(f"{role}={name}" for role, name in sorted(meta.outputs.items()))
             + f"  stride {meta.stride}  skeleton {skeleton.name} ({skeleton.num_parts} parts, "
               f"{skeleton.num_limbs} limbs)",
             "  decoder: " + (", ".join(f"{k}={v}" for k, v in sorted(meta.decoder.items())) or "defaults")]
    if meta.assumed:
        lines.append(f"  set it: edge-sdk meta set {path} --color bgr|rgb --scale S --mean R,G,B --std R,G,B")
    return "\n".join(lines)


def _floats3(text: str | list, flag: str) -> list[float]:
    values = text if isinstance(text, list) else str(text).split(",")
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        raise ConfigError(f"{flag} needs 3 comma-separated numbers (R,G,B), got {text!r}") from None
    if len(numbers) != 3 or not all(abs(n) < 1e6 for n in numbers):
        raise ConfigError(f"{flag} needs 3 comma-separated finite numbers (R,G,B), got {text!r}")
    return numbers


def _scale(text) -> float:
    text = str(text).strip()
    try:
        value = float(text) if "/" not in text else float(text.split("/")[0]) / float(text.split("/")[1])
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"--scale needs a number such as 1 or 1/255, got {text!r}") from None
    if not 0 < value <= 1e3:
        raise ConfigError(f"--scale must be > 0 and <= 1000, got {text!r}")
    return value


def _input_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ConfigError(f"--input needs WIDTHxHEIGHT, e.g. 432x368, got {text!r}") from None
    if not (8 <= width <= 8192 and 8 <= height <= 8192):
        raise ConfigError(f"--input {text}: width and height must be in [8, 8192]")
    return width, height


def _from_json(text: str) -> ModelMeta:
    if os.path.isfile(text):
        text = Path(text).read_text()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--json: not valid JSON ({exc}); give a JSON object or a file holding one") from None
    try:
        return ModelMeta.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--json: not valid edge_sdk metadata: {exc}") from None


def apply_changes(meta: ModelMeta, changes: dict, inputs: dict, outputs: dict) -> ModelMeta:
    """A new ModelMeta: ``meta`` with ``changes`` (keys: color, scale, mean, std, input "WxH", fit,
    heatmaps, pafs, peaks, stride, model, decoder {name: value}, json), checked against the graph."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if "json" in changes:
        meta = _from_json(changes.pop("json"))
    spec = _changed_input(meta.input.to_dict(), changes)
    _check_input_against_graph(spec, inputs)
    roles = _changed_outputs(dict(meta.outputs), changes, outputs)
    decoder = dict(meta.decoder)
    decoder.update(check_decoder_settings(changes.get("decoder") or {}, "meta set"))
    for name in changes.get("reset_decoder") or []:
        decoder.pop(name, None)
    skeleton = _skeleton(changes["skeleton"]) if "skeleton" in changes else meta.skeleton
    _check_channels(skeleton, roles, outputs)
    stride = int(changes.get("stride", meta.stride))
    if stride not in (4, 8, 16, 32):
        raise ConfigError(f"--stride must be 4, 8, 16 or 32, got {stride}")
    try:
        return ModelMeta(input_spec=InputSpec(**spec), outputs=roles, stride=stride, skeleton=skeleton,
                         model=str(changes.get("model", meta.model)), extra=meta.extra, decoder=decoder)
    except ValueError as exc:
        raise ConfigError(f"meta set: {exc}") from None


def _changed_input(spec: dict, changes: dict) -> dict:
    """The input spec dict with the colour, scale, mean/std, fit and size changes applied (each checked)."""
    if "color" in changes:
        color = str(changes["color"]).upper()
        if color not in ("RGB", "BGR"):
            raise ConfigError(f"--color must be rgb or bgr, got {changes['color']!r}")
        spec["color"] = color
    if "scale" in changes:
        spec["scale"] = _scale(changes["scale"])
    if "mean" in changes:
        spec["mean"] = _floats3(changes["mean"], "--mean")
    if "std" in changes:
        spec["std"] = _floats3(changes["std"], "--std")
        if not all(v > 0 for v in spec["std"]):
            raise ConfigError(f"--std values must be > 0, got {changes['std']!r}")
    if changes.get("imagenet"):
        spec["mean"], spec["std"] = list(IMAGENET_MEAN), list(IMAGENET_STD)
    if "fit" in changes:
        if changes["fit"] not in FITS:
            raise ConfigError(f"--fit must be one of {', '.join(FITS)}, got {changes['fit']!r}")
        spec["fit"] = changes["fit"]
    if "input" in changes:
        spec["width"], spec["height"] = _input_size(changes["input"])
    return spec


def _changed_outputs(roles: dict, changes: dict, outputs: dict) -> dict:
    """The output roles with --heatmaps/--pafs/--peaks applied; every role must name an output of the graph."""
    for role in ("heatmaps", "pafs", "peaks"):
        if role in changes:
            if changes[role] not in outputs:
                raise ConfigError(f"--{role} {changes[role]!r}: the graph has no such output; it outputs "
                                  f"{', '.join(sorted(outputs))}")
            roles[role] = changes[role]
            if role == "peaks":
                roles.pop("heatmaps", None)
    missing = [f"{role}={name}" for role, name in sorted(roles.items()) if name not in outputs]
    if missing:
        raise ConfigError(f"the metadata's outputs {', '.join(missing)} are not outputs of the graph "
                          f"({', '.join(sorted(outputs))}); name them with --heatmaps TENSOR --pafs TENSOR")
    return roles


def _skeleton(text: str):
    """A skeleton name, or a JSON object (text or a file holding it), checked."""
    from edge_sdk.runtime.skeleton import SKELETONS, get_skeleton

    value = text
    if text not in SKELETONS:
        if os.path.isfile(text):
            text = Path(text).read_text()
        try:
            value = json.loads(text)
        except ValueError:
            value = text  # an unknown name: get_skeleton says which are known
    try:
        get_skeleton(value)
    except ValueError as exc:
        raise ConfigError(f"--skeleton: {exc}") from None
    return value


def _check_channels(skeleton, roles: dict, outputs: dict) -> None:
    """Heatmap / PAF outputs with a fixed channel count must have the skeleton's."""
    from edge_sdk.runtime.skeleton import get_skeleton

    try:
        sk = get_skeleton(skeleton)
    except ValueError as exc:
        raise ConfigError(f"the metadata's skeleton is not valid: {exc}") from None
    for role, channels in (("heatmaps", sk.num_heatmaps), ("pafs", sk.num_pafs), ("peaks", sk.num_parts)):
        shape = outputs.get(roles.get(role), (None, []))[1]
        if len(shape) == 4 and isinstance(shape[1], int) and shape[1] > 0 and shape[1] != channels:
            raise ConfigError(f"output {roles[role]!r} ({role}) has {shape[1]} channels but skeleton {sk.name} "
                              f"needs {channels}; choose the skeleton of the model (--skeleton)")


def _check_input_against_graph(spec: dict, inputs: dict) -> None:
    if spec["name"] not in inputs:
        if len(inputs) == 1:  # metadata for a renamed input: follow the graph
            spec["name"] = list(inputs)[0]
        else:
            raise ConfigError(f"the metadata names input {spec['name']!r} but the graph's inputs are "
                              f"{', '.join(sorted(inputs))}")
    _kind, shape = inputs[spec["name"]]
    if len(shape) == 4:
        spec["layout"] = "NCHW" if shape[1] == 3 else "NHWC" if shape[3] == 3 else spec["layout"]
        dims = (shape[2], shape[3]) if spec["layout"] == "NCHW" else (shape[1], shape[2])
        for label, got, want in (("height", dims[0], spec["height"]), ("width", dims[1], spec["width"])):
            if isinstance(got, int) and got > 0 and got != want:
                raise ConfigError(f"input {label} {want} does not match the graph's fixed {label} {got} "
                                  f"(input {spec['name']!r} {shape}); the runtime feeds the graph's size")


def update_meta(path: str | os.PathLike, changes: dict, output: str | os.PathLike | None = None) -> ModelMeta:
    """Apply ``changes`` (see :func:`apply_changes`) to the model's metadata (or the assumed one) and write
    the model to ``output`` (default: in place, through a temporary file so a failure leaves it whole)."""
    import onnx


    model = _load(path)
    inputs, outputs = graph_io(model)
    if changes.get("json") is not None:
        meta = ModelMeta()  # replaced whole by the JSON
    elif METADATA_KEY in {p.key for p in model.metadata_props}:
        meta = meta_of(model, str(path))
    else:
        try:
            meta = assume_meta(inputs, outputs, str(path))
        except MetaAssumptionError as exc:  # e.g. no fixed input size: the changes must supply what is missing
            if changes.get("input") is None:
                raise ConfigError(str(exc)) from None
            meta = ModelMeta()
    new = apply_changes(meta, changes, inputs, outputs)
    for prop in model.metadata_props:  # keep every other key, and the order
        if prop.key == METADATA_KEY:
            prop.value = new.to_json()
            break
    else:
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, new.to_json()
    target = Path(output or path)
    temporary = target.with_name(target.name + ".tmp")
    try:
        onnx.save(model, str(temporary))
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()
    return new


__all__ = ["apply_changes", "format_meta", "graph_io", "meta_of", "read_meta", "update_meta"]
