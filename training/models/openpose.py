"""OpenPose networks: a backbone, an initial stage and N-1 refinement stages, each predicting
19 heatmaps (18 COCO-18 parts + background) and 38 PAF channels at stride 8.

The Keras model works in NHWC (what TensorFlow runs fastest on CPUs and GPUs); the export wraps it in
an NCHW graph. Its outputs are ``[stage1_heatmaps, stage1_pafs, ..., stageN_heatmaps, stageN_pafs]``
so the loss can supervise every stage; only the last pair is exported.
"""

from __future__ import annotations

import dataclasses

import keras
from edge_sdk.training.models import backbones  # noqa: F401  (registers the built-in backbones)
from edge_sdk.training.models.registry import BACKBONE_DEFAULTS, get_backbone, scaled
from keras import layers

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.skeleton import NUM_HEATMAPS, NUM_PAFS, STRIDE


@dataclasses.dataclass
class ModelConfig:
    """Everything needed to rebuild a model (saved as JSON in the run directory)."""

    backbone: str = "tinyvgg"
    input_height: int = 256
    input_width: int = 384
    width: float = 1.0
    stages: int | None = None
    stage_width: int | None = None
    refine_kernel: int | None = None
    refine_depth: int | None = None
    separable_heads: bool | None = None
    head_batch_norm: bool = False  # BN in the stage convs (folded into them at build time)

    def resolved(self) -> ModelConfig:
        """A copy with every head setting filled in from the backbone's defaults, validated."""
        get_backbone(self.backbone)
        defaults = {"stages": 3, "stage_width": 128, "refine_kernel": 3, "refine_depth": 5, "separable_heads": False}
        defaults.update(BACKBONE_DEFAULTS.get(self.backbone, {}))
        values = dataclasses.asdict(self)
        for key, default in defaults.items():
            if values.get(key) is None:
                values[key] = default
        config = ModelConfig(**values)
        if config.input_height % STRIDE or config.input_width % STRIDE:
            raise ConfigError("input size {}x{} must be a multiple of {} (the output stride)".format(
                config.input_width, config.input_height, STRIDE))
        if config.stages < 1:
            raise ConfigError("stages must be >= 1, got {}".format(config.stages))
        if config.width <= 0:
            raise ConfigError("width multiplier must be > 0, got {}".format(config.width))
        return config

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _head_conv(x, channels: int, kernel: int, separable_conv: bool, batch_norm: bool):
    if separable_conv and kernel > 1:
        x = layers.SeparableConv2D(channels, kernel, padding="same", use_bias=not batch_norm)(x)
    else:
        x = layers.Conv2D(channels, kernel, padding="same", use_bias=not batch_norm)(x)
    if batch_norm:
        x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def _branch(x, outputs: int, depth: int, kernel: int, channels: int, separable_conv: bool, batch_norm: bool,
            name: str):
    for _ in range(depth):
        x = _head_conv(x, channels, kernel, separable_conv, batch_norm)
    x = _head_conv(x, channels, 1, False, batch_norm)
    return layers.Conv2D(outputs, 1, padding="same", name=name)(x)


def build_model(config: ModelConfig) -> keras.Model:
    """The Keras model for ``config`` (NHWC float input, already normalised)."""
    config = config.resolved()
    image = keras.Input((config.input_height, config.input_width, 3), name="image")
    features = get_backbone(config.backbone)(image, width=config.width)
    if features.shape[1] * STRIDE != config.input_height or features.shape[2] * STRIDE != config.input_width:
        raise ConfigError("backbone {!r} returned features of shape {} for a {}x{} input; it must return "
                          "stride-{} features".format(config.backbone, tuple(features.shape[1:3]),
                                                      config.input_width, config.input_height, STRIDE))
    channels = scaled(config.stage_width, config.width)
    outputs = []
    x = features
    for stage in range(1, config.stages + 1):
        depth, kernel = (3, 3) if stage == 1 else (config.refine_depth, config.refine_kernel)
        heatmaps = _branch(x, NUM_HEATMAPS, depth, kernel, channels, config.separable_heads,
                           config.head_batch_norm, "stage{}_heatmaps".format(stage))
        pafs = _branch(x, NUM_PAFS, depth, kernel, channels, config.separable_heads, config.head_batch_norm,
                       "stage{}_pafs".format(stage))
        outputs += [heatmaps, pafs]
        x = layers.Concatenate()([features, heatmaps, pafs])
    return keras.Model(image, outputs, name="openpose_" + config.backbone)
