"""The COCO reader on real annotations (coco_mini) and the errors a user gets for bad training input."""

import json

import numpy as np
import pytest
from conftest import COCO_MINI
from edge_sdk.training.augment import AugmentConfig
from edge_sdk.training.data import open_source
from edge_sdk.training.data.input_pipeline import make_example

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.runtime.skeleton import COCO18_FROM_COCO17, image_to_map


def test_coco_targets_land_on_the_annotated_joints():
    source = open_source("coco:{}".format(COCO_MINI))
    assert len(source) == 10
    checked = 0
    for index in range(len(source)):
        info, anns = source.annotations(index)
        sample = source.load(index)
        assert sample.image.shape[:2] == (info["height"], info["width"])
        rng = np.random.default_rng(index)
        _, heatmaps, pafs, _, keypoints = make_example(sample, rng, (256, 384), AugmentConfig.none())
        people = [a for a in anns if a["num_keypoints"] > 0 and not a["iscrowd"]]
        assert len(keypoints) == len(people)
        # letterbox the raw COCO annotations ourselves and look for a target peak at each labelled joint
        scale = min(384 / info["width"], 256 / info["height"])
        for ann in people:
            kp17 = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
            for j in np.nonzero(kp17[:, 2] > 0)[0]:
                x = (kp17[j, 0] - (info["width"] - 1) / 2) * scale + 383 / 2
                y = (kp17[j, 1] - (info["height"] - 1) / 2) * scale + 255 / 2
                mx, my = image_to_map([x, y])
                cell = heatmaps[int(round(my)), int(round(mx)), COCO18_FROM_COCO17[j]]
                assert cell > 0.55, (info["file_name"], j, cell)
                checked += 1
        assert np.abs(pafs).max() <= 1.0 + 1e-5
    assert checked > 300


def test_people_without_keypoints_are_masked_out():
    source = open_source("coco:{}".format(COCO_MINI / "person_keypoints.json"))
    masked = 0
    for index in range(len(source)):
        _, anns = source.annotations(index)
        sample = source.load(index)
        unlabelled = [a for a in anns if a["num_keypoints"] == 0 or a["iscrowd"]]
        if not unlabelled:
            assert sample.mask.min() == 1
            continue
        x, y, w, h = unlabelled[0]["bbox"]
        region = sample.mask[int(y + h * 0.4):int(y + h * 0.6), int(x + w * 0.4):int(x + w * 0.6)]
        assert region.mean() < 0.5  # the unlabelled person's body is ignored by the loss
        assert sample.mask.mean() > 0.5  # and the rest of the image is not
        masked += 1
    assert masked >= 1


def test_missing_dataset_path(tmp_path):
    with pytest.raises(ConfigError, match="does not exist.*--data synthetic"):
        open_source("coco:{}".format(tmp_path / "nowhere"))


def test_coco_json_without_keypoints(tmp_path):
    (tmp_path / "images").mkdir()
    instances = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
                 "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25,
                                  "iscrowd": 0, "segmentation": [[0, 0, 5, 0, 5, 5]]}],
                 "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    with pytest.raises(ConfigError, match="no person keypoint annotations.*person_keypoints"):
        open_source("coco:{}".format(tmp_path / "instances.json"))
    with pytest.raises(ConfigError, match="no COCO keypoints annotations under"):
        open_source("coco:{}".format(tmp_path))


def test_unknown_data_kind():
    with pytest.raises(ConfigError, match="expected coco:PATH or synthetic"):
        open_source("imagenet:/data")


def test_resume_from_a_checkpoint_dir_that_does_not_exist(tmp_path):
    pytest.importorskip("tensorflow")
    from edge_sdk.training.config import TrainConfig
    from edge_sdk.training.loop import train

    config = TrainConfig(output=str(tmp_path / "run"), steps=1, resume=str(tmp_path / "missing_run"),
                         progress=False)
    with pytest.raises(ConfigError, match="cannot resume from .*missing_run: no such directory"):
        train(config)


def test_export_of_a_run_dir_that_does_not_exist(tmp_path):
    pytest.importorskip("tensorflow")
    from edge_sdk.training.export import export_onnx

    with pytest.raises(ConfigError, match="run directory .* does not exist"):
        export_onnx(tmp_path / "nothing", tmp_path / "m.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a training run directory"):
        export_onnx(tmp_path / "empty", tmp_path / "m.onnx")
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="no checkpoint"):
        export_onnx(tmp_path / "empty", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_reports_bad_input_without_a_traceback(edge_sdk_cli, tmp_path):
    proc = edge_sdk_cli("train", "--model", "resnet19", "--steps", "1", "-o", tmp_path / "run")
    assert proc.returncode == 2
    assert "error: unknown backbone 'resnet19'; known: resnet18" in proc.stderr
    assert "Traceback" not in proc.stderr
