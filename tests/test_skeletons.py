"""Other topologies: the skeleton comes from the model metadata (trt_pose 18 parts / 21 links without a
background, OpenPose BODY_25), tested with oracle maps rendered for each."""

import json

import numpy as np
import onnx
import pytest
from test_plain_models import strip_metadata

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.decode import decode_poses
from edge_sdk.runtime.maps import render_maps
from edge_sdk.runtime.skeleton import BODY25, COCO18, TRT_POSE_18, get_skeleton
from edge_sdk.testing.oracle_model import make_oracle, oracle_people

pytest.importorskip("onnxruntime")


def by_x(people):
    return people[np.argsort(people[:, 5, 0] + people[:, 6, 0])]


def check_found(messages, expected):
    assert len(messages) == len(expected)
    for message, want in zip(messages, expected):
        found = np.array([p["keypoints"] for p in message["people"]], np.float32)
        assert found.shape == want.shape, (found.shape, want.shape)
        found, want = by_x(found), by_x(want)
        present = want[..., 2] > 0
        assert ((found[..., 2] > 0) == present).all()
        assert np.abs(found[..., :2] - want[..., :2])[present].max() < 2.0


@pytest.mark.parametrize("name", ["trt_pose-18", "body25-openpose"])
def test_oracle_of_another_topology_runs_through_the_runtime(name, tmp_path):
    from edge_sdk.runtime.pipeline import run_pipeline
    from edge_sdk.runtime.sinks import MemorySink

    case = make_oracle(tmp_path, num_frames=5, width=480, height=240, people=3, skeleton=name)
    skeleton = get_skeleton(name)
    assert case.meta.skeleton == name
    sink = MemorySink()
    run_pipeline(model=str(case.model_path), source=str(case.video_path), sinks=[sink], handle_signals=False)
    check_found(sink.messages, case.expected)
    graph_outputs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim]
                     for o in onnx.load(str(case.model_path)).graph.output}
    assert graph_outputs["heatmaps"][1] == skeleton.num_heatmaps and graph_outputs["pafs"][1] == skeleton.num_pafs


def test_the_paf_channel_order_matters():
    """Decoded with trt_pose's real channel order (y before x) the people come back; read as x before y
    (the COCO-18 convention) the same maps assemble no complete person."""
    people17 = oracle_people(1, 480, 240, people=3, missing_joints=False)[0]
    maps = render_maps(TRT_POSE_18.from_coco17(people17), 240, 480, 8, skeleton=TRT_POSE_18)
    right = decode_poses(*maps, skeleton=TRT_POSE_18)
    assert len(right) == 3 and (right.keypoints[..., 2] > 0).sum(axis=1).min() == 18
    swapped = TRT_POSE_18.to_dict()
    swapped["paf_channels"] = [[2 * k, 2 * k + 1] for k in range(21)]
    wrong = decode_poses(*maps, skeleton=swapped)
    assert len(wrong) == 0 or (wrong.keypoints[..., 2] > 0).sum(axis=1).max() < 9


def test_skeleton_definitions_hold_together():
    for skeleton, parts, limbs, heatmaps in ((COCO18, 18, 19, 19), (TRT_POSE_18, 18, 21, 18), (BODY25, 25, 26, 26)):
        assert (skeleton.num_parts, skeleton.num_limbs, skeleton.num_heatmaps) == (parts, limbs, heatmaps)
        assert skeleton.num_pafs == 2 * limbs
        # every COCO-17 joint is somewhere, and round-trips
        assert min(skeleton.coco17) >= 0
        people17 = oracle_people(1, 320, 240, people=2)[0]
        assert np.array_equal(skeleton.to_coco17(skeleton.from_coco17(people17)), people17)
        # joins-only limbs aside, the limbs form a tree over every part (each person is connected)
        tree = [limb for i, limb in enumerate(skeleton.limbs) if i not in skeleton.joins_only]
        assert len(tree) == parts - 1
        reached, frontier = {tree[0][0]}, True
        while frontier:
            frontier = False
            for a, b in tree:
                if (a in reached) != (b in reached):
                    reached |= {a, b}
                    frontier = True
        assert reached == set(range(parts))
    assert BODY25.parts[8] == "mid_hip" and TRT_POSE_18.parts[17] == "neck"


@pytest.mark.parametrize("spec, message", [
    ("body26", "unknown skeleton 'body26'"),
    ({"parts": ["a", "b"], "limbs": [[0, 2]], "coco17": [-1] * 17}, "limb \\(0, 2\\)"),
    ({"parts": ["a", "b"], "limbs": [[0, 1]], "coco17": [-1] * 16}, "coco17 needs 17"),
    ({"parts": ["a", "b"], "limbs": [[0, 1]], "coco17": [-1] * 17, "paf_channels": [[0, 0]]}, "once each"),
    ({"parts": ["a", "b"], "limbs": [[0, 1]]}, "missing coco17"),
    ({"parts": ["a", "a"], "limbs": [[0, 1]], "coco17": [-1] * 17}, "distinct part names"),
])
def test_bad_skeletons_are_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        get_skeleton(spec)


