"""NAD: Neural Attention Distillation (Li, Lyu, Koren, Lyu, Li, Ma, ICLR 2021,
https://arxiv.org/abs/2101.05930).

A teacher is the backdoored model fine-tuned on the clean set for a few epochs; the student (the
backdoored model again) is then trained on the clean set with cross entropy plus, on chosen
layers, the distance between its attention maps and the teacher's. The attention map of a
feature map F (B, C, H, W) is the channel mean of |F|^p, flattened and L2-normalised per image;
the distance is the mean squared difference of the two normalised maps, the scale for which the
paper's weights (beta: 500, 1000, 1000 on ResNet's last three stages, BackdoorBench's settings)
are given.

Rounds 1..``teacher_rounds`` train the teacher (the live evaluation shows the teacher), the rest
train the student; the two are one module, so an interrupted run resumes in either phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import param
from ..train import augment
from .base import Defense, DefenseResult, Paper, RoundLoop, RunContext, defense_run, trainable_copy
from .ft import FTConfig, augment_mode, lr_schedule, sgd

__all__ = ["DEFENSE", "NADConfig", "attention_layers", "attention_map", "distill"]


@dataclass(frozen=True)
class NADConfig(FTConfig):
    """NAD's settings (the paper's and BackdoorBench's): 10 teacher epochs, then 20 of the
    student's."""

    label = "NAD"

    rounds: int = param(30, "epochs in all: the teacher's, then the student's", min=2, max=10000)
    teacher_rounds: int = param(10, "epochs of fine-tuning that make the teacher", min=1,
                                max=10000)  # fmt: skip
    weight_decay: float = param(1e-4, "L2 weight decay", min=0.0, max=1.0)
    beta_1: float = param(500.0, "weight of the attention loss on the third-last layer", min=0.0,
                          max=1e6)  # fmt: skip
    beta_2: float = param(1000.0, "weight of the attention loss on the second-last layer",
                          min=0.0, max=1e6)  # fmt: skip
    beta_3: float = param(1000.0, "weight of the attention loss on the last layer", min=0.0,
                          max=1e6)  # fmt: skip
    p: float = param(2.0, "power of the attention map (the channel mean of |F|^p)", min=0.5,
                     max=8.0)  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher_rounds >= self.rounds:
            raise ValueError(
                f"NAD parameter 'teacher_rounds' ({self.teacher_rounds}) must be smaller than "
                f"'rounds' ({self.rounds}): the student needs rounds of its own"
            )


