"""The registered attacks by name (:data:`ATTACKS`): configs, triggers, form schemas."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import config_from, config_schema
from ..data import DatasetInfo, ImageData
from .badnets import BadNetsConfig, BadNetsTrigger
from .base import Trigger
from .blended import BlendedConfig, BlendedTrigger
from .custom import CustomConfig, CustomTrigger, _example_custom
from .inputaware import InputAwareConfig, InputAwareTrigger, TriggerGenerator, generator_uri
from .inputaware import prepare as ia_prepare
from .lc import LCConfig, LCTrigger
from .lf import LFConfig, LFTrigger, low_pass, pattern_uri
from .lf import prepare as lf_prepare
from .sig import SIGConfig, SIGTrigger
from .ssba import SSBAConfig, SSBATrigger
from .ssba import pins as ssba_pins
from .wanet import WaNetConfig, WaNetTrigger


# ----------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class AttackEntry:
    """A registered attack: its config class, a builder ``(config, info) -> Trigger``, a help line."""

    config: type
    build: Callable[[Any, DatasetInfo], Trigger]
    help: str
    clean_label: bool = False
    # parameters that make a working example where the defaults cannot (the custom trigger
    # needs an image): for tests, previews and docs
    example: Callable[[], dict] | None = None
    # (config, clean training set, target or None for all2all, seed) -> the value of parameter
    # ``computes``: what the trigger needs from the data, made once when a backdoor is planted
    # (LF's pattern, Input-aware's generator); prepare_spec puts it in the spec
    prepare: Callable[[Any, ImageData, int | None, int], str] | None = None
    computes: str = ""  # the parameter prepare fills (a spec holding it is ready)
    # () -> parameters a planted spec records of files its trigger reads outside the spec (SSBA's
    # encoder's SHA-256), so another file cannot silently stand in later; set when empty
    pins: Callable[[], dict] | None = None


ATTACKS: dict[str, AttackEntry] = {
    "badnets": AttackEntry(
        BadNetsConfig,
        BadNetsTrigger,
        "BadNets (Gu et al., 2017): a small white square in a corner.",
    ),
    "blended": AttackEntry(
        BlendedConfig,
        BlendedTrigger,
        "Blended (Chen et al., 2017): a key image mixed into the whole picture.",
    ),
    "sig": AttackEntry(
        SIGConfig,
        SIGTrigger,
        "SIG (Barni et al., 2019): a faint sinusoid on target-class images, labels kept.",
        clean_label=True,
    ),
    "wanet": AttackEntry(
        WaNetConfig,
        WaNetTrigger,
        "WaNet (Nguyen & Tran, 2021): an invisible smooth warp of the image.",
    ),
    "lc": AttackEntry(
        LCConfig,
        LCTrigger,
        "LC (Turner et al., 2019): target-class images made hard to learn, plus corner "
        "patches; labels kept.",
        clean_label=True,
    ),
    "lf": AttackEntry(
        LFConfig,
        LFTrigger,
        "LF (Zeng et al., 2021): a universal perturbation with only low frequencies.",
        example=lambda: _example_lf(),
        prepare=lf_prepare,
        computes="pattern",
    ),
    "ssba": AttackEntry(
        SSBAConfig,
        SSBATrigger,
        "SSBA (Li et al., 2021): an encoder hides a code in every image as a faint residual, "
        "different on each image.",
        pins=ssba_pins,
    ),
    "inputaware": AttackEntry(
        InputAwareConfig,
        InputAwareTrigger,
        "Input-aware (Nguyen & Tran, 2020): a generator makes a different trigger for every "
        "image; another image's trigger does not fire.",
        example=lambda: _example_inputaware(),
        prepare=ia_prepare,
        computes="generator",
    ),
    "custom": AttackEntry(
        CustomConfig,
        CustomTrigger,
        "Your own trigger: an image and a mask (PNG files) stamped or blended in.",
        example=lambda: _example_custom(),
    ),
}


def _example_lf() -> dict:
    """A smooth seeded pattern (8x8 noise, low-passed), for tests and previews before any model
    exists; a planted LF backdoor computes its own against a clean model."""
    import torch

    noise = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(0))
    return {"pattern": pattern_uri(low_pass(noise, 0.5))}


def _example_inputaware() -> dict:
    """An untrained, seeded generator (its triggers differ per image but mean nothing), for tests
    and previews before any model exists; a planted backdoor trains its own."""
    import torch

    torch.manual_seed(0)
    gen = TriggerGenerator()
    with torch.no_grad():
        gen.mask.bias.fill_(-3.0)  # a small mask, as a trained one has, not half the image
    return {"generator": generator_uri(gen)}


def example_params(name: str) -> dict:
    """Parameters that build a working trigger of attack ``name``: its example (the custom
    trigger's needs an image) or {} for the defaults."""
    entry = _entry(name)
    return entry.example() if entry.example is not None else {}


def list_attacks() -> list[str]:
    return sorted(ATTACKS)


def _entry(name: str) -> AttackEntry:
    try:
        return ATTACKS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown attack {name!r}; choose from {', '.join(list_attacks())}"
        ) from None


def make_config(name: str, params: Mapping[str, Any] | Any | None = None) -> Any:
    """The config of attack ``name`` with ``params`` (a dict of overrides, a config or None).

    Checks parameter names, types and the size-independent bounds; ValueError otherwise.
    """
    return config_from("attack", name, _entry(name).config, params)


def create_trigger(
    name: str, info: DatasetInfo, params: Mapping[str, Any] | Any | None = None
) -> Trigger:
    """Build the trigger of attack ``name`` for data set ``info``.

    ``params``: a dict of config overrides (JSON-like), a config instance, or None for the
    defaults. Unknown attack or parameter names, wrong types and out-of-range values (also those
    that depend on the image size) raise ValueError.
    """
    config = make_config(name, params)
    config.validate(info)
    return _entry(name).build(config, info)


def path_params(name: str) -> tuple[str, ...]:
    """The parameters of attack ``name`` that name a file (``param(..., path=True)``): a web form
    never offers them as text, and an upload never reads a path given in them."""
    return tuple(f.name for f in dataclasses.fields(_entry(name).config) if f.metadata.get("path"))


def param_schema(name: str, info: DatasetInfo | None = None) -> list[dict[str, Any]]:
    """Form fields of attack ``name``: dicts with ``name``, ``type`` ("int", "float", "str",
    "bool"), ``default``, ``help`` and, where they apply, ``min``, ``max``, ``exclusive_min`` and
    ``choices``; with ``info`` the size-dependent bounds are resolved too."""
    return config_schema(_entry(name).config, info)
