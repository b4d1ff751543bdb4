"""The numerical check of an import: the contract graph in ONNX Runtime against the source framework, on
the same preprocessed photos. A model that does not match is never written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.importers.contract import MapSource, expected_maps
from edge_sdk.importers.source import SourceModel
from edge_sdk.runtime.model_meta import InputSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAX_CHECK_IMAGES = 64


@dataclass
class CheckResult:
    """Largest |ONNX Runtime - source| per map over ``images`` inputs, and what they were."""

    heatmaps: float
    pafs: float
    images: int
    what: str

    @property
    def max_abs_diff(self) -> float:
        return max(self.heatmaps, self.pafs)


def check_frames(folder: str | Path | None, limit: int, width: int, height: int) -> tuple[list[np.ndarray], str]:
    """BGR frames to check on: the photos of ``folder`` (sorted by name, at most ``limit``), or synthetic
    people (edge_sdk.synthetic_people, deterministic) when no folder is given."""
    import cv2

    if folder is None:
        from edge_sdk.synthetic_people import SyntheticPeople

        people = SyntheticPeople(width=width, height=height, people=(1, 3), seed=12)
        return [people.sample(i).image for i in range(limit)], "{} synthetic frames".format(limit)
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("--check-images {}: not a folder of photos".format(folder))
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    frames = [f for f in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths) if f is not None]
    if not frames:
        raise ConfigError("--check-images {}: no readable {} photos".format(folder, "/".join(IMAGE_SUFFIXES)))
    return frames, "{} photos from {}".format(len(frames), folder)


def check_import(contract_bytes: bytes, source: SourceModel, maps: tuple[MapSource, MapSource], spec: InputSpec,
                 frames: list[np.ndarray], what: str, progress: Callable | None = None) -> CheckResult:
    """Run every frame through the runtime's preprocessing, then through both graphs, and compare."""
    import onnxruntime as ort

    from edge_sdk.runtime.preprocess import preprocess_frame

    session = ort.InferenceSession(contract_bytes, providers=["CPUExecutionProvider"])
    worst = [0.0, 0.0]
    iterator = progress(frames) if progress else frames
    for frame in iterator:
        nchw, _ = preprocess_frame(frame, spec)
        x = nchw[None]
        source_x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if source.input_layout == "NHWC" else x
        want = expected_maps(dict(zip(source.output_names, source.reference(source_x))), maps)
        got = session.run(["heatmaps", "pafs"], {"image": x})
        for k in range(2):
            if got[k].shape != want[k].shape:
                raise ModelError("the imported graph gives {} of shape {}, the source {}".format(
                    ("heatmaps", "pafs")[k], got[k].shape, want[k].shape))
            diff = float(np.max(np.abs(got[k] - want[k])))
            worst[k] = diff if not np.isfinite(diff) else max(worst[k], diff)
    return CheckResult(worst[0], worst[1], len(frames), what)

