"""The backbone registry: a name -> a function that turns an input tensor into stride-8 features.

Register your own backbone in a few lines::

    from edge_sdk.training.models import register_backbone, scaled
    import keras

    @register_backbone("tiny_custom")
    def tiny_custom(image, width=1.0):
        x = keras.layers.Conv2D(scaled(32, width), 3, strides=2, padding="same", activation="relu")(image)
        x = keras.layers.Conv2D(scaled(64, width), 3, strides=2, padding="same", activation="relu")(x)
        return keras.layers.Conv2D(scaled(128, width), 3, strides=2, padding="same", activation="relu")(x)

then ``edge-sdk train --model tiny_custom --plugin my_backbones.py ...`` (or import the module before
calling :func:`edge_sdk.training.models.build_model`). The function receives the NHWC input and a width
multiplier and must return features at 1/8 of the input resolution.
"""

from __future__ import annotations

from collections.abc import Callable

from edge_sdk.errors import ConfigError, nearest_names

BackboneFn = Callable[..., object]
BACKBONES: dict[str, BackboneFn] = {}
BACKBONE_DEFAULTS: dict[str, dict] = {}


def register_backbone(name: str, **head_defaults) -> Callable[[BackboneFn], BackboneFn]:
    """Decorator: make ``fn(image, width=1.0) -> stride-8 features`` available as ``--model name``.

    ``head_defaults`` (e.g. ``stages=2, stage_width=128, separable_heads=True``) are the OpenPose head
    settings used when the user does not give them.
    """

    def decorate(fn: BackboneFn) -> BackboneFn:
        BACKBONES[name] = fn
        BACKBONE_DEFAULTS[name] = dict(head_defaults)
        return fn

    return decorate


def get_backbone(name: str) -> BackboneFn:
    """The registered backbone function, or a ConfigError that lists the known names."""
    if name not in BACKBONES:
        raise ConfigError("unknown backbone {!r}; known: {} (register your own with "
                          "edge_sdk.training.models.register_backbone, see docs/training.md)".format(
                              name, ", ".join(nearest_names(name, list(BACKBONES)))))
    return BACKBONES[name]


def scaled(channels: int, width: float) -> int:
    """Channels scaled by the width multiplier (at least 4)."""
    return max(4, int(round(channels * float(width))))
