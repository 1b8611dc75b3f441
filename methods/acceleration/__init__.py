"""Acceleration methods: a faster algorithm or operator for the same computation; one file per paper."""
