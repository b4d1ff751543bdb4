"""The lean on-device runtime.

Rules (docs/architecture.md, the device/host boundary): Python 3.6 syntax (checked by vermin), imports only
the standard library, numpy, OpenCV, paho-mqtt, TensorRT, cuda-python/pycuda and other runtime-wheel modules;
onnxruntime only lazily, as an optional backend. ``tests/test_runtime_rules.py`` enforces the allow-list and
runs the import-linter contracts. Installed on devices as the ``edge-sdk-runtime`` wheel.
"""
