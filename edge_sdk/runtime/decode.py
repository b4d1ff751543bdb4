"""OpenPose part-affinity-field decoding: heatmaps + PAFs (or GPU-extracted peaks + PAFs) -> people.

API (the pipeline, eval, bench and calibration use exactly this):

``decode_poses(heatmaps, pafs, config=None, skeleton=None) -> Poses``
    heatmaps [19, H, W], pafs [38, H, W] float arrays of ONE image (no batch axis).
``decode_peaks(peaks, pafs, config=None, skeleton=None) -> Poses``
    peaks [18, K, 3] (x, y, score in map cells; score 0 = empty slot), from the GPU-side top-K pass.
``skeleton``: a :class:`edge_sdk.runtime.skeleton.Skeleton` (default COCO-18; the channel counts above are
    its); other topologies (trt_pose's 18 parts / 21 links, OpenPose BODY_25) decode the same way.
``Poses``: ``keypoints`` float32 [P, 18, 3] (x, y, score) in MAP cells (score 0 = not found), and
``scores`` float32 [P]. ``Poses.to_frame(letterbox, stride)`` -> (keypoints17 [P, 17, 3] in frame pixels,
scores [P]) using skeleton.map_to_image and preprocess.Letterbox.input_to_frame.

How (docs/decoder.md has the details and the reasoning behind every threshold):

1. peaks: 3x3 non-maximum suppression of the 18 part heatmaps at once, threshold, sub-pixel refinement
   by a parabola fit to the log of the 3x3 neighbourhood (exact for the Gaussian peaks the model is trained
   to produce);
2. limbs: for each of the 19 limbs, every candidate pair is scored at once by sampling the PAF along the
   segment (line integral), counting samples that agree with the limb direction, plus the OpenPose
   distance prior that penalises limbs longer than half the image;
3. greedy one-to-one assignment per limb, best score first;
4. people: connections are merged into people along the skeleton tree (OpenPose's subset merging), then
   people with too few parts or too low a score are dropped.

Both entry points share steps 2-4, so a GPU peak pass and the host peak pass give the same people.
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
    """

    def __init__(self, peak_threshold=0.1, refine="log_quadratic", max_peaks_per_part=100, paf_samples=10,
                 paf_sample_threshold=0.05, paf_min_fraction=0.8, max_limb_fraction=0.5, min_limb_score=0.0,
                 min_parts=3, min_person_score=0.2, max_people=None):
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

    def __repr__(self):
        return "DecodeConfig({})".format(", ".join(
            "{}={!r}".format(k, v) for k, v in sorted(self.__dict__.items())))


DEFAULT_CONFIG = DecodeConfig()


class Poses(object):
    """The people of one image: ``keypoints`` [P, 18, 3] (x, y, score) in map cells, ``scores`` [P].

    A part that was not found has score 0 (and x = y = 0). People are sorted by score, best first.
    """

    def __init__(self, keypoints, scores, map_shape=None, skeleton=None):
        self.skeleton = skeleton or COCO18
        self.keypoints = np.asarray(keypoints, dtype=np.float32).reshape(-1, self.skeleton.num_parts, 3)
        self.scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        self.map_shape = map_shape

    def __len__(self):
        return int(self.scores.shape[0])

    def __repr__(self):
        return "Poses({} people, map {})".format(len(self), self.map_shape)

    @classmethod
    def empty(cls, map_shape=None, skeleton=None):
        parts = (skeleton or COCO18).num_parts
        return cls(np.zeros((0, parts, 3), np.float32), np.zeros((0,), np.float32), map_shape, skeleton)

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


def _find_peaks(hm, cfg):
    parts, height, width = hm.shape
    # threshold first (maps are mostly empty), then compare each candidate with its 8 neighbours; a
    # neighbour earlier in raster order must be strictly lower, so a plateau yields one peak
    part, y, x = np.nonzero(hm > cfg.peak_threshold)
    if part.size:
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


def _candidates(peaks, cfg):
    """[18, K, 3] peaks -> per-part candidate arrays (n_i, 3), best first, and their global ids."""
    table = []
    cands = []
    offset = 0
    for part in range(peaks.shape[0]):
        rows = peaks[part]
        rows = rows[rows[:, 2] > max(cfg.peak_threshold, 0.0)]
        if rows.shape[0] > 1:
            order = np.lexsort((rows[:, 0], rows[:, 1], -rows[:, 2]))
            rows = rows[order[:cfg.max_peaks_per_part]]
        cands.append((rows, offset))
        table.append(rows)
        offset += rows.shape[0]
    table = np.concatenate(table, axis=0) if offset else np.zeros((0, 3), np.float32)
    return cands, table


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
    channel = 2 * limb[:, None]
    proj = pafs[channel, iy, ix] * unit[:, 0:1] + pafs[channel + 1, iy, ix] * unit[:, 1:2]
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


