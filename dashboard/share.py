"""The Set up page's choices as URL query parameters, so a link reproduces a set-up.

Plain functions (no Streamlit): :func:`preset_values` turns a teaching preset into the training
form's widget values, :func:`parse_setup_query` checks every query parameter and returns the
widget values it sets plus one plain-words message per bad parameter (a bad link never crashes
the page), and :func:`setup_query` writes the widget values back as parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sau_core.attacks import ATTACKS
from sau_core.data import DIGITS_RESOLUTIONS, list_datasets
from sau_core.lab.presets import TEACHING_PRESETS
from sau_core.models import MODELS

# query parameter -> the Set up widget it fills
FIELDS = {
    "dataset": "train.dataset",
    "res": "train.resolution",
    "arch": "train.arch",
    "attack": "train.attack",
    "target": "train.target",
    "ratio": "train.ratio",
    "rule": "train.rule",
}
PRESET = "preset"  # the query parameter naming a teaching preset (sau_core.pipeline)
PRESET_KEY = "setup.preset"  # its widget
RULES = ("all2one", "all2all")
RATIO_RANGE = (0.01, 0.5)  # the poison ratio slider's bounds
MAX_TARGET = 999
MAX_LEN = 40  # longer values are refused unread


def preset_values(name: str) -> dict[str, Any]:
    """The training form's widget values of teaching preset ``name`` (KeyError if unknown)."""
    p = TEACHING_PRESETS[name].setup
    values = {
        "train.dataset": p.data.name,
        "train.arch": p.arch,
        "train.attack": p.attack.name,
        "train.target": int(p.attack.target),
        "train.ratio": float(p.attack.poison_ratio),
        "train.rule": p.attack.label_rule,
    }
    if "resolution" in p.data.kwargs:
        values["train.resolution"] = int(p.data.kwargs["resolution"])
    return values


def _choice(value: str, options, what: str) -> tuple[Any, str]:
    if value in options:
        return value, ""
    return None, f"{what} `{value}` is not one of {', '.join(map(str, options))}"


def _int(value: str, lo: int, hi: int, what: str) -> tuple[Any, str]:
    try:
        v = int(value)
    except ValueError:
        return None, f"{what} `{value}` is not a whole number"
    if not lo <= v <= hi:
        return None, f"{what} {v} is outside {lo} to {hi}"
    return v, ""


def _ratio(value: str) -> tuple[Any, str]:
    try:
        v = float(value)
    except ValueError:
        return None, f"poison ratio `{value}` is not a number"
    lo, hi = RATIO_RANGE
    if not math.isfinite(v) or not lo <= v <= hi:
        return None, f"poison ratio `{value}` is outside {lo} to {hi}"
    return round(v, 2), ""


def parse_setup_query(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Widget values (by widget key) from the URL's query parameters, and one message per bad
    parameter. A preset is applied first; the single fields override it. Parameters this page
    does not use are ignored."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    raw = {k: params[k] for k in (PRESET, *FIELDS) if k in params}
    for key, value in raw.items():
        if not isinstance(value, str) or len(value) > MAX_LEN:
            problems.append(f"`{key}`: the value is too long or not text")
    raw = {k: v for k, v in raw.items() if isinstance(v, str) and len(v) <= MAX_LEN}
    if PRESET in raw:
        name = raw[PRESET]
        if name in TEACHING_PRESETS:
            values[PRESET_KEY] = name
            values.update(preset_values(name))
        else:
            problems.append(f"preset `{name}` is not one of {', '.join(TEACHING_PRESETS)}")
    checks = {
        "dataset": lambda v: _choice(v, list_datasets(), "data set"),
        "res": lambda v: _choice(int(v) if v.isdigit() else v, DIGITS_RESOLUTIONS, "image size"),
        "arch": lambda v: _choice(v, list(MODELS), "model"),
        "attack": lambda v: _choice(v, list(ATTACKS), "attack"),
        "target": lambda v: _int(v, 0, MAX_TARGET, "target class"),
        "ratio": _ratio,
        "rule": lambda v: _choice(v, RULES, "label rule"),
    }
    for key, check in checks.items():
        if key in raw:
            value, problem = check(raw[key])
            if problem:
                problems.append(problem)
            else:
                values[FIELDS[key]] = value
    return values, problems


def setup_query(values: Mapping[str, Any], preset: str | None = None) -> dict[str, str]:
    """Query parameters for the widget values ``values`` (by widget key) and a preset name."""
    out = {PRESET: preset} if preset in TEACHING_PRESETS else {}
    for key, wkey in FIELDS.items():
        if wkey in values and values[wkey] is not None:
            v = values[wkey]
            out[key] = f"{v:g}" if isinstance(v, float) else str(v)
    return out
