"""OpenPose part-affinity-field decoding: heatmaps + PAFs (or GPU-extracted peaks + PAFs) -> people.

API (the pipeline, eval, bench and calibration use exactly this):

``decode_poses(heatmaps, pafs, config=None, skeleton=None) -> Poses``
    heatmaps [19, H, W], pafs [38, H, W] float arrays of ONE image (no batch axis).
``decode_peaks(peaks, pafs, config=None, skeleton=None) -> Poses``
    peaks [18, K, 3] (x, y, score in map cells; score 0 = empty slot), from the GPU-side top-K pass.
``decode_limbs(peaks, limb_scores, config=None, map_shape=None, skeleton=None) -> Poses``
    peaks [18, K, 3] + limb_scores [19, K, K] from the engine-side limb scoring pass: assembly only.
``skeleton``: a :class:`edge_sdk.runtime.skeleton.Skeleton` (default COCO-18; the channel counts above are
    its); other topologies (trt_pose's 18 parts / 21 links, OpenPose BODY_25) decode the same way, except
    that the fragment merge of step 4 (which fits a canonical COCO-18 body) runs for COCO-18 only.
``Poses``: ``keypoints`` float32 [P, 18, 3] (x, y, score) in MAP cells (score 0 = not found), and
``scores`` float32 [P]. ``Poses.to_frame(letterbox, stride)`` -> (keypoints17 [P, 17, 3] in frame pixels,
scores [P]) using skeleton.map_to_image and preprocess.Letterbox.input_to_frame. ``Poses.capped`` counts
what the work caps left out (a noise frame hits them; an ordinary frame does not).

How (docs/decoder.md has the details and the reasoning behind every threshold):

1. peaks: 3x3 non-maximum suppression of the 18 part heatmaps at once, threshold, sub-pixel refinement
   by a parabola fit to the log of the 3x3 neighbourhood (exact for the Gaussian peaks the model is trained
   to produce);
2. limbs: for each of the 19 limbs, every candidate pair is scored at once by sampling the PAF along the
   segment (line integral), counting samples that agree with the limb direction, plus the OpenPose
   distance prior that penalises limbs longer than half the image (or the engine did this already);
3. one-to-one assignment per limb: optimal (Hungarian) within each small group of competing candidates,
   greedy (best score first) beyond; then an end left unmatched may share its best partner's peak (two
   people's joints that fell into one peak);
4. people: connections are merged into people along the skeleton tree (OpenPose's subset merging), then
   partial people that no limb can join (no neck: a shoulder out of the frame) are joined when their
   head/shoulder/hip anchors fit one canonical body, and people with too few parts or too low a score
   are dropped.

All entry points share steps 2-4 (3-4 for decode_limbs), so a GPU peak pass and the host peak pass give the
same people. Work is capped (candidates per frame, fragments merged), so a frame of noise stays bounded.
Pure numpy, vectorised over candidates; Python 3.6 syntax (the on-device rule).
"""

from typing import Any, Optional

import numpy as np

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.runtime.skeleton import (
    COCO18,
    NUM_LIMBS,
    STRIDE,
    get_skeleton,
    map_to_image,
)

NUM_TREE_LIMBS = 17
"""Limbs 0..16 form the skeleton tree and may start a person; 17 and 18 (shoulder-ear) only join people."""

REFINE_METHODS = ("log_quadratic", "quadratic", "centroid", "none")


class DecodeError(ModelError, ValueError):
    """Maps or peaks that do not follow the model I/O contract (shape, channel count)."""


class DecodeConfigError(ConfigError, ValueError):
    """A DecodeConfig value that cannot work."""


class DecodeConfig(object):
    """Thresholds of the decoder. The PAF thresholds are OpenPose's (peak 0.1, sample 0.05, 80 % of 10
    samples, distance prior 0.5); people need 3 parts (OpenPose: 4; 3 keeps a head-and-shoulder person,
    fragments rank last anyway, see min_person_score). For COCO evaluation min_parts=2 scores a little higher.

    peak_threshold: a heatmap cell is a part candidate when it is a 3x3 local maximum above this value.
    refine: sub-pixel refinement of peaks on the 3x3 neighbourhood: "log_quadratic" (parabola through the
        log of the values, exact for Gaussian peaks), "quadratic" (parabola through the values),
        "centroid" (weighted centroid) or "none" (cell centres).
    max_peaks_per_part: keep at most this many candidates per part (the highest scores).
    paf_samples: points sampled along each candidate limb for the PAF line integral.
    paf_sample_threshold: a sample "agrees" when the PAF projected on the limb direction exceeds this.
    paf_min_fraction: a candidate limb needs at least this fraction of agreeing samples.
    max_limb_fraction: distance prior: the limb score is reduced by ``1 - f * map_height / length`` when a
        limb is longer than ``f`` times the map height (OpenPose: 0.5); None disables the prior.
    min_limb_score: a candidate limb needs a score (mean projection + prior) above this.
    min_parts: people with fewer parts are dropped (OpenPose drops people with fewer than 4 parts).
    min_person_score: people whose evidence (mean of their peak and limb scores) is below this are dropped.
        The person score reported is that evidence times sqrt(parts found / 18), so that complete people
        rank above fragments (partly visible or partly assembled people) of equal evidence.
    max_people: keep at most this many people (the highest scores); None keeps all.
    assignment: per-limb matching, "optimal" (Hungarian within each group of competing candidates of at
        most ``optimal_max_size`` per side; greedy beyond) or "greedy" (OpenPose).
    share_peaks, share_min_score: an end left unmatched may share its best partner's peak when the limb
        scores at least ``share_min_score`` (two people's joints merged into one peak).
    merge_fragments, merge_singles, merge_max_cost, merge_scale_ratio: join partial people (and, with
        merge_singles, unowned head/shoulder/hip peaks) whose anchors fit one canonical COCO-18 body with a
        cost below merge_max_cost and scales within merge_scale_ratio. COCO-18 only: with any other
        skeleton the fragment merge is switched off automatically, whatever these say.
    max_limb_pairs: work cap: fewer candidates per part when the limbs' candidate pairs would exceed this
        (None: no cap); max_fragments: at most this many fragments (and single peaks) enter the merge.
        What a cap left out is counted in ``Poses.capped``.
    Every setting is also a decoder setting (edge_sdk.runtime.decoder_settings: CLI flag, metadata).
    """

    def __init__(self, peak_threshold=0.1, refine="log_quadratic", max_peaks_per_part=100, paf_samples=10,
                 paf_sample_threshold=0.05, paf_min_fraction=0.8, max_limb_fraction=0.5, min_limb_score=0.0,
                 min_parts=3, min_person_score=0.2, max_people=None, merge_fragments=True,
                 merge_max_cost=0.5, merge_scale_ratio=2.0, share_peaks=True, share_min_score=0.5,
                 merge_singles=True, max_limb_pairs=40000, max_fragments=32, assignment="optimal",
                 optimal_max_size=16):
        if refine not in REFINE_METHODS:
            raise DecodeConfigError("DecodeConfig: unknown refine method {!r}; known: {}".format(
                refine, ", ".join(REFINE_METHODS)))
        if paf_samples < 2:
            raise DecodeConfigError("DecodeConfig: paf_samples must be >= 2, got {}".format(paf_samples))
        self.peak_threshold = float(peak_threshold)
        self.refine = refine
        self.max_peaks_per_part = int(max_peaks_per_part)
        self.paf_samples = int(paf_samples)
        self.paf_sample_threshold = float(paf_sample_threshold)
        self.paf_min_fraction = float(paf_min_fraction)
        self.max_limb_fraction = None if max_limb_fraction is None else float(max_limb_fraction)
        self.min_limb_score = float(min_limb_score)
        self.min_parts = int(min_parts)
        self.min_person_score = float(min_person_score)
        self.max_people = None if max_people is None else int(max_people)
        self.merge_fragments = bool(merge_fragments)
        self.merge_max_cost = float(merge_max_cost)
        self.merge_scale_ratio = float(merge_scale_ratio)
        for name, value, low in (("max_limb_pairs", max_limb_pairs, 1), ("max_fragments", max_fragments, 0),
                                 ("optimal_max_size", optimal_max_size, 0), ("merge_max_cost", merge_max_cost, 0),
                                 ("merge_scale_ratio", merge_scale_ratio, 1)):
            if value is not None and not value >= low:
                raise DecodeConfigError("DecodeConfig: {} must be >= {}, got {!r}".format(name, low, value))
        if assignment not in ("greedy", "optimal"):
            raise DecodeConfigError("DecodeConfig: assignment must be 'greedy' or 'optimal', got {!r}".format(
                assignment))
        self.assignment = assignment
        self.optimal_max_size = int(optimal_max_size)
        self.merge_singles = bool(merge_singles)
        self.max_limb_pairs = None if max_limb_pairs is None else int(max_limb_pairs)
        self.max_fragments = int(max_fragments)
        self.share_peaks = bool(share_peaks)
        self.share_min_score = float(share_min_score)

    def __repr__(self):
        return "DecodeConfig({})".format(", ".join(
            "{}={!r}".format(k, v) for k, v in sorted(self.__dict__.items())))


