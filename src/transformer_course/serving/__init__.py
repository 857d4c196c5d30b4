"""The course's machinery for chapter 17: deployment (int8, ONNX) and service (HTTP with
request batching)."""
