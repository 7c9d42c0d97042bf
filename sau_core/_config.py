"""Shared checks for the frozen config dataclasses (bounds and choices live in field metadata)."""

from __future__ import annotations

from dataclasses import fields


def check_fields(config, label: str) -> None:
    """Raise ValueError for a field outside its metadata's ``choices``, ``min`` or ``max``."""
    for f in fields(config):
        value, meta = getattr(config, f.name), f.metadata
        if "choices" in meta and value not in meta["choices"]:
            raise ValueError(f"{label} {f.name} must be one of {meta['choices']}, got {value!r}")
        if "min" in meta and value < meta["min"]:
            raise ValueError(f"{label} {f.name} must be >= {meta['min']}, got {value}")
        if "max" in meta and value > meta["max"]:
            raise ValueError(f"{label} {f.name} must be <= {meta['max']}, got {value}")
