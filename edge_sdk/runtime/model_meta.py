"""The model metadata contract: how the runtime must feed a model, stored in ONNX ``metadata_props``.

One key, ``edge_sdk``, holds a JSON object (see :class:`ModelMeta`). Training's export writes it, graph
rewrites update it (e.g. normalisation folded into the first conv -> uint8 NHWC input), bundles copy it
into ``manifest.json``, and the runtime reads it to preprocess frames. A model without the key gets the
defaults below, or, at load time, what :func:`assume_meta` reads off the graph (its static input size and
its output shapes): ``ModelMeta.assumed`` is then True, so messages never claim "the metadata says".
"""

import json
from typing import Any, Dict

from edge_sdk.runtime.skeleton import DEFAULT_SKELETON, SKELETONS, STRIDE, get_skeleton

METADATA_KEY = "edge_sdk"
META_VERSION = 1

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

FITS = ("letterbox", "stretch")
"""How a frame fits the input: ``letterbox`` keeps the aspect ratio and pads; ``stretch`` fills the input."""

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}


class InputSpec(object):
    """How a frame becomes the model input: size, layout, dtype, colour order and normalisation.

    ``value = (pixel * scale - mean[c]) / std[c]`` for float inputs; a uint8 input takes raw pixels.
    """

    def __init__(self, name="image", height=256, width=384, layout="NCHW", dtype="float32", color="RGB",
                 scale=1.0 / 255.0, mean=None, std=None, batch=1, fit="letterbox"):
        if layout not in ("NCHW", "NHWC"):
            raise ValueError("input layout must be NCHW or NHWC, got {!r}".format(layout))
        if dtype not in ("float32", "float16", "uint8"):
            raise ValueError("input dtype must be float32, float16 or uint8, got {!r}".format(dtype))
        if color not in ("RGB", "BGR"):
            raise ValueError("input color must be RGB or BGR, got {!r}".format(color))
        if fit not in FITS:
            raise ValueError("input fit must be one of {}, got {!r}".format(", ".join(FITS), fit))
        self.name = name
        self.height = int(height)
        self.width = int(width)
        self.layout = layout
        self.dtype = dtype
        self.color = color
        self.scale = float(scale)
        self.mean = list(IMAGENET_MEAN if mean is None else mean)
        self.std = list(IMAGENET_STD if std is None else std)
        self.batch = int(batch)
        self.fit = fit
        for label, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3:
                raise ValueError("input {} needs 3 values (one per channel), got {}".format(label, len(values)))
        if not all(v > 0 for v in self.std):
            raise ValueError("input std values must be > 0, got {}".format(self.std))
        if not (0 < self.height <= 8192 and 0 < self.width <= 8192 and 0 < self.batch <= 64):
            raise ValueError("input size {}x{} (batch {}) is out of range".format(self.width, self.height,
                                                                                 self.batch))

    @property
    def shape(self):
        """The input tensor shape, e.g. (1, 3, 256, 384) for NCHW."""
        if self.layout == "NCHW":
            return (self.batch, 3, self.height, self.width)
        return (self.batch, self.height, self.width, 3)

    def to_dict(self):
        return {
            "name": self.name, "height": self.height, "width": self.width, "layout": self.layout,
            "dtype": self.dtype, "color": self.color, "scale": self.scale, "mean": self.mean,
            "std": self.std, "batch": self.batch, "fit": self.fit,
        }

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ValueError("'input' must be a JSON object, got {}".format(type(data).__name__))
        known = cls().to_dict()
        unknown = sorted(k for k in data if k not in known)
        if unknown:
            raise ValueError("unknown input key(s) {}; known: {}".format(", ".join(unknown), ", ".join(sorted(known))))
        return cls(**data)

    def __eq__(self, other):
        return isinstance(other, InputSpec) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return "InputSpec({})".format(self.to_dict())


