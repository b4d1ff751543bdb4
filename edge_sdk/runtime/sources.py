"""Frame sources: video file, image folder, camera index, RTSP/HTTP stream (OpenCV), and ``synthetic``.

Every source yields :class:`Frame` objects and says whether it is *live* (camera, stream, paced synthetic:
frames arrive whether or not we keep up, so the pipeline drops the oldest) or a *file* (video, images:
every frame is processed, none dropped).

``open_source(spec)`` understands::

    video.mp4 | clip.avi          a video file (a truncated file yields what was readable, then SourceError)
    photos/  | photo.jpg          an image folder (sorted by name) or one image
    0 | 1 | /dev/video0          a camera (V4L2 index or device); ?w=1280&h=720&fps=30&fourcc=MJPG asks
                                  the camera for a size, rate and pixel format
    csi://0[?w=1280&h=720&fps=30&flip=0]
                                  a Jetson CSI camera (nvarguscamerasrc; needs OpenCV with GStreamer)
    "... ! appsink"               any GStreamer pipeline ending in appsink
    rtsp://... | http(s)://...    a network stream
    synthetic[:live][?w=320&h=240&fps=30&frames=100&people=2&seed=0]
                                  generated frames of moving stick figures (no camera needed)
"""

import os
import time
from typing import Any, Tuple

import numpy as np

from edge_sdk.errors import SourceError
from edge_sdk.runtime.redact import redact_url

try:
    import cv2
except ImportError:  # pragma: no cover - reported when a source is opened
    cv2 = None

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
EXACT_COUNT_EXTENSIONS = (".avi", ".mp4", ".m4v", ".mov", ".3gp")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class Frame(object):
    """One captured frame: ``seq`` (capture order, gaps = drops), ``ts`` (capture wall-clock time, s),
    ``image`` (BGR uint8 [H, W, 3]), ``source`` (name), ``index`` (position in the source: frame number,
    image number), ``clock`` (time.perf_counter() at capture, for latency), ``read_ms`` (time to read it)."""

    __slots__ = ("seq", "ts", "image", "source", "index", "clock", "read_ms")

    def __init__(self, seq, ts, image, source, index, clock=None, read_ms=0.0):
        self.seq = seq
        self.ts = ts
        self.image = image
        self.source = source
        self.index = index
        self.clock = time.perf_counter() if clock is None else clock
        self.read_ms = read_ms

    def __repr__(self):
        return "Frame(seq={}, index={}, source={!r}, shape={})".format(
            self.seq, self.index, self.source, None if self.image is None else self.image.shape)


def _need_cv2():
    if cv2 is None:
        raise SourceError("OpenCV (cv2) is not installed: `pip install opencv-python-headless` "
                          "(on a Jetson, JetPack's python3-opencv)")


class Source(object):
    """Base class: iterate for frames; ``close()`` releases the device/file. ``live``: see module doc."""

    live = False
    name = "source"

    def frames(self):
        """Generator of raw (index, image BGR) pairs; subclasses implement it."""
        raise NotImplementedError

    def __iter__(self):
        seq = 0
        generator = self.frames()
        while True:
            t0 = time.perf_counter()
            try:
                index, image = next(generator)
            except StopIteration:
                return
            t1 = time.perf_counter()
            yield Frame(seq, time.time(), image, self.name, index, clock=t1, read_ms=(t1 - t0) * 1000.0)
            seq += 1

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VideoFileSource(Source):
    """A video file read with OpenCV (FFmpeg). Never live: every frame is delivered."""

    def __init__(self, path):
        _need_cv2()
        self.path = str(path)
        self.name = os.path.basename(self.path)
        if not os.path.isfile(self.path):
            raise SourceError("video file {} not found".format(self.path))
        self.capture = cv2.VideoCapture(self.path)
        if not self.capture.isOpened():
            self.capture.release()
            raise SourceError("cannot open video {}: OpenCV/FFmpeg cannot read it (not a video, an unsupported "
                              "codec, or a truncated file whose index is missing); re-encode it, e.g. "
                              "`ffmpeg -i IN -c:v libx264 OUT.mp4`".format(self.path))
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)

    def frames(self):
        index = 0
        while True:
            ok, image = self.capture.read()
            if not ok or image is None:
                break
            yield index, image
            index += 1
        if index == 0:
            raise SourceError("video {} has no readable frame (corrupt or truncated file)".format(self.path))
        if self.frame_count > 0 and self.frame_count - index > self._count_tolerance():
            raise SourceError("video {} ended after {} of its {} frames: the file is truncated or corrupt; "
                              "the frames before the damage were processed".format(
                                  self.path, index, self.frame_count))

    def _count_tolerance(self):
        """Frames that may be missing before we call the file truncated: AVI/MP4/MOV headers count frames
        exactly; other containers (MKV, TS, ...) only estimate (duration x fps), so allow 5 %."""
        if self.path.lower().endswith(EXACT_COUNT_EXTENSIONS):
            return 1
        return max(1, int(0.05 * self.frame_count))

    def close(self):
        self.capture.release()