DEFAULT_CONFIG = DecodeConfig()


class Poses(object):
    """The people of one image: ``keypoints`` [P, 18, 3] (x, y, score) in map cells, ``scores`` [P].

    A part that was not found has score 0 (and x = y = 0). People are sorted by score, best first.
    ``capped`` counts what the work caps of DecodeConfig left out (see there); a noise frame hits them.
    """

    def __init__(self, keypoints, scores, map_shape=None, skeleton=None, capped=None):
        self.skeleton = skeleton or COCO18
        self.keypoints = np.asarray(keypoints, dtype=np.float32).reshape(-1, self.skeleton.num_parts, 3)
        self.scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        self.map_shape = map_shape
        self.capped = dict(capped) if capped else {"peaks": 0, "fragments": 0}
        """What the work caps left out of this frame: ``peaks``, part candidates not scored (beyond
        ``max_peaks_per_part`` or ``max_limb_pairs``); ``fragments``, partial people not tried by the
        fragment merge (beyond ``max_fragments``). Both 0 on ordinary frames."""

    def __len__(self):
        return int(self.scores.shape[0])

    def __repr__(self):
        return "Poses({} people, map {})".format(len(self), self.map_shape)

    @classmethod
    def empty(cls, map_shape=None, skeleton=None, capped=None):
        parts = (skeleton or COCO18).num_parts
        return cls(np.zeros((0, parts, 3), np.float32), np.zeros((0,), np.float32), map_shape, skeleton, capped)

    def to_image(self, stride=STRIDE):
        """Keypoints [P, 18, 3] in model-input pixels (absent parts stay (0, 0, 0))."""
        out = self.keypoints.copy()
        out[..., :2] = map_to_image(out[..., :2], stride)
        out[out[..., 2] <= 0] = 0.0
        return out

    def to_frame(self, letterbox=None, stride=STRIDE):
        """(keypoints17 [P, 17, 3] in frame pixels, scores [P]): COCO-17 order, absent joints (0, 0, 0).

        ``letterbox`` is the preprocess.Letterbox of the frame; None means the frame is the model input.
        """
        image = self.to_image(stride)
        if letterbox is not None:
            image[..., :2] = letterbox.input_to_frame(image[..., :2])
        image[image[..., 2] <= 0] = 0.0
        return self.skeleton.to_coco17(image), self.scores.copy()


# ----------------------------------------------------------------------------------------- validation


def _as_maps(array, channels, name, allow_fewer=None):
    """A [C, H, W] float32 view of one image's maps, or a DecodeError saying what to pass instead."""
    maps = np.asarray(array)
    if maps.ndim == 4 and maps.shape[0] == 1:
        maps = maps[0]
    if maps.ndim != 3:
        hint = " (a batch of {}: decode one image at a time, e.g. outputs[i])".format(maps.shape[0]) \
            if maps.ndim == 4 else ""
        raise DecodeError("{}: expected [{}, H, W] maps of one image, got shape {}{}".format(
            name, channels, tuple(maps.shape), hint))
    ok = maps.shape[0] == channels or (allow_fewer is not None and maps.shape[0] == allow_fewer)
    if not ok:
        hint = ""
        if maps.shape[-1] in (channels, allow_fewer):
            hint = "; it looks channels-last (HWC): pass maps.transpose(2, 0, 1)"
        raise DecodeError("{}: expected {} channels first ([{}, H, W], the model I/O contract), got shape {}{}"
                          .format(name, channels, channels, tuple(maps.shape), hint))
    if maps.shape[1] < 1 or maps.shape[2] < 1:
        raise DecodeError("{}: empty maps of shape {}".format(name, tuple(maps.shape)))
    return np.ascontiguousarray(maps, dtype=np.float32)


