"""Inference backends behind one small interface.

A backend is loaded from a model (ONNX file) or a bundle, exposes the input it wants and the outputs it
gives, and runs a batch. The pipeline asks the backend for its input buffers (``new_input_buffer``) so a
backend that owns pinned, GPU-mapped memory (TensorRT on Jetson) gets frames written straight into it.

Implementations: ``onnxruntime_backend.OnnxRuntimeBackend`` (CPU, any host) and
``tensorrt_backend.TensorRTBackend`` (Jetson / NVIDIA GPU). ``load_backend`` picks one.
"""

import numpy as np


class Backend(object):
    """Interface of every inference backend (subclass and implement ``infer``)."""

    name = "abstract"

    def __init__(self, meta):
        #: edge_sdk.runtime.model_meta.ModelMeta: input spec, output names, stride
        self.meta = meta

    @property
    def input_spec(self):
        return self.meta.input

    @property
    def output_names(self):
        return list(self.meta.outputs.values())

    def new_input_buffer(self):
        """A writable array of the input's shape and dtype that ``infer`` accepts without a copy."""
        spec = self.meta.input
        return np.empty(spec.shape, dtype=spec.dtype)

    def infer(self, batch):
        """Run one batch (array of ``input_spec.shape``); returns {output name: array}."""
        raise NotImplementedError

    def describe(self):
        """One line for logs: backend, device, precision."""
        return self.name

    def close(self):
        """Release sessions, engines and device memory."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