def attention_layers(model: nn.Module, x: Tensor, n: int = 3) -> list[str]:
    """The dotted names of up to ``n`` layers whose outputs NAD distils, deepest last: a ResNet's
    last stages (``layer2..layer4``), else the last ``n`` ReLU modules with feature-map
    outputs (B, C, H, W) on the images ``x``, else the last ``n`` convolutions. ValueError when
    the model has no convolution."""
    names = dict(model.named_modules())
    for prefix in ("net.", ""):
        stages = [f"{prefix}layer{i}" for i in (2, 3, 4)]
        if all(s in names for s in stages):
            return stages[-n:]
    convs = [k for k, m in names.items() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(
            "NAD distils the attention maps of convolutional layers, and this model has none; "
            "choose another defence (SAU, FT and i-BAU work on any model)"
        )
    maps: list[str] = []
    handles = [m.register_forward_hook(lambda mod, i, o, k=k: maps.append(k) if o.dim() == 4
                                       else None)
               for k, m in names.items() if isinstance(m, nn.ReLU)]  # fmt: skip
    try:
        with torch.no_grad():
            model.eval()(x[:1])
    finally:
        for h in handles:
            h.remove()
    picked = list(dict.fromkeys(maps)) if len(set(maps)) >= n else convs
    return picked[-n:]


def attention_map(features: Tensor, p: float) -> Tensor:
    """(B, H*W): the channel mean of |F|^p of (B, C, H, W) features, L2-normalised per image."""
    return F.normalize(features.abs().pow(p).mean(1).flatten(1), dim=1)


def attention_loss(student: Tensor, teacher: Tensor, p: float) -> Tensor:
    return (attention_map(student, p) - attention_map(teacher, p)).pow(2).mean()


class _Pair(nn.Module):
    """The student and the teacher as one module (one state_dict to resume from)."""

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher


class _Features:
    """Records the outputs of named layers of a model while it runs."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        modules = dict(model.named_modules())
        self.out: dict[str, Tensor] = {}
        self.handles = [modules[n].register_forward_hook(
            lambda m, i, o, n=n: self.out.__setitem__(n, o)) for n in names]  # fmt: skip

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@defense_run("nad", NADConfig)
def distill(ctx: RunContext) -> DefenseResult:
    """Neural Attention Distillation of the backdoored model (the arguments are every
    defence's: :func:`~sau_core.defenses.base.defense_run`). ``notes``: the layers distilled."""
    config = ctx.config
    layers = attention_layers(ctx.h0, ctx.clean.x[:1].to(ctx.device))
    betas = [config.beta_1, config.beta_2, config.beta_3][-len(layers) :]
    pair = _Pair(trainable_copy(ctx.h0), trainable_copy(ctx.h0)).eval()
    optimizer = sgd(pair.parameters(), config)
    mode = augment_mode(config, ctx.clean)
    t_rounds = config.teacher_rounds
    teacher_lr = lr_schedule(config, 1, t_rounds)
    student_lr = lr_schedule(config, t_rounds + 1, config.rounds - t_rounds)
    feats_s, feats_t = _Features(pair.student, layers), _Features(pair.teacher, layers)
    state = {"round": 0}

    def lr_at(r: int) -> float:
        state["round"] = r
        return teacher_lr(r) if r <= t_rounds else student_lr(r)

    def step(x: Tensor, y: Tensor, gen: torch.Generator) -> tuple[Tensor, dict]:
        x = augment(x, mode, gen, config.crop_pad)
        optimizer.zero_grad(set_to_none=True)
        if state["round"] <= t_rounds:  # phase 1: fine-tune the teacher
            pair.teacher.train(config.train_mode)
            loss = F.cross_entropy(pair.teacher(x), y)
            pair.teacher.eval()
            loss.backward()
            optimizer.step()
            return loss, {"L_ce": loss}
        with torch.no_grad():
            pair.teacher.eval()
            pair.teacher(x)
        pair.student.train(config.train_mode)
        ce = F.cross_entropy(pair.student(x), y)
        pair.student.eval()
        at = [b * attention_loss(feats_s.out[n], feats_t.out[n], config.p)
              for b, n in zip(betas, layers, strict=True)]  # fmt: skip
        loss = ce + sum(at)
        loss.backward()
        optimizer.step()
        return loss, {"L_ce": ce, "L_at": sum(at)}

    def evaluated() -> nn.Module:
        return pair.teacher if state["round"] <= t_rounds else pair.student

    loop = RoundLoop(pair, optimizer, step, evaluated, lr_at,
                     extras=lambda r: {"phase": "teacher" if r <= t_rounds else "student"})  # fmt: skip
    try:
        looped = loop.run(ctx)
    finally:
        feats_s.close()
        feats_t.close()
    # stopped in the teacher's phase: the student is still the backdoored model
    return ctx.finish(pair.student, looped, {"layers": layers, "betas": betas})


def _check(model: nn.Module) -> None:
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise ValueError("NAD distils attention maps of convolutional layers; this model has none")


DEFENSE = Defense(
    name="nad",
    title="NAD: neural attention distillation",
    paper=Paper(
        "Li, Lyu, Koren, Lyu, Li, Ma",
        "Neural Attention Distillation: Erasing Backdoor Triggers from Deep Neural Networks",
        "ICLR 2021",
        "2101.05930",
    ),
    config=NADConfig,
    run=distill,
    summary=(
        "First fine-tunes a copy of the model on the clean images (the teacher), then trains "
        "the backdoored model again while making its attention maps, where in the image each "
        "layer looks, match the teacher's. The teacher's attention no longer goes to the "
        "trigger, so the student's is pulled away from it too."
    ),
    weakness=(
        "It is only as good as its teacher: where fine-tuning leaves the backdoor in place "
        "(Blended, BackdoorBench CIFAR-10: ASR 98% after NAD), the teacher still attends to the "
        "trigger and there is nothing to distil. Its layer weights were tuned on ResNets."
    ),
    check_model=_check,
)
