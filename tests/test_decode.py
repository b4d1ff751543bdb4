"""The PAF decoder on oracle maps (rendered from real annotations) scored with real pycocotools OKS.

The decoder, not a network, is under test: a perfect network would output exactly these maps.
"""

import json

import numpy as np
import pytest
from conftest import COCO_LAYOUTS, COCO_MINI

from edge_sdk.errors import EdgeSdkError
from edge_sdk.eval import evaluate_keypoints, gt_from_results
from edge_sdk.eval.oracle import OracleFrame, decode_frames, degrade_maps, oracle_frames
from edge_sdk.runtime.decode import DecodeConfig, DecodeError, Poses, decode_peaks, decode_poses, find_peaks
from edge_sdk.runtime.maps import map_size_for, render_heatmaps, render_maps
from edge_sdk.runtime.preprocess import letterbox_params
from edge_sdk.runtime.skeleton import NUM_PARTS, coco17_to_coco18, image_to_map


def decode_to_image(heatmaps, pafs):
    return decode_poses(heatmaps, pafs).to_frame(None)


@pytest.fixture(scope="module")
def coco_mini_gt():
    return json.loads((COCO_MINI / "person_keypoints.json").read_text())


@pytest.fixture(scope="module")
def coco_mini_frames(coco_mini_gt):
    return list(oracle_frames(coco_mini_gt))


def test_oracle_maps_of_real_photos_decode_to_high_coco_ap(coco_mini_frames, coco_mini_gt):
    stats = evaluate_keypoints(coco_mini_gt, decode_frames(coco_mini_frames, decode_to_image))
    print("coco_mini oracle OKS:", {k: round(v, 3) for k, v in stats.items()})
    assert stats["AP"] >= 0.85
    assert stats["AP50"] >= 0.95


def test_oracle_maps_of_real_crowd_layouts_decode_to_high_coco_ap():
    gt = gt_from_results(COCO_LAYOUTS, image_size=(640, 640))
    assert len(gt["images"]) == 47 and len(gt["annotations"]) == 125
    stats = evaluate_keypoints(gt, decode_frames(list(oracle_frames(gt)), decode_to_image))
    print("coco_layouts oracle OKS:", {k: round(v, 3) for k, v in stats.items()})
    # The layouts hold people whose visible joints do not connect through the 19-limb skeleton (no hips,
    # no shoulders): no PAF decoder can join those, so the bar is below the coco_mini one.
    assert stats["AP"] >= 0.8
    assert stats["AP50"] >= 0.85


def test_noisy_blurred_maps_of_real_photos_still_decode_well(coco_mini_frames, coco_mini_gt):
    """Maps that look more like a network's (uneven peak heights, blur, noise) keep most of the AP."""
    rng = np.random.default_rng(0)
    noisy = [OracleFrame(f.image_id, f.width, f.height, *degrade_maps(f.heatmaps, f.pafs, rng, noise=0.02))
             for f in coco_mini_frames]
    stats = evaluate_keypoints(coco_mini_gt, decode_frames(noisy, decode_to_image))
    print("coco_mini noisy oracle OKS:", {k: round(v, 3) for k, v in stats.items()})
    assert stats["AP"] >= 0.8
    assert stats["AP50"] >= 0.95


def test_a_wrong_decoder_scores_low(coco_mini_frames, coco_mini_gt):
    """The evaluation can fail: shifting every keypoint by 12 px must ruin the AP."""
    def shifted(heatmaps, pafs):
        kp, scores = decode_to_image(heatmaps, pafs)
        kp[..., :2] += np.where(kp[..., 2:] > 0, 12.0, 0.0)
        return kp, scores

    assert evaluate_keypoints(coco_mini_gt, decode_frames(coco_mini_frames, shifted))["AP"] < 0.5


# ------------------------------------------------------------------------------------ synthetic crowds


