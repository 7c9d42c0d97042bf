"""SAU: the algorithm as SAU.md states it, its events, its stop flag, and the fast path's numbers."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.sau_reference import reference_round
from sau_core.attacks import AttackSpec
from sau_core.data import ImageData, load_digits
from sau_core.defenses.sau import (
    CUDA_BATCHES_AHEAD,
    SAUConfig,
    _js_per_sample,
    init_delta,
    project,
    purify,
    sae_flags,
    saturated_flags,
    sau_step,
    shared_adversarial_risk,
    shared_pgd,
)
from sau_core.device import memory_format
from sau_core.events import Finished, ProbeSnapshot, SAUBatch, SAURound, Started
from sau_core.lab.presets import DEMO, attack_setup
from sau_core.pipeline import clean_set, plant_backdoor
from sau_core.train import TrainConfig, default_train_config


@pytest.fixture(scope="module")
def digits8():
    return load_digits(resolution=8)


@pytest.fixture(scope="module")
def backdoored8(digits8):
    """A small CNN with a BadNets backdoor on 8x8 digits (a few seconds on a CPU), trained
    plainly (no crops, no label smoothing: the digits defaults are made for 16x16)."""
    spec = AttackSpec("badnets", target=0, poison_ratio=0.1)
    config = default_train_config("digits", epochs=15, augment="none", label_smoothing=0.0)
    # on the CPU wherever the tests run: the numbers below are the CPU's (a GPU's are checked
    # by bench/bench_gpu_parity.py), and a model on a GPU would not take the tests' CPU tensors
    run = plant_backdoor(digits8, spec, "small_cnn", config, device="cpu")
    assert run.evaluation.asr > 0.9  # the fixture really is backdoored
    return run


def _frozen(model):
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


# ------------------------------------------------------------------------------ config
def test_config_defaults_are_the_reference():
    c = SAUConfig()
    assert (c.eps, c.norm, c.pgd_steps, c.pgd_lr, c.pgd_init) == (0.2, "Linf", 5, 0.2, "max")
    assert (c.beta_1, c.beta_2, c.lmd_1, c.lmd_2, c.lmd_3) == (0.01, 1.0, 1.0, 0.0, 1.0)
    assert (c.lr, c.batch_size, c.rounds, c.train_mode, c.clip) == (1e-4, 256, 100, False, False)


@pytest.mark.parametrize(
    "bad", [{"norm": "L3"}, {"pgd_init": "ones"}, {"rounds": 0}, {"eps": -1.0}, {"batch_size": 0}]
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        SAUConfig(**bad).validate()


_FLOAT_FIELDS = [
    (cls, f.name)
    for cls in (SAUConfig, TrainConfig)
    for f in dataclasses.fields(cls)
    if f.type == "float"
]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("cls,name", _FLOAT_FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_config_rejects_non_finite_floats(cls, name, value):
    with pytest.raises(ValueError, match=f"'{name}' must be a finite number"):
        cls(**{name: value}).validate()


def test_float_fields_are_found():  # the parametrisation above is not empty by accident
    names = {(c.__name__, n) for c, n in _FLOAT_FIELDS}
    assert {("SAUConfig", "eps"), ("SAUConfig", "lr"), ("TrainConfig", "momentum")} <= names


@pytest.mark.parametrize(
    "cls,bad,message",
    [
        (SAUConfig, {"rounds": 2.5}, "'rounds' must be an integer"),
        (SAUConfig, {"rounds": True}, "'rounds' must be an integer"),
        (SAUConfig, {"eps": "0.2"}, "'eps' must be a number"),
        (SAUConfig, {"clip": "yes"}, "'clip' must be true or false"),
        (TrainConfig, {"epochs": None}, "'epochs' must be an integer"),
        (TrainConfig, {"lr": [0.1]}, "'lr' must be a number"),
    ],
)
def test_config_rejects_values_of_the_wrong_kind(cls, bad, message):
    with pytest.raises(ValueError, match=message):
        cls(**bad).validate()


def test_config_accepts_an_int_for_a_float_and_rejects_nan_from_json():
    assert SAUConfig(eps=1).validate().eps == 1
    with pytest.raises(ValueError, match="'eps' must be a finite number"):
        SAUConfig.from_dict(json.loads('{"eps": NaN}'))


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown parameter\\(s\\) 'epochs' for defence 'SAU'"):
        SAUConfig.from_dict({"epochs": 3})
    assert SAUConfig.from_dict({"rounds": 3}).rounds == 3


# ------------------------------------------------------------------- norm ball and init
@pytest.mark.parametrize("norm", ["Linf", "L2", "L1"])
def test_projection_lands_in_the_ball(norm):
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(6, 1, 8, 8, generator=g) * 3
    out = project(delta, norm, 0.5)
    flat = out.flatten(1)
    size = {"Linf": flat.abs().amax(1), "L2": flat.norm(dim=1), "L1": flat.abs().sum(1)}[norm]
    assert (size <= 0.5 + 1e-5).all()
    small = delta * 1e-4  # already inside: unchanged
    assert torch.allclose(project(small, norm, 0.5), small)


def test_reg_norm_is_unconstrained():
    delta = torch.full((2, 1, 4, 4), 7.0)
    assert torch.equal(project(delta, "Reg", 0.2), delta)


@pytest.mark.parametrize("init,value", [("max", 0.2), ("min", -0.2), ("zero", 0.0)])
def test_init_delta(init, value):
    x = torch.rand(3, 1, 4, 4)
    assert torch.equal(init_delta(x, init, "Linf", 0.2, None), torch.full_like(x, value))


def test_random_init_is_seeded_and_projected():
    x = torch.rand(3, 1, 4, 4)
    a = init_delta(x, "random", "Linf", 0.2, torch.Generator().manual_seed(1))
    b = init_delta(x, "random", "Linf", 0.2, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 0.2


@pytest.mark.parametrize("norm,eps", [("Linf", 0.2), ("L2", 1.0), ("L1", 4.0)])
def test_pgd_perturbations_stay_in_the_ball(backdoored8, digits8, norm, eps):
    h0 = _frozen(backdoored8.model)
    h = _frozen(backdoored8.model)
    x, y = digits8.train.x[:64], digits8.train.y[:64]
    cfg = SAUConfig(norm=norm, eps=eps)
    with torch.no_grad():
        pred = h0(x).argmax(1)
    delta = shared_pgd(h, h0, x, y, pred, pred, cfg).delta
    flat = delta.flatten(1)
    size = {"Linf": flat.abs().amax(1), "L2": flat.norm(dim=1), "L1": flat.abs().sum(1)}[norm]
    assert (size <= eps + 1e-4).all()
    if norm == "Linf":  # step size = eps: every pixel is -eps, 0 or +eps
        values = set(torch.unique(delta).tolist())
        assert values <= {-0.2, 0.0, 0.2} or all(
            min(abs(v - t) for t in (-0.2, 0.0, 0.2)) < 1e-6 for v in values
        )


# ------------------------------------------------------------------ hand-checked counts
def test_sae_flags_hand_case():
    #            sample:   0  1  2  3  4
    pred_h = torch.tensor([1, 1, 2, 3, 4])
    pred_h0 = torch.tensor([1, 1, 2, 3, 4])
    pred_h_adv = torch.tensor([1, 5, 5, 6, 7])  # h fooled on 1, 2, 3, 4
    pred_h0_adv = torch.tensor([0, 1, 5, 7, 7])  # h0 fooled on 0, 2, 3, 4
    adv_h, adv_h0, common, shared = sae_flags(pred_h, pred_h0, pred_h_adv, pred_h0_adv)
    assert adv_h.tolist() == [False, True, True, True, True]
    assert adv_h0.tolist() == [True, False, True, True, True]
    assert common.tolist() == [False, False, True, True, True]
    assert shared.tolist() == [False, False, True, False, True]  # 3: fooled, but differently


# ------------------------------------------------------------------- loss terms, by hand
def test_js_matches_the_formula():
    a = torch.tensor([[2.0, 0.0, -1.0]])
    b = torch.tensor([[0.0, 1.0, 0.5]])
    p = [math.exp(v) for v in a[0].tolist()]
    p = [v / sum(p) for v in p]
    q = [math.exp(v) for v in b[0].tolist()]
    q = [v / sum(q) for v in q]
    m = [(u + v) / 2 for u, v in zip(p, q, strict=True)]
    js = 0.5 * sum(u * math.log(u / w) for u, w in zip(p, m, strict=True)) + 0.5 * sum(
        v * math.log(v / w) for v, w in zip(q, m, strict=True)
    )
    assert _js_per_sample(a, b).item() == pytest.approx(js, rel=1e-5)
    assert _js_per_sample(a, a).item() == pytest.approx(0.0, abs=1e-7)


def test_shared_adversarial_risk_matches_the_formula():
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    target = torch.tensor([0, 2, 1])
    mask = torch.tensor([True, False, True])
    p = F.softmax(logits.double(), 1)
    total = 0.0
    for i in (0, 2):  # masked samples only
        pt = p[i, target[i]].item()
        rest = p[i].sum().item() - pt  # 1 - p_t, as the mass on the other classes
        total += -math.log(1e-6 + min(rest, 0.999)) - math.log(1 + 1e-6 - max(pt, 0.001))
    expected = total / 2 / 3
    got = shared_adversarial_risk(logits, target, mask, 3).item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert shared_adversarial_risk(logits, target, torch.zeros(3, dtype=torch.bool), 3).item() == 0


def test_saturated_samples_are_where_the_shared_loss_stops_pulling():
    """L_shared's 1e-6 offset: past a logit margin of about 14 its gradient collapses."""
    k = 10
    logits = torch.zeros(3, k)
    logits[0, 0], logits[1, 0], logits[2, 0] = 8.0, 12.0, 20.0  # other-class mass 3e-3, 5e-5, 2e-8
    target = torch.zeros(3, dtype=torch.long)
    assert saturated_flags(logits, target).tolist() == [False, False, True]
    grads = []
    for i in range(3):
        z = logits[i : i + 1].clone().requires_grad_(True)
        (2 * shared_adversarial_risk(z, target[:1], torch.ones(1, dtype=torch.bool), 1)).backward()
        grads.append(z.grad[0, 0].item() / 2)  # per form; the unclamped -log(1 - p_t) gives p_t
    assert grads[0] > 0.99 and grads[1] > 0.9  # ~ p_t: descent pushes the target logit down
    assert 0 <= grads[2] < 0.05  # saturated: almost no push left
    # the flag follows the target: the same logits are not saturated for another class
    assert not saturated_flags(logits[2:], torch.tensor([3])).item()


