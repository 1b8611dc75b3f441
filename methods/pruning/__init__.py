"""pruning methods, one file per paper."""