def stick_figure(rng, neck, torso):
    """A plausible standing/moving person (COCO-17, image px) with its neck at ``neck``."""
    lean = rng.uniform(-0.3, 0.3)
    down = np.array([np.sin(lean), np.cos(lean)])
    side = np.array([down[1], -down[0]])
    neck = np.asarray(neck, dtype=np.float64)
    kp = np.zeros((17, 3))

    def limb(start, mean_angle, spread, length):
        angle = mean_angle + lean + rng.uniform(-spread, spread)
        return start + length * torso * np.array([np.sin(angle), np.cos(angle)])

    nose = neck - 0.38 * torso * down
    r_sh, l_sh = neck - 0.32 * torso * side, neck + 0.32 * torso * side
    r_hip, l_hip = neck + torso * down - 0.2 * torso * side, neck + torso * down + 0.2 * torso * side
    r_el, l_el = limb(r_sh, -0.4, 1.2, 0.5), limb(l_sh, 0.4, 1.2, 0.5)
    r_wr, l_wr = limb(r_el, -0.4, 1.8, 0.45), limb(l_el, 0.4, 1.8, 0.45)
    r_kn, l_kn = limb(r_hip, -0.1, 0.5, 0.55), limb(l_hip, 0.1, 0.5, 0.55)
    r_an, l_an = limb(r_kn, 0.0, 0.4, 0.55), limb(l_kn, 0.0, 0.4, 0.55)
    eye_up = nose - 0.1 * torso * down
    joints = [nose, eye_up + 0.1 * torso * side, eye_up - 0.1 * torso * side,
              nose + 0.22 * torso * side, nose - 0.22 * torso * side, l_sh, r_sh, l_el, r_el, l_wr, r_wr,
              l_hip, r_hip, l_kn, r_kn, l_an, r_an]
    kp[:, :2] = joints
    kp[:, 2] = 2
    return kp


