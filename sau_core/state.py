"""Resume states: what an interrupted run needs to continue with the numbers an uninterrupted run
would give. Plain data (CPU tensors, numbers, round records), so the run directory
(:mod:`sau_core.serving.runs`) stores and reads them without importing training or any defence.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .events import DefenseRound, TrainEpoch

__all__ = ["DefenseState", "TrainState"]


@dataclass
class TrainState:
    """What :func:`train` needs to continue after ``epoch`` completed epochs with the numbers an
    uninterrupted run would give. Every tensor is a CPU copy."""

    epoch: int  # epochs completed
    model: dict[str, Tensor]  # model.state_dict()
    optimizer: dict  # the optimizer's state_dict() (its state and param groups)
    scheduler: dict | None  # the LR schedule's state_dict() (plain numbers), None without one
    generator: Tensor  # (N,) uint8: torch.Generator.get_state() (shuffling, crops)
    history: list[TrainEpoch]  # the TrainEpoch records of epochs 1..epoch
    elapsed: float  # seconds of work before the interruption
    config: dict  # TrainConfig.to_dict() of the run that made it (checked on resume)


@dataclass
class DefenseState:
    """What a defence needs to continue after ``round`` completed rounds with the numbers an
    uninterrupted run would give. Every tensor is a CPU copy; everything else a round uses is
    rebuilt from the config's seed."""

    round: int  # rounds completed, 0 <= round <= config.rounds
    h: dict[str, Tensor]  # the state_dict of what the defence trains (h, or h with its masks)
    optimizer: dict  # the optimiser's state_dict
    generator: Tensor  # (N,) uint8, torch.Generator.get_state()
    history: list[DefenseRound]  # the round records of rounds 1..round
    elapsed: float  # seconds of work before the interruption
    config: dict  # the config's to_dict() (checked on resume)
    defense: str = "sau"  # the registry name of the defence that made it
