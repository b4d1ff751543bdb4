"""Render OpenPose targets (Gaussian heatmaps and part affinity fields) from keypoints.

The one implementation in the project: training builds its targets with it, the tests build "oracle
maps" with it (render from annotations, decode, compare), benchmarks feed it to decoders.
Coordinates: keypoints in input-image pixels; maps on the stride grid of
:func:`edge_sdk.runtime.skeleton.image_to_map`.
"""

from typing import Any, Tuple

import numpy as np

from edge_sdk.runtime.skeleton import STRIDE, get_skeleton, image_to_map

DEFAULT_SIGMA = 1.0
"""Gaussian sigma of a heatmap peak, in map cells (7 px at stride 8 in OpenPose ~ 0.9 cells)."""

DEFAULT_PAF_WIDTH = 1.0
"""Half-width of a limb in the PAF, in map cells."""


def map_size_for(image_height: int, image_width: int, stride: int = STRIDE) -> Tuple[int, int]:
    """(H, W) of the stride grid for an image of the given size (ceil division)."""
    return (int(image_height) + stride - 1) // stride, (int(image_width) + stride - 1) // stride


def render_heatmaps(people18: np.ndarray, map_shape: Tuple[int, int], stride: int = STRIDE,
                    sigma: float = DEFAULT_SIGMA, skeleton: Any = None) -> np.ndarray:
    """[P, 18, 3] keypoints (x, y, v; v > 0 = present) in image pixels -> [19, H, W] float32.

    Each part channel is the max over people of a Gaussian with peak 1.0 at the joint; channel 18 is the
    background, 1 - max over parts. Another ``skeleton``: [P, parts, 3] in, its heatmap channels out.
    """
    sk = get_skeleton(skeleton)
    num_parts = sk.num_parts
    height, width = int(map_shape[0]), int(map_shape[1])
    heatmaps = np.zeros((sk.num_heatmaps, height, width), dtype=np.float32)
    people = np.asarray(people18, dtype=np.float32).reshape(-1, num_parts, 3)
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    radius = 3.0 * sigma
    inv = 1.0 / (2.0 * sigma * sigma)
    for person in people:
        for part in range(num_parts):
            x, y, v = person[part]
            if v <= 0:
                continue
            mx, my = image_to_map([x, y], stride)
            x0, x1 = int(max(0, np.floor(mx - radius))), int(min(width, np.ceil(mx + radius) + 1))
            y0, y1 = int(max(0, np.floor(my - radius))), int(min(height, np.ceil(my + radius) + 1))
            if x0 >= x1 or y0 >= y1:
                continue
            gauss = np.exp(-((xs[:, x0:x1] - mx) ** 2 + (ys[y0:y1] - my) ** 2) * inv)
            np.maximum(heatmaps[part, y0:y1, x0:x1], gauss, out=heatmaps[part, y0:y1, x0:x1])
    if sk.background:
        heatmaps[num_parts] = 1.0 - heatmaps[:num_parts].max(axis=0)
    return heatmaps


def render_pafs(people18: np.ndarray, map_shape: Tuple[int, int], stride: int = STRIDE,
                limb_width: float = DEFAULT_PAF_WIDTH, skeleton: Any = None) -> np.ndarray:
    """[P, 18, 3] keypoints in image pixels -> [38, H, W] float32 part affinity fields.

    For limb ``i`` (parts a -> b), every cell within ``limb_width`` cells of the segment holds the unit
    vector from a to b in channels (2i, 2i+1); where several people's limbs overlap, the vectors are
    averaged (as in OpenPose). Another ``skeleton``: its limbs, in its (x, y) channels.
    """
    sk = get_skeleton(skeleton)
    height, width = int(map_shape[0]), int(map_shape[1])
    pafs = np.zeros((sk.num_pafs, height, width), dtype=np.float32)
    people = np.asarray(people18, dtype=np.float32).reshape(-1, sk.num_parts, 3)
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    for limb, (a, b) in enumerate(sk.limbs):
        cx, cy = sk.paf_channels[limb]
        count = np.zeros((height, width), dtype=np.float32)
        for person in people:
            if person[a, 2] <= 0 or person[b, 2] <= 0:
                continue
            pa = image_to_map(person[a, :2], stride)
            pb = image_to_map(person[b, :2], stride)
            d = pb - pa
            length = float(np.hypot(d[0], d[1]))
            if length < 1e-6:
                continue
            ux, uy = d / length
            x0 = int(max(0, np.floor(min(pa[0], pb[0]) - limb_width)))
            x1 = int(min(width, np.ceil(max(pa[0], pb[0]) + limb_width) + 1))
            y0 = int(max(0, np.floor(min(pa[1], pb[1]) - limb_width)))
            y1 = int(min(height, np.ceil(max(pa[1], pb[1]) + limb_width) + 1))
            if x0 >= x1 or y0 >= y1:
                continue
            rx = xs[:, x0:x1] - pa[0]
            ry = ys[y0:y1] - pa[1]
            along = rx * ux + ry * uy
            across = np.abs(rx * uy - ry * ux)
            on_limb = (along >= -limb_width * 0.5) & (along <= length + limb_width * 0.5) & (across <= limb_width)
            pafs[cx, y0:y1, x0:x1] += on_limb * ux
            pafs[cy, y0:y1, x0:x1] += on_limb * uy
            count[y0:y1, x0:x1] += on_limb
        nonzero = count > 0
        pafs[cx][nonzero] /= count[nonzero]
        pafs[cy][nonzero] /= count[nonzero]
    return pafs


def render_maps(people18: np.ndarray, image_height: int, image_width: int, stride: int = STRIDE,
                sigma: float = DEFAULT_SIGMA, limb_width: float = DEFAULT_PAF_WIDTH,
                skeleton: Any = None) -> Tuple[np.ndarray, np.ndarray]:
    """Heatmaps [19, H/8, W/8] and PAFs [38, H/8, W/8] for an image of the given size (another
    ``skeleton``: its channels, from [P, parts, 3] keypoints)."""
    shape = map_size_for(image_height, image_width, stride)
    return (render_heatmaps(people18, shape, stride, sigma, skeleton),
            render_pafs(people18, shape, stride, limb_width, skeleton))
