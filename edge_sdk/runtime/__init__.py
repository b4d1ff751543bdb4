"""The lean on-device runtime.

Rules (see DESIGN.md): Python 3.6 syntax (checked by vermin), imports only numpy, OpenCV, paho-mqtt,
TensorRT and cuda-python/pycuda -- never TensorFlow, onnx, onnx-graphsurgeon or polygraphy; onnxruntime
only lazily, as an optional backend. ``tests/test_runtime_rules.py`` enforces both.
"""
