"""Keras model file (.keras, .h5) or TensorFlow SavedModel directory -> ONNX through tf2onnx.

Both are traced through one tf.function at a static [1, H, W, 3] input (TensorFlow's layout) and
converted from that function, so every Keras version and every SavedModel signature go the same way.
The reference calls the loaded model itself.
"""

from __future__ import annotations

import os

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.importers.source import SourceModel, first_line, require_tensorflow, tf2onnx_names


def _load(path: str, kind: str):
    """A callable image -> outputs, and the shape of its input."""
    tf = require_tensorflow("a Keras model or SavedModel")

    try:
        if kind == "keras":
            model = tf.keras.models.load_model(path, compile=False)
            shape = list(model.inputs[0].shape)
            return model, shape
        loaded = tf.saved_model.load(path)
    except Exception as exc:  # noqa: BLE001 - Keras and TF raise many types for unreadable files
        raise ModelError("TensorFlow cannot load {}: {}".format(path, first_line(exc))) from None
    signatures = getattr(loaded, "signatures", {})
    if "serving_default" not in signatures:
        raise ModelError("{} has no 'serving_default' signature; export it with one".format(path))
    fn = signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    if len(specs) != 1:
        raise ConfigError("the serving signature of {} takes {} inputs ({}); import needs one image input".format(
            path, len(specs), ", ".join(specs)))
    (key, spec), = specs.items()

    def call(x):
        result = fn(**{key: x})
        return [result[k] for k in sorted(result)]

    call.keep_alive = loaded  # the concrete function needs its object alive
    return call, list(spec.shape)


def saved_model_geometry(path: str, kind: str) -> tuple[str, int | None, int | None]:
    _, shape = _load(path, kind)
    if len(shape) != 4 or 3 not in (shape[1], shape[3]):
        raise ModelError("the input of {} has shape {}; expected [N, H, W, 3]".format(path, shape))
    layout = "NHWC" if shape[3] == 3 else "NCHW"
    h, w = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
    return layout, h, w


def load_tf_saved_model(path: str, kind: str, height: int, width: int, layout: str, opset: int,
                        threads: int | None = None) -> SourceModel:
    import tensorflow as tf
    import tf2onnx

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # TensorFlow already started: it keeps its thread pool
    model, _ = _load(path, kind)
    shape = [1, height, width, 3] if layout == "NHWC" else [1, 3, height, width]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="image")])
    def traced(image):
        outputs = model(image)
        if isinstance(outputs, dict):
            outputs = [outputs[k] for k in sorted(outputs)]
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return {"output_{:03d}".format(i): t for i, t in enumerate(outputs)}

    try:
        with tf2onnx_names():
            onnx_model, _ = tf2onnx.convert.from_function(traced, input_signature=traced.input_signature,
                                                          opset=opset)
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises whatever TensorFlow or its handlers raise
        raise ModelError("tf2onnx could not convert {}: {}".format(path, first_line(exc))) from None
    names = sorted(o.name for o in onnx_model.graph.output)

    def reference(x):
        result = traced(tf.constant(x))
        return [result[k].numpy() for k in sorted(result)]

    return SourceModel(kind, "TensorFlow {}".format(tf.__version__), onnx_model,
                       onnx_model.graph.input[0].name, layout, names, reference, height, width)


def is_saved_model_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))
