"""Draw pose messages as skeleton overlays: on a blank canvas of the frame size, or on the frames themselves.

Used by ``edge-sdk subscribe --render``; writes PNGs (one per message, ``DIR/DEVICE/SEQ.png``) or, when the
target ends in ``.mp4``/``.avi``, one video per device. Messages come from devices, so nothing here trusts
them: file names use only checked device ids (:mod:`edge_sdk.runtime.ids`), the canvas is bounded
(``MAX_CANVAS_SIDE``; larger frames are drawn scaled down), non-finite keypoints are not drawn.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_sdk.runtime.ids import check_device_id
from edge_sdk.runtime.skeleton import COCO17_SKELETON

_COLOURS = [(255, 64, 64), (64, 255, 64), (64, 128, 255), (255, 255, 64), (255, 64, 255), (64, 255, 255),
            (255, 160, 64), (160, 64, 255)]
VIDEO_SUFFIXES = (".mp4", ".avi")
MAX_CANVAS_SIDE = 4096  # pixels: a message claiming a larger frame is drawn scaled down (28 GiB otherwise)


def canvas_scale(w: int, h: int) -> float:
    """The factor (<= 1) that brings a ``w`` x ``h`` frame within ``MAX_CANVAS_SIDE``."""
    return min(1.0, MAX_CANVAS_SIDE / float(max(w, h, 1)))


def draw_poses(image: np.ndarray, msg: dict, min_score: float = 0.05, scale_xy: float = 1.0) -> np.ndarray:
    """Draw every person's limbs and joints of ``msg`` onto ``image`` (BGR, modified in place and returned);
    keypoints are multiplied by ``scale_xy`` (a scaled-down canvas), non-finite ones are skipped."""
    import cv2

    height, width = image.shape[:2]
    scale = max(1, int(round(max(height, width) / 400)))
    for i, person in enumerate(msg["people"]):
        colour = _COLOURS[i % len(_COLOURS)]
        kps = np.asarray(person["keypoints"], dtype=np.float64).reshape(-1, 3)
        ok = np.isfinite(kps).all(axis=1) & (kps[:, 2] > min_score)
        xy = np.zeros((len(kps), 2), np.int32)
        xy[ok] = np.round(np.clip(kps[ok, :2] * scale_xy, -1, [width, height])).astype(np.int32)
        points = [tuple(int(v) for v in p) for p in xy]
        for a, b in COCO17_SKELETON:
            if a < len(kps) and b < len(kps) and ok[a] and ok[b]:
                cv2.line(image, points[a], points[b], colour, 2 * scale, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(image, points[j], 3 * scale, (255, 255, 255), -1, cv2.LINE_AA)
    label = "{} #{}  {} people".format(str(msg["device"])[:64], msg["seq"], len(msg["people"]))
    cv2.putText(image, label, (8, 20 * scale), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (200, 200, 200), scale,
                cv2.LINE_AA)
    return image


class FrameSource:
    """Frames to draw on, looked up by message ``seq`` (= frame index): a video file or an image folder."""

    def __init__(self, path: str):
        import cv2

        self.path = path
        self._images = None
        self._cap = None
        self._next = 0
        from edge_sdk.runtime.sources import IMAGE_EXTENSIONS

        if os.path.isdir(path):  # the order of edge_sdk.runtime.sources.ImageFolderSource: sorted names
            names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
            self._images = [Path(path) / n for n in names]
        elif path.lower().endswith(IMAGE_EXTENSIONS):
            self._images = [Path(path)]
        else:
            self._cap = cv2.VideoCapture(path)

    @property
    def empty(self) -> bool:
        """True when the source gives no frame at all (an empty folder, a file OpenCV cannot read)."""
        if self._images is not None:
            return not self._images
        return not self._cap.isOpened()

    def get(self, index: int) -> np.ndarray | None:
        import cv2

        if self._images is not None:
            return cv2.imread(str(self._images[index])) if 0 <= index < len(self._images) else None
        if index != self._next:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = self._cap.read()
        self._next = index + 1
        return frame if ok else None


class OverlayWriter:
    """Render messages to ``target``: a directory of PNGs, or a video file per device (``.mp4``/``.avi``)."""

    def __init__(self, target: str, frames: str | None = None, fps: float = 15.0):
        self.target = target
        self.is_video = target.lower().endswith(VIDEO_SUFFIXES)
        self.frames = FrameSource(frames) if frames else None
        self.fps = fps
        self._videos: dict = {}
        self.written = 0
        self.last_had_frame = False  # whether the last message was drawn on its own frame (not a blank one)
        if not self.is_video:
            os.makedirs(target, exist_ok=True)

    def canvas(self, msg: dict) -> tuple[np.ndarray, float]:
        """The image to draw ``msg`` on (its frame, or a blank one within ``MAX_CANVAS_SIDE``) and the factor
        from message pixels to canvas pixels."""
        w, h = int(msg["frame"]["w"]), int(msg["frame"]["h"])
        scale = canvas_scale(w, h)
        frame = self.frames.get(msg["seq"]) if self.frames else None
        self.last_had_frame = frame is not None and frame.shape[:2] == (h, w) and scale == 1.0
        if self.last_had_frame:
            return frame, 1.0
        return np.zeros((max(int(h * scale), 1), max(int(w * scale), 1), 3), np.uint8), scale

    def write(self, msg: dict) -> str:
        """Draw one message; returns the file written to (always inside the target)."""
        import cv2

        device = check_device_id(msg["device"])
        seq = int(msg["seq"])
        if seq < 0:
            raise ValueError("message seq {} is negative".format(seq))
        canvas, scale = self.canvas(msg)
        image = draw_poses(canvas, msg, scale_xy=scale)
        if self.is_video:
            root, ext = os.path.splitext(self.target)
            if device not in self._videos:  # the first device gets the name asked for, others a suffix
                path = self.target if not self._videos else "{}-{}{}".format(root, device, ext)
                fourcc = cv2.VideoWriter_fourcc(*("mp4v" if ext.lower() == ".mp4" else "MJPG"))
                size = (image.shape[1], image.shape[0])
                self._videos[device] = (path, size, cv2.VideoWriter(path, fourcc, self.fps, size))
            path, size, writer = self._videos[device]
            if (image.shape[1], image.shape[0]) != size:
                image = cv2.resize(image, size)
            writer.write(image)
        else:
            folder = os.path.join(self.target, device)
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, "{:06d}.png".format(seq))
            cv2.imwrite(path, image)
        self.written += 1
        return path

    def close(self) -> None:
        for _path, _size, writer in self._videos.values():
            writer.release()
        self._videos.clear()