def _segment_distance(points, a, b):
    d = b - a
    t = np.clip(((points - a) @ d) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.hypot(*(points - (a + t[:, None] * d)).T)


def separable(candidate18, others18, min_joint_px=28.0, limb_px=14.0):
    """True when no joint of ``candidate`` sits on another person's same joint and no limb runs along another
    person's same limb (what makes even a perfect network ambiguous)."""
    from edge_sdk.runtime.skeleton import LIMBS

    t = np.linspace(0.0, 1.0, 10)[:, None]
    for other in others18:
        if np.min(np.hypot(*(candidate18[:, :2] - other[:, :2]).T)) < min_joint_px:
            return False
        for a, b in LIMBS:
            for p, q in ((candidate18, other), (other, candidate18)):
                points = p[a, :2] + t * (p[b, :2] - p[a, :2])
                if np.mean(_segment_distance(points, q[a, :2], q[b, :2]) < limb_px) > 0.15:
                    return False
    return True


def synthetic_crowd(rng, count, width, height):
    people17, people18 = [], []
    attempts = 0
    while len(people17) < count:
        attempts += 1
        assert attempts < 20000, "could not place {} people".format(count)
        torso = rng.uniform(45.0, 110.0)
        neck = (rng.uniform(0.15, 0.85) * width, rng.uniform(0.1, 0.45) * height)
        kp17 = stick_figure(rng, neck, torso)
        if kp17[:, 0].min() < 12 or kp17[:, 1].min() < 12 or kp17[:, 0].max() > width - 12 \
                or kp17[:, 1].max() > height - 12:
            continue
        kp18 = coco17_to_coco18(kp17)
        if separable(kp18, people18):
            people17.append(kp17)
            people18.append(kp18)
    return np.array(people17, dtype=np.float32)


def match_people(truth17, found17):
    """Greedy matching by mean joint distance -> list of (truth index, found index, max joint error px)."""
    pairs = []
    cost = np.array([[np.mean(np.hypot(*(t[:, :2] - f[:, :2]).T)) for f in found17] for t in truth17])
    used = set()
    for ti in np.argsort(cost.min(axis=1)):
        order = [fi for fi in np.argsort(cost[ti]) if fi not in used]
        fi = order[0]
        used.add(fi)
        pairs.append((ti, fi, float(np.max(np.hypot(*(truth17[ti, :, :2] - found17[fi, :, :2]).T)))))
    return pairs


@pytest.mark.parametrize("count,seed", [(2, 1), (5, 2), (9, 3), (14, 4), (20, 5)])
def test_synthetic_crowds_recover_every_person_exactly(count, seed):
    rng = np.random.default_rng(seed)
    width, height = 960, 720
    truth = synthetic_crowd(rng, count, width, height)
    heatmaps, pafs = render_maps(coco17_to_coco18(truth), height, width)
    poses = decode_poses(heatmaps, pafs)
    found, scores = poses.to_frame(None)
    assert len(poses) == count
    assert np.all(found[..., 2] > 0.5), "every joint of every person is found"
    assert np.all(scores > 0.5)
    pairs = match_people(truth, found)
    assert len({fi for _, fi, _ in pairs}) == count
    worst = max(err for _, _, err in pairs)
    assert worst < 1.0, "joints within 1 px of the truth, worst {:.2f} px".format(worst)


def test_letterboxed_frame_keypoints_come_back_in_frame_pixels():
    rng = np.random.default_rng(11)
    frame_w, frame_h, input_w, input_h = 1280, 720, 656, 368
    box, _ = letterbox_params(frame_h, frame_w, input_h, input_w)
    truth = synthetic_crowd(rng, 4, frame_w, frame_h)
    in_input = truth.copy()
    in_input[..., :2] = box.frame_to_input(truth[..., :2])
    heatmaps, pafs = render_maps(coco17_to_coco18(in_input), input_h, input_w)
    found, _ = decode_poses(heatmaps, pafs).to_frame(box, stride=8)
    assert found.shape == (4, 17, 3)
    worst = max(err for _, _, err in match_people(truth, found))
    assert worst < 1.0 / box.scale


# ------------------------------------------------------------------------------- GPU peaks entry point


def gpu_style_peaks(heatmaps, threshold, top_k):
    """What the GPU pass computes: 3x3 max-pool NMS (value == pooled), threshold, top-K per part, cell coords."""
    parts = heatmaps[:NUM_PARTS]
    padded = np.pad(parts, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    pooled = windows.max(axis=(-1, -2))
    masked = np.where((parts == pooled) & (parts > threshold), parts, 0.0).reshape(NUM_PARTS, -1)
    top = np.argsort(-masked, axis=1, kind="stable")[:, :top_k]
    width = parts.shape[2]
    peaks = np.zeros((NUM_PARTS, top_k, 3), dtype=np.float32)
    peaks[..., 0] = top % width
    peaks[..., 1] = top // width
    peaks[..., 2] = np.take_along_axis(masked, top, axis=1)
    return peaks


@pytest.fixture(scope="module")
def crowd_maps():
    rng = np.random.default_rng(21)
    truth = synthetic_crowd(rng, 8, 720, 560)
    return truth, render_maps(coco17_to_coco18(truth), 560, 720)


def test_decode_peaks_matches_decode_poses_on_gpu_style_peaks(crowd_maps):
    _, (heatmaps, pafs) = crowd_maps
    config = DecodeConfig(refine="none")
    peaks = gpu_style_peaks(heatmaps, config.peak_threshold, top_k=24)
    from_maps = decode_poses(heatmaps, pafs, config)
    from_peaks = decode_peaks(peaks, pafs, config)
    assert len(from_maps) == 8
    np.testing.assert_array_equal(from_peaks.keypoints, from_maps.keypoints)
    np.testing.assert_array_equal(from_peaks.scores, from_maps.scores)


def test_decode_peaks_of_refined_host_peaks_equals_decode_poses(crowd_maps):
    truth, (heatmaps, pafs) = crowd_maps
    peaks = find_peaks(heatmaps)
    assert peaks.shape[0] == NUM_PARTS and peaks.shape[2] == 3
    a, b = decode_poses(heatmaps, pafs), decode_peaks(peaks[None], pafs)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.scores, b.scores)
    # a top-K smaller than the crowd loses people, it does not crash
    assert 0 < len(decode_peaks(peaks[:, :3], pafs)) < 8


# ---------------------------------------------------------------------------------------------- edges


def test_empty_maps_give_no_people():
    heatmaps = np.zeros((19, 46, 46), np.float32)
    heatmaps[18] = 1.0
    poses = decode_poses(heatmaps, np.zeros((38, 46, 46), np.float32))
    assert len(poses) == 0 and poses.keypoints.shape == (0, 18, 3)
    kp17, scores = poses.to_frame(None)
    assert kp17.shape == (0, 17, 3) and scores.shape == (0,)
    assert len(decode_peaks(np.zeros((18, 10, 3), np.float32), np.zeros((38, 46, 46), np.float32))) == 0


def test_a_single_isolated_joint_is_a_peak_but_not_a_person():
    joint = np.zeros((1, 18, 3), np.float32)
    joint[0, 4] = (203.0, 117.0, 2)  # a lone right wrist
    heatmaps = render_heatmaps(joint, map_size_for(368, 368))
    peaks = find_peaks(heatmaps)
    found = peaks[4][peaks[4, :, 2] > 0]
    assert found.shape == (1, 3)
    np.testing.assert_allclose(found[0, :2], image_to_map(joint[0, 4, :2]), atol=1e-3)
    assert np.all(np.delete(peaks, 4, axis=0)[..., 2] == 0)
    assert len(decode_poses(heatmaps, np.zeros((38, 46, 46), np.float32))) == 0


def test_people_at_the_image_borders_are_found():
    width, height = 480, 360
    rng = np.random.default_rng(7)
    left = stick_figure(rng, (0, 0), 60.0)
    left[:, :2] += np.array([1.0, 40.0]) - left[:, :2].min(axis=0)  # touches the left edge
    right = stick_figure(rng, (0, 0), 70.0)
    right[:, :2] += np.array([width - 2.0, height - 1.0]) - right[:, :2].max(axis=0)  # bottom-right corner
    truth = np.stack([left, right]).astype(np.float32)
    heatmaps, pafs = render_maps(coco17_to_coco18(truth), height, width)
    found, _ = decode_poses(heatmaps, pafs).to_frame(None)
    assert len(found) == 2 and np.all(found[..., 2] > 0)
    # on a border the sub-pixel fit has one neighbour less; it still lands within 1 px
    worst = max(err for _, _, err in match_people(truth, found))
    assert worst < 1.0


def test_people_partly_outside_the_frame_keep_their_visible_joints():
    width, height = 400, 150
    person = stick_figure(np.random.default_rng(3), (200, 40), 80.0)  # legs below the bottom edge
    inside = person[:, 1] < height - 1
    assert 3 < inside.sum() < 17
    person[~inside] = 0
    heatmaps, pafs = render_maps(coco17_to_coco18(person[None]), height, width)
    found, _ = decode_poses(heatmaps, pafs).to_frame(None)
    assert len(found) == 1
    np.testing.assert_array_equal(found[0, :, 2] > 0, inside)
    assert np.max(np.hypot(*(found[0, inside, :2] - person[inside, :2]).T)) < 1.0


@pytest.mark.parametrize("heatmaps_shape,pafs_shape,message", [
    ((46, 46, 19), (38, 46, 46), "channels-last"),
    ((2, 19, 46, 46), (38, 46, 46), "batch of 2"),
    ((20, 46, 46), (38, 46, 46), "expected 19 channels"),
    ((19, 46, 46), (38, 46, 40), "differs from the heatmaps"),
    ((19, 46, 46), (19, 46, 46), "expected 38 channels"),
    ((46, 46), (38, 46, 46), "expected [19, H, W]"),
])
def test_wrong_shapes_raise_a_clear_value_error(heatmaps_shape, pafs_shape, message):
    with pytest.raises(ValueError) as info:
        decode_poses(np.zeros(heatmaps_shape, np.float32), np.zeros(pafs_shape, np.float32))
    assert message in str(info.value)
    assert isinstance(info.value, EdgeSdkError) and isinstance(info.value, DecodeError)


def test_wrong_peak_shapes_raise_a_clear_value_error():
    with pytest.raises(ValueError, match=r"expected \[18, K, 3\]"):
        decode_peaks(np.zeros((17, 10, 3), np.float32), np.zeros((38, 8, 8), np.float32))
    with pytest.raises(ValueError, match="unknown refine method"):
        DecodeConfig(refine="cubic")


def test_min_parts_and_min_score_filter_people():
    rng = np.random.default_rng(5)
    truth = synthetic_crowd(rng, 3, 480, 400)
    truth[0, 5:] = 0  # person 0: only the head (5 joints) -> 4 parts: nose, eyes, ears joined, no neck
    heatmaps, pafs = render_maps(coco17_to_coco18(truth), 400, 480)
    poses = decode_poses(heatmaps, pafs)
    assert len(poses) == 3
    parts_found = (poses.keypoints[..., 2] > 0).sum(axis=1)
    assert parts_found.tolist() == [18, 18, 5], "complete people rank above a head alone"
    assert np.all(np.diff(poses.scores) <= 0)
    assert len(decode_poses(heatmaps, pafs, DecodeConfig(min_parts=6))) == 2
    assert len(decode_poses(heatmaps, pafs, DecodeConfig(min_person_score=1.01))) == 0
    best = decode_poses(heatmaps, pafs, DecodeConfig(max_people=1))
    assert len(best) == 1 and isinstance(best, Poses)


def test_half_precision_maps_and_nan_maps(crowd_maps):
    """TensorRT FP16 engines may hand over float16; a broken engine may output NaN: neither may crash."""
    truth, (heatmaps, pafs) = crowd_maps
    half = decode_poses(heatmaps.astype(np.float16), pafs.astype(np.float16))
    found, _ = half.to_frame(None)
    assert len(half) == len(truth)
    assert max(err for _, _, err in match_people(truth, found)) < 1.5
    nan = np.full_like(heatmaps, np.nan)
    assert len(decode_poses(nan, pafs)) == 0
    assert len(decode_poses(heatmaps, np.full_like(pafs, np.nan))) == 0


def test_decoding_in_a_thread_pool_gives_the_same_people(crowd_maps):
    """The runtime decodes frames in worker threads: no shared state between calls."""
    from concurrent.futures import ThreadPoolExecutor

    _, (heatmaps, pafs) = crowd_maps
    expected = decode_poses(heatmaps, pafs)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: decode_poses(heatmaps, pafs), range(16)))
    for poses in results:
        np.testing.assert_array_equal(poses.keypoints, expected.keypoints)
        np.testing.assert_array_equal(poses.scores, expected.scores)