class ModelMeta(object):
    """Everything the runtime needs to know about a model besides its weights.

    ``outputs`` maps roles to tensor names: ``heatmaps`` + ``pafs`` (raw maps), or ``peaks`` + ``pafs``
    when GPU-side peak extraction was appended (peaks: float32 [N, 18, K, 3] = x, y, score in map
    cells, score 0 for empty slots), or ``peaks`` + ``limb_scores`` when limb scoring was appended too
    (limb_scores: float32 [N, 19, K, K], see edge_sdk.graph.limbs).

    ``decoder`` holds decoder settings that suit this model (names of DecodeConfig, e.g. peak_threshold);
    they override the decoder defaults and are overridden by command-line flags
    (:mod:`edge_sdk.runtime.decoder_settings`). ``assumed`` is True when the model carried no metadata and
    this object was read off its graph (:func:`assume_meta`); it is never written to JSON.
    """

    def __init__(self, input_spec=None, outputs=None, stride=STRIDE, skeleton=DEFAULT_SKELETON,
                 model="unknown", extra=None, decoder=None, assumed=False):
        self.input = input_spec or InputSpec()
        self.outputs = dict(outputs or {"heatmaps": "heatmaps", "pafs": "pafs"})
        self.stride = int(stride)
        if self.stride not in (4, 8, 16, 32):
            raise ValueError("stride must be 4, 8, 16 or 32, got {}".format(self.stride))
        self.skeleton = skeleton
        self.model = model
        self.extra = dict(extra or {})
        self.decoder = dict(decoder or {})
        self.assumed = bool(assumed)

    def to_dict(self):
        return {
            "version": META_VERSION, "input": self.input.to_dict(), "outputs": self.outputs,
            "stride": self.stride, "skeleton": self.skeleton, "model": self.model, "extra": self.extra,
            "decoder": self.decoder,
        }

    @classmethod
    def from_dict(cls, data):
        """From a dict; ValueError naming the key when it is not what the contract expects."""
        if not isinstance(data, dict):
            raise ValueError("the metadata must be a JSON object, got {}".format(type(data).__name__))
        known = ("version", "input", "outputs", "stride", "skeleton", "model", "extra", "decoder")
        unknown = sorted(k for k in data if k not in known)
        if unknown:
            raise ValueError("unknown key(s) {}; known: {}".format(", ".join(unknown), ", ".join(known)))
        outputs = data.get("outputs")
        if outputs is not None and (not isinstance(outputs, dict)
                                    or not all(isinstance(v, str) for v in outputs.values())):
            raise ValueError("'outputs' must map roles to tensor names, e.g. "
                             "{\"heatmaps\": \"heatmaps\", \"pafs\": \"pafs\"}")
        for key in ("extra", "decoder"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise ValueError("{!r} must be a JSON object".format(key))
        get_skeleton(data.get("skeleton", DEFAULT_SKELETON))  # a ValueError saying what is wrong
        decoder = data.get("decoder")
        if decoder:
            from edge_sdk.errors import ConfigError
            from edge_sdk.runtime.decoder_settings import check_decoder_settings

            try:
                decoder = check_decoder_settings(decoder, "'decoder'")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return cls(
            input_spec=InputSpec.from_dict(data.get("input", {})),
            outputs=outputs,
            stride=data.get("stride", STRIDE),
            skeleton=data.get("skeleton", DEFAULT_SKELETON),
            model=data.get("model", "unknown"),
            extra=data.get("extra"),
            decoder=decoder,
        )

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_props(cls, props):
        """From an ONNX ``metadata_props`` mapping {key: value}; defaults if the key is absent."""
        if METADATA_KEY in props:
            return cls.from_json(props[METADATA_KEY])
        return cls()

    def describe_input(self):
        """One phrase for humans: size, layout, dtype, colour order, normalisation and fit."""
        spec = self.input
        if spec.dtype == "uint8":
            values = "raw uint8 pixels"
        else:
            scale = "/255" if abs(spec.scale - 1.0 / 255.0) < 1e-9 else "*{:g}".format(spec.scale)
            if spec.mean == IMAGENET_MEAN and spec.std == IMAGENET_STD:
                values = "(pixel{} - ImageNet mean) / ImageNet std".format(scale)
            else:
                values = "(pixel{} - mean {}) / std {}".format(
                    scale, ",".join("{:g}".format(v) for v in spec.mean), ",".join("{:g}".format(v) for v in spec.std))
        return "{}input {!r} {}x{} (WxH) {} {}, {}, {}, {}".format(
            "" if self.skeleton == DEFAULT_SKELETON else "skeleton {}, ".format(get_skeleton(self.skeleton).name),
            spec.name, spec.width, spec.height, spec.layout, spec.dtype, spec.color, values, spec.fit)


class MetaAssumptionError(ValueError):
    """A model without metadata whose graph does not say enough to run it (the message says what to set)."""


def _static_dim(dim):
    return dim if isinstance(dim, int) and dim > 0 else None


def assume_meta(inputs: Dict[str, Any], outputs: Dict[str, Any], name: str = "model") -> "ModelMeta":
    """The ModelMeta of a model WITHOUT metadata, read off its graph: ``inputs`` / ``outputs`` are
    {tensor name: (ONNX Runtime type string, shape list)}. The input size is the graph's static input
    shape; the layout is where its 3 channels are; the outputs are the tensors named heatmaps/pafs/peaks,
    else the ones with 19 (heatmaps) and 38 (pafs) channels; the stride is input size / map size. The
    preprocessing (RGB, pixel/255, ImageNet mean/std, letterbox) is edge-sdk's default, which is why the
    runtime says so when it uses it. Raises MetaAssumptionError when the graph leaves a choice open."""
    how = "set it with `edge-sdk meta set {} ...`".format(name)
    if len(inputs) != 1:
        raise MetaAssumptionError("model {} has no edge_sdk metadata and {} inputs ({}); a pose model has one "
                                  "image input".format(name, len(inputs), ", ".join(sorted(inputs)) or "none"))
    input_name = list(inputs)[0]
    kind, shape = inputs[input_name]
    if kind not in _ORT_DTYPES:
        raise MetaAssumptionError("model {}: input {!r} is {}; expected float32, float16 or uint8 pixels".format(
            name, input_name, kind))
    shape = list(shape)
    if len(shape) != 4 or (shape[1] != 3 and shape[3] != 3):
        raise MetaAssumptionError("model {}: input {!r} has shape {}; expected an image [N, 3, H, W] or "
                                  "[N, H, W, 3]".format(name, input_name, shape))
    layout = "NCHW" if shape[1] == 3 else "NHWC"
    height, width = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    if _static_dim(height) is None or _static_dim(width) is None:
        raise MetaAssumptionError("model {} has no edge_sdk metadata and its input {!r} has no fixed size ({}); "
                                  "give it one: `edge-sdk meta set {} --input WxH`".format(
                                      name, input_name, shape, name))
    roles = {}
    for role in ("heatmaps", "pafs", "peaks"):
        if role in outputs:
            roles[role] = role
    by_channels = {}
    for tensor, (_kind, out_shape) in outputs.items():
        if len(out_shape) == 4 and _static_dim(out_shape[1]) is not None:
            by_channels.setdefault(out_shape[1], []).append(tensor)
    skeleton = _skeleton_by_channels(by_channels)
    if "pafs" not in roles or not ({"heatmaps", "peaks"} & set(roles)):
        wanted = get_skeleton(skeleton)
        for role, channels in (("heatmaps", wanted.num_heatmaps), ("pafs", wanted.num_pafs)):
            found = by_channels.get(channels, [])
            if role in roles:
                continue
            if len(found) != 1:
                raise MetaAssumptionError(
                    "model {} has no edge_sdk metadata and {} output with {} channels for {} (outputs: {}); {}"
                    " --{} TENSOR".format(name, "no" if not found else "more than one", channels, role,
                                          ", ".join(sorted(outputs)) or "none", how, role))
            roles[role] = found[0]
    stride = STRIDE
    map_shape = outputs.get(roles.get("pafs"), (None, []))[1]
    if len(map_shape) == 4 and _static_dim(map_shape[2]) and height % map_shape[2] == 0:
        if height // map_shape[2] in (4, 8, 16, 32):
            stride = height // map_shape[2]
    spec = InputSpec(name=input_name, height=height, width=width, layout=layout, dtype=_ORT_DTYPES[kind],
                     batch=_static_dim(shape[0]) or 1)
    return ModelMeta(input_spec=spec, outputs=roles, stride=stride, skeleton=skeleton, assumed=True)


def _skeleton_by_channels(by_channels):
    """The known skeleton whose heatmap and PAF channel counts are both among the outputs (COCO-18 when
    none or several match: the error then names the channels COCO-18 needs)."""
    found = [name for name, sk in sorted(SKELETONS.items())
             if len(by_channels.get(sk.num_heatmaps, ())) == 1 and len(by_channels.get(sk.num_pafs, ())) == 1]
    return found[0] if len(found) == 1 else DEFAULT_SKELETON


def assumption_line(meta: "ModelMeta", path: str) -> str:
    """The one line the runtime prints when it runs a model without metadata: what it assumed, how to set it."""
    return ("note: {} has no edge_sdk metadata; assumed {}; if the model was trained otherwise, set it: "
            "`edge-sdk meta set {} --color bgr|rgb --scale S --mean R,G,B --std R,G,B`".format(
                path, meta.describe_input(), path))
