"""The tf.data input pipeline: load -> augment (one affine warp) -> render OpenPose targets -> colour
jitter -> normalise -> batch -> prefetch, with the numpy stages in a parallel ``map``.

Targets come from :func:`edge_sdk.runtime.maps.render_maps`, the same renderer the runtime tests use.
"""

from __future__ import annotations

import numpy as np
from edge_sdk.training.augment import AugmentConfig, apply_geometry, random_transform

from edge_sdk.runtime.maps import map_size_for, render_maps
from edge_sdk.runtime.model_meta import InputSpec
from edge_sdk.runtime.skeleton import NUM_HEATMAPS, NUM_PAFS, STRIDE


def make_example(sample, rng: np.random.Generator, input_hw: tuple[int, int], augment: AugmentConfig):
    """One training example in numpy: (image RGB uint8 [H, W, 3], heatmaps [h, w, 19], pafs [h, w, 38],
    mask float32 [h, w, 1]) with h, w = input / 8, plus the transformed keypoints [P, 18, 3]."""
    centre = sample.centre(rng) if augment.enabled and rng.random() < 0.5 else None
    matrix, flip = random_transform(rng, sample.image.shape[:2], input_hw, augment, centre)
    image, keypoints, mask = apply_geometry(sample.image, sample.keypoints18, sample.mask, matrix, flip, input_hw)
    heatmaps, pafs = render_maps(keypoints, input_hw[0], input_hw[1])
    map_h, map_w = map_size_for(input_hw[0], input_hw[1])
    map_mask = cv2_resize_area(mask.astype(np.float32), (map_w, map_h))
    map_mask = (map_mask > 0.5).astype(np.float32)[:, :, None]
    return (image[:, :, ::-1].copy(), heatmaps.transpose(1, 2, 0).copy(), pafs.transpose(1, 2, 0).copy(),
            map_mask, keypoints)


def cv2_resize_area(array: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(array, size_wh, interpolation=cv2.INTER_AREA)


def make_dataset(source, input_hw: tuple[int, int], batch: int, augment: AugmentConfig | None = None,
                 spec: InputSpec | None = None, seed: int = 0, shuffle: bool = True, repeat: bool = True,
                 parallel_calls: int | None = None):
    """A batched, prefetched ``tf.data.Dataset`` of ``(image, {"heatmaps", "pafs", "mask"})``.

    image: float32 [B, H, W, 3] RGB normalised as ``spec`` (ImageNet mean/std by default); maps NHWC at
    stride 8. Every element's randomness comes from (seed, position), so a run is reproducible.
    """
    import tensorflow as tf

    augment = augment or AugmentConfig()
    spec = spec or InputSpec(height=input_hw[0], width=input_hw[1])
    height, width = input_hw
    map_h, map_w = height // STRIDE, width // STRIDE
    count = len(source)

    def load(index, element_seed):
        rng = np.random.default_rng([int(seed), int(element_seed) & 0x7FFFFFFF])
        image, heatmaps, pafs, mask, _ = make_example(source.load(int(index)), rng, input_hw, augment)
        return image, heatmaps, pafs, mask

    def to_tensors(index, element_seed):
        image, heatmaps, pafs, mask = tf.numpy_function(load, [index, element_seed],
                                                        [tf.uint8, tf.float32, tf.float32, tf.float32],
                                                        stateful=False)
        image.set_shape([height, width, 3])
        heatmaps.set_shape([map_h, map_w, NUM_HEATMAPS])
        pafs.set_shape([map_h, map_w, NUM_PAFS])
        mask.set_shape([map_h, map_w, 1])
        pixels = tf.cast(image, tf.float32) / 255.0
        pixels = _jitter(pixels, augment, element_seed)
        mean = tf.constant(spec.mean, tf.float32)
        std = tf.constant(spec.std, tf.float32)
        normalised = (pixels * (255.0 * spec.scale) - mean) / std
        return normalised, {"heatmaps": heatmaps, "pafs": pafs, "mask": mask}

    indices = tf.data.Dataset.range(count)
    if shuffle:
        indices = indices.shuffle(min(count, 10000), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    seeds = tf.data.Dataset.random(seed=seed)
    dataset = tf.data.Dataset.zip((indices, seeds))
    dataset = dataset.map(to_tensors, num_parallel_calls=parallel_calls or tf.data.AUTOTUNE,
                          deterministic=not shuffle)
    dataset = dataset.batch(batch, drop_remainder=repeat)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _jitter(pixels, augment: AugmentConfig, element_seed):
    import tensorflow as tf
    from edge_sdk.training.augment import color_jitter

    seed = tf.stack([tf.cast(element_seed % 2147483647, tf.int64), tf.constant(7, tf.int64)])
    return color_jitter(pixels, augment, seed)
