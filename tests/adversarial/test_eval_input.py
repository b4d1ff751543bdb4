"""Issue #13, item 17: `edge-sdk eval` with structurally bad COCO JSON gives one clear error, never a traceback.

Each case is the real tests/data/coco_mini annotation file with one thing broken, run through the real CLI
with a real ONNX pose model (so a file that passes the first checks reaches the image loop and pycocotools).
"""

import json

import pytest

from edge_sdk.errors import ConfigError
from tests.conftest import COCO_MINI

GOOD = json.loads((COCO_MINI / "person_keypoints.json").read_text())


def first_annotation(gt):
    return gt["annotations"][0]


BROKEN = {
    "top level is a list": lambda gt: [gt],
    "categories is a dict": lambda gt: dict(gt, categories=gt["categories"][0]),
    "annotation without keypoints": lambda gt: first_annotation(gt).pop("keypoints"),
    "image without file_name": lambda gt: gt["images"][0].pop("file_name"),
    "wrong keypoint length": lambda gt: first_annotation(gt).update(keypoints=first_annotation(gt)["keypoints"][:-3]),
    "keypoints are strings": lambda gt: first_annotation(gt).update(keypoints=["1"] * 51),
    "file_name leaves the folder": lambda gt: gt["images"][0].update(file_name="../../../../etc/hostname"),
    "images is a string": lambda gt: dict(gt, images="coco_000000000785.jpg"),
    "18 parts in the category": lambda gt: gt["categories"][0]["keypoints"].append("neck"),
    "annotation of an unknown image": lambda gt: first_annotation(gt).update(image_id=987654),
    "bbox missing": lambda gt: first_annotation(gt).pop("bbox"),
}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import onnx

    from edge_sdk.graph.synthetic_model import make_pose_model

    path = tmp_path_factory.mktemp("model") / "pose.onnx"
    onnx.save(make_pose_model(seed=1), str(path))
    return path


def broken_file(tmp_path, case):
    gt = json.loads(json.dumps(GOOD))
    changed = BROKEN[case](gt)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(changed if isinstance(changed, (dict, list)) else gt))
    return path


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_structurally_bad_coco_is_a_clear_error(tmp_path, model, case):
    from edge_sdk.eval.dataset import evaluate_dataset

    with pytest.raises(ConfigError) as err:
        evaluate_dataset(broken_file(tmp_path, case), COCO_MINI / "images", model=str(model), progress=False)
    assert "bad.json" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("case", ["image without file_name"])
def test_the_cli_prints_one_line_and_exits_2(tmp_path, model, case, edge_sdk_cli):
    proc = edge_sdk_cli("eval", "--model", model, "--coco", broken_file(tmp_path, case), "--images",
                        COCO_MINI / "images")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "bad.json" in proc.stderr


def test_the_good_file_still_passes_the_checks():
    from edge_sdk.eval.coco import check_keypoint_file

    gt = json.loads(json.dumps(GOOD))
    assert check_keypoint_file(gt) is gt and all(a["iscrowd"] in (0, 1) for a in gt["annotations"])
