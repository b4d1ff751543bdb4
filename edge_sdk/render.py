"""Draw saved pose messages (``edge-sdk run --save poses.jsonl``) onto their frames, offline.

No broker, no model: the JSON lines and the video or image folder they came from are enough. Message
``seq`` is the frame's position in a file source (files never drop frames), so each message is drawn on
frame ``seq``. A message whose frame is missing or of another size is drawn on a blank canvas and counted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sdk.errors import ConfigError

MAX_LINE_BYTES = 1 << 20
"""A pose message line longer than this is not one (17 keypoints x a few hundred people is ~100 kB)."""

MAX_SIDE, MAX_PIXELS = 8192, 40_000_000
"""Largest frame drawn (a blank canvas of that size is allocated when the frame itself is missing)."""


@dataclass
class RenderReport:
    """What :func:`render_poses` did: messages drawn, those without their frame (blank canvas), outputs."""

    written: int
    blank: int
    output: str


def read_pose_lines(path: str | os.PathLike):
    """Yield the pose messages of a JSON lines file; ConfigError naming the line on the first bad one."""
    from edge_sdk.runtime.messages import validate_pose_message

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pose file {path} not found; write one with `edge-sdk run ... --save {path.name}`")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if len(raw) > MAX_LINE_BYTES:
                raise ConfigError(f"{path}:{number}: line longer than {MAX_LINE_BYTES} bytes; not a pose message")
            if not raw.strip():
                continue
            try:
                message = validate_pose_message(json.loads(raw))
                _check_drawable(message)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{path}:{number}: not a pose message ({exc}); give the file written by "
                                  "`edge-sdk run --save`") from None
            yield message


def _check_drawable(message: dict) -> None:
    """ValueError unless the frame size, seq and every keypoint can be drawn (finite, near the frame)."""
    size = message["frame"]
    w, h = size.get("w"), size.get("h")
    if not (isinstance(w, int) and isinstance(h, int) and 0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE
            and w * h <= MAX_PIXELS):
        raise ValueError(f"frame size {w}x{h} is out of range (at most {MAX_SIDE} a side, {MAX_PIXELS} pixels)")
    for person in message["people"]:
        points = np.asarray(person["keypoints"], dtype=np.float64)
        if not np.isfinite(points).all() or np.abs(points[:, :2]).max(initial=0.0) > 1e6:
            raise ValueError("a keypoint is not a finite coordinate near the frame")


def render_poses(poses: str | os.PathLike, output: str | os.PathLike, source: str | os.PathLike | None = None,
                 fps: float = 15.0, progress: bool = True) -> RenderReport:
    """Draw every message of ``poses`` on its frame of ``source`` (video file or image folder; None: blank
    canvases) into ``output``: a folder (one PNG per frame, ``OUTPUT/DEVICE/SEQ.png``) or a ``.mp4``/``.avi``."""
    from edge_sdk.overlay import OverlayWriter

    if source is not None and not os.path.exists(str(source)):
        raise ConfigError(f"--source {source} not found; give the video or image folder the poses came from")
    if not 0 < float(fps) <= 240:
        raise ConfigError(f"--fps must be in (0, 240], got {fps}")
    output = str(output)
    if os.path.exists(output) and not os.path.isdir(output) and not output.lower().endswith((".mp4", ".avi")):
        raise ConfigError(f"-o {output} is a file; give a folder (PNG per frame) or a .mp4/.avi name")
    writer = OverlayWriter(output, frames=str(source) if source is not None else None, fps=fps)
    if source is not None and writer.frames.empty:
        raise ConfigError(f"--source {source} has no readable frame (not a video or an image folder)")
    try:
        from tqdm import tqdm
    except ImportError:  # the [host] extra has it; rendering works without a bar
        def tqdm(it, **_kw):
            return it
    blank = 0
    try:
        for message in tqdm(read_pose_lines(poses), desc="render", unit="frame", disable=not progress):
            writer.write(message)
            if source is not None and not writer.last_had_frame:
                blank += 1
    finally:
        writer.close()
    if writer.written == 0:
        raise ConfigError(f"{poses} has no pose message; nothing rendered")
    return RenderReport(writer.written, blank, output)
