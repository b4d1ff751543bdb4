"""The source graph -> the model I/O contract, by ops appended to the graph (onnx-graphsurgeon):

- input ``image`` float32 NCHW [1, 3, H, W]; a Transpose to NHWC in front when the source is NHWC;
- outputs ``heatmaps`` [1, 19, H/8, W/8] and ``pafs`` [1, 38, H/8, W/8] in OUR channel order: a Transpose
  to NCHW when the source maps are NHWC, then one Slice (channels already in order) or Gather per map.

The `fold` and `transposes` passes then cancel the Transposes against the ones tf2onnx put at the edges,
so an NHWC source costs nothing at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.importers.paf_layouts import ChannelLayout
from edge_sdk.runtime.skeleton import NUM_HEATMAPS, NUM_PAFS, STRIDE


@dataclass(frozen=True)
class MapSource:
    """Where one of our maps is in the source: output ``tensor`` (layout ``layout``), channels ``channels``."""

    tensor: str
    layout: str
    channels: tuple[int, ...]


def _channel_axis(shape: tuple[int, ...], height: int, width: int) -> tuple[str, int]:
    """(layout, channel count) of a 4-D map of a [height, width] input at stride 8."""
    h, w = height // STRIDE, width // STRIDE
    if len(shape) == 4 and tuple(shape[2:]) == (h, w):
        return "NCHW", shape[1]
    if len(shape) == 4 and tuple(shape[1:3]) == (h, w):
        return "NHWC", shape[3]
    raise ModelError("output of shape {} is not a stride-8 map of a {}x{} input (expected [1, C, {}, {}] or "
                     "[1, {}, {}, C])".format(list(shape), width, height, h, w, h, w))


def locate_maps(output_shapes: dict[str, tuple[int, ...]], layout: ChannelLayout, height: int,
                width: int) -> tuple[MapSource, MapSource]:
    """Find heatmaps and PAFs among the source outputs: one 57-channel output (heatmaps first, as tf-pose
    and CMU's net_output concatenate them) or a 19- and a 38-channel output. With several candidates
    (intermediate stages), the last of each kind is the final stage."""
    found: dict[int, list[tuple[str, str]]] = {}
    for name, shape in output_shapes.items():
        try:
            lay, channels = _channel_axis(tuple(shape), height, width)
        except ModelError:
            continue
        found.setdefault(channels, []).append((name, lay))
    both = NUM_HEATMAPS + NUM_PAFS
    if NUM_HEATMAPS in found and NUM_PAFS in found:
        (hm, hm_layout), (pf, pf_layout) = found[NUM_HEATMAPS][-1], found[NUM_PAFS][-1]
        return (MapSource(hm, hm_layout, tuple(layout.heatmaps)), MapSource(pf, pf_layout, tuple(layout.pafs)))
    if both in found:
        name, lay = found[both][-1]
        return (MapSource(name, lay, tuple(layout.heatmaps)),
                MapSource(name, lay, tuple(NUM_HEATMAPS + c for c in layout.pafs)))
    raise ModelError("no OpenPose COCO maps among the outputs {}: need one output with {} channels (heatmaps "
                     "then PAFs) or one with {} and one with {}, at 1/8 of the {}x{} input".format(
                         {k: list(v) for k, v in output_shapes.items()}, both, NUM_HEATMAPS, NUM_PAFS, width,
                         height))


def expected_maps(outputs: dict[str, np.ndarray], maps: tuple[MapSource, MapSource]) -> list[np.ndarray]:
    """What the contract graph must output, computed in numpy from the source's outputs."""
    result = []
    for source in maps:
        array = outputs[source.tensor]
        if source.layout == "NHWC":
            array = array.transpose(0, 3, 1, 2)
        result.append(array[:, list(source.channels)])
    return result


def _select_channels(graph: gs.Graph, tensor: gs.Tensor, channels: tuple[int, ...], total: int,
                     name: str) -> gs.Variable:
    out = gs.Variable(name, dtype=np.float32)
    first, count = channels[0], len(channels)
    if list(channels) == list(range(first, first + count)):
        if first == 0 and count == total:
            graph.nodes.append(gs.Node("Identity", name=name + "/identity", inputs=[tensor], outputs=[out]))
            return out
        consts = [gs.Constant("{}/slice_{}".format(name, k), np.array([v], dtype=np.int64))
                  for k, v in (("starts", first), ("ends", first + count), ("axes", 1))]
        graph.nodes.append(gs.Node("Slice", name=name + "/slice", inputs=[tensor] + consts, outputs=[out]))
        return out
    indices = gs.Constant(name + "/channels", np.array(channels, dtype=np.int64))
    graph.nodes.append(gs.Node("Gather", name=name + "/reorder", attrs={"axis": 1}, inputs=[tensor, indices],
                               outputs=[out]))
    return out


def to_contract(model: onnx.ModelProto, input_name: str, input_layout: str, maps: tuple[MapSource, MapSource],
                output_shapes: dict[str, tuple[int, ...]], height: int, width: int) -> onnx.ModelProto:
    """The source graph with the contract's input and outputs (see module doc)."""
    if height % STRIDE or width % STRIDE or not (32 <= height <= 4096 and 32 <= width <= 4096):
        raise ConfigError("input size {}x{}: width and height must be multiples of {} in 32..4096".format(
            width, height, STRIDE))
    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    for taken in ("image", "heatmaps", "pafs"):  # e.g. re-importing one of our own models
        if taken in tensors:
            tensors[taken].name = taken + "_source"
    source_input = tensors[input_name]
    image = gs.Variable("image", dtype=np.float32, shape=[1, 3, height, width])
    if input_layout == "NHWC":
        source_input.shape = [1, height, width, 3]
        graph.nodes.append(gs.Node("Transpose", name="image/to_nhwc", attrs={"perm": [0, 2, 3, 1]},
                                   inputs=[image], outputs=[source_input]))
    else:
        for consumer in list(source_input.outputs):
            consumer.inputs[:] = [image if t is source_input else t for t in consumer.inputs]
    nchw: dict[str, gs.Tensor] = {}
    outputs = []
    for role, source, total in (("heatmaps", maps[0], NUM_HEATMAPS), ("pafs", maps[1], NUM_PAFS)):
        tensor = tensors[source.tensor]
        if source.tensor not in nchw:
            if source.layout == "NHWC":
                moved = gs.Variable(source.tensor + "/nchw", dtype=np.float32)
                graph.nodes.append(gs.Node("Transpose", name=source.tensor + "/to_nchw",
                                           attrs={"perm": [0, 3, 1, 2]}, inputs=[tensor], outputs=[moved]))
                nchw[source.tensor] = moved
            else:
                nchw[source.tensor] = tensor
        channels_in = output_shapes[source.tensor][1 if source.layout == "NCHW" else 3]
        out = _select_channels(graph, nchw[source.tensor], source.channels, channels_in, role)
        out.shape = [1, total, height // STRIDE, width // STRIDE]
        outputs.append(out)
    graph.inputs = [image]
    graph.outputs = outputs
    graph.cleanup().toposort()
    result = gs.export_onnx(graph, do_type_check=False)
    result.ir_version = model.ir_version
    del result.opset_import[:]
    result.opset_import.extend(model.opset_import)
    return result
