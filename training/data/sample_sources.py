"""Training data sources: anything with ``len()`` and ``load(index) -> Sample``.

``open_source("coco:/data/coco2017")`` / ``open_source("synthetic")`` pick one from a command-line spec.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edge_sdk.errors import ConfigError


@dataclasses.dataclass
class Sample:
    """One training image: BGR uint8 [H, W, 3]; keypoints float32 [P, 18, 3] COCO-18 (x, y, v) in pixels;
    mask uint8 [H, W], 0 where the loss must ignore the image (crowds, people without keypoints), else 1."""

    image: np.ndarray
    keypoints18: np.ndarray
    mask: np.ndarray | None = None

    def centre(self, rng: np.random.Generator) -> tuple[float, float] | None:
        """The centroid of a random annotated person (for crops that keep someone in view), or None."""
        people = [p for p in self.keypoints18 if (p[:, 2] > 0).any()]
        if not people:
            return None
        person = people[rng.integers(len(people))]
        xy = person[person[:, 2] > 0, :2]
        return float(xy[:, 0].mean()), float(xy[:, 1].mean())


class SyntheticSource:
    """``count`` deterministic synthetic images (edge_sdk.synthetic_people) of the given size."""

    def __init__(self, count: int = 10000, height: int = 256, width: int = 384, seed: int = 0,
                 people: tuple[int, int] = (1, 4), **figure_options):
        from edge_sdk.synthetic_people import SyntheticPeople

        self.count = int(count)
        self.generator = SyntheticPeople(width=width, height=height, people=people, seed=seed, **figure_options)

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> Sample:
        from edge_sdk.runtime.skeleton import coco17_to_coco18

        sample = self.generator.sample(int(index))
        return Sample(sample.image, coco17_to_coco18(sample.keypoints), None)


def open_source(spec: str, input_hw: tuple[int, int] = (256, 384), seed: int = 0, split: str = "train"):
    """``coco:PATH`` (a COCO keypoints data set) or ``synthetic[:COUNT]`` -> a data source."""
    kind, _, rest = spec.partition(":")
    if kind == "synthetic":
        try:
            count = int(rest) if rest else 10000
        except ValueError:
            raise ConfigError("bad --data {!r}: expected synthetic or synthetic:COUNT".format(spec)) from None
        return SyntheticSource(count=count, height=input_hw[0], width=input_hw[1], seed=seed)
    if kind == "coco":
        from edge_sdk.training.data.coco_keypoints import CocoKeypoints

        if not rest:
            raise ConfigError("bad --data {!r}: expected coco:PATH (a COCO root, a directory with "
                              "person_keypoints.json + images/, or the json file)".format(spec))
        return CocoKeypoints(Path(rest).expanduser(), split=split)
    raise ConfigError("unknown --data {!r}; expected coco:PATH or synthetic[:COUNT]".format(spec))
