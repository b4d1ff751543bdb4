"""Synthetic people: exact keypoints on the drawn figures, deterministic, COCO-valid, device-safe code."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge_sdk.synthetic_people import SyntheticPeople, to_coco, write_dataset

REPO = Path(__file__).resolve().parent.parent


def test_keypoints_sit_on_the_figures_and_visibility_is_honest():
    generator = SyntheticPeople(width=192, height=144, seed=3)
    visible = hidden = 0
    for index in range(20):
        sample = generator.sample(index)
        assert sample.image.shape == (144, 192, 3) and sample.image.dtype == np.uint8
        assert 1 <= len(sample.keypoints) <= 4
        kp = sample.keypoints
        inside = kp[..., 2] > 0
        assert (kp[inside][:, 0] >= 0).all() and (kp[inside][:, 0] < 192).all()
        assert (kp[inside][:, 1] >= 0).all() and (kp[inside][:, 1] < 144).all()
        visible += int((kp[..., 2] == 2).sum())
        hidden += int((kp[..., 2] == 1).sum())
        for person, box in zip(kp, sample.boxes):
            labelled = person[person[:, 2] > 0]
            if len(labelled):  # every labelled joint inside the person's box
                assert (labelled[:, 0] >= box[0] - 1).all() and (labelled[:, 0] <= box[0] + box[2] + 1).all()
    assert visible > 200 and hidden > 5  # people occlude each other / occluders hide joints


def test_same_index_same_image_and_left_right_are_consistent():
    a, b = SyntheticPeople(seed=7).sample(4), SyntheticPeople(seed=7).sample(4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.keypoints, b.keypoints)
    assert not np.array_equal(a.image, SyntheticPeople(seed=8).sample(4).image)
    # figures facing the camera (nose labelled) have their left shoulder on the image's right
    facing = 0
    for i in range(30):
        for person in SyntheticPeople(seed=1, occluders=False).sample(i).keypoints:
            nose, l_sh, r_sh = person[0], person[5], person[6]
            if nose[2] > 0 and l_sh[2] > 0 and r_sh[2] > 0 and abs(l_sh[1] - r_sh[1]) < 0.5 * abs(l_sh[0] - r_sh[0]):
                facing += 1
                assert l_sh[0] > r_sh[0]
    assert facing > 10


def test_written_dataset_loads_in_pycocotools(tmp_path):
    from edge_sdk.eval.coco import evaluate_keypoints, poses_to_results

    path = write_dataset(tmp_path, 3, width=96, height=64, seed=2)
    data = json.loads(Path(path).read_text())
    assert len(list((tmp_path / "images").glob("*.png"))) == 3
    # the ground truth itself, as detections, scores AP 1.0
    results = []
    for ann in data["annotations"]:
        kp = np.asarray(ann["keypoints"], np.float32).reshape(1, 17, 3)
        kp[..., 2] = (kp[..., 2] > 0).astype(np.float32)
        results += poses_to_results(kp, [1.0], ann["image_id"])
    assert evaluate_keypoints(data, results)["AP"] > 0.99
    assert to_coco([])["images"] == []


def test_synthetic_module_runs_on_python36_and_imports_nothing_heavy():
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    proc = subprocess.run([vermin, "--target=3.6-", "--no-tips", "--violations", "--eval-annotations",
                           str(REPO / "edge_sdk" / "synthetic_people.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    code = ("import sys, edge_sdk.synthetic_people; "
            "print(sorted(m for m in ('tensorflow', 'onnx', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    assert out.stdout.strip() == "[]", out.stderr
