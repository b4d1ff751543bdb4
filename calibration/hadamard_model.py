"""A tiny hand-built pose model and frames drawn for it: calibration tests and demos without trained weights.

The frames carry OpenPose maps in a code a 2-stage conv net can read exactly: every 8x8 pixel cell holds
a sum of orthogonal 8x8 Walsh-Hadamard patterns, pattern ``k`` scaled by the value of map channel ``k``
(red: part heatmaps, green: PAF x, blue: PAF y). Stage 1 (an 8x8 stride-8 conv, i.e. one matched filter per
pattern, + ReLU) recovers the maps; stage 2 (1x1 convs) assembles ``heatmaps`` [1, 19, h, w] and
``pafs`` [1, 38, h, w]. So the FP32 model reproduces the oracle maps of the drawn people, its decoded poses
are real poses, and INT8 errors show up as pose errors -- like a trained model, but deterministic and instant.

``outlier=True`` adds one stage-1 channel that is constantly 1000 (a "hot" channel, as real nets have):
no per-tensor INT8 range can cover it and the small values at once, so stage 2 must stay in float.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_sdk.runtime.maps import render_maps
from edge_sdk.runtime.model_meta import METADATA_KEY, InputSpec, ModelMeta
from edge_sdk.runtime.skeleton import NUM_HEATMAPS, NUM_LIMBS, NUM_PARTS, STRIDE

CELL = STRIDE
AMPLITUDE = 0.08
"""Pixel amplitude of a map value of 1.0 (in 0..1 pixel units); small so overlapping codes rarely clip."""
TEXTURE = 0.08
"""Standard deviation (0..1 pixel units) of the texture drawn in the patterns the model ignores."""
DEAD_ZONE = 0.02
"""Stage-1 ReLU threshold: pixel rounding noise in the matched filters stays exactly 0 (sparse activations,
as in trained nets) instead of a cloud of tiny values that would dominate the activation histograms."""

SYNTHETIC_SPEC = dict(height=128, width=192, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])

# A standing person, COCO-18 order, x/y in units of body height (origin at the neck).
_TEMPLATE = np.array([
    [0.00, -0.13], [0.00, 0.00], [-0.11, 0.00], [-0.14, 0.17], [-0.15, 0.33], [0.11, 0.00], [0.14, 0.17],
    [0.15, 0.33], [-0.07, 0.35], [-0.08, 0.60], [-0.08, 0.85], [0.07, 0.35], [0.08, 0.60], [0.08, 0.85],
    [-0.03, -0.16], [0.03, -0.16], [-0.06, -0.14], [0.06, -0.14],
], dtype=np.float32)


def hadamard_patterns() -> np.ndarray:
    """64 orthogonal +-1 patterns [64, 8, 8] (Sylvester Walsh-Hadamard); pattern 0 is constant."""
    h = np.array([[1.0]], dtype=np.float32)
    while h.shape[0] < CELL * CELL:
        h = np.block([[h, h], [h, -h]])
    return h.reshape(CELL * CELL, CELL, CELL)


def input_spec() -> InputSpec:
    return InputSpec(**SYNTHETIC_SPEC)


def random_people(rng: np.random.Generator, height: int, width: int, max_people: int = 3) -> np.ndarray:
    """[P, 18, 3] plausible stick people (x, y, v=2) in pixels of a ``height`` x ``width`` frame."""
    people = []
    for _ in range(int(rng.integers(1, max_people + 1))):
        body = float(rng.uniform(0.45, 0.8)) * height
        pts = _TEMPLATE * body
        if rng.random() < 0.5:
            pts[:, 0] = -pts[:, 0]
        pts = pts + rng.normal(0.0, 0.025 * body, size=pts.shape)
        x0 = rng.uniform(-pts[:, 0].min() + 4, width - pts[:, 0].max() - 4)
        y0 = rng.uniform(-pts[:, 1].min() + 4, max(-pts[:, 1].min() + 5, height - pts[:, 1].max() - 4))
        kp = np.concatenate([pts + [x0, y0], np.full((NUM_PARTS, 1), 2.0)], axis=1)
        people.append(kp)
    return np.asarray(people, dtype=np.float32)


def draw_frame(people18: np.ndarray, height: int, width: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Encode the oracle maps of ``people18`` into a BGR uint8 frame the synthetic model decodes.

    With ``rng``, the frame also gets texture in the patterns the model ignores (so pixel values spread
    over the whole range, as in camera frames, while the FP32 outputs stay the same).
    """
    heat, pafs = render_maps(people18, height, width)
    pats = hadamard_patterns()
    mh, mw = heat.shape[1:]

    def encode(maps, patterns):
        blocks = np.einsum("chw,cij->hiwj", maps, patterns)  # [mh, 8, mw, 8]
        return blocks.reshape(mh * CELL, mw * CELL)[:height, :width]

    limb_pats = pats[1:NUM_LIMBS + 1]
    red = encode(heat, pats[1:NUM_HEATMAPS + 1])
    green = encode(pafs[0::2], limb_pats)
    blue = encode(pafs[1::2], limb_pats)
    rgb = 0.5 + AMPLITUDE * np.stack([red, green, blue], axis=-1)
    if rng is not None:
        unused = pats[NUM_HEATMAPS + 1:]
        coeffs = rng.normal(0.0, TEXTURE / np.sqrt(len(unused)), size=(3, len(unused), mh, mw)).astype(np.float32)
        for c in range(3):
            rgb[..., c] += encode(coeffs[c], unused)
    rgb = np.clip(rgb, 0.0, 1.0)
    return np.round(rgb[:, :, ::-1] * 255.0).astype(np.uint8)


