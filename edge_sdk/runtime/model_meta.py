"""The model metadata contract: how the runtime must feed a model, stored in ONNX ``metadata_props``.

One key, ``edge_sdk``, holds a JSON object (see :class:`ModelMeta`). Training's export writes it, graph
rewrites update it (e.g. normalisation folded into the first conv -> uint8 NHWC input), bundles copy it
into ``manifest.json``, and the runtime reads it to preprocess frames. A model without the key gets the
defaults below.
"""

import json

from edge_sdk.runtime.skeleton import STRIDE

METADATA_KEY = "edge_sdk"
META_VERSION = 1

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class InputSpec(object):
    """How a frame becomes the model input: size, layout, dtype, colour order and normalisation.

    ``value = (pixel * scale - mean[c]) / std[c]`` for float inputs; a uint8 input takes raw pixels.
    """

    def __init__(self, name="image", height=256, width=384, layout="NCHW", dtype="float32", color="RGB",
                 scale=1.0 / 255.0, mean=None, std=None, batch=1):
        if layout not in ("NCHW", "NHWC"):
            raise ValueError("input layout must be NCHW or NHWC, got {!r}".format(layout))
        if dtype not in ("float32", "float16", "uint8"):
            raise ValueError("input dtype must be float32, float16 or uint8, got {!r}".format(dtype))
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
            "std": self.std, "batch": self.batch,
        }

    @classmethod
    def from_dict(cls, data):
        return cls(**{k: data[k] for k in data if k in cls().to_dict()})

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
    """

    def __init__(self, input_spec=None, outputs=None, stride=STRIDE, skeleton="coco18-openpose",
                 model="unknown", extra=None):
        self.input = input_spec or InputSpec()
        self.outputs = dict(outputs or {"heatmaps": "heatmaps", "pafs": "pafs"})
        self.stride = int(stride)
        self.skeleton = skeleton
        self.model = model
        self.extra = dict(extra or {})

    def to_dict(self):
        return {
            "version": META_VERSION, "input": self.input.to_dict(), "outputs": self.outputs,
            "stride": self.stride, "skeleton": self.skeleton, "model": self.model, "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data):
        return cls(
            input_spec=InputSpec.from_dict(data.get("input", {})),
            outputs=data.get("outputs"),
            stride=data.get("stride", STRIDE),
            skeleton=data.get("skeleton", "coco18-openpose"),
            model=data.get("model", "unknown"),
            extra=data.get("extra"),
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
