"""ACC, ASR, RA, DER, per-class ASR and the confusion matrix, as BackdoorBench defines them.

- ACC: accuracy on the clean test set.
- ASR: on the backdoor test set (triggered test images, for all-to-one only those whose true label
  is not the target), the share classified as the attack's target label.
- RA (robust accuracy): on the same set, the share classified as their *true* label.
- DER = (max(0, ASR_before - ASR_after) - max(0, ACC_before - ACC_after) + 1) / 2, in [0, 1].
- Per-class ASR: ASR restricted to backdoor test images of each true (source) class.
- Off-target pull (SAU Lab's, not BackdoorBench's): per class c, the share of the backdoor test
  images that are neither of class c nor aimed at c (their target) which the model sends to c.
  High for some c means the trigger still steers the model, to c instead of the target: ASR,
  which counts only the target, does not see it; RA does (it falls).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .device import autocast

__all__ = [
    "Evaluation",
    "confusion_matrix",
    "der",
    "evaluate",
    "off_target_pull",
    "per_class_asr",
    "predict",
]


@dataclass
class Evaluation:
    acc: float
    asr: float | None = None  # None when no trigger is known
    ra: float | None = None
    per_class_asr: dict[int, float] | None = None  # source class -> ASR
    confusion: list[list[int]] | None = None  # [true][predicted] counts on the clean test set
    n_clean: int = 0
    n_backdoor: int = 0
    off_target: dict[int, float] | None = None  # class -> off-target pull (module docstring)

    def to_dict(self, confusion: bool = True) -> dict:
        d = asdict(self)
        for key in ("per_class_asr", "off_target"):
            if d[key] is not None:
                d[key] = {str(k): v for k, v in d[key].items()}
        if not confusion:
            d.pop("confusion")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Evaluation:
        pc, off = d.get("per_class_asr"), d.get("off_target")
        return cls(
            acc=float(d["acc"]),
            asr=None if d.get("asr") is None else float(d["asr"]),
            ra=None if d.get("ra") is None else float(d["ra"]),
            per_class_asr=None if pc is None else {int(k): float(v) for k, v in pc.items()},
            confusion=d.get("confusion"),
            n_clean=int(d.get("n_clean", 0)),
            n_backdoor=int(d.get("n_backdoor", 0)),
            off_target=None if off is None else {int(k): float(v) for k, v in off.items()},
        )


@torch.no_grad()
def predict(
    model: nn.Module,
    x: Tensor,
    *,
    batch_size: int = 1024,
    device: torch.device | None = None,
    amp: bool = True,
) -> Tensor:
    """Argmax predictions (N,) on CPU, in eval mode (the model's mode is restored after)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = []
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device, non_blocking=True)
            with autocast(device, amp):
                out.append(model(xb).argmax(1).cpu())
        return torch.cat(out) if out else torch.empty(0, dtype=torch.long)
    finally:
        model.train(was_training)


def confusion_matrix(pred: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """(K, K) counts, rows the true class, columns the prediction."""
    idx = y.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_asr(pred: Tensor, y: Tensor, target: Tensor, num_classes: int) -> dict[int, float]:
    """ASR by true (source) class; classes with no backdoor test image are left out."""
    hit = (pred == target).float()
    counts = torch.bincount(y, minlength=num_classes)
    sums = torch.bincount(y, weights=hit, minlength=num_classes)
    return {c: float(sums[c] / counts[c]) for c in range(num_classes) if counts[c] > 0}


def off_target_pull(pred: Tensor, y: Tensor, target: Tensor, num_classes: int) -> dict[int, float]:
    """Per class c: of the backdoor test images with true label != c and target != c, the share
    predicted c (classes with no such image are left out)."""
    out = {}
    for c in range(num_classes):
        eligible = (y != c) & (target != c)
        n = int(eligible.sum())
        if n:
            out[c] = float(((pred == c) & eligible).sum()) / n
    return out


def der(before: Evaluation | dict, after: Evaluation | dict) -> float:
    """Defence effectiveness rating in [0, 1]; 0.5 means no change. Needs ASR in both."""
    b = before if isinstance(before, dict) else asdict(before)
    a = after if isinstance(after, dict) else asdict(after)
    if b.get("asr") is None or a.get("asr") is None:
        raise ValueError("DER needs the ASR before and after, so the trigger must be known")
    gain = max(0.0, b["asr"] - a["asr"])
    loss = max(0.0, b["acc"] - a["acc"])
    return (gain - loss + 1.0) / 2.0


def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    backdoor=None,
    *,
    num_classes: int | None = None,
    batch_size: int = 1024,
    device: torch.device | None = None,
    confusion: bool = True,
) -> Evaluation:
    """Measure a model on a clean test set and, optionally, a backdoor test set.

    Args:
        model: maps (B, C, H, W) images in [0, 1] to logits.
        x, y: clean test images (N, C, H, W) and labels (N,).
        backdoor: a :class:`sau_core.attacks.BackdoorTest` (``x`` triggered, ``y`` true labels,
            ``target`` the attack's labels), or None when the trigger is unknown.
        num_classes: K, for the confusion matrix and per-class ASR (default: inferred).
    """
    pred = predict(model, x, batch_size=batch_size, device=device)
    k = num_classes or (int(max(int(y.max()), int(pred.max()))) + 1 if len(y) else 1)
    ev = Evaluation(acc=float((pred == y).float().mean()) if len(y) else 0.0, n_clean=len(y))
    if confusion:
        ev.confusion = confusion_matrix(pred, y, k).tolist()
    if backdoor is not None and len(backdoor.y):
        bd_pred = predict(model, backdoor.x, batch_size=batch_size, device=device)
        ev.asr = float((bd_pred == backdoor.target).float().mean())
        ev.ra = float((bd_pred == backdoor.y).float().mean())
        ev.per_class_asr = per_class_asr(bd_pred, backdoor.y, backdoor.target, k)
        ev.off_target = off_target_pull(bd_pred, backdoor.y, backdoor.target, k)
        ev.n_backdoor = len(backdoor.y)
    return ev