def test_pgd_first_step_loss_matches_the_formula():
    """L_adv and L_share of a one-step PGD on a linear model, computed by hand."""
    torch.manual_seed(0)
    h = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    h0 = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    for p in list(h.parameters()) + list(h0.parameters()):
        p.requires_grad_(False)
    x = torch.rand(5, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 0, 1])
    pred_h, pred_h0 = h(x).argmax(1), h0(x).argmax(1)
    cfg = SAUConfig(pgd_steps=1)
    res = shared_pgd(h, h0, x, y, pred_h, pred_h0, cfg)
    xa = x + 0.2
    lh, lh0 = h(xa), h0(xa)
    adv_h, adv_h0, _, shared = sae_flags(pred_h, pred_h0, lh.argmax(1), lh0.argmax(1))
    ce_h = F.cross_entropy(lh, y, reduction="none")
    ce_h0 = F.cross_entropy(lh0, y, reduction="none")
    l_adv = -(ce_h[~adv_h].sum() + ce_h0[~adv_h0].sum()) / (2 * 5)
    l_share = _js_per_sample(lh, lh0)[~shared].sum() / 5
    assert res.l_adv.item() == pytest.approx(l_adv.item(), rel=1e-5, abs=1e-7)
    assert res.l_share.item() == pytest.approx(l_share.item(), rel=1e-5, abs=1e-7)
    assert int(res.steps) == 1


