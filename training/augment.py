"""Training augmentation: random scale, rotation, crop/pad, horizontal flip (left/right swap), colour jitter.

The geometric part is ONE affine warp (OpenCV) applied to the image, the ignore mask and the keypoints
alike, so they can never disagree; a flip also swaps left and right parts (``COCO18_FLIP``). Colour jitter
runs as TensorFlow ops on the decoded batch element. Both run inside the ``tf.data`` map of
:mod:`edge_sdk.training.data.input_pipeline` (parallel calls + prefetch).

From the command line: ``--augment "scale=0.6:1.2,rotate=30,flip=0.5,translate=0.2,color=0.3"`` or
``--augment none``.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.skeleton import COCO18_FLIP

PAD_VALUE = (124, 116, 104)
"""Colour of padding (the ImageNet mean in RGB): normalises to ~0."""


@dataclasses.dataclass
class AugmentConfig:
    """What to randomise. ``scale`` is relative to fitting the whole source image into the input."""

    scale: tuple[float, float] = (0.6, 1.2)
    rotate: float = 30.0  # max |degrees|
    flip: float = 0.5  # probability
    translate: float = 0.2  # max shift, fraction of the input size (crop / pad)
    brightness: float = 0.2  # max delta on [0, 1] pixels
    contrast: float = 0.3  # factor in [1 - c, 1 + c]
    saturation: float = 0.3
    hue: float = 0.03
    enabled: bool = True

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(scale=(1.0, 1.0), rotate=0.0, flip=0.0, translate=0.0, brightness=0.0, contrast=0.0,
                   saturation=0.0, hue=0.0, enabled=False)

    @classmethod
    def parse(cls, spec: str | None) -> AugmentConfig:
        """``"scale=0.6:1.2,rotate=30,flip=0.5,translate=0.2,color=0.3,hue=0.03"``, ``"none"`` or empty."""
        if spec is None or not spec.strip() or spec.strip() == "default":
            return cls()
        if spec.strip() == "none":
            return cls.none()
        config = cls()
        for item in spec.split(","):
            key, _, value = item.partition("=")
            key = key.strip()
            try:
                if key == "scale":
                    lo, _, hi = value.partition(":")
                    config.scale = (float(lo), float(hi or lo))
                elif key == "color":
                    config.brightness = float(value) * 2 / 3
                    config.contrast = config.saturation = float(value)
                elif key in ("rotate", "flip", "translate", "brightness", "contrast", "saturation", "hue"):
                    setattr(config, key, float(value))
                else:
                    raise KeyError(key)
            except (ValueError, KeyError):
                raise ConfigError("bad --augment item {!r}; expected e.g. 'scale=0.6:1.2,rotate=30,flip=0.5,"
                                  "translate=0.2,color=0.3,hue=0.03' or 'none'".format(item)) from None
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
        data = dict(data)
        if "scale" in data:
            data["scale"] = tuple(data["scale"])
        return cls(**data)


def random_transform(rng: np.random.Generator, source_hw: tuple[int, int], output_hw: tuple[int, int],
                     config: AugmentConfig, centre: tuple[float, float] | None = None) -> tuple[np.ndarray, bool]:
    """A 2x3 affine matrix (source pixels -> output pixels) and whether it flips horizontally.

    ``centre`` (source pixels) is the point brought to the middle of the output before the random shift
    (e.g. a person, so crops of big images keep someone in view); default: the image centre.
    """
    sh, sw = source_hw
    oh, ow = output_hw
    fit = min(ow / sw, oh / sh)
    scale = fit * (rng.uniform(*config.scale) if config.enabled else 1.0)
    angle = math.radians(rng.uniform(-config.rotate, config.rotate)) if config.enabled else 0.0
    flip = bool(config.enabled and rng.random() < config.flip)
    cx, cy = centre if centre is not None else ((sw - 1) / 2.0, (sh - 1) / 2.0)
    tx = rng.uniform(-config.translate, config.translate) * ow if config.enabled else 0.0
    ty = rng.uniform(-config.translate, config.translate) * oh if config.enabled else 0.0
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    matrix = np.array([[c, -s, 0.0], [s, c, 0.0]], dtype=np.float64)
    matrix[:, 2] = np.array([(ow - 1) / 2.0 + tx, (oh - 1) / 2.0 + ty]) - matrix[:, :2].dot([cx, cy])
    if flip:
        matrix = np.array([[-1.0, 0.0, ow - 1.0], [0.0, 1.0, 0.0]]).dot(np.vstack([matrix, [0, 0, 1]]))
    return matrix, flip


def transform_keypoints(keypoints18: np.ndarray, matrix: np.ndarray, flip: bool) -> np.ndarray:
    """[P, 18, 3] keypoints through ``matrix``; a flip swaps left and right parts. Absent parts stay absent."""
    kp = np.asarray(keypoints18, dtype=np.float32).reshape(-1, 18, 3).copy()
    xy = kp[..., :2].astype(np.float64).dot(matrix[:, :2].T) + matrix[:, 2]
    kp[..., :2] = np.where(kp[..., 2:3] > 0, xy, 0.0)
    if flip:
        kp = kp[:, COCO18_FLIP]
    return kp


def apply_geometry(image: np.ndarray, keypoints18: np.ndarray, mask: np.ndarray | None, matrix: np.ndarray,
                   flip: bool, output_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp image (padding with :data:`PAD_VALUE`), mask (padding counts as 'no person': 1) and keypoints."""
    oh, ow = output_hw
    out_image = cv2.warpAffine(image, matrix, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=PAD_VALUE)
    if mask is None:
        out_mask = np.ones((oh, ow), dtype=np.uint8)
    else:
        out_mask = cv2.warpAffine(mask, matrix, (ow, oh), flags=cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=1)
    return out_image, transform_keypoints(keypoints18, matrix, flip), out_mask


def color_jitter(image, config: AugmentConfig, seed):
    """TensorFlow colour jitter of an RGB float image in [0, 1] (stateless, seeded per element)."""
    import tensorflow as tf

    if not config.enabled:
        return image
    seeds = tf.random.experimental.stateless_split(seed, 4)
    if config.brightness > 0:
        image = tf.image.stateless_random_brightness(image, config.brightness, seeds[0])
    if config.contrast > 0:
        image = tf.image.stateless_random_contrast(image, 1 - config.contrast, 1 + config.contrast, seeds[1])
    if config.saturation > 0:
        image = tf.image.stateless_random_saturation(image, 1 - config.saturation, 1 + config.saturation, seeds[2])
    if config.hue > 0:
        image = tf.image.stateless_random_hue(image, config.hue, seeds[3])
    return tf.clip_by_value(image, 0.0, 1.0)
