"""Augmentation keeps keypoints on the people: checked numerically on the warped pixels and targets."""

import cv2
import numpy as np
import pytest
from edge_sdk.training.augment import AugmentConfig, apply_geometry, random_transform, transform_keypoints
from edge_sdk.training.data.input_pipeline import make_example
from edge_sdk.training.data.sample_sources import Sample

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.skeleton import COCO18_FLIP, COCO18_PARTS, image_to_map


def marker_sample(height=96, width=128):
    """A black image with one bright, distinct blob per part of one person; keypoints at the blob centres."""
    rng = np.random.default_rng(3)
    kp = np.zeros((1, 18, 3), np.float32)
    image = np.zeros((height, width, 3), np.uint8)
    for part in range(18):
        x, y = rng.uniform(20, width - 20), rng.uniform(20, height - 20)
        while part and np.min(np.hypot(kp[0, :part, 0] - x, kp[0, :part, 1] - y)) < 9:
            x, y = rng.uniform(20, width - 20), rng.uniform(20, height - 20)
        kp[0, part] = (x, y, 2)
    kp[0, 3, 2] = 0  # one absent part stays absent
    return image, kp


def blob_centre(image, part):
    """Centroid of the pixels drawn for ``part`` (its own colour: channel 0 = 10 + 12 * part)."""
    value = 10 + 12 * part
    mask = (np.abs(image[:, :, 0].astype(int) - value) <= 2) & (image[:, :, 1] > 200)
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()]) if len(xs) else None


def draw_markers(image, kp):
    image = image.copy()
    for part in range(18):
        x, y, v = kp[0, part]
        if v > 0:
            # sub-pixel centred disc so its centroid is the keypoint
            yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
            image[(xx - x) ** 2 + (yy - y) ** 2 <= 9] = (10 + 12 * part, 255, 0)
    return image


@pytest.mark.parametrize("seed", range(6))
def test_rotation_scale_crop_flip_move_keypoints_with_the_pixels(seed):
    image, kp = marker_sample()
    image = draw_markers(image, kp)
    config = AugmentConfig(scale=(0.8, 1.3), rotate=40, flip=0.5, translate=0.1)
    rng = np.random.default_rng(seed)
    matrix, flip = random_transform(rng, image.shape[:2], (96, 128), config)
    # nearest-neighbour warp keeps the blob colours exact
    warped = cv2.warpAffine(image, matrix, (128, 96), flags=cv2.INTER_NEAREST)
    out = transform_keypoints(kp, matrix, flip)
    checked = 0
    for part in range(18):
        original_part = COCO18_FLIP[part] if flip else part
        centre = blob_centre(warped, original_part)
        if kp[0, original_part, 2] == 0:
            assert out[0, part, 2] == 0
            continue
        x, y = out[0, part, :2]
        if not (4 <= x < 124 and 4 <= y < 92):
            continue  # cropped away
        assert centre is not None
        assert np.hypot(*(centre - (x, y))) < 1.0, COCO18_PARTS[part]
        checked += 1
    assert checked >= 8


def test_flip_mirrors_x_and_swaps_left_and_right():
    image, kp = marker_sample()
    config = AugmentConfig(scale=(1, 1), rotate=0, flip=1.0, translate=0)
    matrix, flip = random_transform(np.random.default_rng(0), image.shape[:2], image.shape[:2], config)
    assert flip
    out = transform_keypoints(kp, matrix, flip)
    l_shoulder, r_shoulder = COCO18_PARTS.index("l_shoulder"), COCO18_PARTS.index("r_shoulder")
    # the joint that was the LEFT shoulder is now at the mirrored x and is called the RIGHT shoulder
    np.testing.assert_allclose(out[0, r_shoulder, :2], [127 - kp[0, l_shoulder, 0], kp[0, l_shoulder, 1]],
                               atol=1e-4)
    np.testing.assert_allclose(out[0, 0, :2], [127 - kp[0, 0, 0], kp[0, 0, 1]], atol=1e-4)  # nose stays nose


def test_rendered_targets_peak_at_the_augmented_keypoints():
    image, kp = marker_sample()
    sample = Sample(draw_markers(image, kp), kp, None)
    config = AugmentConfig(scale=(0.9, 1.1), rotate=25, flip=1.0, translate=0.05)
    rgb, heatmaps, pafs, mask, out = make_example(sample, np.random.default_rng(5), (96, 128), config)
    assert rgb.shape == (96, 128, 3) and heatmaps.shape == (12, 16, 19) and pafs.shape == (12, 16, 38)
    assert mask.shape == (12, 16, 1) and mask.min() == 1.0
    for part in range(18):
        if out[0, part, 2] == 0 or not (0 <= out[0, part, 0] < 128 and 0 <= out[0, part, 1] < 96):
            continue
        peak_y, peak_x = np.unravel_index(np.argmax(heatmaps[:, :, part]), heatmaps.shape[:2])
        mx, my = image_to_map(out[0, part, :2])
        assert abs(peak_x - mx) <= 0.5 + 1e-3 and abs(peak_y - my) <= 0.5 + 1e-3, COCO18_PARTS[part]
        # and the picture agrees: the blob of this joint (drawn under its pre-flip name) is under it
        x, y = np.round(out[0, part, :2]).astype(int)
        bgr = rgb[y, x, ::-1].astype(int)
        assert abs(bgr[0] - (10 + 12 * COCO18_FLIP[part])) <= 3 and bgr[1] > 200, COCO18_PARTS[part]


def test_mask_follows_the_image_and_padding_is_not_ignored():
    image = np.zeros((40, 40, 3), np.uint8)
    mask = np.ones((40, 40), np.uint8)
    mask[10:20, 10:20] = 0  # an unannotated person
    matrix = np.array([[2.0, 0, 0], [0, 2.0, 0]])
    _, _, out = apply_geometry(image, np.zeros((0, 18, 3)), mask, matrix, False, (100, 100))
    assert out[30, 30] == 0 and out[50, 50] == 1 and out[90, 90] == 1  # 90,90 is padding


def test_augment_spec_parsing():
    config = AugmentConfig.parse("scale=0.5:1.5,rotate=10,flip=0,color=0.3")
    assert config.scale == (0.5, 1.5) and config.rotate == 10 and config.flip == 0 and config.contrast == 0.3
    assert not AugmentConfig.parse("none").enabled
    with pytest.raises(ConfigError, match="bad --augment item 'spin=3'"):
        AugmentConfig.parse("spin=3")


def test_tf_data_pipeline_batches_normalised_images_and_targets():
    pytest.importorskip("tensorflow")
    from edge_sdk.training.data import open_source
    from edge_sdk.training.data.input_pipeline import make_dataset

    dataset = make_dataset(open_source("synthetic:6", (64, 96)), (64, 96), batch=3, seed=1)
    images, targets = next(iter(dataset))
    assert images.shape == (3, 64, 96, 3)
    assert targets["heatmaps"].shape == (3, 8, 12, 19) and targets["pafs"].shape == (3, 8, 12, 38)
    assert -3.0 < float(np.mean(images)) < 3.0 and float(np.std(images)) > 0.1  # normalised, not [0, 255]
    assert float(np.max(targets["heatmaps"][..., :18])) > 0.9  # there are people