# ------------------------------------------------------- the fast path = reference loop
@pytest.mark.parametrize("norm,eps", [("Linf", 0.2), ("L2", 2.0)])
def test_fast_path_equals_reference_loop(backdoored8, digits8, norm, eps):
    """The reference-structured loop's perturbations bit for bit, its losses and weights to
    float rounding (CPU, fp32, contiguous): its outer step runs h once on [x, x+delta], ours
    twice (sau.OUTER_FORWARDS), which sums in another order."""
    model = backdoored8.model.cpu()
    x, y = digits8.train.x[:200], digits8.train.y[:200]
    cfg = SAUConfig(batch_size=64, norm=norm, eps=eps, channels_last=False)
    h0 = _frozen(model)
    h_ref, h_fast = copy.deepcopy(model).eval(), copy.deepcopy(model).eval()
    opt_ref = torch.optim.Adam(h_ref.parameters(), lr=cfg.lr, amsgrad=True)
    opt_fast = torch.optim.Adam(h_fast.parameters(), lr=cfg.lr, amsgrad=True)
    early_exits = 0
    for _ in range(2):
        records = reference_round(h_ref, h0, opt_ref, x, y, cfg)
        for i, rec in enumerate(records):
            sl = slice(i * cfg.batch_size, (i + 1) * cfg.batch_size)
            delta, stats = sau_step(h_fast, h0, opt_fast, x[sl], y[sl], cfg)
            v = stats.values.tolist()
            assert torch.equal(delta, rec["delta"])
            assert v[0] == pytest.approx(rec["l_cl"], abs=1e-6)
            assert v[1] == pytest.approx(rec["l_at"], abs=1e-6)
            assert v[2] == pytest.approx(rec["l_shared"], abs=1e-6)
            assert v[4] == pytest.approx(rec["l_adv"], abs=1e-6)
            assert v[5] == pytest.approx(rec["l_share"], abs=1e-6)
            assert int(v[6]) == rec["pgd_steps"]
            assert int(v[12]) == rec["potential_poison"]
            early_exits += rec["pgd_steps"] < cfg.pgd_steps
    for (k, a), b in zip(h_ref.state_dict().items(), h_fast.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), k