def _connect(scores):
    """Greedy one-to-one assignment, best score first: list of (i, j, score)."""
    ia, ib = np.nonzero(np.isfinite(scores))
    if ia.size == 0:
        return []
    s = scores[ia, ib]
    order = np.lexsort((ib, ia, -s))
    limit = min(scores.shape)
    used_a, used_b = set(), set()
    out = []
    for i, j, v in zip(ia[order].tolist(), ib[order].tolist(), s[order].tolist()):
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        out.append((i, j, v))
        if len(out) >= limit:
            break
    return out


# ---------------------------------------------------------------------------------------------- people


def _assemble(cands, table, pafs, cfg, skeleton=COCO18):
    """Connections limb by limb -> people, merging partial people as OpenPose does."""
    peak_score = table[:, 2].tolist()
    people = []  # each: [slots (one global id or -1 per part), total score, parts, limbs]
    owner = {}  # global peak id -> person index (a peak belongs to at most one person)
    limb_scores = _score_all_limbs(cands, table, pafs, cfg, skeleton)
    for limb, (a, b) in enumerate(skeleton.limbs):
        if limb not in limb_scores:
            continue
        off_a, off_b = cands[a][1], cands[b][1]
        for i, j, s in _connect(limb_scores[limb]):
            ga, gb = off_a + i, off_b + j
            pa, pb = owner.get(ga), owner.get(gb)
            if pa is None and pb is None:
                if limb not in skeleton.joins_only:
                    slots = [-1] * skeleton.num_parts
                    slots[a], slots[b] = ga, gb
                    owner[ga] = owner[gb] = len(people)
                    people.append([slots, peak_score[ga] + peak_score[gb] + s, 2, 1])
            elif pa is None or pb is None:  # one end already belongs to a person: attach the other end
                keep, part, peak = (pa, b, gb) if pb is None else (pb, a, ga)
                person = people[keep]
                if person[0][part] < 0:
                    person[0][part] = peak
                    owner[peak] = keep
                    person[1] += peak_score[peak] + s
                    person[2] += 1
                    person[3] += 1
            elif pa != pb:
                keep, gone = people[pa], people[pb]
                if all(x < 0 or y < 0 for x, y in zip(keep[0], gone[0])):
                    for part, g in enumerate(gone[0]):
                        if g >= 0:
                            keep[0][part] = g
                            owner[g] = pa
                    keep[1] += gone[1] + s
                    keep[2] += gone[2]
                    keep[3] += gone[3] + 1
                    gone[0] = None  # merged away
    return people


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


def _decode(peaks, pafs, cfg, skeleton=COCO18):
    cands, table = _candidates(peaks, cfg)
    map_shape = tuple(pafs.shape[1:])
    if table.shape[0] == 0:
        return Poses.empty(map_shape, skeleton)
    return _to_poses(_assemble(cands, table, pafs, cfg, skeleton), table, cfg, map_shape, skeleton)


# ------------------------------------------------------------------------------------------ public API


def decode_poses(heatmaps: np.ndarray, pafs: np.ndarray, config: Optional[DecodeConfig] = None,
                 skeleton: Any = None) -> Poses:
    """Heatmaps [19, H, W] + PAFs [38, H, W] of one image -> Poses (map cells); other channel counts for
    another ``skeleton`` (a Skeleton or a metadata skeleton value)."""
    cfg = config or DEFAULT_CONFIG
    sk = get_skeleton(skeleton)
    hm = _as_maps(heatmaps, sk.num_heatmaps, "heatmaps", allow_fewer=sk.num_parts)[:sk.num_parts]
    pafs = _check_pafs(pafs, hm.shape[1:], sk)
    return _decode(_find_peaks(hm, cfg), pafs, cfg, sk)


def decode_peaks(peaks: np.ndarray, pafs: np.ndarray, config: Optional[DecodeConfig] = None,
                 skeleton: Any = None) -> Poses:
    """GPU-extracted peaks [18, K, 3] (x, y, score; score 0 = empty) + PAFs [38, H, W] -> Poses.

    Peaks are used as given: integral cell coordinates give one-cell precision unless the GPU pass also
    refines them (see docs/decoder.md). Candidates at or below ``config.peak_threshold`` are ignored.
    """
    cfg = config or DEFAULT_CONFIG
    sk = get_skeleton(skeleton)
    return _decode(_check_peaks(peaks, sk), _check_pafs(pafs, None, sk), cfg, sk)


__all__ = ["DecodeConfig", "DecodeConfigError", "DecodeError", "Poses", "decode_poses", "decode_peaks",
           "find_peaks", "score_limb", "NUM_LIMBS"]
