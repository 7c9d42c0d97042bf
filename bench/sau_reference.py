"""A reference-equivalent SAU loop, written from docs/SAU.md with the reference's structure.

It does what the authors' loop does, waste included: a DataLoader over the clean set, fp32,
both models re-run on the clean images at every PGD step, parameter gradients built during PGD,
``.sum() != 0`` checks that synchronise with the host, boolean indexing, and ``h0`` under
autograd in the outer step. It exists to check that the optimised ``sau_core.defenses.sau`` gives the same
numbers (tests/test_sau.py) and to measure how much faster it is (bench/bench_sau_speed.py).
It is not used by the library.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sau_core.defenses.sau import SAUConfig, init_delta, project


def reference_pgd(h: nn.Module, h0: nn.Module, x, y, cfg: SAUConfig, generator=None):
    """Shared PGD the reference's way. Returns (delta, l_adv, l_share, steps) of the last step."""
    b = x.shape[0]
    delta = init_delta(x, cfg.pgd_init, cfg.norm, cfg.eps, generator).requires_grad_(True)
    steps = 0
    for _ in range(cfg.pgd_steps):
        xa = x + delta
        if cfg.clip:
            xa = xa.clamp(0, 1)
        ori = h(x).argmax(1)  # recomputed every step, as the reference does
        ori0 = h0(x).argmax(1)
        logits, logits0 = h(xa), h0(xa)
        pl, pl0 = logits.argmax(1), logits0.argmax(1)
        adv_h, adv_h0 = pl != ori, pl0 != ori0
        common = adv_h & adv_h0
        shared = common & (pl == pl0)
        l_adv = torch.tensor(0.0, device=x.device)
        if (~adv_h).sum() != 0:
            l_adv = l_adv + F.cross_entropy(logits, y, reduction="none")[~adv_h].sum()
        if (~adv_h0).sum() != 0:
            l_adv = l_adv + F.cross_entropy(logits0, y, reduction="none")[~adv_h0].sum()
        l_adv = -l_adv / 2 / b
        p = F.softmax(logits, dim=1).clamp(min=1e-8)
        q = F.softmax(logits0, dim=1).clamp(min=1e-8)
        m = 0.5 * (p + q)
        js = 0.5 * (p * p.log() + q * q.log()) - 0.5 * (p * m.log() + q * m.log())
        l_share = js[~shared].sum(dim=1).sum() / b
        delta.grad = None
        loss = cfg.beta_1 * l_adv + cfg.beta_2 * l_share
        loss.backward()
        delta.data = project(delta.data - cfg.pgd_lr * delta.grad.sign(), cfg.norm, cfg.eps)
        steps += 1
        if (~shared).sum() == 0:
            break
    return delta.detach(), float(l_adv.detach()), float(l_share.detach()), steps


def reference_round(
    h: nn.Module,
    h0: nn.Module,
    optimizer: torch.optim.Optimizer,
    x_clean: torch.Tensor,
    y_clean: torch.Tensor,
    cfg: SAUConfig,
    *,
    shuffle: bool = False,
    generator=None,
    num_classes: int | None = None,
) -> list[dict]:
    """One round over the clean set; returns per-batch records (delta, losses, counts)."""
    loader = DataLoader(TensorDataset(x_clean, y_clean), batch_size=cfg.batch_size, shuffle=shuffle)
    k = num_classes or int(y_clean.max()) + 1
    records = []
    h.eval()
    h0.eval()
    for x, y in loader:
        delta, l_adv, l_share, steps = reference_pgd(h, h0, x, y, cfg, generator)
        xa = x + delta
        if cfg.clip:
            xa = xa.clamp(0, 1)
        if cfg.train_mode:
            h.train()
        logits, logits_adv = torch.split(h(torch.cat([x, xa], 0)), x.shape[0], 0)
        h.eval()
        logits0, logits0_adv = h0(x), h0(xa)  # under autograd, as the reference
        ori0 = logits0.argmax(1)
        pl0 = logits0_adv.argmax(1)
        potential = (pl0 != y) & (pl0 != ori0)
        l_cl = F.cross_entropy(logits, y)
        l_at = F.cross_entropy(logits_adv, y)
        if potential.sum() == 0:
            l_shared = torch.tensor(0.0)
        else:
            one_hot = F.one_hot(pl0, num_classes=k)
            p = F.softmax(logits_adv, dim=1)
            neg_p = (p * (1 - one_hot)).sum(1)[potential]
            pos_p = (p * one_hot).sum(1)[potential]
            l_shared = (
                (
                    -torch.sum(torch.log(1e-6 + neg_p.clamp(max=0.999)))
                    - torch.sum(torch.log(1 + 1e-6 - pos_p.clamp(min=0.001)))
                )
                / 2
                / x.shape[0]
            )
        loss = cfg.lmd_1 * l_cl + cfg.lmd_2 * l_at + cfg.lmd_3 * l_shared
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        records.append(
            {
                "delta": delta,
                "l_adv": l_adv,
                "l_share": l_share,
                "pgd_steps": steps,
                "l_cl": float(l_cl.detach()),
                "l_at": float(l_at.detach()),
                "l_shared": float(l_shared.detach()),
                "loss": float(loss.detach()),
                "potential_poison": int(potential.sum()),
            }
        )
    return records
