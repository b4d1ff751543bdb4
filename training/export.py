"""Export a training run to ONNX: NCHW float32 input ``image``, outputs ``heatmaps`` and ``pafs`` (last
stage), the ModelMeta (input size, normalisation, stride, skeleton) in ``metadata_props["edge_sdk"]``.

The ONNX graph is checked against the Keras model with ONNX Runtime on random inputs before anything is
written: a file that does not reproduce the Keras outputs is never produced.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from edge_sdk.training.config import load_run_config

from edge_sdk.errors import ConfigError, ModelError
from edge_sdk.runtime.model_meta import METADATA_KEY, ModelMeta

MIN_OPSET = 13


@dataclasses.dataclass
class ExportResult:
    path: Path
    max_abs_error: float
    meta: ModelMeta
    size_bytes: int


def load_trained_model(run_dir: Path):
    """(keras model with the latest checkpoint's weights, TrainConfig) of a run directory."""
    import tensorflow as tf
    from edge_sdk.training.config import latest_checkpoint
    from edge_sdk.training.models import build_model

    config = load_run_config(run_dir)
    checkpoint_path = latest_checkpoint(run_dir)
    if checkpoint_path is None:
        raise ModelError("{} has no checkpoint yet (checkpoints/ is empty or missing); let `edge-sdk train` "
                         "run at least one step".format(run_dir))
    model = build_model(config.model)
    tf.train.Checkpoint(model=model).restore(checkpoint_path).expect_partial()
    return model, config


def model_meta(config, model_name: str) -> ModelMeta:
    spec = config.spec()
    spec.batch = 1
    return ModelMeta(input_spec=spec, model=model_name, extra={
        "backbone": config.model.backbone, "stages": config.model.stages, "width": config.model.width,
        "trained_on": config.data})


def keras_to_onnx(model, height: int, width: int, opset: int = MIN_OPSET):
    """An ONNX ModelProto of the last stage of ``model`` behind an NCHW input named ``image``."""
    import tensorflow as tf
    import tf2onnx

    @tf.function(input_signature=[tf.TensorSpec([None, 3, height, width], tf.float32, name="image")])
    def nchw(image):
        outputs = model(tf.transpose(image, [0, 2, 3, 1]), training=False)
        return {"heatmaps": tf.transpose(outputs[-2], [0, 3, 1, 2]),
                "pafs": tf.transpose(outputs[-1], [0, 3, 1, 2])}

    onnx_model, _ = tf2onnx.convert.from_function(nchw, input_signature=nchw.input_signature, opset=opset)
    return onnx_model, nchw


def export_onnx(run_dir: Path, output: Path, opset: int = MIN_OPSET, check_batch: int = 2, atol: float = 1e-4,
                rtol: float = 1e-3, log: Callable[[str], None] = print) -> ExportResult:
    """Export ``run_dir``'s latest checkpoint to ``output`` after checking it against Keras (see module doc)."""
    import onnx
    import onnxruntime as ort

    if opset < MIN_OPSET:
        raise ConfigError("opset {} is too old; use >= {}".format(opset, MIN_OPSET))
    run_dir, output = Path(run_dir), Path(output)
    model, config = load_trained_model(run_dir)
    height, width = config.model.input_height, config.model.input_width
    log("converting {} ({}, {}x{}) with tf2onnx, opset {}".format(run_dir, config.model.backbone, width, height,
                                                                   opset))
    onnx_model, reference = keras_to_onnx(model, height, width, opset)
    meta = model_meta(config, output.stem)
    onnx.helper.set_model_props(onnx_model, {METADATA_KEY: meta.to_json()})
    onnx_model.producer_name = "edge-sdk"
    for value in list(onnx_model.graph.input) + list(onnx_model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"  # the batch axis: one readable name everywhere
    names = ([i.name for i in onnx_model.graph.input], sorted(o.name for o in onnx_model.graph.output))
    if names != (["image"], ["heatmaps", "pafs"]):
        raise ModelError("exported graph has inputs {} and outputs {}; expected ['image'] and "
                         "['heatmaps', 'pafs']".format(*names))

    data = onnx_model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    inputs = rng.normal(0.0, 1.0, (check_batch, 3, height, width)).astype(np.float32)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": inputs})))
    want = {k: v.numpy() for k, v in reference(inputs).items()}
    error, limit = 0.0, 0.0
    for name in ("heatmaps", "pafs"):
        if got[name].shape != want[name].shape:
            raise ModelError("ONNX output {} has shape {}, Keras gives {}".format(name, got[name].shape,
                                                                               want[name].shape))
        error = max(error, float(np.abs(got[name] - want[name]).max()))
        limit = max(limit, atol + rtol * float(np.abs(want[name]).max()))
    log("ONNX Runtime vs Keras on {} random inputs: max abs error {:.3g} (limit {:.3g})".format(
        check_batch, error, limit))
    if not np.isfinite(error) or error > limit:
        raise ModelError("the ONNX graph does not reproduce the Keras model (max abs error {:.3g} > {:.3g}); "
                         "not writing {}".format(error, limit, output))
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=output.name, suffix=".tmp", dir=str(output.parent))
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; an exported model is an ordinary file
    os.replace(tmp, output)
    log("wrote {} ({:.1f} MB)".format(output, len(data) / 1e6))
    return ExportResult(output, error, meta, len(data))
