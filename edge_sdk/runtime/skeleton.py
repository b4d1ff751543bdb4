"""The one definition of the OpenPose COCO-18 skeleton, its 19 limbs, and COCO-17 conversion.

Every part of the project (training targets, decoder, renderer, evaluation) imports these lists; never
write them again elsewhere.
"""

import numpy as np

STRIDE = 8
"""Output stride of every model: heatmaps and PAFs are H/8 x W/8."""

COCO18_PARTS = [
    "nose", "neck",
    "r_shoulder", "r_elbow", "r_wrist",
    "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle",
    "l_hip", "l_knee", "l_ankle",
    "r_eye", "l_eye", "r_ear", "l_ear",
]
NUM_PARTS = len(COCO18_PARTS)  # 18
NUM_HEATMAPS = NUM_PARTS + 1  # + background channel
BACKGROUND_CHANNEL = NUM_PARTS

LIMBS = [
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
]
"""Limb ``i`` joins parts LIMBS[i]; it owns PAF channels 2i (x) and 2i+1 (y)."""
NUM_LIMBS = len(LIMBS)  # 19
NUM_PAFS = 2 * NUM_LIMBS  # 38

COCO17_PARTS = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
]
NUM_COCO17 = len(COCO17_PARTS)

COCO18_FROM_COCO17 = [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]
"""COCO18_FROM_COCO17[j] is the COCO-18 index of COCO-17 joint ``j`` (the neck has no COCO-17 joint)."""

COCO17_SKELETON = [
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
]
"""COCO-17 skeleton (0-based), for drawing."""

COCO18_FLIP = [0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16]
"""Part permutation of a horizontal flip: left and right swap."""

NECK = 1
R_SHOULDER = 2
L_SHOULDER = 5


def coco17_to_coco18(keypoints17: np.ndarray) -> np.ndarray:
    """[..., 17, 3] COCO keypoints (x, y, v-or-score) -> [..., 18, 3] OpenPose order with a neck.

    The neck is the midpoint of the shoulders when both are present (third value > 0), with the
    smaller of their two visibilities/scores; otherwise it is absent (all zeros).
    """
    kp = np.asarray(keypoints17, dtype=np.float32)
    out = np.zeros(kp.shape[:-2] + (NUM_PARTS, 3), dtype=np.float32)
    out[..., COCO18_FROM_COCO17, :] = kp
    ls = kp[..., 5, :]
    rs = kp[..., 6, :]
    both = (ls[..., 2] > 0) & (rs[..., 2] > 0)
    neck = np.zeros_like(ls)
    neck[..., :2] = (ls[..., :2] + rs[..., :2]) / 2.0
    neck[..., 2] = np.minimum(ls[..., 2], rs[..., 2])
    out[..., NECK, :] = np.where(both[..., None], neck, 0.0)
    return out


def coco18_to_coco17(keypoints18: np.ndarray) -> np.ndarray:
    """[..., 18, 3] OpenPose order -> [..., 17, 3] COCO order (the neck is dropped)."""
    kp = np.asarray(keypoints18, dtype=np.float32)
    return kp[..., COCO18_FROM_COCO17, :].copy()


def map_to_image(coords: np.ndarray, stride: int = STRIDE) -> np.ndarray:
    """Map-grid coordinates -> input-image pixel coordinates.

    Cell ``i`` of a stride-``s`` map covers pixels ``[i*s, (i+1)*s)`` and its centre is at
    ``(i + 0.5) * s - 0.5``. The renderer and the decoder both use this pair of functions.
    """
    return (np.asarray(coords, dtype=np.float32) + 0.5) * stride - 0.5


def image_to_map(coords: np.ndarray, stride: int = STRIDE) -> np.ndarray:
    """Input-image pixel coordinates -> map-grid coordinates (inverse of :func:`map_to_image`)."""
    return (np.asarray(coords, dtype=np.float32) + 0.5) / stride - 0.5