class ImageFolderSource(Source):
    """Images of a folder in name order (or a single image file). Unreadable images -> SourceError."""

    def __init__(self, path):
        _need_cv2()
        self.path = str(path)
        if os.path.isdir(self.path):
            names = sorted(n for n in os.listdir(self.path) if n.lower().endswith(IMAGE_EXTENSIONS))
            self.files = [os.path.join(self.path, n) for n in names]
            if not self.files:
                raise SourceError("image folder {} has no images ({})".format(
                    self.path, " ".join(IMAGE_EXTENSIONS)))
        else:
            self.files = [self.path]
        self.name = os.path.basename(self.path.rstrip("/")) or self.path

    def frames(self):
        for index, filename in enumerate(self.files):
            image = cv2.imread(filename, cv2.IMREAD_COLOR)
            if image is None:
                raise SourceError("cannot read image {} (corrupt or not an image); remove it or fix it".format(
                    filename))
            yield index, image


class LiveCaptureSource(Source):
    """A camera or network stream. If it stops delivering frames, it is reopened up to ``reconnect``
    times, ``reconnect_delay`` seconds apart; then SourceError says it disappeared."""

    live = True

    def __init__(self, target, name, reconnect=3, reconnect_delay=1.0, open_timeout_s=10.0, settings=None):
        """``settings``: camera properties to request after opening (``width``, ``height``, ``fps``,
        ``fourcc``), e.g. MJPG at 1280x720 to get 30 fps from a USB webcam."""
        _need_cv2()
        self.settings = dict(settings or {})
        self.target = target
        self.name = name
        self.reconnect = int(reconnect)
        self.reconnect_delay = float(reconnect_delay)
        self.open_timeout_s = float(open_timeout_s)
        self.reconnects = 0
        self.capture = self._open()
        if self.capture is None:
            raise SourceError(self._not_found_message())
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)

    def _open(self):
        if is_gstreamer_pipeline(self.target):
            if not opencv_has_gstreamer():
                return None
            capture = cv2.VideoCapture(self.target, cv2.CAP_GSTREAMER)
        elif isinstance(self.target, str) and self.target.startswith(STREAM_SCHEMES):
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.open_timeout_s * 1000)]
            try:
                capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)
            except (TypeError, cv2.error):  # OpenCV < 4.5.2 has no open parameters
                capture = cv2.VideoCapture(self.target)
        else:
            capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            return None
        self._apply_settings(capture)
        return capture

    def _apply_settings(self, capture):
        if "fourcc" in self.settings:  # before the size: some drivers offer large sizes only in MJPG
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.settings["fourcc"]))
        for key, prop in (("width", cv2.CAP_PROP_FRAME_WIDTH), ("height", cv2.CAP_PROP_FRAME_HEIGHT),
                          ("fps", cv2.CAP_PROP_FPS)):
            if key in self.settings:
                capture.set(prop, float(self.settings[key]))

    def _not_found_message(self):
        if is_gstreamer_pipeline(self.target):
            if not opencv_has_gstreamer():
                return "{} needs OpenCV with GStreamer, and this OpenCV ({}) was built without it; on a Jetson " \
                       "use JetPack's python3-opencv (pip's opencv-python has no GStreamer): " \
                       "`pip uninstall opencv-python opencv-python-headless`".format(self.name, cv2.__version__)
            return "cannot start GStreamer pipeline for {}: {} -- check the camera (`nvgstcapture-1.0`) and that " \
                   "no other process holds it (`sudo systemctl restart nvargus-daemon`)".format(
                       self.name, redact_url(self.target))
        if isinstance(self.target, int) or str(self.target).startswith("/dev/"):
            devices = sorted(n for n in os.listdir("/dev") if n.startswith("video")) if os.path.isdir("/dev") else []
            return "camera {} not found or busy; video devices here: {} -- pass another index or check " \
                   "the cable and `v4l2-ctl --list-devices`".format(self.target, ", ".join(devices) or "none")
        return "cannot open stream {}: no answer or not a video stream (check the URL, the credentials and " \
               "that the camera is reachable)".format(redact_url(self.target))

    def frames(self):
        index = 0
        while True:
            ok, image = self.capture.read()
            if ok and image is not None:
                yield index, image
                index += 1
                continue
            self.capture.release()
            self.capture = None
            for _attempt in range(self.reconnect):
                time.sleep(self.reconnect_delay)
                self.reconnects += 1
                self.capture = self._open()
                if self.capture is not None:
                    break
            if self.capture is None:
                raise SourceError("live source {} disappeared after {} frames and did not come back after {} "
                                  "reconnect attempts ({:g} s apart)".format(
                                      self.name, index, self.reconnect, self.reconnect_delay))

    def close(self):
        if self.capture is not None:
            self.capture.release()


