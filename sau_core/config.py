"""One config regime: every setting of SAU Lab (training, each defence, each attack, each
explanation method) is a frozen dataclass deriving from :class:`ParamConfig`, whose fields are
:func:`param` fields (a default, a help line, bounds and choices in the metadata). A config is
coerced and checked on construction, reads and writes itself as a dict (:meth:`ParamConfig.to_dict`,
:meth:`ParamConfig.from_dict`), and gives the dashboard its form (:func:`config_schema`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import field, fields
from typing import Any, ClassVar

import numpy as np


def _type_name(f) -> str:
    """The field's annotation as text (``from __future__ import annotations`` keeps it a str)."""
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


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


# -------------------------------------------------------------- registry parameter configs
def param(default: Any, help: str, **bounds: Any) -> Any:
    """A config field with form metadata: ``help`` plus ``min``/``max``/``exclusive_min``/``choices``,
    and ``path=True`` for a parameter that names a file (forms never offer it as text), ``hidden=True``
    for one recorded when a backdoor is planted (forms leave it out)."""
    return field(default=default, metadata={"help": help, **bounds})


def coerce(what: str, value: Any, kind: type) -> Any:
    """``value`` as a ``kind`` (bool, int, float or str): ints accept integral floats, floats
    accept ints, bools are never numbers; ValueError naming ``what`` otherwise."""
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - configs only use the four kinds above
        return value
    wanted = {bool: "true or false", int: "an integer", float: "a number", str: "text"}[kind]
    raise ValueError(f"{what} must be {wanted}, got {value!r}")


def check_bounds(what: str, value: Any, bounds: Mapping[str, Any]) -> None:
    """ValueError naming ``what`` when ``value`` breaks ``choices``/``min``/``max`` or is not
    finite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if "choices" in bounds and value not in bounds["choices"]:
        raise ValueError(f"{what} must be one of {list(bounds['choices'])}, got {value!r}")
    lo, hi = bounds.get("min"), bounds.get("max")
    if lo is not None:
        if bounds.get("exclusive_min") and not value > lo:
            raise ValueError(f"{what} must be > {lo}, got {value!r}")
        if not value >= lo:  # also catches NaN
            raise ValueError(f"{what} must be >= {lo}, got {value!r}")
    if hi is not None and not value <= hi:
        raise ValueError(f"{what} must be <= {hi}, got {value!r}")


class ParamConfig:
    """Base of a registry entry's parameters (a frozen dataclass of :func:`param` fields).

    On construction each field is coerced to its annotated kind and checked against its static
    bounds; :meth:`validate` adds the bounds that depend on the data's geometry (:meth:`limits`)
    and the rules of :meth:`check`. Subclasses name themselves in messages through ``label``.
    """

    label: ClassVar[str] = ""  # how messages name the config ("SAU", "train", "badnets")
    kind: ClassVar[str] = "config"  # what messages call its owner ("defence", "attack", ...)

    def _what(self, name: str) -> str:
        return f"{self.label} parameter {name!r}"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = coerce(self._what(f.name), getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
            check_bounds(self._what(f.name), value, f.metadata)

    @classmethod
    def limits(cls, geometry: Any) -> dict[str, dict[str, Any]]:
        """Bounds that depend on the data's geometry, by field name (they override metadata)."""
        return {}

    def check(self, geometry: Any) -> None:
        """Rules beyond per-field bounds; raise ValueError. Nothing by default."""

    def validate(self, geometry: Any = None) -> ParamConfig:
        """Check the config against the data's geometry (when given); ValueError with a clear
        message. Returns the config. (The per-field bounds were checked on construction.)"""
        if geometry is not None:
            limits = self.limits(geometry)
            for f in fields(self):
                if f.name in limits:
                    check_bounds(self._what(f.name), getattr(self, f.name),
                                 {**f.metadata, **limits[f.name]})  # fmt: skip
            self.check(geometry)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ParamConfig:
        """The config from a dict of settings (None: the defaults); ValueError names an unknown
        setting, one of the wrong kind or out of its bounds."""
        return config_from(cls.kind, cls.label or cls.__name__, cls, d)


def config_schema(cls: type[ParamConfig], geometry: Any = None) -> list[dict[str, Any]]:
    """Form fields of a :class:`ParamConfig`: dicts with ``name``, ``type`` ("int", "float",
    "str", "bool"), ``default``, ``help`` and, where they apply, ``min``, ``max``,
    ``exclusive_min`` and ``choices``; with ``geometry`` the size-dependent bounds resolved."""
    hints = typing.get_type_hints(cls)
    limits = cls.limits(geometry) if geometry is not None else {}
    schema = []
    for f in fields(cls):
        entry = {"name": f.name, "type": hints[f.name].__name__, "default": f.default}
        entry.update(f.metadata)
        entry.update(limits.get(f.name, {}))
        schema.append(entry)
    return schema
