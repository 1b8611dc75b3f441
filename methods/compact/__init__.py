"""compact methods, one file per paper."""
