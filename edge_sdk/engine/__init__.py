"""Engine stage: precision decisions from the target profile, the TensorRT builder (TensorRT 8.2 -> 10.x,
Python 3.6 syntax because the device runs it at first start) and the `edge-sdk build` pipeline.

Importing this package loads nothing heavy; the submodules import onnx / tensorrt where they need them.
"""
