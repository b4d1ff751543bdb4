"""Frame -> model input: fit (letterbox or stretch), colour order, normalisation and layout, into a reusable
buffer.

``letterbox`` (the default) keeps the frame's aspect ratio and pads the rest of the input; ``stretch``
resizes the frame to the whole input (people get thinner or wider, but no input pixel is padding).
Either way the returned :class:`Letterbox` maps keypoints back to frame pixels.

Calibration (``calibration/``) imports :func:`preprocess_frame` so INT8 ranges are measured on exactly
what the runtime feeds the engine.
"""

from typing import Optional, Tuple

import numpy as np

from edge_sdk.runtime.model_meta import InputSpec

try:  # OpenCV is on every Jetson image; tests and host tools have opencv-python-headless
    import cv2
except ImportError:  # pragma: no cover - the CLI reports this where a frame source is needed
    cv2 = None


class UnusableFrame(ValueError):
    """A frame the model cannot take (no pixels left after the resize, not a colour image): the pipeline
    skips and counts it; one odd frame from a camera must not end a run."""


class Letterbox(object):
    """The transform from frame pixels to model-input pixels:
    ``input = frame * (scale_x, scale_y) + (pad_x, pad_y)``; a letterbox has one scale, a stretch two."""

    def __init__(self, scale, pad_x, pad_y, frame_width, frame_height, scale_y=None):
        self.scale = float(scale)
        self.scale_x = self.scale
        self.scale_y = self.scale if scale_y is None else float(scale_y)
        self.pad_x = float(pad_x)
        self.pad_y = float(pad_y)
        self.frame_width = int(frame_width)
        self.frame_height = int(frame_height)

    def input_to_frame(self, xy):
        """[..., 2] input-image pixel coordinates -> frame pixel coordinates."""
        xy = np.asarray(xy, dtype=np.float32)
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] - self.pad_x) / self.scale_x
        out[..., 1] = (xy[..., 1] - self.pad_y) / self.scale_y
        return out

    def frame_to_input(self, xy):
        """[..., 2] frame pixel coordinates -> input-image pixel coordinates."""
        xy = np.asarray(xy, dtype=np.float32)
        out = np.empty_like(xy)
        out[..., 0] = xy[..., 0] * self.scale_x + self.pad_x
        out[..., 1] = xy[..., 1] * self.scale_y + self.pad_y
        return out


def letterbox_params(frame_height: int, frame_width: int, input_height: int, input_width: int) -> Tuple[Letterbox,
                     Tuple[int, int]]:
    """The aspect-preserving scale and centred padding that fit a frame into the input size."""
    scale = min(float(input_width) / frame_width, float(input_height) / frame_height)
    new_w = int(round(frame_width * scale))
    new_h = int(round(frame_height * scale))
    pad_x = (input_width - new_w) // 2
    pad_y = (input_height - new_h) // 2
    return Letterbox(scale, pad_x, pad_y, frame_width, frame_height), (new_w, new_h)


def stretch_params(frame_height: int, frame_width: int, input_height: int,
                   input_width: int) -> Tuple[Letterbox, Tuple[int, int]]:
    """The transform of a frame resized to the whole input (two scales, no padding)."""
    box = Letterbox(float(input_width) / frame_width, 0, 0, frame_width, frame_height,
                    scale_y=float(input_height) / frame_height)
    return box, (int(input_width), int(input_height))


def fit_params(frame_height: int, frame_width: int, input_height: int, input_width: int,
               fit: str = "letterbox") -> Tuple[Letterbox, Tuple[int, int]]:
    """(Letterbox, (resized width, resized height)) of ``fit``: ``letterbox`` or ``stretch``."""
    if fit == "stretch":
        return stretch_params(frame_height, frame_width, input_height, input_width)
    if fit != "letterbox":
        raise ValueError("fit must be letterbox or stretch, got {!r}".format(fit))
    return letterbox_params(frame_height, frame_width, input_height, input_width)


def preprocess_frame(frame_bgr: np.ndarray, spec: InputSpec, out: Optional[np.ndarray] = None) -> Tuple[np.ndarray,
                     Letterbox]:
    """A BGR uint8 frame [H, W, 3] -> one model input [C, H, W] or [H, W, C] per ``spec`` (InputSpec).

    Writes into ``out`` (e.g. a slot of a pinned, GPU-mapped buffer) when given, so no new array is
    allocated per frame. Returns (input, Letterbox).
    """
    if frame_bgr is None or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.size == 0:
        raise UnusableFrame("expected a colour frame [H, W, 3], got {}".format(
            None if frame_bgr is None else "{} {}".format(frame_bgr.dtype, frame_bgr.shape)))
    fh, fw = frame_bgr.shape[:2]
    box, (new_w, new_h) = fit_params(fh, fw, spec.height, spec.width, getattr(spec, "fit", "letterbox"))
    if new_w < 1 or new_h < 1:
        raise UnusableFrame("a {}x{} frame leaves no pixels once fitted into the {}x{} input".format(
            fw, fh, spec.width, spec.height))
    resized = cv2.resize(frame_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR) \
        if (new_w, new_h) != (fw, fh) else frame_bgr
    y0, x0 = int(box.pad_y), int(box.pad_x)
    single_shape = (3, spec.height, spec.width) if spec.layout == "NCHW" else (spec.height, spec.width, 3)
    if out is None:
        target = np.empty(single_shape, dtype=spec.dtype)
    elif out.shape == single_shape:
        target = out
    else:  # e.g. a [1, C, H, W] buffer: fill its first slot, broadcast below
        target = np.empty(single_shape, dtype=spec.dtype)
    # source channel of each input channel (frames are BGR)
    order = [2, 1, 0] if spec.color == "RGB" else [0, 1, 2]
    # One pass per channel, straight into the target: value = pixel * (scale / std) - mean / std, padding is
    # pixel 0. No full-size uint8 canvas, float temporary or transpose copy (3-4x faster than doing them).
    if spec.dtype == "uint8":
        gains, offsets = None, np.zeros(3, dtype=np.float32)
    else:
        std = np.asarray(spec.std, dtype=np.float32)
        gains = np.float32(spec.scale) / std
        offsets = -np.asarray(spec.mean, dtype=np.float32) / std
    if spec.layout == "NCHW":
        for c, src in enumerate(order):
            plane = target[c]
            plane[...] = offsets[c]
            inside = plane[y0:y0 + new_h, x0:x0 + new_w]
            if gains is None:
                inside[...] = resized[:, :, src]
            elif inside.dtype == np.float32:
                np.multiply(resized[:, :, src], gains[c], out=inside, casting="unsafe")
                inside += offsets[c]
            else:  # float16: compute in float32, round once
                inside[...] = resized[:, :, src] * gains[c] + offsets[c]
    else:
        target[...] = offsets.astype(target.dtype)
        inside = target[y0:y0 + new_h, x0:x0 + new_w]
        pixels = resized[:, :, order] if order != [0, 1, 2] else resized
        if gains is None:
            inside[...] = pixels
        elif inside.dtype == np.float32:
            np.multiply(pixels, gains, out=inside, casting="unsafe")
            inside += offsets
        else:
            inside[...] = pixels * gains + offsets
    if out is None:
        return target, box
    if target is not out:
        out[...] = target
    return out, box