def write_frames(folder, count: int, seed: int = 0, spec: InputSpec | None = None) -> list[Path]:
    """Draw ``count`` frames of random people as PNG files (lossless) into ``folder``; returns their paths."""
    import cv2

    spec = spec or input_spec()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        frame = draw_frame(random_people(rng, spec.height, spec.width), spec.height, spec.width, rng)
        path = folder / "frame_{:04d}.png".format(i)
        cv2.imwrite(str(path), frame)
        paths.append(path)
    return paths


def build_model(path=None, outlier: bool = False, opset: int = 13):
    """The synthetic FP32 pose model (an onnx.ModelProto), saved to ``path`` when given."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    spec = input_spec()
    pats = hadamard_patterns() / (CELL * CELL * AMPLITUDE * spec.scale * 255.0)
    n_hidden = NUM_HEATMAPS + 4 * NUM_LIMBS + (1 if outlier else 0)
    w1 = np.zeros((n_hidden, 3, CELL, CELL), dtype=np.float32)
    b1 = np.full((n_hidden,), -DEAD_ZONE, dtype=np.float32)
    for c in range(NUM_HEATMAPS):
        w1[c, 0] = pats[c + 1]
    for limb in range(NUM_LIMBS):
        for axis in range(2):  # G holds PAF x, B holds PAF y; +/- halves so ReLU keeps the sign
            base = NUM_HEATMAPS + 4 * limb + 2 * axis
            w1[base, 1 + axis] = pats[limb + 1]
            w1[base + 1, 1 + axis] = -pats[limb + 1]
    if outlier:
        b1[-1] = 1000.0
    w_heat = np.zeros((NUM_HEATMAPS, n_hidden, 1, 1), dtype=np.float32)
    b_heat = np.zeros((NUM_HEATMAPS,), dtype=np.float32)
    for c in range(NUM_HEATMAPS):
        w_heat[c, c] = 1.0
    w_paf = np.zeros((2 * NUM_LIMBS, n_hidden, 1, 1), dtype=np.float32)
    for limb in range(NUM_LIMBS):
        for axis in range(2):
            base = NUM_HEATMAPS + 4 * limb + 2 * axis
            w_paf[2 * limb + axis, base] = 1.0
            w_paf[2 * limb + axis, base + 1] = -1.0
    mh, mw = spec.height // CELL, spec.width // CELL
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (w1, "stage1.weight"), (b1, "stage1.bias"), (w_heat, "heatmap_head.weight"), (b_heat, "heatmap_head.bias"),
        (w_paf, "paf_head.weight"), (np.zeros((2 * NUM_LIMBS,), np.float32), "paf_head.bias"))]
    nodes = [
        helper.make_node("Conv", ["image", "stage1.weight", "stage1.bias"], ["stage1_conv"], name="stage1",
                         kernel_shape=[CELL, CELL], strides=[CELL, CELL]),
        helper.make_node("Relu", ["stage1_conv"], ["stage1_relu"], name="stage1_relu"),
        helper.make_node("Conv", ["stage1_relu", "heatmap_head.weight", "heatmap_head.bias"], ["heatmaps"],
                         name="heatmap_head", kernel_shape=[1, 1]),
        helper.make_node("Conv", ["stage1_relu", "paf_head.weight", "paf_head.bias"], ["pafs"],
                         name="paf_head", kernel_shape=[1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "synthetic_pose",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(spec.shape))],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, NUM_HEATMAPS, mh, mw]),
         helper.make_tensor_value_info("pafs", TensorProto.FLOAT, [1, 2 * NUM_LIMBS, mh, mw])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edge-sdk")
    model.ir_version = 8
    meta = ModelMeta(input_spec=spec, model="synthetic-hadamard" + ("-outlier" if outlier else ""))
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, str(path))
    return model
