"""Errors the CLI turns into one clear line and a non-zero exit (no traceback)."""


class McbenchError(Exception):
    """Base for user-facing errors."""


class CheckpointError(McbenchError):
    """A cached checkpoint is corrupted, does not match the architecture, or belongs to another run."""


class EncodedModelMismatch(McbenchError):
    """A method's encoded file does not decode to a model with the scored accuracy."""
