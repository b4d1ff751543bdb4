"""COCO keypoints reader (pycocotools): images, COCO-18 keypoints and ignore masks for the loss.

Masks are 0 over crowd regions and over people that have no keypoint annotations, so the network is not
punished for finding people nobody labelled (as in OpenPose).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
from edge_sdk.training.data.sample_sources import Sample

from edge_sdk.errors import ConfigError
from edge_sdk.runtime.skeleton import coco17_to_coco18


def resolve_coco_paths(path: Path, split: str = "train") -> tuple[Path, Path]:
    """(annotation json, image directory) from a json file, a directory with ``person_keypoints.json`` and
    ``images/``, or a COCO 2017 root (``annotations/person_keypoints_{split}2017.json`` + ``{split}2017/``)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("dataset path {} does not exist; give coco:PATH with a COCO keypoints data set "
                          "(or use --data synthetic to train without one)".format(path))
    if path.is_file():
        images = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
        return path, images
    candidates = [
        (path / "person_keypoints.json", path / "images"),
        (path / "annotations" / "person_keypoints_{}2017.json".format(split), path / "{}2017".format(split)),
        (path / "annotations" / "person_keypoints_{}2014.json".format(split), path / "{}2014".format(split)),
    ]
    for annotation_file, images in candidates:
        if annotation_file.is_file():
            return annotation_file, images if images.is_dir() else path
    raise ConfigError("no COCO keypoints annotations under {}; looked for {}".format(
        path, ", ".join(str(a.relative_to(path)) for a, _ in candidates)))


class CocoKeypoints:
    """Images that contain at least one person with keypoints."""

    def __init__(self, path: Path, split: str = "train"):
        from pycocotools.coco import COCO

        self.annotation_file, self.image_dir = resolve_coco_paths(path, split)
        try:
            data = json.loads(self.annotation_file.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError("cannot read COCO annotations {}: {}".format(self.annotation_file, exc)) from None
        annotations = data.get("annotations") if isinstance(data, dict) else None
        if not annotations or not any("keypoints" in a for a in annotations):
            raise ConfigError("{} has no person keypoint annotations (is it an instances_*.json or "
                              "captions file?); use person_keypoints_*.json".format(self.annotation_file))
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()
        self.image_ids = sorted(
            image_id for image_id in self.coco.getImgIds()
            if any(a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)
                   for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))))
        if not self.image_ids:
            raise ConfigError("{} has no image with an annotated (non-crowd) person".format(self.annotation_file))

    def __len__(self) -> int:
        return len(self.image_ids)

    def annotations(self, index: int) -> tuple[dict, list[dict]]:
        image_id = self.image_ids[int(index)]
        return self.coco.loadImgs(image_id)[0], self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))

    def load(self, index: int) -> Sample:
        info, anns = self.annotations(index)
        file = self.image_dir / info["file_name"]
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise ConfigError("cannot read image {} (listed in {})".format(file, self.annotation_file))
        height, width = image.shape[:2]
        mask = np.ones((height, width), dtype=np.uint8)
        people = []
        for ann in anns:
            if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) == 0:
                if ann.get("segmentation"):
                    self.coco.imgs[info["id"]] = dict(info, height=height, width=width)
                    mask[self.coco.annToMask(ann) > 0] = 0
                elif ann.get("bbox"):  # no outline: ignore the whole box
                    x, y, w, h = ann["bbox"]
                    mask[max(0, int(y)):int(np.ceil(y + h)), max(0, int(x)):int(np.ceil(x + w))] = 0
                continue
            people.append(np.asarray(ann["keypoints"], dtype=np.float32).reshape(17, 3))
        keypoints = coco17_to_coco18(np.stack(people)) if people else np.zeros((0, 18, 3), np.float32)
        return Sample(image, keypoints, mask)
