"""Training OpenPose-style models in TensorFlow and exporting them to ONNX."""