def test_channels_last_on_the_cpu_changes_only_float_rounding(backdoored8, digits8):
    """purify runs channels-last on the CPU too (device.memory_format(cpu=True)). oneDNN's
    kernels for it round differently, nothing more: the first batch's perturbations agree with
    the contiguous run's but for a few near-zero gradient signs, later ones mostly (Adam turns a
    rounding difference into a weight difference; seen: all pixels, all but 106 of 24,576, and
    91% with torch 2.15 in a full test session), the clean loss of the first batch to float
    rounding, and the weights to within one Adam step. A layout bug (mixed-up axes) fails all."""
    assert memory_format(torch.device("cpu"), True, cpu=True) == torch.channels_last
    assert memory_format(torch.device("cpu"), False, cpu=True) == torch.contiguous_format
    assert memory_format(torch.device("cpu"), True) == torch.contiguous_format
    model = backdoored8.model.cpu()
    x, y = digits8.train.x[:192], digits8.train.y[:192]
    cfg = SAUConfig(batch_size=64)
    runs = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        h0 = _frozen(model).to(memory_format=fmt)
        h = copy.deepcopy(model).eval().to(memory_format=fmt)
        opt = torch.optim.Adam(h.parameters(), lr=cfg.lr, amsgrad=True)
        out = []
        for _ in range(2):
            for i in range(0, len(y), cfg.batch_size):
                xb = x[i : i + cfg.batch_size].contiguous(memory_format=fmt)
                delta, stats = sau_step(h, h0, opt, xb, y[i : i + cfg.batch_size], cfg)
                out.append((delta.contiguous(), stats.values))
        runs.append((out, h))
    (plain, h_plain), (cl, h_cl) = runs
    conv = next(m for m in h_cl.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert plain[0][1][0] == pytest.approx(float(cl[0][1][0]), abs=1e-5)  # L_cl, same weights
    # The first batch starts from the same weights: its perturbations agree but for a few
    # near-zero gradient signs. Later batches drift as Adam amplifies rounding (91-100% of the
    # pixels agree, by torch version, thread count and model); a layout bug gives about a half.
    first = int((plain[0][0] == cl[0][0]).sum())
    assert first >= 0.99 * plain[0][0].numel()
    same = sum(int((a == b).sum()) for (a, _), (b, _) in zip(plain, cl, strict=True))
    assert same >= 0.8 * sum(a.numel() for a, _ in plain)
    # Adam divides by sqrt(v): a rounding-level gradient difference on a weight whose gradient
    # is near zero can flip its step, so the runs can part by up to two steps (2 lr) per update.
    steps = len(plain)
    for a, b in zip(h_plain.state_dict().values(), h_cl.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), rtol=0, atol=2 * cfg.lr * steps)


