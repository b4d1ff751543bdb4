"""`edge-sdk import`: OpenPose-family models from other projects -> the model I/O contract.

One module per source format (tf_graphdef: TF1 frozen .pb; tf_saved_model: Keras / SavedModel; onnx_source:
ONNX from elsewhere), each giving a :class:`~edge_sdk.importers.source.SourceModel`; contract.py appends the
layout and channel-order ops, paf_layouts.py holds the channel layouts of known families, check.py compares
the result with the source framework, and importer.py runs the whole thing. Host code (TensorFlow and
tf2onnx for TF sources, ONNX Runtime always).
"""

from edge_sdk.importers.importer import FORMATS, ImportResult, detect_format, import_model
from edge_sdk.importers.paf_layouts import PRESETS, ChannelLayout, get_layout

__all__ = ["FORMATS", "PRESETS", "ChannelLayout", "ImportResult", "detect_format", "get_layout", "import_model"]
