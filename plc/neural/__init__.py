"""The neural concealer's runtime pieces: features, mu-law coding, ONNX inference."""
