"""The one definition of the OpenPose COCO-18 skeleton, its 19 limbs, and COCO-17 conversion.

Every part of the project (training targets, decoder, renderer, evaluation) imports these lists; never
write them again elsewhere.
"""

from typing import Any

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


# ------------------------------------------------------------------------------------- other topologies

DEFAULT_SKELETON = "coco18-openpose"


class Skeleton(object):
    """A keypoint topology: what the heatmap and PAF channels of a model mean.

    ``parts``: part names (heatmap channel i is part i); ``background``: whether one more heatmap channel
    (the background) follows the parts; ``limbs``: (a, b) part pairs, the PAF of limb i points from a to b;
    ``paf_channels``: the (x, y) PAF channels of each limb (default (2i, 2i+1)); ``coco17``: for each
    COCO-17 joint the part index holding it (-1: the skeleton has none), so messages stay COCO-17;
    ``joins_only``: limbs that may join a part to a person but never start one (redundant links).
    The decoder, the map renderer, the backends' I/O check and bundles all read this one object.
    """

    def __init__(self, name, parts, limbs, coco17, paf_channels=None, background=False, joins_only=()):
        self.name = str(name)
        self.parts = [str(p) for p in parts]
        self.limbs = [(int(a), int(b)) for a, b in limbs]
        self.coco17 = [int(i) for i in coco17]
        self.background = bool(background)
        if paf_channels is None:
            paf_channels = [(2 * i, 2 * i + 1) for i in range(len(self.limbs))]
        self.paf_channels = [(int(x), int(y)) for x, y in paf_channels]
        self.joins_only = frozenset(int(i) for i in joins_only)
        self._check()
        order = [c for pair in self.paf_channels for c in pair]
        #: PAF channel order that puts limb i at (2i, 2i+1); None when it already is
        self.paf_order = None if order == list(range(len(order))) else np.asarray(order, dtype=np.intp)

    def _check(self):
        n = len(self.parts)
        if not 1 <= n <= 256 or len(set(self.parts)) != n:
            raise ValueError("skeleton {}: needs 1 to 256 distinct part names, got {}".format(self.name, n))
        if not 1 <= len(self.limbs) <= 512:
            raise ValueError("skeleton {}: needs 1 to 512 limbs, got {}".format(self.name, len(self.limbs)))
        for a, b in self.limbs:
            if not (0 <= a < n and 0 <= b < n) or a == b:
                raise ValueError("skeleton {}: limb ({}, {}) must join two different parts of 0..{}".format(
                    self.name, a, b, n - 1))
        if len(self.coco17) != 17 or any(not -1 <= i < n for i in self.coco17):
            raise ValueError("skeleton {}: coco17 needs 17 part indices (-1 = none) in -1..{}".format(
                self.name, n - 1))
        channels = sorted(c for pair in self.paf_channels for c in pair)
        if len(self.paf_channels) != len(self.limbs) or channels != list(range(2 * len(self.limbs))):
            raise ValueError("skeleton {}: paf_channels must give each of the {} limbs an (x, y) pair, using "
                             "channels 0..{} once each".format(self.name, len(self.limbs), 2 * len(self.limbs) - 1))
        if any(not 0 <= i < len(self.limbs) for i in self.joins_only):
            raise ValueError("skeleton {}: joins_only names a limb outside 0..{}".format(
                self.name, len(self.limbs) - 1))

    @property
    def num_parts(self):
        return len(self.parts)

    @property
    def num_heatmaps(self):
        return len(self.parts) + (1 if self.background else 0)

    @property
    def num_limbs(self):
        return len(self.limbs)

    @property
    def num_pafs(self):
        return 2 * len(self.limbs)

    def to_coco17(self, keypoints):
        """[..., parts, 3] -> [..., 17, 3] COCO-17 order; joints the skeleton lacks are (0, 0, 0)."""
        kp = np.asarray(keypoints, dtype=np.float32)
        out = np.zeros(kp.shape[:-2] + (NUM_COCO17, 3), dtype=np.float32)
        for j, part in enumerate(self.coco17):
            if part >= 0:
                out[..., j, :] = kp[..., part, :]
        return out

    def from_coco17(self, keypoints17):
        """[..., 17, 3] COCO-17 -> [..., parts, 3]: mapped joints, plus the parts defined as the midpoint of
        two COCO-17 joints (neck: shoulders, mid-hip: hips) when both are present; others absent."""
        kp = np.asarray(keypoints17, dtype=np.float32)
        out = np.zeros(kp.shape[:-2] + (self.num_parts, 3), dtype=np.float32)
        for j, part in enumerate(self.coco17):
            if part >= 0:
                out[..., part, :] = kp[..., j, :]
        for name, (j1, j2) in _MIDPOINTS.items():
            if name in self.parts:
                a, b = kp[..., j1, :], kp[..., j2, :]
                both = (a[..., 2] > 0) & (b[..., 2] > 0)
                mid = np.zeros_like(a)
                mid[..., :2] = (a[..., :2] + b[..., :2]) / 2.0
                mid[..., 2] = np.minimum(a[..., 2], b[..., 2])
                out[..., self.parts.index(name), :] = np.where(both[..., None], mid, 0.0)
        return out

    def to_dict(self):
        return {"name": self.name, "parts": list(self.parts), "limbs": [list(limb) for limb in self.limbs],
                "coco17": list(self.coco17), "paf_channels": [list(pair) for pair in self.paf_channels],
                "background": self.background, "joins_only": sorted(self.joins_only)}

    def __repr__(self):
        return "Skeleton({}: {} parts, {} limbs{})".format(self.name, self.num_parts, self.num_limbs,
                                                           ", background" if self.background else "")


