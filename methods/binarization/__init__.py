"""binarization methods, one file per paper."""
