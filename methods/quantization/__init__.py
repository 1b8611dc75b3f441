"""quantization methods, one file per paper."""