def is_gstreamer_pipeline(target: str) -> bool:
    """True for a GStreamer pipeline description (``... ! appsink``)."""
    return isinstance(target, str) and "!" in target and "appsink" in target


def opencv_has_gstreamer() -> bool:
    """Whether this OpenCV build can open GStreamer pipelines (JetPack's can; pip wheels cannot)."""
    if cv2 is None:
        return False
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """The GStreamer pipeline of a Jetson CSI camera (Argus ISP -> BGR frames, newest frame only)."""
    return ("nvarguscamerasrc sensor-id={} ! video/x-raw(memory:NVMM), width={}, height={}, framerate={}/1 ! "
            "nvvidconv flip-method={} ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
            "appsink drop=true max-buffers=1 sync=false".format(int(sensor_id), int(width), int(height), int(fps),
                                                                int(flip)))


def _parse_csi(spec):
    rest = spec[len("csi://"):]
    sensor, _, query = rest.partition("?")
    options = dict(item.partition("=")[::2] for item in query.split("&") if item)
    known = ("w", "h", "fps", "flip")
    unknown = sorted(set(options) - set(known))
    if unknown or (sensor and not sensor.isdigit()):
        raise SourceError("bad CSI camera source {!r}; use csi://SENSOR[?w=1280&h=720&fps=30&flip=0]".format(spec))
    try:
        return csi_pipeline(int(sensor or 0), int(options.get("w", 1280)), int(options.get("h", 720)),
                            int(options.get("fps", 30)), int(options.get("flip", 0))), "csi{}".format(sensor or 0)
    except ValueError as exc:
        raise SourceError("bad CSI camera option in {!r}: {}".format(spec, exc)) from exc


# A standing figure in COCO-17 order, in units of the figure's height, relative to its hip centre.
_FIGURE17 = np.array([
    [0.00, -0.42], [-0.03, -0.45], [0.03, -0.45], [-0.07, -0.43], [0.07, -0.43],
    [-0.12, -0.30], [0.12, -0.30], [-0.17, -0.15], [0.17, -0.15], [-0.19, 0.00], [0.19, 0.00],
    [-0.08, 0.00], [0.08, 0.00], [-0.09, 0.25], [0.09, 0.25], [-0.10, 0.48], [0.10, 0.48],
], dtype=np.float32)


def synthetic_people(index: int, width: int, height: int, people: int = 2, seed: int = 0) -> np.ndarray:
    """COCO-17 keypoints [P, 17, 3] of the moving figures in synthetic frame ``index`` (frame pixels)."""
    rng = np.random.RandomState(seed)
    out = np.zeros((people, 17, 3), dtype=np.float32)
    for p in range(people):
        size = height * rng.uniform(0.45, 0.7)
        phase, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.03, 0.08)
        cx = width * (0.5 + 0.35 * np.sin(phase + speed * index))
        cy = height * 0.5 + 0.05 * height * np.cos(phase + 2 * speed * index)
        wave = 0.08 * np.sin(0.3 * index + phase)
        figure = _FIGURE17.copy()
        figure[[9, 10], 1] -= wave  # wrists swing
        out[p, :, 0] = cx + figure[:, 0] * size
        out[p, :, 1] = cy + figure[:, 1] * size
        out[p, :, 2] = 2.0
    return out


def draw_people(image: np.ndarray, people17: np.ndarray, color: Tuple[int, int, int] = (255, 255, 255),
                thickness: int = 3) -> np.ndarray:
    """Draw COCO-17 stick figures on a BGR image (in place)."""
    from edge_sdk.runtime.skeleton import COCO17_SKELETON

    for person in np.asarray(people17).reshape(-1, 17, 3):
        for a, b in COCO17_SKELETON:
            if person[a, 2] > 0 and person[b, 2] > 0:
                cv2.line(image, (int(person[a, 0]), int(person[a, 1])), (int(person[b, 0]), int(person[b, 1])),
                         color, thickness, cv2.LINE_AA)
        cv2.circle(image, (int(person[0, 0]), int(person[0, 1])), max(2, thickness * 2), color, -1, cv2.LINE_AA)
    return image


