"""distillation methods, one file per paper."""