_MIDPOINTS = {"neck": (5, 6), "mid_hip": (11, 12)}
"""Parts some skeletons add: the midpoint of two COCO-17 joints (left/right shoulder, left/right hip)."""

COCO18 = Skeleton(DEFAULT_SKELETON, COCO18_PARTS, LIMBS, COCO18_FROM_COCO17, background=True,
                  joins_only=(17, 18))
"""OpenPose COCO-18 (this project's models, tf-pose): 19 heatmaps with background, 19 limbs / 38 PAFs."""

TRT_POSE_18 = Skeleton(
    "trt_pose-18",
    COCO17_PARTS + ["neck"],
    [(15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2),
     (1, 3), (2, 4), (3, 5), (4, 6), (17, 0), (17, 5), (17, 6), (17, 11), (17, 12)],
    list(range(17)),
    # trt_pose writes the row (y) component of link k to channel 2k and the column (x) one to 2k+1
    paf_channels=[(2 * k + 1, 2 * k) for k in range(21)],
    background=False, joins_only=(4, 9, 14, 15))  # hip-hip, eye-eye, ear-shoulder: they close cycles
"""NVIDIA trt_pose ``human_pose.json``: 18 parts (COCO-17 + neck), 21 links / 42 PAFs, no background."""

BODY25 = Skeleton(
    "body25-openpose",
    ["nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "mid_hip",
     "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
     "l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe", "r_heel"],
    [(1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11), (8, 12), (12, 13),
     (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (2, 17), (5, 18), (14, 19), (19, 20), (14, 21),
     (11, 22), (22, 23), (11, 24)],
    [0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11],
    # OpenPose POSE_MAP_INDEX for BODY_25, counted from the first PAF channel
    paf_channels=[(0, 1), (14, 15), (22, 23), (16, 17), (18, 19), (24, 25), (26, 27), (6, 7), (2, 3), (4, 5),
                  (8, 9), (10, 11), (12, 13), (30, 31), (32, 33), (36, 37), (34, 35), (38, 39), (20, 21),
                  (28, 29), (40, 41), (42, 43), (44, 45), (46, 47), (48, 49), (50, 51)],
    background=True, joins_only=(18, 19))
"""OpenPose BODY_25: 25 parts + background, 26 limbs / 52 PAFs in OpenPose's channel order."""

SKELETONS = dict((s.name, s) for s in (COCO18, TRT_POSE_18, BODY25))


def get_skeleton(spec: Any = None) -> "Skeleton":
    """The Skeleton of a metadata ``skeleton`` value: a known name (default COCO-18), or a dict with
    ``parts``, ``limbs``, ``coco17`` and optionally ``paf_channels``, ``background``, ``joins_only``, ``name``.
    ValueError saying what is wrong otherwise."""
    if spec is None or isinstance(spec, Skeleton):
        return spec or COCO18
    if isinstance(spec, str):
        if spec not in SKELETONS:
            raise ValueError("unknown skeleton {!r}; known: {} (or a JSON object with parts, limbs, coco17)".format(
                spec, ", ".join(sorted(SKELETONS))))
        return SKELETONS[spec]
    if not isinstance(spec, dict):
        raise ValueError("skeleton must be a name or a JSON object, got {}".format(type(spec).__name__))
    known = ("name", "parts", "limbs", "coco17", "paf_channels", "background", "joins_only")
    unknown = sorted(k for k in spec if k not in known)
    missing = [k for k in ("parts", "limbs", "coco17") if k not in spec]
    if unknown or missing:
        raise ValueError("skeleton object: {}{}; keys: {}".format(
            "unknown key(s) " + ", ".join(unknown) if unknown else "",
            ("; " if unknown and missing else "") + ("missing " + ", ".join(missing) if missing else ""),
            ", ".join(known)))
    try:
        return Skeleton(spec.get("name", "custom"), spec["parts"], spec["limbs"], spec["coco17"],
                        spec.get("paf_channels"), spec.get("background", False), spec.get("joins_only", ()))
    except (TypeError, ValueError) as exc:
        raise ValueError("skeleton object: {}".format(exc)) from None