def test_adv_classes_count_where_h0_sends_the_examples_the_loss_acts_on(backdoored8, digits8):
    model = backdoored8.model.cpu()
    x, y = digits8.train.x[:64], digits8.train.y[:64]
    cfg = SAUConfig(batch_size=64)
    h0, h = _frozen(model), copy.deepcopy(model).eval()
    opt = torch.optim.Adam(h.parameters(), lr=cfg.lr, amsgrad=True)
    delta, stats = sau_step(h, h0, opt, x, y, cfg)
    with torch.no_grad():
        clean, adv = h0(x).argmax(1), h0(x + delta).argmax(1)
    acting = (adv != y) & (adv != clean)  # potential poison, by hand
    expected = torch.bincount(adv[acting], minlength=10).float()
    assert torch.equal(stats.adv_classes, expected)
    assert int(stats.values[12]) == int(acting.sum()) > 0
    # the BadNets model's examples crowd into its target class, 0
    assert int(expected.argmax()) == 0


# ---------------------------------------------------------------------- purify, driver
def test_purify_leaves_the_input_model_untouched(backdoored8, digits8):
    model = backdoored8.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = purify(model, clean_set(digits8, 0.05), SAUConfig(rounds=2), test=digits8.test,
                 backdoor=backdoored8.backdoor)  # fmt: skip
    assert res.model is not model
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    changed = any(
        not torch.equal(a.cpu(), b)  # the purified model lives on the run's device
        for a, b in zip(res.model.state_dict().values(), before.values(), strict=True)
    )
    assert changed, "SAU did not update the purified model"


def test_events_arrive_in_order(backdoored8, digits8):
    events = []
    clean = clean_set(digits8, 0.1)  # 135 images: 2 batches of 128 per round
    cfg = SAUConfig(rounds=2, batch_size=128, probe_size=8)
    purify(backdoored8.model, clean, cfg, test=digits8.test, backdoor=backdoored8.backdoor,
           callback=events.append)  # fmt: skip
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "Started", "ProbeSnapshot",
        "SAUBatch", "SAUBatch", "SAURound", "ProbeSnapshot",
        "SAUBatch", "SAUBatch", "SAURound", "ProbeSnapshot",
        "Finished",
    ]  # fmt: skip
    batches = [e for e in events if isinstance(e, SAUBatch)]
    assert [b.step for b in batches] == [1, 2, 3, 4] and batches[0].total_steps == 4
    rounds = [e for e in events if isinstance(e, SAURound)]
    assert [r.round for r in rounds] == [1, 2]
    assert rounds[0].asr is not None and set(rounds[0].per_class_asr) == set(range(1, 10))
    assert rounds[0].n == len(clean)
    probe = events[1]
    assert isinstance(probe, ProbeSnapshot) and probe.round == 0 and probe.x.shape[0] == 8
    assert probe.delta.abs().max() <= 0.2 + 1e-6
    # round 0: h is h0, so every example that fools one fools the other the same way
    assert torch.equal(probe.adv_h, probe.adv_h0) and torch.equal(probe.common, probe.shared)
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_stop_flag_stops_within_one_batch(backdoored8, digits8, device):
    """On the CPU the flag set during batch 3's event stops the run after batch 3; on CUDA the
    host is CUDA_BATCHES_AHEAD batches ahead of the events, and those batches still run."""
    stop = threading.Event()
    seen = []

    def callback(event):
        seen.append(event)
        if isinstance(event, SAUBatch) and event.step == 3:
            stop.set()

    clean = clean_set(digits8, 0.2)  # 269 images, batches of 64: 5 per round
    res = purify(backdoored8.model, clean, SAUConfig(rounds=10, batch_size=64), test=digits8.test,
                 backdoor=backdoored8.backdoor, callback=callback, stop=stop,
                 device=device)  # fmt: skip
    ahead = CUDA_BATCHES_AHEAD if device == "cuda" else 0
    assert [e.step for e in seen if isinstance(e, SAUBatch)] == list(range(1, 4 + ahead))
    assert res.stopped and res.rounds_done == 0
    assert isinstance(seen[-1], Finished) and seen[-1].stopped
    # the partial result is consistent and usable
    assert 0.0 <= res.after.acc <= 1.0 and res.after.asr is not None
    assert res.model(digits8.test.x[:4].to(device)).shape == (4, 10)


