"""INT8 calibration: representative frames -> activation ranges -> Q/DQ ONNX, TensorRT cache, report."""
