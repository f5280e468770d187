"""Export: torch -> ONNX bundles (``onnx.py``), ONNX -> TensorRT engines (``tensorrt.py``)."""