def test_unknown_trigger_reports_acc_counts_and_disagreement(backdoored8, digits8):
    events = []
    res = purify(backdoored8.model, clean_set(digits8, 0.05), SAUConfig(rounds=2),
                 test=digits8.test, callback=events.append)  # fmt: skip
    rounds = [e for e in events if isinstance(e, SAURound)]
    assert all(r.asr is None and r.ra is None and r.per_class_asr is None for r in rounds)
    assert all(0.0 <= r.disagreement <= 1.0 and r.adv_h0 >= r.common >= r.shared for r in rounds)
    assert res.after.asr is None and res.der() is None


class _Hotter(nn.Module):
    """The same classifier with its logits multiplied: the same argmax, a saturated softmax."""

    def __init__(self, model, factor):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x):
        return self.model(x) * self.factor


def test_saturated_counts_are_reported_per_batch_and_round(backdoored8, digits8):
    clean = clean_set(digits8, 0.1)
    cfg = SAUConfig(rounds=1, batch_size=64, probe_size=0)
    counts = {}
    for factor in (1.0, 50.0):
        events = []
        model = _Hotter(copy.deepcopy(backdoored8.model), factor)
        purify(model, clean, cfg, test=digits8.test, backdoor=backdoored8.backdoor,
               callback=events.append)  # fmt: skip
        batches = [e for e in events if isinstance(e, SAUBatch)]
        (rnd,) = [e for e in events if isinstance(e, SAURound)]
        assert all(0 <= b.saturated <= b.potential_poison <= b.n for b in batches)
        assert rnd.saturated == sum(b.saturated for b in batches)
        assert rnd.potential_poison == sum(b.potential_poison for b in batches) > 0
        # where they land: one count per class, summing to the examples the loss acts on
        assert len(rnd.adv_classes) == 10 and sum(rnd.adv_classes) == rnd.potential_poison
        counts[factor] = (rnd.saturated, rnd.potential_poison)
    # fifty times the logits: nearly every example that fools h0 is one h is certain of
    hot, cold = (counts[f][0] / counts[f][1] for f in (50.0, 1.0))
    assert hot > 0.9 and hot > cold, counts


def test_live_eval_uses_a_fixed_subset(backdoored8, digits8):
    events = []
    purify(backdoored8.model, clean_set(digits8, 0.05), SAUConfig(rounds=1, eval_size=100),
           test=digits8.test, backdoor=backdoored8.backdoor, callback=events.append)  # fmt: skip
    r = next(e for e in events if isinstance(e, SAURound))
    assert r.acc * 100 == pytest.approx(round(r.acc * 100))  # a share of 100 images


def test_empty_clean_set_is_refused(backdoored8, digits8):
    empty = ImageData(digits8.train.x[:0], digits8.train.y[:0], digits8.info)
    with pytest.raises(ValueError, match="empty"):
        purify(backdoored8.model, empty)


# ------------------------------------------------------------------------------- resume
def _untrained8(digits8):
    from sau_core.models import create_model

    return create_model("small_cnn", digits8.info, seed=0)


def _numbers(r: SAURound) -> dict:
    return {k: v for k, v in dataclasses.asdict(r).items() if k not in ("elapsed", "eta")}


