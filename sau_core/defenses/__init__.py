"""Defences against backdoors, one module each behind one interface (:mod:`.base`).

``DEFENSES`` maps a registry name to its :class:`~.base.Defense` entry; adding a defence is one
module with a ``DEFENSE`` entry and one name in the tuple below. Every entry runs as
``entry.run(model, clean, config, *, test, backdoor, device, callback, stop, resume, on_state)``
and returns a :class:`~.base.DefenseResult`.
"""

from __future__ import annotations

from . import anp, fp, ft, ibau, nad, sau
from .base import Defense, DefenseResult, DefenseState, Paper

__all__ = [
    "DEFENSES",
    "Defense",
    "DefenseResult",
    "DefenseState",
    "Paper",
    "get_defense",
    "list_defenses",
]

# SAU first: the dashboard's default and the project's subject
DEFENSES: dict[str, Defense] = {m.DEFENSE.name: m.DEFENSE for m in (sau, ft, fp, nad, anp, ibau)}


def list_defenses() -> list[str]:
    return list(DEFENSES)


def get_defense(name: str) -> Defense:
    """The registry entry ``name``; ValueError naming the choices otherwise."""
    try:
        return DEFENSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown defence {name!r}; choose from {', '.join(DEFENSES)}") from None