def test_score_limb_scores_true_pairs_and_rejects_crossed_ones(crowd_maps):
    from edge_sdk.runtime.decode import score_limb
    from edge_sdk.runtime.skeleton import LIMBS

    truth, (heatmaps, pafs) = crowd_maps
    peaks = find_peaks(heatmaps)
    limb = 6  # neck -> right hip: long, crosses other people in a crowd
    a, b = LIMBS[limb]
    cand_a, cand_b = peaks[a][peaks[a, :, 2] > 0], peaks[b][peaks[b, :, 2] > 0]
    scores = score_limb(cand_a, cand_b, pafs[2 * limb], pafs[2 * limb + 1], DecodeConfig(), pafs.shape[1])
    assert scores.shape == (len(cand_a), len(cand_b)) == (8, 8)
    truth18 = coco17_to_coco18(truth)
    owner_a = [np.argmin(np.hypot(*(truth18[:, a, :2] - (c[:2] + 0.5) * 8 + 0.5).T)) for c in cand_a]
    owner_b = [np.argmin(np.hypot(*(truth18[:, b, :2] - (c[:2] + 0.5) * 8 + 0.5).T)) for c in cand_b]
    same = np.equal.outer(owner_a, owner_b)
    assert np.all(scores[same] > 0.9)
    assert np.all(scores[~same] < scores[same].min())
