"""Runtime: numpy + onnxruntime (+ TensorRT when present). Never torch or librosa."""
