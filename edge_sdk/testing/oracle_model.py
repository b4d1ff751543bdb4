"""The oracle model: an ONNX graph whose outputs are maps rendered from known keypoints.

Frame ``k`` of the oracle video is a uniform colour that encodes ``k`` (:func:`frame_color`: three
channels x 8 levels, 32 apart, so codec noise of up to +-15 does not matter). The graph reads the mean
colour of a small patch at the centre of its input, undoes the input normalisation, turns the colour back
into ``k`` and gathers frame ``k``'s heatmaps and PAFs (or peaks and PAFs) from constant tables rendered
with :mod:`edge_sdk.runtime.maps`. The model carries the ModelMeta of its input spec, so it goes through
the real runtime exactly like a trained one, and the expected answer of every frame is known exactly::

    case = make_oracle(tmp_path, num_frames=20, people=2)
    # case.model_path, case.video_path, case.expected[k] = COCO-17 [P, 17, 3] in frame pixels (v=2 / 0)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_sdk.runtime.maps import render_maps
from edge_sdk.runtime.model_meta import METADATA_KEY, InputSpec, ModelMeta
from edge_sdk.runtime.preprocess import fit_params
from edge_sdk.runtime.skeleton import DEFAULT_SKELETON, get_skeleton, image_to_map

LEVELS = 8
LEVEL_STEP = 32
LEVEL_BASE = 16
MAX_FRAMES = LEVELS ** 3  # 512 distinct frames
PATCH = 4  # side of the centre patch the graph averages, in input pixels
PEAK_SLOTS = 8  # K of the peaks output


def frame_color(index: int) -> tuple[int, int, int]:
    """The BGR colour of oracle frame ``index`` (R carries the low digit, then G, then B; base 8)."""
    if not 0 <= index < MAX_FRAMES:
        raise ValueError("oracle frame index must be in [0, {}), got {}".format(MAX_FRAMES, index))
    r, g, b = index % LEVELS, (index // LEVELS) % LEVELS, index // (LEVELS * LEVELS)
    return tuple(LEVEL_BASE + LEVEL_STEP * d for d in (b, g, r))


def oracle_frame(index: int, width: int, height: int) -> np.ndarray:
    """Oracle frame ``index`` as a BGR image."""
    return np.full((height, width, 3), frame_color(index), dtype=np.uint8)


_FIGURE17 = np.array([
    [0.00, -0.42], [-0.03, -0.45], [0.03, -0.45], [-0.07, -0.43], [0.07, -0.43],
    [-0.12, -0.30], [0.12, -0.30], [-0.17, -0.15], [0.17, -0.15], [-0.19, 0.00], [0.19, 0.00],
    [-0.08, 0.00], [0.08, 0.00], [-0.09, 0.25], [0.09, 0.25], [-0.10, 0.48], [0.10, 0.48],
], dtype=np.float32)
"""A standing figure (COCO-17), in units of its height, around its hip centre."""


def oracle_people(num_frames: int, width: int, height: int, people: int = 1, seed: int = 0,
                  missing_joints: bool = True) -> list[np.ndarray]:
    """Known COCO-17 keypoints [P, 17, 3] (x, y, v: 2 = present, 0 = missing) per frame, in frame pixels.

    Each person keeps to its own vertical lane (no overlap) and moves smoothly; with ``missing_joints``
    some frames lose a wrist or an ear (to check that absent joints come back with score 0).
    """
    rng = np.random.RandomState(seed)
    lane = width / float(people)
    size = min(0.8 * height, 0.8 * lane / 0.38 * 0.5)
    params = [(rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.3), rng.uniform(0.85, 1.0)) for _ in range(people)]
    frames = []
    for k in range(num_frames):
        out = np.zeros((people, 17, 3), dtype=np.float32)
        for p, (phase, speed, scale) in enumerate(params):
            s = size * scale
            cx = lane * (p + 0.5) + 0.2 * lane * np.sin(phase + speed * k)
            cy = height * 0.5 + 0.05 * height * np.cos(phase + speed * k)
            figure = _FIGURE17.copy()
            figure[[9, 10], 1] -= 0.1 * np.sin(phase + 0.7 * k)
            out[p, :, 0] = cx + figure[:, 0] * s
            out[p, :, 1] = cy + figure[:, 1] * s
            out[p, :, 2] = 2.0
            if missing_joints and rng.uniform() < 0.3:
                out[p, rng.choice([3, 4, 9, 10]), :] = 0.0
        frames.append(out)
    return frames


def _to_input_pixels(people17: np.ndarray, letterbox, skeleton) -> np.ndarray:
    people18 = skeleton.from_coco17(people17)
    moved = people18.copy()
    moved[..., :2] = letterbox.frame_to_input(people18[..., :2])
    moved[people18[..., 2] <= 0] = 0.0
    return moved


def _peaks_table(people18_input: np.ndarray, stride: int) -> np.ndarray:
    parts = people18_input.shape[-2]
    peaks = np.zeros((parts, PEAK_SLOTS, 3), dtype=np.float32)
    for part in range(parts):
        slot = 0
        for person in people18_input:
            if person[part, 2] > 0 and slot < PEAK_SLOTS:
                peaks[part, slot, :2] = image_to_map(person[part, :2], stride)
                peaks[part, slot, 2] = 1.0
                slot += 1
    return peaks


def build_oracle_model(expected: list[np.ndarray], frame_width: int | list[int], frame_height: int | list[int],
                       input_spec: InputSpec | None = None, outputs: str = "maps", stride: int = 8,
                       skeleton: str | dict = DEFAULT_SKELETON):
    """The oracle ONNX ModelProto for frames of ``frame_width`` x ``frame_height`` whose people are
    ``expected[k]`` (COCO-17, frame pixels). ``outputs``: ``maps`` (heatmaps + pafs) or ``peaks``
    (peaks [N, 18, 8, 3] + pafs, like a graph with GPU peak extraction). Frames of different sizes (real
    photos): pass one width and one height per frame. ``skeleton`` (a name or a skeleton object of
    :func:`edge_sdk.runtime.skeleton.get_skeleton`): the maps are that topology's channels, from the
    COCO-17 people (parts it adds, e.g. the neck, are midpoints; parts COCO-17 lacks, e.g. feet, absent)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    spec = input_spec or InputSpec(height=192, width=256)  # the `cpu` target's default input size
    sk = get_skeleton(skeleton)
    if outputs not in ("maps", "peaks"):
        raise ValueError("outputs must be 'maps' or 'peaks', got {!r}".format(outputs))
    if spec.height % stride or spec.width % stride:
        raise ValueError("input size {}x{} must be a multiple of the stride {}".format(spec.width, spec.height,
                                                                                     stride))
    if len(expected) > MAX_FRAMES:
        raise ValueError("an oracle model holds at most {} frames".format(MAX_FRAMES))
    widths = frame_width if isinstance(frame_width, (list, tuple)) else [frame_width] * len(expected)
    heights = frame_height if isinstance(frame_height, (list, tuple)) else [frame_height] * len(expected)
    first_table, paf_table = [], []
    for people17, width, height in zip(expected, widths, heights):
        letterbox, _ = fit_params(height, width, spec.height, spec.width, spec.fit)
        people18 = _to_input_pixels(np.asarray(people17, dtype=np.float32).reshape(-1, 17, 3), letterbox, sk)
        heatmaps, pafs = render_maps(people18, spec.height, spec.width, stride, skeleton=sk)
        first_table.append(_peaks_table(people18, stride) if outputs == "peaks" else heatmaps)
        paf_table.append(pafs)
    first_table = np.stack(first_table).astype(np.float32)
    paf_table = np.stack(paf_table).astype(np.float32)

    nchw = spec.layout == "NCHW"
    cy, cx = spec.height // 2 - PATCH // 2, spec.width // 2 - PATCH // 2
    # channel order of the input: the digit weight of each channel (R: 1, G: 8, B: 64)
    weights = {"R": 1.0, "G": float(LEVELS), "B": float(LEVELS * LEVELS)}
    channel_weights = np.array([weights[c] for c in spec.color], dtype=np.float32)
    if spec.dtype == "uint8":
        scale, mean, std = 1.0, np.zeros(3, np.float32), np.ones(3, np.float32)
    else:
        scale, mean, std = spec.scale, np.array(spec.mean, np.float32), np.array(spec.std, np.float32)
    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "uint8": TensorProto.UINT8}[spec.dtype]
    first_name = "peaks" if outputs == "peaks" else "heatmaps"
    map_h, map_w = spec.height // stride, spec.width // stride
    first_shape = [spec.batch, sk.num_parts, PEAK_SLOTS, 3] if outputs == "peaks" \
        else [spec.batch, sk.num_heatmaps, map_h, map_w]

    def const(name, array):
        return numpy_helper.from_array(np.asarray(array), name)

    axes_hw = [2, 3] if nchw else [1, 2]
    if spec.dtype == "float32" and nchw:
        # an identity 1x1 convolution first, like a network's first layer, so `edge-sdk build`'s
        # normalisation folding (uint8/BGR/HWC input) works on the oracle too
        first = helper.make_node("Conv", ["image", "identity_w", "identity_b"], ["image_f"])
    else:
        first = helper.make_node("Cast", ["image"], ["image_f"], to=TensorProto.FLOAT)
    nodes = [
        first,
        helper.make_node("Slice", ["image_f", "starts", "ends", "axes"], ["patch"]),
        helper.make_node("ReduceMean", ["patch"], ["mean_colour"], axes=axes_hw, keepdims=0),  # [N, 3]
        helper.make_node("Mul", ["mean_colour", "std"], ["x1"]),
        helper.make_node("Add", ["x1", "mean"], ["x2"]),
        helper.make_node("Div", ["x2", "scale"], ["pixel"]),  # back to 0..255
        helper.make_node("Sub", ["pixel", "base"], ["x3"]),
        helper.make_node("Div", ["x3", "step"], ["x4"]),
        helper.make_node("Round", ["x4"], ["x5"]),
        helper.make_node("Clip", ["x5", "zero", "top_level"], ["digits"]),
        helper.make_node("MatMul", ["digits", "weights"], ["index_f"]),  # [N]
        helper.make_node("Clip", ["index_f", "zero", "last_frame"], ["index_c"]),
        helper.make_node("Cast", ["index_c"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["first_table", "index"], [first_name], axis=0),
        helper.make_node("Gather", ["paf_table", "index"], ["pafs"], axis=0),
    ]
    initializers = [
        const("identity_w", np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)),
        const("identity_b", np.zeros(3, np.float32)),
        const("starts", np.array([cy, cx], np.int64)), const("ends", np.array([cy + PATCH, cx + PATCH], np.int64)),
        const("axes", np.array(axes_hw, np.int64)),
        const("std", std), const("mean", mean), const("scale", np.float32(scale)),
        const("base", np.float32(LEVEL_BASE)), const("step", np.float32(LEVEL_STEP)),
        const("zero", np.float32(0)), const("top_level", np.float32(LEVELS - 1)),
        const("weights", channel_weights), const("last_frame", np.float32(len(expected) - 1)),
        const("first_table", first_table), const("paf_table", paf_table),
    ]
    graph = helper.make_graph(
        nodes, "edge_sdk_oracle",
        [helper.make_tensor_value_info("image", elem, list(spec.shape))],
        [helper.make_tensor_value_info(first_name, TensorProto.FLOAT, first_shape),
         helper.make_tensor_value_info("pafs", TensorProto.FLOAT, [spec.batch, sk.num_pafs, map_h, map_w])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="edge-sdk-oracle")
    model.ir_version = 7  # opset 13 / IR 7: loads in the onnxruntime and TensorRT of JetPack 4.6
    meta = ModelMeta(input_spec=spec, outputs={first_name: first_name, "pafs": "pafs"}, stride=stride,
                     model="oracle", skeleton=skeleton,
                     extra={"frames": len(expected), "frame_size": [frame_width, frame_height]})
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    return model


def write_oracle_video(path, num_frames: int, width: int, height: int, fps: float = 10.0) -> Path:
    """Write the oracle video (``.avi``: MJPG, ``.mp4``: mp4v) of ``num_frames`` frames."""
    path = Path(path)
    fourcc = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (int(width), int(height)))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write {} with {}".format(path, fourcc))
    for k in range(num_frames):
        writer.write(oracle_frame(k, width, height))
    writer.release()
    return path


