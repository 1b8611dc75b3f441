"""Family flows as plain functions a paper can call (and compose) in its own ``apply``.

Each family base class keeps a one-line default ``apply`` that calls its flow; a paper that
spans families (quantized distillation, prune-then-quantize) calls several flows instead of
inheriting from two bases. Flows only use what a ``MethodContext`` supplies.
"""
