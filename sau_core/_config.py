"""Shared checks for the frozen config dataclasses (bounds and choices live in field metadata)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def _type_name(f) -> str:
    """The field's annotation as text (``from __future__ import annotations`` keeps it a str)."""
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def check_fields(config, label: str) -> None:
    """Raise ValueError for a field outside its metadata's ``choices``, ``min`` or ``max``.

    Numeric fields (annotated ``int`` or ``float``) must hold a number of that kind (a bool is
    not one; an ``int`` is accepted where a ``float`` is asked), a float must be finite (NaN
    passes every ``<``/``>`` comparison unnoticed, and inf would reach the maths as it is), and a
    ``bool`` field must hold a bool.
    """
    for f in fields(config):
        value, meta, kind = getattr(config, f.name), f.metadata, _type_name(f)
        if kind in ("int", "float"):
            allowed = int if kind == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, allowed):
                raise ValueError(
                    f"{label} {f.name} must be {'an integer' if kind == 'int' else 'a number'}, "
                    f"got {value!r}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{label} {f.name} must be a finite number, got {value!r}")
        elif kind == "bool" and not isinstance(value, bool):
            raise ValueError(f"{label} {f.name} must be true or false, got {value!r}")
        if "choices" in meta and value not in meta["choices"]:
            raise ValueError(f"{label} {f.name} must be one of {meta['choices']}, got {value!r}")
        if "min" in meta and value < meta["min"]:
            raise ValueError(f"{label} {f.name} must be >= {meta['min']}, got {value}")
        if "max" in meta and value > meta["max"]:
            raise ValueError(f"{label} {f.name} must be <= {meta['max']}, got {value}")


def config_from(kind: str, name: str, cls: type, params: Mapping[str, Any] | Any | None) -> Any:
    """``cls`` (the config dataclass of registry entry ``name``, a ``kind`` such as "attack")
    from ``params``: a dict of overrides, an instance of ``cls``, or None for the defaults.

    Checks the parameter names here and leaves types and bounds to ``cls``; ValueError otherwise.
    """
    if params is None:
        return cls()
    if isinstance(params, cls):
        return params
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        raise ValueError(f"{kind} {name!r} takes a {cls.__name__}, got a {type(params).__name__}")
    if not isinstance(params, Mapping):
        raise ValueError(f"{kind} parameters must be a dict, got {type(params).__name__}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(str(k) for k in params if k not in known)
    if unknown:
        takes = f"it takes {', '.join(known)}" if known else "it takes none"
        raise ValueError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for {kind} {name!r}; {takes}"
        )
    return cls(**params)