def _check_pafs(pafs, map_shape=None, skeleton=COCO18):
    pafs = _as_maps(pafs, skeleton.num_pafs, "pafs")
    if skeleton.paf_order is not None:  # limb i at channels (2i, 2i+1), as the scoring below expects
        pafs = pafs[skeleton.paf_order]
    if map_shape is not None and tuple(pafs.shape[1:]) != tuple(map_shape):
        raise DecodeError("pafs: map size {} differs from the heatmaps' {}; both must come from the same "
                          "model output".format(tuple(pafs.shape[1:]), tuple(map_shape)))
    return pafs


# ----------------------------------------------------------------------------------------------- peaks


def find_peaks(heatmaps: np.ndarray, config: Optional[DecodeConfig] = None, skeleton: Any = None) -> np.ndarray:
    """[19 (or 18), H, W] heatmaps -> peaks [18, K, 3] (x, y, score in map cells, score 0 = empty slot).

    The host-side twin of the GPU peak pass: 3x3 non-maximum suppression, threshold, top-K per part, then
    sub-pixel refinement. On a plateau of equal values only the first cell (raster order) is kept.
    """
    cfg = config or DEFAULT_CONFIG
    sk = get_skeleton(skeleton)
    hm = _as_maps(heatmaps, sk.num_heatmaps, "heatmaps", allow_fewer=sk.num_parts)[:sk.num_parts]
    return _find_peaks(hm, cfg)


