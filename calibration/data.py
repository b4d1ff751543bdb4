"""Calibration frames: image folders, video files (every Nth frame) or a COCO subset, preprocessed exactly
as the runtime does (``edge_sdk.runtime.preprocess.preprocess_frame`` with the model's InputSpec).

Frames are shuffled with ``seed`` and split into calibration frames and held-out frames (for the accuracy
report). The preprocessed arrays are cached on disk, keyed by the sha256 of every source file, the input
spec and the selection settings, so a second run (another method, another threshold) skips decoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from edge_sdk.errors import ConfigError, SourceError
from edge_sdk.runtime.model_meta import InputSpec
from edge_sdk.runtime.preprocess import preprocess_frame

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
CACHE_FORMAT = 1


class CalibrationWarning(UserWarning):
    """Calibration went on, but with less or other data than asked for."""


class CalibrationSource:
    """Where calibration frames come from: ``kind`` is "images", "video" or "coco"."""

    def __init__(self, kind: str, path, images_dir=None, every: int | None = None):
        if kind not in ("images", "video", "coco"):
            raise ConfigError("unknown calibration source kind {!r}; known: images, video, coco".format(kind))
        self.kind = kind
        self.path = Path(path)
        self.images_dir = Path(images_dir) if images_dir is not None else None
        self.every = every

    def describe(self) -> str:
        if self.kind == "coco":
            return "coco: {} (images: {})".format(self.path, self.images_dir)
        return "{}: {}".format(self.kind, self.path)

    def __repr__(self):
        return "CalibrationSource({})".format(self.describe())


def parse_source(source) -> CalibrationSource:
    """A folder -> images, a video file -> video, ``ann.json[:images_dir]`` -> COCO subset."""
    if isinstance(source, CalibrationSource):
        return source
    text = str(source)
    if ".json:" in text or text.endswith(".json"):
        json_path, _, images = text.partition(".json:")
        json_path = Path(json_path + ".json" if images or not text.endswith(".json") else text)
        images_dir = Path(images) if images else json_path.parent / "images"
        return CalibrationSource("coco", json_path, images_dir)
    path = Path(text)
    if path.is_dir():
        return CalibrationSource("images", path)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return CalibrationSource("video", path)
    if not path.exists():
        raise ConfigError("calibration source {} does not exist; pass a folder of images, a video file or "
                          "COCO_JSON:IMAGES_DIR".format(path))
    raise ConfigError("calibration source {} is neither a folder of images, a video ({}) nor a COCO json; "
                      "pass --images DIR, --video FILE or --coco JSON:IMAGES".format(path, ", ".join(VIDEO_EXTENSIONS)))


class CalibrationFrames:
    """Preprocessed model inputs: ``calib`` [N, ...] and ``holdout`` [M, ...] plus their names."""

    def __init__(self, calib, holdout, calib_names, holdout_names, source, spec, from_cache=False):
        self.calib = calib
        self.holdout = holdout
        self.calib_names = list(calib_names)
        self.holdout_names = list(holdout_names)
        self.source = source
        self.spec = spec
        self.from_cache = from_cache


def default_cache_dir() -> Path:
    root = os.environ.get("EDGE_SDK_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edge-sdk")
    return Path(root) / "calibration"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _list_images(folder: Path) -> list[Path]:
    if not folder.exists():
        raise ConfigError("calibration folder {} does not exist; pass a folder of representative frames".format(folder))
    if not folder.is_dir():
        raise ConfigError("calibration source {} is not a folder; pass --images DIR".format(folder))
    try:
        entries = sorted(p for p in folder.iterdir() if p.is_file())
    except PermissionError as exc:
        raise ConfigError("cannot read calibration folder {}: {}; check its permissions".format(folder, exc)) from exc
    images = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        raise ConfigError("no images in calibration folder {} (looked for {}); put a few hundred frames like the "
                          "ones the camera will see there".format(folder, ", ".join(IMAGE_EXTENSIONS)))
    return images


def _coco_images(json_path: Path, images_dir: Path) -> list[Path]:
    if not json_path.is_file():
        raise ConfigError("COCO annotation file {} does not exist; pass --coco ANNOTATIONS.json:IMAGES_DIR"
                          .format(json_path))
    if not images_dir.is_dir():
        raise ConfigError("COCO images folder {} does not exist; pass --coco ANNOTATIONS.json:IMAGES_DIR"
                          .format(images_dir))
    try:
        data = json.loads(json_path.read_text())
        images = {img["id"]: img["file_name"] for img in data["images"]}
        annotations = data.get("annotations", [])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("{} is not a COCO annotation file ({}); it needs 'images' with id and file_name"
                          .format(json_path, exc)) from exc
    with_people = {a["image_id"] for a in annotations if a.get("category_id", 1) == 1}
    ids = sorted(i for i in images if i in with_people) or sorted(images)
    paths = [images_dir / images[i] for i in ids]
    present = [p for p in paths if p.is_file()]
    if len(present) < len(paths):
        warnings.warn("{} of {} images listed in {} are missing from {}; going on without them".format(
            len(paths) - len(present), len(paths), json_path, images_dir), CalibrationWarning, stacklevel=3)
    if not present:
        raise ConfigError("none of the images listed in {} are in {}".format(json_path, images_dir))
    return present


def _split(n_items: int, count: int, holdout: int, seed: int):
    """Shuffled indices -> (calibration indices, held-out indices); calibration frames come first in priority."""
    order = [int(i) for i in np.random.default_rng(seed).permutation(n_items)]
    n_hold = min(holdout, n_items - count) if n_items > count else min(holdout, n_items // 5)
    if holdout > 0 and n_hold == 0 and n_items >= 2:
        n_hold = 1
    return order[n_hold:][:count], order[:n_hold]


def _to_bgr(image, name):
    """Decoded image -> BGR uint8, or a reason it cannot be used."""
    if image is None:
        return None, "unreadable"
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return None, "single-channel"
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        return None, "unsupported pixel type {}".format(image.dtype)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[2] != 3:
        return None, "{} channels".format(image.shape[2])
    return np.ascontiguousarray(image), None


def _read_images(paths, spec, wanted, progress, what):
    """Decode + preprocess ``paths`` in order until ``wanted`` usable frames; returns (arrays, names,
    {problem: [paths]}, number of files looked at)."""
    import cv2
    from tqdm import tqdm

    arrays, names, rejected, looked = [], [], {}, 0
    with tqdm(total=min(wanted, len(paths)), desc=what, unit="frame", disable=not progress, leave=False) as bar:
        for path in paths:
            if len(arrays) >= wanted:
                break
            looked += 1
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            frame, problem = _to_bgr(image, path)
            if problem:
                rejected.setdefault(problem, []).append(path)
                continue
            arrays.append(preprocess_frame(frame, spec)[0])
            names.append(path.name)
            bar.update(1)
    return arrays, names, rejected, looked


def _report_rejected(rejected, total, where):
    if not rejected:
        return
    parts = ["{} {} (e.g. {})".format(len(v), k, v[0].name) for k, v in sorted(rejected.items())]
    message = "skipped {} of {} calibration images in {}: {}".format(
        sum(len(v) for v in rejected.values()), total, where, "; ".join(parts))
    if "single-channel" in rejected:
        message += ". The model takes colour (3-channel) frames; use colour images, or convert monochrome ones " \
                   "with cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if the camera itself is monochrome"
    if "unreadable" in rejected:
        message += ". Unreadable files are not images OpenCV can decode (truncated, wrong extension, no permission)"
    return message


def _video_frames(source: CalibrationSource, spec, wanted: int, progress):
    import cv2
    from tqdm import tqdm

    path = source.path
    if not path.is_file():
        raise ConfigError("calibration video {} does not exist".format(path))
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SourceError("cannot open calibration video {} (OpenCV could not decode it); convert it to H.264 "
                          "MP4 or extract frames into a folder and use --images".format(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    every = source.every or max(1, total // max(1, wanted)) if total > 0 else (source.every or 1)
    arrays, names, index = [], [], 0
    with tqdm(total=wanted, desc="video frames", unit="frame", disable=not progress, leave=False) as bar:
        while len(arrays) < wanted:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                arrays.append(preprocess_frame(frame, spec)[0])
                names.append("{}#{}".format(path.name, index))
                bar.update(1)
            index += 1
    capture.release()
    if not arrays:
        raise SourceError("calibration video {} has no decodable frames".format(path))
    return arrays, names, every


def _cache_key(source: CalibrationSource, files, spec, count, holdout, seed, every) -> str:
    payload = {
        "format": CACHE_FORMAT, "kind": source.kind, "spec": spec.to_dict(), "count": count, "holdout": holdout,
        "seed": seed, "every": every, "files": [[p.name, _sha256_file(p)] for p in files],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _load_cache(cache_dir: Path, key: str):
    meta_path = cache_dir / (key + ".json")
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        calib = np.load(cache_dir / (key + ".calib.npy"), mmap_mode="r")
        holdout = np.load(cache_dir / (key + ".holdout.npy"), mmap_mode="r")
    except (OSError, ValueError):
        return None
    return calib, holdout, meta["calib_names"], meta["holdout_names"]


def _save_cache(cache_dir: Path, key: str, calib, holdout, calib_names, holdout_names):
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for suffix, array in ((".calib.npy", calib), (".holdout.npy", holdout)):
            tmp = cache_dir / (key + suffix + ".tmp")
            with open(tmp, "wb") as handle:
                np.save(handle, array)
            os.replace(tmp, cache_dir / (key + suffix))
        tmp = cache_dir / (key + ".json.tmp")
        tmp.write_text(json.dumps({"calib_names": calib_names, "holdout_names": holdout_names}))
        os.replace(tmp, cache_dir / (key + ".json"))
    except OSError as exc:  # a cache is an optimisation; never fail calibration for it
        warnings.warn("could not write the calibration frame cache in {}: {}".format(cache_dir, exc),
                      CalibrationWarning, stacklevel=3)


def _stack(arrays, spec):
    if not arrays:
        shape = spec.shape[1:]
        return np.zeros((0,) + tuple(shape), dtype=np.dtype(spec.dtype))
    return np.stack(arrays)


def load_frames(source, spec: InputSpec, count: int = 500, seed: int = 0, holdout: int = 16,
                cache_dir=None, progress: bool = True) -> CalibrationFrames:
    """Read, preprocess and split calibration frames (cached). Warns when fewer frames than ``count`` exist."""
    if count < 1:
        raise ConfigError("--count must be at least 1, got {}".format(count))
    source = parse_source(source)
    use_cache = cache_dir is not False
    cache_dir = Path(cache_dir) if cache_dir not in (None, False) else default_cache_dir()

    if source.kind == "video":
        files = [source.path] if source.path.is_file() else []
        if not files:
            raise ConfigError("calibration video {} does not exist".format(source.path))
    elif source.kind == "coco":
        files = _coco_images(source.path, source.images_dir)
    else:
        files = _list_images(source.path)

    key = _cache_key(source, files, spec, count, holdout, seed, source.every)
    cached = _load_cache(cache_dir, key) if use_cache else None
    if cached is not None:
        calib, held, calib_names, held_names = cached
        _warn_short(len(calib), count, source)
        return CalibrationFrames(calib, held, calib_names, held_names, source, spec, from_cache=True)

    if source.kind == "video":
        arrays, names, _every = _video_frames(source, spec, count + holdout, progress)
    else:
        shuffled = [files[i] for i in np.random.default_rng(seed).permutation(len(files))]
        arrays, names, rejected, looked = _read_images(shuffled, spec, count + holdout, progress,
                                                       "calibration frames")
        message = _report_rejected(rejected, looked, source.path)
        if not arrays:
            raise ConfigError("no usable calibration images in {}: {}".format(source.path, message))
        if message:
            warnings.warn(message, CalibrationWarning, stacklevel=2)
    calib_idx, held_idx = _split(len(arrays), count, holdout, seed)
    calib = _stack([arrays[i] for i in calib_idx], spec)
    held = _stack([arrays[i] for i in held_idx], spec)
    calib_names = [names[i] for i in calib_idx]
    held_names = [names[i] for i in held_idx]
    _warn_short(len(calib), count, source)
    if use_cache:
        _save_cache(cache_dir, key, calib, held, calib_names, held_names)
    return CalibrationFrames(calib, held, calib_names, held_names, source, spec)


def _warn_short(got: int, count: int, source: CalibrationSource):
    if got < count:
        warnings.warn("asked for {} calibration frames but {} has only {} usable (after holding some out for the "
                      "accuracy report); calibrating with {} -- ranges from few frames may clip real scenes, "
                      "add more frames".format(count, source.describe(), got, got), CalibrationWarning, stacklevel=3)
