"""What every source format hands to the importer: an ONNX graph in the source's own layout, and a way to
run the source framework on the same input (the numerical check's reference)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx


@dataclass
class SourceModel:
    """A converted source model.

    ``onnx_model`` takes ``input_name`` (float32, batch 1, ``input_layout``, static height and width) and
    gives ``output_names`` in the source's channel order. ``reference(x)`` runs the *source framework* on
    ``x`` (same layout as the ONNX input) and returns the same outputs as numpy arrays.
    """

    format: str
    framework: str
    onnx_model: onnx.ModelProto
    input_name: str
    input_layout: str
    output_names: list[str]
    reference: Callable[[np.ndarray], list[np.ndarray]]
    height: int
    width: int
    close: Callable[[], None] = lambda: None


@contextlib.contextmanager
def tf2onnx_names() -> Iterator[None]:
    """tf2onnx numbers the nodes it adds with a process-wide counter; start it at the same value for every
    conversion (one step towards the same bytes for the same file, see importer.canonical_names). TensorFlow's
    deprecation warnings about the TF1 APIs tf2onnx calls are silenced meanwhile: they are not the user's."""
    import logging

    from tf2onnx import utils

    saved = utils.INTERNAL_NAME
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    utils.INTERNAL_NAME = 1
    tf_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        utils.INTERNAL_NAME = max(saved, utils.INTERNAL_NAME)
        tf_logger.setLevel(level)


def require_tensorflow(what: str):
    """The tensorflow module, or a ConfigError that says which extra brings it."""
    try:
        import tensorflow as tf  # noqa: F401 - imported for the caller
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        from edge_sdk.errors import ConfigError

        raise ConfigError("reading {} needs TensorFlow and tf2onnx ({}); run: pip install -e '.[host,train]'".format(
            what, exc)) from None
    return tf


def first_line(exc: BaseException) -> str:
    """An exception as one short line (TensorFlow and protobuf errors run over many)."""
    text = str(exc).strip().splitlines()
    return "{}: {}".format(type(exc).__name__, text[0][:300] if text else "")