def _find_peaks(hm, cfg, capped=None):
    parts, height, width = hm.shape
    # a peak is above the threshold and at least its 8 neighbours, and a neighbour earlier in raster order
    # must be strictly lower, so a plateau yields one peak (NaN never passes)
    part, y, x = np.nonzero(hm > cfg.peak_threshold)
    if part.size * 8 > hm.size:  # dense (noise): a separable 3x3 max filter beats 8 gathers per candidate
        padded = np.full((parts, height + 2, width + 2), -np.inf, dtype=np.float32)
        padded[:, 1:-1, 1:-1] = hm
        rows = np.maximum(np.maximum(padded[:, :, :-2], padded[:, :, 1:-1]), padded[:, :, 2:])
        pooled = np.maximum(np.maximum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])
        part, y, x = np.nonzero((hm > cfg.peak_threshold) & (hm >= pooled))
        value = hm[part, y, x]
        keep = np.ones(part.shape, dtype=bool)
        for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
            keep &= padded[part, y + 1 + dy, x + 1 + dx] != value
        part, y, x = part[keep], y[keep], x[keep]
    elif part.size:
        value = hm[part, y, x]
        keep = np.ones(part.shape, dtype=bool)
        for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)):
            ny, nx = y + dy, x + dx
            inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
            neighbour = hm[part, np.clip(ny, 0, height - 1), np.clip(nx, 0, width - 1)]
            higher = value > neighbour if (dy, dx) < (0, 0) else value >= neighbour
            keep &= higher | ~inside
        part, y, x = part[keep], y[keep], x[keep]
    score = hm[part, y, x]
    # order per part: best score first (ties: raster order), then keep the top K of each part
    order = np.lexsort((x, y, -score, part))
    part, y, x, score = part[order], y[order], x[order], score[order]
    counts = np.bincount(part, minlength=parts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(part.size) - starts[part]
    keep = rank < cfg.max_peaks_per_part
    part, y, x, score, rank = part[keep], y[keep], x[keep], score[keep], rank[keep]
    if capped is not None:
        capped["peaks"] += int(keep.size - np.count_nonzero(keep))
    fx, fy = _refine(hm, part, y, x, cfg.refine)
    k = max(1, int(rank.max()) + 1) if rank.size else 1
    peaks = np.zeros((parts, k, 3), dtype=np.float32)
    peaks[part, rank, 0] = fx
    peaks[part, rank, 1] = fy
    peaks[part, rank, 2] = score
    return peaks


def _refine(hm, part, y, x, method):
    """Sub-pixel peak positions from the 3x3 neighbourhood (each axis alone; border axes stay put)."""
    fx = x.astype(np.float32)
    fy = y.astype(np.float32)
    if method == "none" or part.size == 0:
        return fx, fy
    _, height, width = hm.shape
    centre = hm[part, y, x]
    xl, xr = np.maximum(x - 1, 0), np.minimum(x + 1, width - 1)
    yu, yd = np.maximum(y - 1, 0), np.minimum(y + 1, height - 1)
    has_x = (x > 0) & (x < width - 1)
    has_y = (y > 0) & (y < height - 1)
    if method == "centroid":
        ys = np.stack([yu, y, yd], axis=1)[:, :, None]
        xs = np.stack([xl, x, xr], axis=1)[:, None, :]
        inside = np.ones_like(y, dtype=bool)
        row_ok = np.stack([y > 0, inside, y < height - 1], axis=1)[:, :, None]
        col_ok = np.stack([x > 0, inside, x < width - 1], axis=1)[:, None, :]
        w = np.where(row_ok & col_ok, np.maximum(hm[part[:, None, None], ys, xs], 0.0), 0.0)
        total = np.maximum(w.sum(axis=(1, 2)), 1e-12)
        off = np.array([-1.0, 0.0, 1.0], dtype=np.float32)
        dx = (w.sum(axis=1) * off).sum(axis=1) / total
        dy = (w.sum(axis=2) * off).sum(axis=1) / total
        return fx + dx.astype(np.float32), fy + dy.astype(np.float32)
    left, right = hm[part, y, xl], hm[part, y, xr]
    up, down = hm[part, yu, x], hm[part, yd, x]
    if method == "log_quadratic":
        floor = np.float32(1e-6)
        centre, left, right, up, down = [np.log(np.maximum(v, floor)) for v in (centre, left, right, up, down)]
    dx = _parabola_offset(left, centre, right, has_x)
    dy = _parabola_offset(up, centre, down, has_y)
    if method == "log_quadratic":
        # On a border one neighbour is missing. The log of a Gaussian is a parabola of one curvature:
        # take it from the other axis (a round peak) or, in a corner, from the next cells inwards.
        kx, ky = left - 2.0 * centre + right, up - 2.0 * centre + down
        inward_x = _inward_curvature(hm, part, y, x, width, axis=2)
        inward_y = _inward_curvature(hm, part, y, x, height, axis=1)
        kx_border = np.where(has_y & (ky < -1e-9), ky, inward_x)
        ky_border = np.where(has_x & (kx < -1e-9), kx, inward_y)
        dx = np.where(has_x, dx, _one_sided_offset(left, centre, right, x == 0, x == width - 1, kx_border))
        dy = np.where(has_y, dy, _one_sided_offset(up, centre, down, y == 0, y == height - 1, ky_border))
    return fx + dx, fy + dy


def _inward_curvature(hm, part, y, x, size, axis):
    """Second difference of the log heatmap over the 3 cells from a border cell inwards (0 if too small)."""
    if size < 3:
        return np.zeros(part.shape, dtype=np.float32)
    pos = x if axis == 2 else y
    step = np.where(pos == 0, 1, -1)
    cells = [np.clip(pos + i * step, 0, size - 1) for i in range(3)]
    floor = np.float32(1e-6)
    if axis == 2:
        vals = [np.log(np.maximum(hm[part, y, c], floor)) for c in cells]
    else:
        vals = [np.log(np.maximum(hm[part, c, x], floor)) for c in cells]
    return (vals[0] - 2.0 * vals[1] + vals[2]).astype(np.float32)


def _parabola_offset(before, centre, after, valid):
    curvature = before - 2.0 * centre + after
    ok = valid & (curvature < -1e-9)
    offset = np.where(ok, 0.5 * (before - after) / np.where(ok, curvature, -1.0), 0.0)
    return np.clip(offset, -0.5, 0.5).astype(np.float32)


def _one_sided_offset(before, centre, after, at_start, at_end, curvature):
    """Vertex of a parabola of known curvature through the centre and its one neighbour on the map."""
    ok = (curvature < -1e-9) & (at_start != at_end)
    k = np.where(ok, curvature, -1.0)
    offset = np.where(at_start, 0.5 - (after - centre) / k, (before - centre) / k - 0.5)
    return np.where(ok, np.clip(offset, -0.5, 0.5), 0.0).astype(np.float32)


def _check_peaks(peaks, skeleton=COCO18):
    arr = np.asarray(peaks, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[0] != skeleton.num_parts or arr.shape[2] != 3:
        raise DecodeError("peaks: expected [{}, K, 3] (x, y, score in map cells) of one image, got shape {}"
                          .format(skeleton.num_parts, tuple(arr.shape)))
    return arr


def _candidates(peaks, cfg, capped=None, skeleton=COCO18):
    """[parts, K, 3] peaks -> per-part candidate arrays (n_i, 3), best first, their global ids, and the slot
    of each candidate in ``peaks`` (to index engine-side limb scores).

    At most ``max_peaks_per_part`` per part, then fewer (the same number for every crowded part) when the
    limbs' candidate pairs would exceed ``max_limb_pairs``; ``capped["peaks"]`` counts what was dropped.
    """
    per_part, slots = [], []
    for part in range(peaks.shape[0]):
        rows = peaks[part]
        index = np.nonzero(rows[:, 2] > max(cfg.peak_threshold, 0.0))[0]
        rows = rows[index]
        if rows.shape[0] > 1:
            order = np.lexsort((rows[:, 0], rows[:, 1], -rows[:, 2]))
            rows, index = rows[order], index[order]
        per_part.append(rows)
        slots.append(index)
    limit = _peak_limit([rows.shape[0] for rows in per_part], cfg, skeleton.limbs)
    table = []
    cands = []
    offset = 0
    for part, rows in enumerate(per_part):
        if capped is not None:
            capped["peaks"] += max(rows.shape[0] - limit, 0)
        rows = rows[:limit]
        slots[part] = slots[part][:limit]
        cands.append((rows, offset))
        table.append(rows)
        offset += rows.shape[0]
    table = np.concatenate(table, axis=0) if offset else np.zeros((0, 3), np.float32)
    return cands, table, slots


def _peak_limit(counts, cfg, limbs):
    """The most candidates per part that keeps the ``limbs``' pairs within ``max_limb_pairs``."""
    def pairs(k):
        return sum(min(counts[a], k) * min(counts[b], k) for a, b in limbs)

    limit = min(cfg.max_peaks_per_part, max(counts) if counts else 0)
    if cfg.max_limb_pairs is None or pairs(limit) <= cfg.max_limb_pairs:
        return max(limit, 0)
    low, high = 1, limit  # pairs(k) grows with k: the largest k within the budget
    while low < high:
        mid = (low + high + 1) // 2
        if pairs(mid) <= cfg.max_limb_pairs:
            low = mid
        else:
            high = mid - 1
    return low


# ----------------------------------------------------------------------------------------------- limbs


def score_limb(cand_a: np.ndarray, cand_b: np.ndarray, paf_x: np.ndarray, paf_y: np.ndarray, cfg: DecodeConfig,
               map_height: int) -> np.ndarray:
    """Scores [na, nb] of every candidate pair of one limb (-inf where the pair is not a limb)."""
    na, nb = cand_a.shape[0], cand_b.shape[0]
    start = np.repeat(np.asarray(cand_a, np.float32)[:, :2], nb, axis=0)
    end = np.tile(np.asarray(cand_b, np.float32)[:, :2], (na, 1))
    pafs = np.stack([paf_x, paf_y])
    return _score_pairs(start, end, np.zeros(na * nb, np.intp), pafs, cfg, map_height).reshape(na, nb)


def _score_pairs(start, end, limb, pafs, cfg, map_height):
    """Scores [N] of N candidate limbs (all limbs at once; -inf where a pair is not a limb).

    The PAF of each pair's limb is sampled at ``paf_samples`` points of the segment, projected on the
    segment direction; a pair needs ``paf_min_fraction`` of agreeing samples and a mean plus distance
    prior above ``min_limb_score``.
    """
    height, width = pafs.shape[1:]
    d = end - start  # [N, 2]
    length = np.sqrt((d * d).sum(axis=1))
    safe = np.maximum(length, 1e-6)
    unit = d / safe[:, None]
    t = np.linspace(0.0, 1.0, cfg.paf_samples, dtype=np.float32)
    ix = np.clip(np.rint(start[:, None, 0] + d[:, None, 0] * t), 0, width - 1).astype(np.intp)  # [N, S]
    iy = np.clip(np.rint(start[:, None, 1] + d[:, None, 1] * t), 0, height - 1).astype(np.intp)
    flat = pafs.reshape(-1)  # one flat gather per axis: cheaper than 3-index fancy indexing
    cell = (2 * height * width) * limb[:, None] + iy * width + ix
    proj = flat[cell] * unit[:, 0:1] + flat[cell + height * width] * unit[:, 1:2]
    score = proj.mean(axis=1)
    agree = (proj > cfg.paf_sample_threshold).sum(axis=1)
    if cfg.max_limb_fraction is not None:
        score = score + np.minimum(cfg.max_limb_fraction * map_height / safe - 1.0, 0.0)
    needed = int(np.ceil(cfg.paf_min_fraction * cfg.paf_samples - 1e-6))
    ok = (agree >= needed) & (score > cfg.min_limb_score) & (length > 1e-6)
    return np.where(ok, score, -np.inf)


def _score_all_limbs(cands, table, pafs, cfg, skeleton=COCO18):
    """{limb: scores [na, nb]} of every limb with candidates at both ends, in one vectorised pass."""
    starts, ends, limbs, shapes = [], [], [], []
    for limb, (a, b) in enumerate(skeleton.limbs):
        (cand_a, off_a), (cand_b, off_b) = cands[a], cands[b]
        na, nb = cand_a.shape[0], cand_b.shape[0]
        if na == 0 or nb == 0:
            continue
        starts.append(np.repeat(np.arange(off_a, off_a + na), nb))
        ends.append(np.tile(np.arange(off_b, off_b + nb), na))
        limbs.append(np.full(na * nb, limb, dtype=np.intp))
        shapes.append((limb, na, nb))
    if not shapes:
        return {}
    scores = _score_pairs(table[np.concatenate(starts), :2], table[np.concatenate(ends), :2],
                          np.concatenate(limbs), pafs, cfg, pafs.shape[1])
    out, pos = {}, 0
    for limb, na, nb in shapes:
        out[limb] = scores[pos:pos + na * nb].reshape(na, nb)
        pos += na * nb
    return out


def _connect(scores, share_min_score=None, optimal_max_size=0):
    """One-to-one assignment of one limb's candidates: list of (i, j, score, shared end), best score first.

    Candidates that compete (connected through finite scores) form small groups in a crowd. A group of at
    most ``optimal_max_size`` candidates per side gets the optimal assignment (the most limbs, then the
    highest total score: the Hungarian method); other groups, and all with ``optimal_max_size`` 0, are
    matched greedily, best score first (OpenPose). With ``share_min_score``, an end left unmatched then
    takes its best partner even though that partner is already matched, when the score is at least this
    (shared end "a" or "b"): two people's same joints that fell into one peak keep their limbs. Shared
    connections come after the one-to-one ones.
    """
    finite = np.isfinite(scores)
    ia, ib = np.nonzero(finite)
    if ia.size == 0:
        return []
    s = scores[ia, ib]
    order = np.lexsort((ib, ia, -s))
    ia, ib, s = ia[order], ib[order], s[order]
    if optimal_max_size < 2 or min(scores.shape) == 1:  # one candidate on a side: greedy is optimal
        chosen = _greedy(zip(ia.tolist(), ib.tolist(), s.tolist()))
    else:
        # a pair whose two ends have no other candidate is matched as it is; the rest form small groups
        alone = (finite.sum(axis=1)[ia] == 1) & (finite.sum(axis=0)[ib] == 1)
        chosen = list(zip(ia[alone].tolist(), ib[alone].tolist(), s[alone].tolist()))
        ia, ib, s = ia[~alone].tolist(), ib[~alone].tolist(), s[~alone].tolist()
        table = scores.tolist()
        rows, cols = sorted(set(ia)), sorted(set(ib))
        if max(len(rows), len(cols)) <= optimal_max_size:  # all groups at once: the optimum is per group
            groups = [] if not rows else [None]
        else:
            groups = _competing_groups(ia, ib, scores.shape[0])
        for edges in groups:
            if edges is not None:
                rows = sorted(set(ia[e] for e in edges))
                cols = sorted(set(ib[e] for e in edges))
            if max(len(rows), len(cols)) <= optimal_max_size:
                chosen += _optimal(table, rows, cols)
            else:
                chosen += _greedy([(ia[e], ib[e], s[e]) for e in edges])
    chosen.sort(key=lambda c: (-c[2], c[0], c[1]))
    out = [(i, j, v, None) for i, j, v in chosen]
    used_a, used_b = set(i for i, _, _ in chosen), set(j for _, j, _ in chosen)
    if share_min_score is None or (len(used_a) == scores.shape[0] and len(used_b) == scores.shape[1]):
        return out
    best_b, best_a = np.argmax(scores, axis=1), np.argmax(scores, axis=0)
    rows, cols = np.arange(scores.shape[0]), np.arange(scores.shape[1])
    for i in np.nonzero(scores[rows, best_b] >= share_min_score)[0].tolist():
        if i not in used_a:
            out.append((i, int(best_b[i]), float(scores[i, best_b[i]]), "b"))
    for j in np.nonzero(scores[best_a, cols] >= share_min_score)[0].tolist():
        if j not in used_b:
            out.append((int(best_a[j]), j, float(scores[best_a[j], j]), "a"))
    return out


def _competing_groups(ia, ib, rows):
    """Edge indices grouped by connected component of the bipartite graph (rows, then columns as nodes),
    each group in the input order."""
    parent = {}

    def root(node):
        while parent.get(node, node) != node:
            parent[node] = parent.get(parent[node], parent[node])
            node = parent[node]
        return node

    for i, j in zip(ia, ib):
        a, b = root(i), root(rows + j)
        if a != b:
            parent[b] = a
    groups = {}
    for e, i in enumerate(ia):
        groups.setdefault(root(i), []).append(e)
    return list(groups.values())


def _greedy(edges):
    """Greedy one-to-one matching of (i, j, score) edges given best first."""
    used_a, used_b, out = set(), set(), []
    for i, j, v in edges:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j, v))
    return out


