"""The built-in backbones (all to stride 8): TinyVGG, MobileNet (depthwise separable), VGG19, ResNet18."""

from __future__ import annotations

import keras
from edge_sdk.training.models.registry import register_backbone, scaled
from keras import layers


def conv(x, channels: int, kernel: int = 3, strides: int = 1, dilation: int = 1, name: str | None = None,
         batch_norm: bool = False):
    """Conv + (BatchNorm) + ReLU."""
    x = layers.Conv2D(channels, kernel, strides=strides, dilation_rate=dilation, padding="same",
                      use_bias=not batch_norm, name=name)(x)
    if batch_norm:
        x = layers.BatchNormalization(name=None if name is None else name + "_bn")(x)
    return layers.ReLU()(x)


def separable(x, channels: int, strides: int = 1, dilation: int = 1, batch_norm: bool = True):
    """MobileNet block: depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU."""
    x = layers.DepthwiseConv2D(3, strides=strides, dilation_rate=dilation, padding="same",
                               use_bias=not batch_norm)(x)
    if batch_norm:
        x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    return conv(x, channels, 1, batch_norm=batch_norm)


def _vgg(x, plan, width: float, batch_norm: bool = False):
    for item in plan:
        if item == "pool":
            x = layers.MaxPool2D(2, padding="same")(x)
        else:
            x = conv(x, scaled(item, width), batch_norm=batch_norm)
    return x


@register_backbone("vgg19", stages=6, stage_width=128, refine_kernel=7, refine_depth=5)
def vgg19(image, width: float = 1.0):
    """The original OpenPose backbone: VGG19 up to conv4_2, then the two CPM convs (256, 128)."""
    plan = [64, 64, "pool", 128, 128, "pool", 256, 256, 256, 256, "pool", 512, 512, 256, 128]
    return _vgg(image, plan, width)


@register_backbone("tinyvgg", stages=3, stage_width=96, refine_kernel=3, refine_depth=5)
def tinyvgg(image, width: float = 1.0):
    """A thin VGG (HyperPose-style TinyVGG): the VGG19 layout at a fraction of the channels."""
    plan = [32, 32, "pool", 64, 64, "pool", 128, 128, 128, 128, "pool", 256, 256, 128]
    return _vgg(image, plan, width)


@register_backbone("mobilenet", stages=2, stage_width=128, refine_kernel=3, refine_depth=5)
def mobilenet(image, width: float = 1.0):
    """MobileNet-v1 to stride 8 with dilated depthwise-separable blocks (Lightweight OpenPose style)."""
    x = conv(image, scaled(32, width), 3, strides=2, batch_norm=True)
    x = separable(x, scaled(64, width))
    x = separable(x, scaled(128, width), strides=2)
    x = separable(x, scaled(128, width))
    x = separable(x, scaled(256, width), strides=2)
    x = separable(x, scaled(256, width))
    x = separable(x, scaled(512, width))
    for _ in range(4):
        x = separable(x, scaled(512, width), dilation=2)
    return conv(x, scaled(128, width), 1, batch_norm=True)


def _basic_block(x, channels: int, strides: int = 1, dilation: int = 1):
    shortcut = x
    y = conv(x, channels, 3, strides=strides, dilation=dilation, batch_norm=True)
    y = layers.Conv2D(channels, 3, dilation_rate=dilation, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    if strides != 1 or shortcut.shape[-1] != channels:
        shortcut = layers.Conv2D(channels, 1, strides=strides, use_bias=False)(shortcut)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


@register_backbone("resnet18", stages=3, stage_width=128, refine_kernel=3, refine_depth=5)
def resnet18(image, width: float = 1.0):
    """ResNet18 to stride 8: layers 1-2 as usual, layer 3 dilated instead of strided, then a 1x1 to 128."""
    x = conv(image, scaled(64, width), 7, strides=2, batch_norm=True)
    x = layers.MaxPool2D(3, strides=2, padding="same")(x)
    for channels, strides, dilation in ((64, 1, 1), (128, 2, 1), (256, 1, 2)):
        x = _basic_block(x, scaled(channels, width), strides, dilation)
        x = _basic_block(x, scaled(channels, width), 1, dilation)
    return conv(x, scaled(128, width), 1, batch_norm=True)


__all__ = ["conv", "separable", "vgg19", "tinyvgg", "mobilenet", "resnet18", "keras"]
