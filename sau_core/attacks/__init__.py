"""Backdoor attacks: triggers, label rules and the poisoning of data sets.

An attack is two separate things:

- a :class:`Trigger`, a batched, device-agnostic function on images in pixel space
  (``(B, C, H, W)`` float in [0, 1] -> a new tensor of the same shape, dtype and device), built
  from a frozen config dataclass and a :class:`~sau_core.data.DatasetInfo`;
- a label rule (:func:`target_labels`): ``all2one`` sends every poisoned image to ``target``,
  ``all2all`` sends class ``y`` to ``(y + 1) mod K``.

:class:`AttackSpec` holds everything that defines one poisoning (attack name, config overrides,
target, rule, ratio, seed) and is JSON-serialisable. :func:`poison_train` makes the poisoned
training set and :func:`backdoor_test` the triggered test set for the attack success rate (ASR)
and the robust accuracy (RA).

Registered attacks (:data:`ATTACKS` in :mod:`.registry`; adding one is one module and one entry):

- ``badnets``: a small pixel patch stamped on the image (Gu et al., 2017, arXiv 1708.06733).
- ``blended``: a key image alpha-blended into the image (Chen et al., 2017, arXiv 1712.05526).
- ``sig``: a horizontal sinusoid added to target-class images, labels kept, i.e. clean-label
  (Barni et al., ICIP 2019, arXiv 1902.11237).
- ``wanet``: a fixed smooth warping field (Nguyen & Tran, ICLR 2021, arXiv 2102.10369), with
  "noise mode" cross samples that teach the model to ignore other warps.
- ``lc``: label-consistent, clean-label: target-class images made hard to learn by PGD against a
  clean surrogate, plus checkerboard patches in the corners (Turner, Tsipras & Madry, 2019,
  arXiv 1912.02771).
- ``lf``: a universal adversarial perturbation kept to low spatial frequencies (Zeng et al.,
  ICCV 2021, arXiv 2104.03413), computed against a clean surrogate when the backdoor is planted
  (:func:`prepare_spec`) and carried in the spec.
- ``ssba``: sample-specific invisible: an encoder hides one code in every poisoned image as a
  small residual that differs from image to image (Li et al., ICCV 2021, arXiv 2012.03816);
  SAU Lab ships its own small encoder and decoder (``assets/ssba/``), not the paper's StegaStamp.
- ``inputaware``: a generator trained jointly with a classifier makes a different trigger for
  every image, and another image's trigger does not fire (Nguyen & Tran, NeurIPS 2020,
  arXiv 2010.08138); trained when the backdoor is planted and carried in the spec.
- ``custom``: your own trigger, an image and a mask (PNG files or ``data:`` URIs), stamped or
  blended where the mask says: ``(1 - alpha m) x + alpha m image``.

Each config field carries ``metadata`` for forms: ``help`` (text), and where they apply ``min``,
``max`` (inclusive), ``exclusive_min`` (``min`` itself not allowed) and ``choices``. Bounds that
depend on the image size (BadNets' ``size``, ...) come from the config's ``limits(info)``;
:func:`param_schema` resolves both for one data set.
"""

from .badnets import BADNETS_LOCATIONS, BADNETS_PATTERNS, BadNetsConfig, BadNetsTrigger
from .base import (
    DATA_URI,
    DEFAULT_BLENDED_TRIGGER,
    MAX_TRIGGER_FILE,
    MAX_TRIGGER_SIDE,
    MAX_TRIGGER_URI,
    TENSORS_URI,
    Trigger,
    batched,
    read_tensors_uri,
    tensors_uri,
    trigger_uri,
)
from .blended import BlendedConfig, BlendedTrigger
from .custom import CustomConfig, CustomTrigger
from .inputaware import (
    GENERATOR_URI,
    WIDTH,
    InputAwareConfig,
    InputAwareTrigger,
    TriggerGenerator,
    generator_uri,
    read_generator,
    stamp,
    train_generator,
)
from .lc import LC_CORNERS, LCConfig, LCTrigger
from .lf import (
    MAX_PATTERN_SIDE,
    PATTERN_URI,
    LFConfig,
    LFTrigger,
    fit_pattern,
    low_pass,
    pattern_uri,
    prepare,
    read_pattern,
    universal_pattern,
)
from .poison import (
    LABEL_RULES,
    AttackSpec,
    BackdoorTest,
    PoisonedTrain,
    backdoor_test,
    poison_indices,
    poison_train,
    prepare_spec,
    target_labels,
)
from .registry import (
    ATTACKS,
    AttackEntry,
    create_trigger,
    example_params,
    list_attacks,
    make_config,
    param_schema,
    path_params,
)
from .sig import SIGConfig, SIGTrigger
from .ssba import SSBAConfig, SSBATrigger, StegaDecoder, StegaEncoder, code_bits, load_stega
from .surrogate import SURROGATE_ARCH, clean_surrogate
from .wanet import WaNetConfig, WaNetTrigger

__all__ = [
    "ATTACKS",
    "AttackEntry",
    "AttackSpec",
    "BADNETS_LOCATIONS",
    "BADNETS_PATTERNS",
    "BackdoorTest",
    "BadNetsConfig",
    "BadNetsTrigger",
    "BlendedConfig",
    "BlendedTrigger",
    "CustomConfig",
    "CustomTrigger",
    "DATA_URI",
    "DEFAULT_BLENDED_TRIGGER",
    "GENERATOR_URI",
    "InputAwareConfig",
    "InputAwareTrigger",
    "LABEL_RULES",
    "LCConfig",
    "LCTrigger",
    "LC_CORNERS",
    "LFConfig",
    "LFTrigger",
    "MAX_PATTERN_SIDE",
    "MAX_TRIGGER_FILE",
    "MAX_TRIGGER_SIDE",
    "MAX_TRIGGER_URI",
    "PATTERN_URI",
    "PoisonedTrain",
    "SIGConfig",
    "SIGTrigger",
    "SSBAConfig",
    "SSBATrigger",
    "SURROGATE_ARCH",
    "StegaDecoder",
    "StegaEncoder",
    "TENSORS_URI",
    "Trigger",
    "TriggerGenerator",
    "WIDTH",
    "WaNetConfig",
    "WaNetTrigger",
    "backdoor_test",
    "batched",
    "clean_surrogate",
    "code_bits",
    "create_trigger",
    "example_params",
    "fit_pattern",
    "generator_uri",
    "list_attacks",
    "load_stega",
    "low_pass",
    "make_config",
    "param_schema",
    "path_params",
    "pattern_uri",
    "poison_indices",
    "poison_train",
    "prepare",
    "prepare_spec",
    "read_generator",
    "read_pattern",
    "read_tensors_uri",
    "stamp",
    "target_labels",
    "tensors_uri",
    "train_generator",
    "trigger_uri",
    "universal_pattern",
]