class SyntheticSource(Source):
    """Generated frames of moving stick figures. ``live=True`` paces frames at ``fps`` in real time
    (like a camera: they keep coming whether or not the consumer keeps up); otherwise as fast as read."""

    def __init__(self, width=320, height=240, fps=30.0, frames=None, people=2, seed=0, live=False):
        _need_cv2()
        self.width, self.height = int(width), int(height)
        self.fps = float(fps)
        self.frame_limit = None if frames is None else int(frames)
        self.people = int(people)
        self.seed = int(seed)
        self.live = bool(live)
        self.name = "synthetic-live" if self.live else "synthetic"

    def render(self, index):
        """Frame ``index`` as a BGR image (deterministic)."""
        image = np.full((self.height, self.width, 3), 40, dtype=np.uint8)
        image[:, :, 1] = 60 + (index * 3) % 60
        draw_people(image, synthetic_people(index, self.width, self.height, self.people, self.seed))
        return image

    def frames(self):
        start = time.perf_counter()
        index = 0
        while self.frame_limit is None or index < self.frame_limit:
            if self.live and self.fps > 0:
                delay = start + index / self.fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            yield index, self.render(index)
            index += 1


def _parse_synthetic(spec):
    rest = spec[len("synthetic"):]
    live = False
    if rest.startswith(":live"):
        live, rest = True, rest[len(":live"):]
    options = {}
    if rest.startswith("?"):
        for item in rest[1:].split("&"):
            if not item:
                continue
            key, _, value = item.partition("=")
            options[key] = value
    elif rest:
        raise SourceError("bad synthetic source {!r}; use synthetic[:live][?w=320&h=240&fps=30&frames=100"
                          "&people=2&seed=0]".format(spec))
    known = {"w": int, "h": int, "fps": float, "frames": int, "people": int, "seed": int}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SourceError("unknown synthetic source option(s) {}; known: {}".format(
            ", ".join(unknown), ", ".join(sorted(known))))
    try:
        values = {k: known[k](v) for k, v in options.items()}
    except ValueError as exc:
        raise SourceError("bad synthetic source option in {!r}: {}".format(spec, exc)) from exc
    return SyntheticSource(width=values.get("w", 320), height=values.get("h", 240), fps=values.get("fps", 30.0),
                           frames=values.get("frames"), people=values.get("people", 2),
                           seed=values.get("seed", 0), live=live)


def _parse_camera_settings(spec, query):
    options = dict(item.partition("=")[::2] for item in query.split("&") if item)
    known = {"w": "width", "h": "height", "fps": "fps", "fourcc": "fourcc"}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SourceError("unknown camera option(s) {} in {!r}; known: w, h, fps, fourcc (e.g. 0?w=1280&h=720"
                          "&fps=30&fourcc=MJPG)".format(", ".join(unknown), spec))
    settings = {}
    for key, value in options.items():
        if key == "fourcc":
            if len(value) != 4:
                raise SourceError("camera fourcc must be 4 characters (MJPG, YUYV), got {!r}".format(value))
            settings["fourcc"] = value
            continue
        try:
            settings[known[key]] = float(value)
        except ValueError:
            raise SourceError("bad camera option {}={!r} in {!r}: not a number".format(key, value, spec)) from None
    return settings


def open_source(spec: Any, reconnect: int = 3, reconnect_delay: float = 1.0) -> Source:
    """A :class:`Source` for a user's ``--source`` value (see the module docstring for the forms)."""
    if isinstance(spec, Source):
        return spec
    if isinstance(spec, int):
        return LiveCaptureSource(spec, "camera{}".format(spec), reconnect, reconnect_delay)
    spec = str(spec)
    if spec.startswith("synthetic"):
        return _parse_synthetic(spec)
    device, _, query = spec.partition("?")
    if device.isdigit() or device.startswith("/dev/video"):
        settings = _parse_camera_settings(spec, query)
        target = int(device) if device.isdigit() else device
        name = "camera{}".format(device) if device.isdigit() else os.path.basename(device)
        return LiveCaptureSource(target, name, reconnect, reconnect_delay, settings=settings)
    if spec.startswith("csi://"):
        pipeline, name = _parse_csi(spec)
        return LiveCaptureSource(pipeline, name, reconnect, reconnect_delay)
    if is_gstreamer_pipeline(spec):
        return LiveCaptureSource(spec, "gstreamer", reconnect, reconnect_delay)
    if spec.lower().startswith(STREAM_SCHEMES):
        host = spec.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        return LiveCaptureSource(spec, host, reconnect, reconnect_delay)
    if os.path.isdir(spec):
        return ImageFolderSource(spec)
    if os.path.isfile(spec):
        if spec.lower().endswith(IMAGE_EXTENSIONS):
            return ImageFolderSource(spec)
        return VideoFileSource(spec)
    raise SourceError("source {!r} not found: give a video file, an image folder, a camera index (0), "
                      "csi://0, an rtsp:// or http:// URL, a GStreamer pipeline, or `synthetic`".format(
                          redact_url(spec)))
