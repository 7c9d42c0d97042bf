"""Forms generated from the engine's config dataclasses (their field metadata holds help texts,
bounds and choices), so a new setting in ``sau_core`` shows up here without a line of UI code.

:func:`field_schema` is plain Python (tested without Streamlit); :func:`render_fields` draws one
widget per field; :func:`build_config` turns the values back into a validated config.
"""

from __future__ import annotations

import math
import typing
from dataclasses import MISSING, fields, is_dataclass
from typing import Any

import streamlit as st


def field_schema(cls: type, defaults: Any = None) -> list[dict]:
    """One dict per field of dataclass ``cls``: name, type, default, help and any min/max/choices.

    ``defaults``: an instance whose values replace the class defaults (a data set's defaults).
    """
    if not (isinstance(cls, type) and is_dataclass(cls)):
        raise TypeError(f"not a dataclass: {cls!r}")
    hints = typing.get_type_hints(cls)
    schema = []
    for f in fields(cls):
        default = getattr(defaults, f.name) if defaults is not None else f.default
        if default is MISSING:
            continue
        kind = hints[f.name]
        entry = {"name": f.name, "type": getattr(kind, "__name__", str(kind)), "default": default}
        entry.update(f.metadata)
        schema.append(entry)
    return schema


def label_of(name: str) -> str:
    """``pgd_lr`` -> ``pgd lr`` (the field name stays recognisable for the docs and the CLI)."""
    return name.replace("_", " ")


def float_step(default: float) -> float:
    """A sensible +/- step for a float input: a tenth of the default's order of magnitude."""
    if not default or not math.isfinite(default):
        return 0.01
    return 10.0 ** (math.floor(math.log10(abs(default))) - 1)


def help_of(entry: dict) -> str:
    text = entry.get("help", "")
    bounds = []
    if "min" in entry:
        bounds.append(f"{'>' if entry.get('exclusive_min') else '≥'} {entry['min']:g}")
    if "max" in entry:
        bounds.append(f"≤ {entry['max']:g}")
    if bounds:
        text += f" ({', '.join(bounds)})"
    return text + f" Default: {entry['default']!r}."


def field_problem(entry: dict, value: Any) -> str:
    """What is wrong with ``value`` for the form field ``entry`` ('' when nothing is): outside
    ``min``/``max`` (``exclusive_min``), not one of ``choices``, or not finite."""
    if value is None:
        return "enter a value"
    if "choices" in entry and value not in entry["choices"]:
        return f"choose one of {', '.join(map(str, entry['choices']))}"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    lo, hi = entry.get("min"), entry.get("max")
    if lo is not None and (value <= lo if entry.get("exclusive_min") else value < lo):
        return f"must be {'above' if entry.get('exclusive_min') else 'at least'} {lo:g}"
    if hi is not None and value > hi:
        return f"must be at most {hi:g}"
    return ""


def render_fields(
    schema: list[dict],
    key: str,
    *,
    skip: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
    disabled: bool = False,
    columns: int = 2,
    problems: list[str] | None = None,
) -> dict:
    """Draw one input per schema entry (keys ``{key}.{name}``) and return ``{name: value}``.

    Widgets are seeded from the schema's defaults the first time; later the user's values stay
    (clear the keys with :func:`dashboard.state.reset_form` to go back to the defaults). Number
    inputs take any number: a value out of bounds gets a message under its field (Streamlit's
    own bounds would turn the field red and silently ignore the value) and one line in
    ``problems``, for the page to repeat at its button.
    """
    entries = [e for e in schema if e["name"] not in skip and (only is None or e["name"] in only)]
    values: dict[str, Any] = {}
    cols = st.columns(columns) if entries else []
    for i, e in enumerate(entries):
        wkey = f"{key}.{e['name']}"
        if wkey not in st.session_state:
            st.session_state[wkey] = e["default"]
        with cols[i % columns]:
            values[e["name"]] = _widget(e, wkey, disabled)
            problem = field_problem(e, values[e["name"]])
            if problem:
                st.error(f"{label_of(e['name'])}: {problem}.", icon=":material/error:")
                if problems is not None:
                    problems.append(f"{label_of(e['name'])} {problem}")
    return values


def _widget(e: dict, wkey: str, disabled: bool) -> Any:
    label, text, kind = label_of(e["name"]), help_of(e), e["type"]
    if "choices" in e:
        return st.selectbox(label, list(e["choices"]), key=wkey, help=text, disabled=disabled)
    if kind == "bool":
        return st.checkbox(label, key=wkey, help=text, disabled=disabled)
    if kind == "int":
        return st.number_input(label, step=1, key=wkey, help=text, disabled=disabled)
    if kind == "float":
        return st.number_input(label, step=float_step(float(e["default"])), format="%g",
                               key=wkey, help=text, disabled=disabled)  # fmt: skip
    return st.text_input(label, key=wkey, help=text, disabled=disabled)


def build_config(cls: type, values: dict, base: Any = None) -> Any:
    """A TrainConfig or SAUConfig: ``cls`` from ``base``'s values (or the defaults) overridden by ``values``, validated.

    Raises ValueError (the engine's message) for a value out of bounds or of the wrong kind.
    """
    merged = {f.name: getattr(base, f.name) for f in fields(cls)} if base is not None else {}
    merged.update(values)
    try:
        config = cls(**merged)
    except TypeError as err:
        raise ValueError(str(err)) from None
    return config.validate()