def write_oracle_images(folder, num_frames: int, width: int, height: int) -> Path:
    """Write the oracle frames as PNG images ``frame_00000.png``... in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(num_frames):
        cv2.imwrite(str(folder / "frame_{:05d}.png".format(k)), oracle_frame(k, width, height))
    return folder


class OracleCase:
    """An oracle model, its video and the expected keypoints (``expected[k]``: COCO-17 [P, 17, 3])."""

    def __init__(self, model_path: Path, video_path: Path | None, expected: list[np.ndarray], width: int,
                 height: int, meta: ModelMeta):
        self.model_path = model_path
        self.video_path = video_path
        self.expected = expected
        self.width = width
        self.height = height
        self.meta = meta

    @property
    def num_frames(self) -> int:
        return len(self.expected)


def make_oracle(directory, num_frames: int = 20, width: int = 320, height: int = 240, people: int = 1,
                input_spec: InputSpec | None = None, outputs: str = "maps", video: str | None = "oracle.avi",
                fps: float = 10.0, seed: int = 0, missing_joints: bool = True,
                skeleton: str | dict = DEFAULT_SKELETON) -> OracleCase:
    """Write ``oracle.onnx`` and the oracle video (``video=None``: none) into ``directory``; ``skeleton``:
    the topology of its maps (see :func:`build_oracle_model`)."""
    import onnx

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    expected = oracle_people(num_frames, width, height, people, seed, missing_joints)
    model = build_oracle_model(expected, width, height, input_spec, outputs, skeleton=skeleton)
    model_path = directory / "oracle.onnx"
    onnx.save(model, str(model_path))
    video_path = write_oracle_video(directory / video, num_frames, width, height, fps) if video else None
    meta = ModelMeta.from_props({p.key: p.value for p in model.metadata_props})
    return OracleCase(model_path, video_path, expected, width, height, meta)


__all__ = ["OracleCase", "build_oracle_model", "frame_color", "make_oracle", "oracle_frame", "oracle_people",
           "stamp_frame_code",
           "write_oracle_images", "write_oracle_video", "MAX_FRAMES"]


def stamp_frame_code(image: np.ndarray, index: int, input_spec: InputSpec) -> np.ndarray:
    """A copy of a real photo (BGR) whose centre carries oracle frame ``index``'s colour code, so an oracle
    model built with one entry per photo (``build_oracle_model`` with per-frame sizes) answers with that
    photo's maps. Only the patch the graph reads is painted (plus a margin for resampling)."""
    out = image.copy()
    height, width = out.shape[:2]
    letterbox, _ = fit_params(height, width, input_spec.height, input_spec.width, input_spec.fit)
    half = int(np.ceil((PATCH / 2.0 + 2.0) / min(letterbox.scale_x, letterbox.scale_y)))
    cy, cx = height // 2, width // 2
    out[max(0, cy - half):cy + half, max(0, cx - half):cx + half] = frame_color(index)
    return out