@pytest.mark.parametrize(
    "extra", [{}, {"pgd_init": "random", "train_mode": True}], ids=["default", "random-init-bn"]
)
def test_resumed_run_equals_the_uninterrupted_run(digits8, tmp_path, extra):
    """3 rounds straight through == 3 rounds stopped in round 2, resumed from round 1's state
    (through the run directory's file), bit for bit on the CPU with one thread."""
    from sau_core.serving.runs import load_resume_state, save_resume_state

    torch.set_num_threads(1)
    model, clean = _untrained8(digits8), clean_set(digits8, 0.1)  # 135 images, 3 batches of 64
    test = digits8.test.subset(torch.arange(100))
    cfg = SAUConfig(rounds=3, batch_size=64, probe_size=4, eval_size=0, **extra)
    full = purify(model, clean, cfg, test=test, device="cpu")

    stop, saved, events = threading.Event(), [], []

    def keep(state):  # interrupted: the state of round 1 is on disk, then round 2 never ends
        saved.append(state.round)
        save_resume_state(tmp_path / "resume.safetensors", state)
        stop.set()

    cut = purify(model, clean, cfg, test=test, device="cpu", stop=stop, on_state=keep)
    assert cut.stopped and cut.rounds_done == 1 and saved == [1]
    state = load_resume_state(tmp_path / "resume.safetensors")
    assert state.round == 1 and len(state.history) == 1
    assert set(state.optimizer["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    done = purify(model, clean, cfg, test=test, device="cpu", resume=state,
                  callback=events.append)  # fmt: skip

    assert not done.stopped and done.rounds_done == 3
    for (name, a), b in zip(full.model.state_dict().items(), done.model.state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.equal(a, b), name
    assert [_numbers(r) for r in done.history] == [_numbers(r) for r in full.history]
    assert done.after.acc == full.after.acc
    started = events[0]
    assert isinstance(started, Started) and started.resumed_from == 1
    assert [e.round for e in events if isinstance(e, SAURound)] == [2, 3]
    assert [e.round for e in events if isinstance(e, ProbeSnapshot)] == [2, 3]  # no round 0
    assert [e.step for e in events if isinstance(e, SAUBatch)] == [4, 5, 6, 7, 8, 9]


def test_resume_state_must_fit_the_run(digits8):
    model, clean = _untrained8(digits8), clean_set(digits8, 0.05)
    cfg = SAUConfig(rounds=2, batch_size=64, probe_size=0, eval_size=0)
    states = []
    purify(model, clean, cfg, device="cpu", on_state=states.append)
    assert [s.round for s in states] == [1, 2]
    last = states[-1]
    with pytest.raises(ValueError, match="settings differ.*rounds"):
        purify(model, clean, SAUConfig(rounds=3, batch_size=64, probe_size=0, eval_size=0),
               device="cpu", resume=dataclasses.replace(last, round=1, history=last.history[:1]))  # fmt: skip
    with pytest.raises(ValueError, match="round must be in"):
        purify(model, clean, cfg, device="cpu", resume=dataclasses.replace(last, round=5))
    bad_h = dict(last.h)
    bad_h.pop(next(iter(bad_h)))
    with pytest.raises(ValueError, match="does not fit this model"):
        purify(model, clean, cfg, device="cpu", resume=dataclasses.replace(last, h=bad_h))
    adam = {"state": {i: dict(e) for i, e in last.optimizer["state"].items()}}
    adam["state"][0]["exp_avg"] = torch.zeros(3)
    with pytest.raises(ValueError, match="exp_avg of parameter 0 does not fit"):
        purify(model, clean, cfg, device="cpu", resume=dataclasses.replace(last, optimizer=adam))
    with pytest.raises(ValueError, match="does not fit this model"):
        purify(model, clean, cfg, device="cpu",
               resume=dataclasses.replace(last, generator=torch.zeros(3, dtype=torch.uint8)))  # fmt: skip
    # resuming after the last round runs no round: just the final evaluation
    res = purify(model, clean, cfg, device="cpu", resume=last)
    assert res.rounds_done == 2 and len(res.history) == 2


# --------------------------------------------------------------------------- slow: works
@pytest.mark.slow
@pytest.mark.parametrize("attack", ["badnets", "blended"])
def test_sau_removes_a_backdoor_on_digits(attack: str):
    """The demo setting (BadNets, and Blended on the same model): plant the backdoor, purify with
    the reference's SAU, ASR < 10%, ACC -5 pts."""
    setup = attack_setup(attack)
    assert setup.arch == DEMO.arch
    split = setup.data.load()
    run = plant_backdoor(split, setup.attack, setup.arch, setup.train)
    assert run.evaluation.asr > 0.9
    res = purify(run.model, clean_set(split, setup.clean_ratio), setup.sau, test=split.test,
                 backdoor=run.backdoor)  # fmt: skip
    assert res.after.asr < 0.10
    assert res.after.acc >= res.before.acc - 0.05


def test_a_loss_that_turns_non_finite_stops_the_run(digits8):
    """A model whose weights are finite but whose outputs overflow (3e38 in the first conv):
    SAU stops in round 1 with a clear error instead of ending 'finished' with NaN weights."""
    from sau_core.events import NonFiniteLoss
    from sau_core.models import create_model

    model = create_model("small_cnn", digits8.info, seed=0)
    with torch.no_grad():
        next(model.parameters()).fill_(3e38)
    with pytest.raises(NonFiniteLoss, match="not finite in round 1 .*outputs overflow"):
        purify(model, clean_set(digits8, 0.05), SAUConfig(rounds=3), device="cpu")
