"""preprocess_frame (the pipeline's per-frame CPU work) against a plain reference implementation."""

import cv2
import numpy as np
import pytest

from edge_sdk.runtime.model_meta import InputSpec
from edge_sdk.runtime.preprocess import letterbox_params, preprocess_frame


def reference(frame, spec):
    """The obvious implementation: letterbox onto a black canvas, colour order, normalise, layout."""
    box, (new_w, new_h) = letterbox_params(frame.shape[0], frame.shape[1], spec.height, spec.width)
    canvas = np.zeros((spec.height, spec.width, 3), np.uint8)
    y0, x0 = int(box.pad_y), int(box.pad_x)
    canvas[y0:y0 + new_h, x0:x0 + new_w] = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if spec.color == "RGB":
        canvas = canvas[:, :, ::-1]
    data = canvas
    if spec.dtype != "uint8":
        data = ((canvas.astype(np.float32) * np.float32(spec.scale) - np.float32(spec.mean)) /
                np.float32(spec.std)).astype(spec.dtype)
    return data.transpose(2, 0, 1) if spec.layout == "NCHW" else data


SPECS = [
    InputSpec(height=256, width=384),
    InputSpec(height=128, width=192, layout="NHWC"),
    InputSpec(height=96, width=160, layout="NHWC", dtype="uint8", color="BGR"),
    InputSpec(height=96, width=160, dtype="uint8"),
    InputSpec(height=64, width=64, dtype="float16", color="BGR", mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "{}-{}-{}-{}x{}".format(s.dtype, s.layout, s.color, s.width,
                                                                                s.height))
@pytest.mark.parametrize("frame_size", [(480, 640), (300, 200), (256, 384)])
def test_preprocess_matches_reference(spec, frame_size):
    frame = np.random.RandomState(sum(frame_size)).randint(0, 256, frame_size + (3,)).astype(np.uint8)
    want = reference(frame, spec)
    got, box = preprocess_frame(frame, spec)
    assert got.shape == want.shape and got.dtype == want.dtype and got.flags.c_contiguous
    tolerance = 1e-6 if spec.dtype == "float32" else 0
    assert np.abs(got.astype(np.float64) - want.astype(np.float64)).max() <= tolerance
    buffer = np.full((2,) + want.shape, 7, want.dtype)  # a slot of a batch buffer, reused
    written, _ = preprocess_frame(frame, spec, out=buffer[1])
    assert written.base is buffer and np.array_equal(buffer[1], got) and np.all(buffer[0] == 7)
    assert box.frame_width == frame_size[1] and box.frame_height == frame_size[0]