def _optimal(table, rows, cols):
    """The assignment of ``rows`` to ``cols`` with the most finite pairs, then the highest total score
    (Hungarian method, O(n^2 m) on a small group); ``table``: the limb's scores as nested lists."""
    inf = float("inf")
    sub = [[table[i][j] for j in cols] for i in rows]
    cost = [[-v if v > -inf else 1e6 for v in row] for row in sub]  # a forbidden pair costs more than all
    flip = len(rows) > len(cols)
    if flip:
        cost = [list(column) for column in zip(*cost)]
    pairs = _hungarian(cost)
    if flip:
        pairs = [(j, i) for i, j in pairs]
    return [(rows[i], cols[j], sub[i][j]) for i, j in pairs if sub[i][j] > -inf]


def _hungarian(cost):
    """Minimum-cost assignment of every row of an n x m cost list (n <= m): [(row, column)]."""
    n, m = len(cost), len(cost[0])
    inf = float("inf")
    u, v, match, way = [0.0] * (n + 1), [0.0] * (m + 1), [0] * (m + 1), [0] * (m + 1)
    for row in range(1, n + 1):
        match[0], j0 = row, 0
        minv, used = [inf] * (m + 1), [False] * (m + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = match[j0], inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if reduced < minv[j]:
                        minv[j], way[j] = reduced, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if match[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    return [(match[j] - 1, j - 1) for j in range(1, m + 1) if match[j]]


# ---------------------------------------------------------------------------------------------- people


# noqa below: one pass over the limbs with five cases of who owns each end; split, it would pass the shared
# people/owners state through every helper on the decoder's hottest path
def _assemble(cands, table, limb_scores, cfg, skeleton=COCO18):  # noqa: C901
    """Connections limb by limb -> people, merging partial people as OpenPose does.

    A peak normally belongs to one person; a shared connection (see _connect) lends its shared end to a
    second person, so a peak may have two owners.
    """
    peak_score = table[:, 2].tolist()
    people = []  # each: [slots (one global id or -1 per part), total score, parts, limbs]
    owners = {}  # global peak id -> [person index, ...]
    share = cfg.share_min_score if cfg.share_peaks else None
    optimal = cfg.optimal_max_size if cfg.assignment == "optimal" else 0

    def attach(person_index, part, peak, score):
        person = people[person_index]
        person[0][part] = peak
        owners.setdefault(peak, []).append(person_index)
        person[1] += peak_score[peak] + score
        person[2] += 1
        person[3] += 1

    def free(indices, part):
        return [p for p in indices if people[p][0][part] < 0]

    for limb, (a, b) in enumerate(skeleton.limbs):
        if limb not in limb_scores:
            continue
        off_a, off_b = cands[a][1], cands[b][1]
        for i, j, s, shared in _connect(limb_scores[limb], share, optimal):
            ga, gb = off_a + i, off_b + j
            pa, pb = owners.get(ga, []), owners.get(gb, [])
            if shared is not None:  # lend the shared end to the person of the other end
                lent, lent_part, other, other_owners = (ga, a, gb, pb) if shared == "a" else (gb, b, ga, pa)
                other_part = b if shared == "a" else a
                lenders = owners.get(lent, [])
                if other_owners:
                    takers = [p for p in free(other_owners, lent_part) if p not in lenders]
                    if takers and len(lenders) < 2:
                        attach(takers[0], lent_part, lent, s)
                elif lenders:
                    takers = free(lenders, other_part)
                    if takers:
                        attach(takers[0], other_part, other, s)
                continue
            if not pa and not pb:
                if limb not in skeleton.joins_only:
                    slots = [-1] * skeleton.num_parts
                    slots[a], slots[b] = ga, gb
                    owners[ga] = [len(people)]
                    owners[gb] = [len(people)]
                    people.append([slots, peak_score[ga] + peak_score[gb] + s, 2, 1])
            elif not pa or not pb:  # one end already belongs to a person: attach the other end
                takers, part, peak = (free(pa, b), b, gb) if not pb else (free(pb, a), a, ga)
                if takers:
                    attach(takers[0], part, peak, s)
            elif not set(pa) & set(pb):
                keep_index, gone_index = pa[0], pb[0]
                keep, gone = people[keep_index], people[gone_index]
                if all(x < 0 or y < 0 for x, y in zip(keep[0], gone[0])):
                    for part, g in enumerate(gone[0]):
                        if g >= 0:
                            keep[0][part] = g
                            owners[g] = [keep_index if o == gone_index else o for o in owners[g]]
                    keep[1] += gone[1] + s
                    keep[2] += gone[2]
                    keep[3] += gone[3] + 1
                    gone[0] = None  # merged away
    return people


CANONICAL_POSE = np.array([
    [0.0, -0.32], [0.0, 0.0], [-0.26, 0.0], [-0.40, 0.50], [-0.31, 0.76], [0.26, 0.0], [0.40, 0.50], [0.31, 0.76],
    [-0.18, 0.99], [-0.19, 1.63], [-0.10, 2.30], [0.18, 0.99], [0.19, 1.63], [0.10, 2.30],
    [-0.05, -0.40], [0.05, -0.40], [-0.14, -0.36], [0.14, -0.36]], dtype=np.float32)
"""Median COCO-18 pose of the real people in tests/data/coco_layouts (and their mirror images): neck at the
origin, y down, in units of the torso (neck to mid-hip). Used only to join fragments that no limb joins."""

CANONICAL_LIMB_LENGTH = np.array([0.30, 0.30, 0.55, 0.42, 0.55, 0.42, 1.02, 0.70, 0.81, 1.02, 0.70, 0.81, 0.39,
                                  0.11, 0.15, 0.11, 0.15, 0.41, 0.41], dtype=np.float32)
"""Median length of each limb in the same poses, in torso units (a fragment's scale comes from its limbs)."""

ANCHOR_PARTS = (0, 1, 2, 5, 8, 11, 14, 15, 16, 17)
"""Parts whose place on the body hardly depends on the pose (head, neck, shoulders, hips)."""


_ANCHORS = np.array(ANCHOR_PARTS)
_EXPECTED = CANONICAL_POSE[_ANCHORS][None, :, :] - CANONICAL_POSE[_ANCHORS][:, None, :]  # [10, 10, 2]
_EXPECTED_LENGTH = np.hypot(_EXPECTED[..., 0], _EXPECTED[..., 1])
_ORDERED = np.abs(_EXPECTED[..., 1]) > 0.3  # pairs clearly one above the other on an upright body


def _fragment_geometry(slots, table):
    """(anchor indices into ANCHOR_PARTS, their (x, y), torso length in cells or NaN, part bit mask)."""
    anchors = [k for k, part in enumerate(ANCHOR_PARTS) if slots[part] >= 0]
    xy = table[[slots[ANCHOR_PARTS[k]] for k in anchors], :2].reshape(-1, 2)
    ratios = []
    for limb, (a, b) in enumerate(COCO18.limbs):
        if slots[a] >= 0 and slots[b] >= 0:
            d = table[slots[a], :2] - table[slots[b], :2]
            ratios.append(float(np.hypot(d[0], d[1])) / float(CANONICAL_LIMB_LENGTH[limb]))
    mask = sum(1 << part for part, g in enumerate(slots) if g >= 0)
    return np.array(anchors, dtype=np.intp), xy, _median(ratios), mask


def _median(values):
    """Median of a short list (NaN if empty); np.median costs more than the whole list here."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def _stack(geometries):
    """Per-fragment geometries -> (owner, anchor, xy) of all their anchors, scales [n], masks [n]."""
    owner = np.repeat(np.arange(len(geometries)), [len(g[0]) for g in geometries]).astype(np.intp)
    anchor = np.concatenate([g[0] for g in geometries] + [np.zeros(0, np.intp)])
    xy = np.concatenate([g[1] for g in geometries] + [np.zeros((0, 2), np.float32)])
    scale = np.array([g[2] for g in geometries], dtype=np.float64)
    mask = np.array([g[3] for g in geometries], dtype=np.int64)
    return owner, anchor, xy, scale, mask


def _merge_costs(geo_a, geo_b, cfg):
    """[na, nb] distance of every pair of fragments from one canonical body: the mean over their anchor
    pairs of |seen distance - canonical distance| / (canonical + 0.25), in torso units; inf where the pair
    cannot be one person (a part in both, scales too different, a head below a hip, no anchors).
    ``geo_a``, ``geo_b``: stacked geometries (see _stack); the work is one array op per anchor pair."""
    owner_a, anchor_a, xy_a, scale_a, mask_a = geo_a
    owner_b, anchor_b, xy_b, scale_b, mask_b = geo_b
    na, nb = scale_a.shape[0], scale_b.shape[0]
    sa, sb = scale_a[:, None], scale_b[None, :]
    sa, sb = np.where(np.isnan(sa), sb, sa), np.where(np.isnan(sb), sa, sb)  # a single peak: the other's scale
    with np.errstate(invalid="ignore"):
        ok = (sa > 1e-3) & (sb > 1e-3) & (np.maximum(sa, sb) <= cfg.merge_scale_ratio * np.minimum(sa, sb))
    ok &= (mask_a[:, None] & mask_b[None, :]) == 0
    scale = np.sqrt(np.where(ok, sa * sb, 1.0))
    pair = owner_a[:, None] * nb + owner_b[None, :]  # [Ea, Eb] -> fragment pair
    seen = (xy_b[None, :, :] - xy_a[:, None, :]) / scale[owner_a[:, None], owner_b[None, :]][..., None]
    expected = _EXPECTED[anchor_a[:, None], anchor_b[None, :]]  # [Ea, Eb, 2]
    length = _EXPECTED_LENGTH[anchor_a[:, None], anchor_b[None, :]]
    flipped = _ORDERED[anchor_a[:, None], anchor_b[None, :]] & (seen[..., 1] * expected[..., 1] < 0)
    error = np.abs(np.hypot(seen[..., 0], seen[..., 1]) - length) / (length + 0.25)
    size = na * nb
    count = np.bincount(pair.ravel(), minlength=size).reshape(na, nb)
    total = np.bincount(pair.ravel(), weights=error.ravel(), minlength=size).reshape(na, nb)
    upside_down = np.bincount(pair.ravel(), weights=flipped.ravel(), minlength=size).reshape(na, nb) > 0
    ok &= (count > 0) & ~upside_down
    return np.where(ok, total / np.maximum(count, 1), np.inf)


def _merge_fragments(people, cands, table, cfg, capped):
    """Join partial people that no limb can join (no neck: e.g. one shoulder outside the frame) when their
    anchors fit one canonical body; the best fit first, fragments with a part in common never. Anchor
    peaks nobody owns (a hip whose knee is out of the frame) may join such a fragment too. At most
    ``max_fragments`` fragments and as many single peaks take part (the best), so the work is bounded."""
    owned = set(g for p in people if p[0] is not None for g in p[0] if g >= 0)
    first_single = len(people)
    if cfg.merge_singles:
        for part in ANCHOR_PARTS:
            if part == 1:
                continue
            rows, offset = cands[part]
            for g in range(offset, offset + rows.shape[0]):
                if g not in owned:
                    slots = [-1] * COCO18.num_parts
                    slots[part] = g
                    people.append([slots, float(table[g, 2]), 1, 0])
    fragments = sorted((i for i in range(first_single) if people[i][0] is not None and people[i][0][1] < 0),
                       key=lambda i: -people[i][1])
    singles = sorted(range(first_single, len(people)), key=lambda i: -people[i][1])
    capped["fragments"] += max(len(fragments) - cfg.max_fragments, 0) + max(len(singles) - cfg.max_fragments, 0)
    fragments, singles = fragments[:cfg.max_fragments], singles[:cfg.max_fragments]
    if fragments:
        columns = fragments + singles
        geometries = [_fragment_geometry(people[i][0], table) for i in columns]
        costs = _merge_costs(_stack(geometries[:len(fragments)]), _stack(geometries), cfg)  # [F, F + S]
        costs[np.arange(len(fragments)), np.arange(len(fragments))] = np.inf
        while True:
            best = int(np.argmin(costs))
            i, j = divmod(best, costs.shape[1])
            if not costs[i, j] < cfg.merge_max_cost:
                break
            keep, gone = people[columns[i]], people[columns[j]]
            for part, g in enumerate(gone[0]):
                if g >= 0:
                    keep[0][part] = g
            keep[1] += gone[1]
            keep[2] += gone[2]
            keep[3] += gone[3]
            gone[0] = None
            costs[:, j] = np.inf
            if j < len(fragments):
                costs[j, :] = np.inf
            geometries[i] = _fragment_geometry(keep[0], table)
            row = _merge_costs(_stack([geometries[i]]), _stack(geometries), cfg)[0]
            row[[k for k, index in enumerate(columns) if people[index][0] is None or k == i]] = np.inf
            costs[i, :] = row
            costs[:, i] = row[:len(fragments)]  # the cost is symmetric
    for i in range(first_single, len(people)):
        people[i][0] = None  # anchors nobody took are not people


def _to_poses(people, table, cfg, map_shape, skeleton=COCO18):
    kept = []
    for slots, total, parts, limbs in people:
        if slots is None or parts < cfg.min_parts:
            continue
        evidence = total / float(parts + limbs)  # mean of the peak and limb scores
        if evidence < cfg.min_person_score:
            continue
        # rank complete people above fragments of equal evidence
        kept.append((evidence * np.sqrt(parts / float(skeleton.num_parts)), slots))
    if not kept:
        return Poses.empty(map_shape, skeleton)
    kept.sort(key=lambda item: -item[0])
    if cfg.max_people is not None:
        kept = kept[:cfg.max_people]
    ids = np.array([slots for _, slots in kept], dtype=np.intp)  # [P, parts]
    keypoints = np.where((ids >= 0)[..., None], table[np.maximum(ids, 0)], 0.0).astype(np.float32)
    return Poses(keypoints, np.array([s for s, _ in kept], dtype=np.float32), map_shape, skeleton)


def is_coco18(skeleton: Any) -> bool:
    """Whether ``skeleton`` is OpenPose COCO-18 (by its parts and limbs, whatever its name): the fragment
    merge and the engine-side peak/limb passes assume that topology."""
    return skeleton is COCO18 or (list(skeleton.parts) == list(COCO18.parts)
                                  and list(skeleton.limbs) == list(COCO18.limbs))


def _decode(peaks, pafs, cfg, skeleton=COCO18, capped=None, engine_scores=None, map_shape=None):
    """Peaks -> people, the limbs scored here from ``pafs`` or taken from ``engine_scores`` [limbs, K, K].

    The fragment merge (``merge_fragments``) fits a canonical COCO-18 body, so it runs only when
    ``skeleton`` is COCO-18 and is switched off for any other skeleton; everything else works for any.
    """
    capped = capped or {"peaks": 0, "fragments": 0}
    cands, table, slots = _candidates(peaks, cfg, capped, skeleton)
    map_shape = tuple(pafs.shape[1:]) if pafs is not None else map_shape
    if table.shape[0] == 0:
        return Poses.empty(map_shape, skeleton, capped)
    if engine_scores is None:
        limb_scores = _score_all_limbs(cands, table, pafs, cfg, skeleton)
    else:
        limb_scores = _engine_limb_scores(engine_scores, cands, slots, skeleton)
    people = _assemble(cands, table, limb_scores, cfg, skeleton)
    if cfg.merge_fragments and is_coco18(skeleton):
        _merge_fragments(people, cands, table, cfg, capped)
    poses = _to_poses(people, table, cfg, map_shape, skeleton)
    poses.capped = capped
    return poses


INVALID_LIMB_SCORE = -1000.0
"""What the engine's limb scoring pass writes for a pair that is not a limb (finite, so FP16 holds it)."""


def _engine_limb_scores(engine_scores, cands, slots, skeleton=COCO18):
    """{limb: scores [na, nb]} picked from the engine's [limbs, K, K] (rows: part A slots, columns: part B)."""
    out = {}
    for limb, (a, b) in enumerate(skeleton.limbs):
        if cands[a][0].shape[0] and cands[b][0].shape[0]:
            picked = engine_scores[limb][np.ix_(slots[a], slots[b])]
            out[limb] = np.where(picked > INVALID_LIMB_SCORE / 2, picked, -np.inf)
    return out


# ------------------------------------------------------------------------------------------ public API


def decode_poses(heatmaps: np.ndarray, pafs: np.ndarray, config: Optional[DecodeConfig] = None,
                 skeleton: Any = None) -> Poses:
    """Heatmaps [19, H, W] + PAFs [38, H, W] of one image -> Poses (map cells); other channel counts for
    another ``skeleton`` (a Skeleton or a metadata skeleton value)."""
    cfg = config or DEFAULT_CONFIG
    sk = get_skeleton(skeleton)
    hm = _as_maps(heatmaps, sk.num_heatmaps, "heatmaps", allow_fewer=sk.num_parts)[:sk.num_parts]
    pafs = _check_pafs(pafs, hm.shape[1:], sk)
    capped = {"peaks": 0, "fragments": 0}
    return _decode(_find_peaks(hm, cfg, capped), pafs, cfg, sk, capped)


def decode_peaks(peaks: np.ndarray, pafs: np.ndarray, config: Optional[DecodeConfig] = None,
                 skeleton: Any = None) -> Poses:
    """GPU-extracted peaks [18, K, 3] (x, y, score; score 0 = empty) + PAFs [38, H, W] -> Poses.

    Peaks are used as given: integral cell coordinates give one-cell precision unless the GPU pass also
    refines them (see docs/decoder.md). Candidates at or below ``config.peak_threshold`` are ignored.
    """
    cfg = config or DEFAULT_CONFIG
    sk = get_skeleton(skeleton)
    return _decode(_check_peaks(peaks, sk), _check_pafs(pafs, None, sk), cfg, sk)


def decode_limbs(peaks: np.ndarray, limb_scores: np.ndarray, config: Optional[DecodeConfig] = None,
                 map_shape: Any = None, skeleton: Any = None) -> Poses:
    """Engine-side peaks [18, K, 3] + limb scores [19, K, K] (the ``limbs`` graph pass) -> Poses.

    ``limb_scores[l, i, j]`` scores limb ``l`` from slot ``i`` of its first part to slot ``j`` of its second
    (``INVALID_LIMB_SCORE`` where the pair is not a limb); the PAF thresholds were applied in the engine, so
    only the assembly runs here. ``map_shape`` (H, W) is carried into the result. With another
    ``skeleton`` the shapes are [parts, K, 3] and [limbs, K, K] (and the fragment merge is off).
    """
    cfg = config or DEFAULT_CONFIG
    sk = get_skeleton(skeleton)
    peaks = _check_peaks(peaks, sk)
    scores = np.asarray(limb_scores, dtype=np.float32)
    if scores.ndim == 4 and scores.shape[0] == 1:
        scores = scores[0]
    k = peaks.shape[1]
    if scores.shape != (sk.num_limbs, k, k):
        raise DecodeError("limb_scores: expected [{}, K, K] with K = {} (the peaks' K) of one image, got shape {}"
                          .format(sk.num_limbs, k, tuple(scores.shape)))
    return _decode(peaks, None, cfg, sk, engine_scores=scores, map_shape=map_shape)


__all__ = ["DecodeConfig", "DecodeConfigError", "DecodeError", "INVALID_LIMB_SCORE", "Poses", "decode_limbs",
           "decode_poses", "decode_peaks", "find_peaks", "is_coco18", "score_limb", "NUM_LIMBS"]
