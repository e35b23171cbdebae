"""On-device models: the manifest, one runner interface (LiteRT, ONNX Runtime),
verification at load, and hot swap with a self-test and rollback."""