def test_plain_trt_pose_model_is_recognised_and_meta_set_skeleton(tmp_path, edge_sdk_cli):
    case = make_oracle(tmp_path, num_frames=3, people=2, skeleton="trt_pose-18")
    plain = strip_metadata(case.model_path, tmp_path / "plain.onnx")
    proc = edge_sdk_cli("run", "--model", plain, "--source", case.video_path, "--save", "-", "--quiet", check=True)
    assert "skeleton trt_pose-18" in proc.stderr
    check_found([json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")], case.expected)

    from edge_sdk.meta import read_meta, update_meta

    with pytest.raises(ConfigError, match="has 18 channels but skeleton body25-openpose needs 26"):
        update_meta(plain, {"skeleton": "body25-openpose"})
    with pytest.raises(ConfigError, match="--skeleton: unknown skeleton"):
        update_meta(plain, {"skeleton": "nope"})
    custom = dict(TRT_POSE_18.to_dict(), name="mine")
    update_meta(plain, {"skeleton": json.dumps(custom)})
    meta = read_meta(plain)
    assert get_skeleton(meta.skeleton).name == "mine" and not meta.assumed


def test_bundle_manifest_carries_the_skeleton(tmp_path):
    from edge_sdk.bundle_writer import skeleton_spec

    case = make_oracle(tmp_path, num_frames=2, video=None, skeleton="body25-openpose")
    spec = skeleton_spec(case.meta)
    assert (spec["name"], len(spec["parts"]), len(spec["limbs"]), spec["stride"]) == ("body25-openpose", 25, 26, 8)


def test_crowd_assembly_with_other_skeletons_fragment_merge_only_for_coco18(monkeypatch):
    """The crowd assembly (optimal groups, shared peaks, caps) decodes any skeleton; the fragment merge fits
    a canonical COCO-18 body, so it runs for COCO-18 (by parts and limbs, whatever the name) and never else."""
    from edge_sdk.runtime import decode as decode_module

    calls = []
    real = decode_module._merge_fragments
    monkeypatch.setattr(decode_module, "_merge_fragments", lambda *a: calls.append(1) or real(*a))
    people17 = oracle_people(1, 480, 240, people=3, missing_joints=False)[0]
    for skeleton in (TRT_POSE_18, BODY25):
        maps = render_maps(skeleton.from_coco17(people17), 240, 480, 8, skeleton=skeleton)
        poses = decode_poses(*maps, skeleton=skeleton)
        assert len(poses) == 3 and poses.capped == {"peaks": 0, "fragments": 0}
        assert (poses.keypoints[..., 2] > 0).sum(axis=1).min() == sum(1 for p in skeleton.coco17 if p >= 0) + (
            1 if "neck" in skeleton.parts else 0) + (1 if "mid_hip" in skeleton.parts else 0)
    assert not calls
    renamed = dict(COCO18.to_dict(), name="my-coco")
    maps = render_maps(COCO18.from_coco17(people17), 240, 480, 8)
    assert len(decode_poses(*maps, skeleton=renamed)) == 3 and len(calls) == 1
    assert decode_module.is_coco18(get_skeleton(renamed)) and not decode_module.is_coco18(TRT_POSE_18)


def test_decode_limbs_takes_a_skeleton():
    from edge_sdk.runtime.decode import DecodeError, decode_limbs

    peaks = np.zeros((TRT_POSE_18.num_parts, 4, 3), np.float32)
    assert len(decode_limbs(peaks, np.zeros((21, 4, 4), np.float32), skeleton=TRT_POSE_18)) == 0
    with pytest.raises(DecodeError, match=r"\[21, K, K\]"):
        decode_limbs(peaks, np.zeros((19, 4, 4), np.float32), skeleton=TRT_POSE_18)


def test_build_peaks_and_limbs_refuse_other_skeletons(tmp_path):
    from edge_sdk.engine.build import BuildRequest, build
    from edge_sdk.graph import run_passes
    from edge_sdk.graph.common import get_meta

    case = make_oracle(tmp_path / "o", num_frames=1, width=96, height=64, people=1, skeleton="trt_pose-18")
    for limbs in (False, True):
        with pytest.raises(ConfigError, match="coco18-openpose skeleton only"):
            build(BuildRequest(model=str(case.model_path), target="jetson-orin-nano", output=str(tmp_path / "b"),
                               peaks=4, limbs=limbs, engine="device", archive=False), echo=lambda line: None)
    model = onnx.load(str(case.model_path))
    meta = get_meta(model)
    meta.outputs = dict(meta.outputs, peaks="peaks")  # as if peaks were there: limbs still says why not
    with pytest.raises(ConfigError, match="limbs: in-engine limb scoring supports the coco18-openpose"):
        run_passes(model, ["limbs"], meta=meta)
