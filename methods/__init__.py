"""mcbench methods: one file per paper, registered under its catalog BibTeX key."""
from mcbench.methods.registry import REGISTRY, register

__all__ = ["REGISTRY", "register"]
