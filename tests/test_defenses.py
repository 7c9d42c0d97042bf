"""The defence registry and the five baselines beside SAU.

Grouped as the registry's contract (every entry, parametrised), then each baseline's feature
test, where the answer is known by hand.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch
from torch import nn

from sau_core.attacks import AttackSpec, backdoor_test
from sau_core.data import load_digits
from sau_core.defenses import DEFENSES, DefenseResult, DefenseState, get_defense, list_defenses
from sau_core.defenses.anp import NeuronMasks
from sau_core.defenses.fp import channel_activity, last_conv, prune_order
from sau_core.defenses.ibau import fixed_point_hypergradient
from sau_core.defenses.nad import attention_layers, attention_loss, attention_map
from sau_core.events import (
    DefenseBatch,
    DefenseRound,
    Finished,
    Started,
    round_from_record,
    to_record,
)
from sau_core.models import create_model
from sau_core.pipeline import clean_set

NAMES = list_defenses()


@pytest.fixture(scope="module")
def digits8():
    return load_digits(resolution=8)


@pytest.fixture(scope="module")
def tiny(digits8):
    """An untrained small CNN, a clean set of 90 images, 100 test images and a BadNets test set."""
    model = create_model("small_cnn", digits8.info, seed=0)
    clean = clean_set(digits8, 0.0625, seed=0)
    test = digits8.test.subset(torch.arange(100))
    bd = backdoor_test(test, AttackSpec("badnets", target=0))
    return model, clean, test, bd


def quick(name: str, **over):
    """Two short rounds of ``name`` (small batches, small evaluations)."""
    base = {"rounds": 2, "batch_size": 32, "eval_size": 50}
    if name == "sau":
        base.update(probe_size=0)
    if name == "nad":
        base.update(teacher_rounds=1)
    base.update(over)
    return get_defense(name).config.from_dict(base)


# ------------------------------------------------------------------------------ registry
def test_the_registry_holds_sau_first_and_the_five_baselines():
    assert NAMES == ["sau", "ft", "fp", "nad", "anp", "ibau"]
    with pytest.raises(ValueError, match="unknown defence 'nope'; choose from sau, ft"):
        get_defense("nope")


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_names_its_paper_and_teaches(name):
    e = DEFENSES[name]
    assert e.name == name and e.title and e.paper.authors and e.paper.venue
    assert e.paper.arxiv and e.paper.arxiv in e.paper.cite()
    assert len(e.summary) > 80 and len(e.weakness) > 80


@pytest.mark.parametrize("name", NAMES)
def test_configs_round_trip_and_refuse_bad_settings(name):
    e = DEFENSES[name]
    cfg = e.default_config()
    assert e.config.from_dict(cfg.to_dict()) == cfg
    assert e.default_config("digits", rounds=40).rounds == 40
    with pytest.raises(ValueError, match="bogus"):
        e.config.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="rounds"):
        e.config.from_dict({"rounds": 0})
    with pytest.raises(ValueError, match="rounds"):
        e.config.from_dict({"rounds": "many"})
    with pytest.raises(ValueError, match="batch_size"):
        e.config.from_dict({"batch_size": 1.5})


@pytest.mark.parametrize("name", NAMES)
def test_every_defence_runs_reports_and_leaves_the_input_alone(name, tiny):
    model, clean, test, bd = tiny
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    events = []
    res = DEFENSES[name].run(model, clean, quick(name), test=test, backdoor=bd, device="cpu",
                             callback=events.append)  # fmt: skip
    assert isinstance(res, DefenseResult) and res.defense == name
    assert res.rounds_done == 2 and not res.stopped and len(res.history) == 2
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert res.model is not model and not res.model.training
    assert not any(p.requires_grad for p in res.model.parameters())
    assert isinstance(events[0], Started) and events[0].job == name
    assert isinstance(events[-1], Finished) and events[-1].job == name
    rounds = [e for e in events if isinstance(e, DefenseRound)]
    assert [r.round for r in rounds] == [1, 2] and all(r.defense == name for r in rounds)
    for r in rounds:
        assert 0 <= r.acc <= 1 and 0 <= r.asr <= 1 and 0 <= r.ra <= 1
        assert r.losses and all(isinstance(v, float) for v in r.losses.values())
        assert r.off_target is not None
        assert round_from_record(to_record(r)) == r
    if name != "sau":
        assert all(isinstance(e, DefenseBatch) for e in events
                   if type(e).__name__.endswith("Batch"))  # fmt: skip
    assert res.before.asr is not None and res.after.off_target is not None
    assert 0 <= res.der() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_a_stop_before_the_first_batch_returns_the_model_unchanged(name, tiny):
    model, clean, test, _ = tiny
    stop = threading.Event()
    stop.set()
    res = DEFENSES[name].run(model, clean, quick(name), test=test, device="cpu", stop=stop)
    assert res.stopped and res.rounds_done == 0 and res.history == []
    # FP prunes before its first batch (a stopped FP is pruned, not fine-tuned); ANP's masks
    # start at 1, so its pruned model is the input
    if name != "fp":
        for a, b in zip(model.state_dict().values(), res.model.state_dict().values(), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "sau"])  # SAU: tests/test_sau.py
def test_a_resumed_run_equals_the_uninterrupted_run(name, tiny, tmp_path):
    """3 rounds straight == 1 round, its state through the run directory's file, then resumed
    (bit for bit on the CPU with one thread)."""
    from sau_core.serving.runs import load_resume_state, save_resume_state

    torch.set_num_threads(1)
    model, clean, test, bd = tiny
    cfg = quick(name, rounds=3)
    run = DEFENSES[name].run
    full = run(model, clean, cfg, test=test, backdoor=bd, device="cpu")
    stop = threading.Event()

    def keep(state: DefenseState):
        save_resume_state(tmp_path / "resume.safetensors", state)
        stop.set()

    cut = run(model, clean, cfg, test=test, backdoor=bd, device="cpu", stop=stop, on_state=keep)
    assert cut.stopped and cut.rounds_done == 1
    state = load_resume_state(tmp_path / "resume.safetensors")
    assert state.defense == name and state.round == 1 and len(state.history) == 1
    events = []
    done = run(model, clean, cfg, test=test, backdoor=bd, device="cpu", resume=state,
               callback=events.append)  # fmt: skip
    assert done.rounds_done == 3 and events[0].resumed_from == 1
    for (k, a), b in zip(full.model.state_dict().items(), done.model.state_dict().values(),
                         strict=True):  # fmt: skip
        assert torch.equal(a, b), k

    def numbers(r):
        return {k: v for k, v in dataclasses.asdict(r).items() if k not in ("elapsed", "eta")}

    assert [numbers(r) for r in done.history] == [numbers(r) for r in full.history]
    assert done.after.acc == full.after.acc and done.after.asr == full.after.asr
    other = "ft" if name != "ft" else "fp"
    with pytest.raises(ValueError, match=f"of defence {name!r}, not {other!r}"):
        DEFENSES[other].run(model, clean, quick(other, rounds=3), device="cpu", resume=state)
    with pytest.raises(ValueError, match="settings differ.*rounds"):
        run(model, clean, quick(name, rounds=4), device="cpu", resume=state)


# ------------------------------------------------------------------------------------ FT
def test_ft_on_a_model_at_the_clean_optimum_changes_little(digits8):
    """A model trained to fit the clean set: fine-tuning it on the same set with a small rate
    keeps its predictions and moves its weights by under 1%, a tenth of what the same
    fine-tuning on wrong labels moves them."""
    from sau_core.train import TrainConfig, train

    clean = clean_set(digits8, 0.1, seed=0)
    model = create_model("small_cnn", digits8.info, seed=0)
    train(model, clean, TrainConfig(epochs=40, batch_size=32, lr=0.05, augment="none", seed=0),
          device="cpu")  # fmt: skip
    model.eval()
    pred = model(clean.x).argmax(1)
    assert (pred == clean.y).float().mean() == 1.0
    cfg = get_defense("ft").config.from_dict(
        {"rounds": 2, "batch_size": 32, "lr": 0.001, "augment": "none", "train_mode": False,
         "weight_decay": 0.0, "eval_size": 10}
    )  # fmt: skip
    res = get_defense("ft").run(model, clean, cfg, device="cpu")
    assert torch.equal(res.model(clean.x).argmax(1), pred)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    after = torch.cat([p.flatten() for p in res.model.parameters()])
    assert float((after - before).norm() / before.norm()) < 0.01
    # the control: the same fine-tuning on labels the model does not fit moves it 10x more
    wrong = dataclasses.replace(clean, y=(clean.y + 1) % 10)
    far = get_defense("ft").run(model, wrong, cfg, device="cpu")
    moved = torch.cat([p.flatten() for p in far.model.parameters()])
    assert (moved - before).norm() > 10 * (after - before).norm()


# ------------------------------------------------------------------------------------ FP
@pytest.fixture(scope="module")
def trained8(digits8):
    """A small CNN trained for three epochs on 8x8 digits (a few seconds)."""
    from sau_core.train import TrainConfig, train

    model = create_model("small_cnn", digits8.info, seed=0)
    train(model, digits8.train, TrainConfig(epochs=3, batch_size=64, lr=0.05, augment="none"),
          device="cpu")  # fmt: skip
    return model.eval()


def _with_dormant(trained8, digits8, dormant: list[int]) -> nn.Module:
    """The trained small CNN with its last conv-BN-ReLU channels ``dormant`` outputting 0."""
    import copy

    model = copy.deepcopy(trained8)
    layer = last_conv(model, digits8.test.x[:2])
    with torch.no_grad():
        layer.bn.weight[dormant] = 0
        layer.bn.bias[dormant] = -1.0  # BN output -1, after ReLU 0
    return model


def test_fp_finds_the_last_convolution_and_the_batchnorm_that_reads_it(digits8):
    model = create_model("small_cnn", digits8.info)
    layer = last_conv(model, digits8.test.x[:2])
    assert layer.name == "net.features.10" and layer.bn_name == "net.features.11"
    res = create_model("preact_resnet10", digits8.info)
    layer = last_conv(res, digits8.test.x[:2])
    # PreAct: the last conv feeds a residual sum, no BatchNorm reads it directly
    assert layer.name == "net.layer4.0.conv2" and layer.bn is None


def test_fp_prunes_the_dormant_channels_first_and_keeps_them_pruned(trained8, digits8):
    dormant = [3, 7, 20]
    model = _with_dormant(trained8, digits8, dormant)
    layer = last_conv(model, digits8.test.x[:2])
    activity = channel_activity(model, layer, digits8.test.x[:200])
    assert activity[dormant].abs().max() == 0 and activity.min() >= 0
    cfg = get_defense("fp").config.from_dict({"max_acc_drop": 1.0, "max_prune": 1.0})
    clean = clean_set(digits8, 0.1)
    order, trace = prune_order(model, layer, clean, cfg, torch.device("cpu"))
    assert sorted(order[:3]) == dormant and len(order) == layer.channels
    assert trace[0]["pruned"] == 0 and trace[3]["acc"] == trace[0]["acc"]  # dormant: no change
    # with a bound, pruning stops where the accuracy would fall below it
    bounded = get_defense("fp").config.from_dict({"max_acc_drop": 0.0, "max_prune": 1.0})
    order, trace = prune_order(model, layer, clean, bounded, torch.device("cpu"))
    assert len(order) >= 3 and len(trace) == len(order) + 2
    assert trace[-1]["acc"] < trace[0]["acc"] and trace[-2]["acc"] >= trace[0]["acc"]
    res = get_defense("fp").run(model, clean, quick("fp", max_acc_drop=0.0), device="cpu")
    assert res.notes["pruned"][:3] and sorted(res.notes["pruned"][:3]) == dormant
    out = last_conv(res.model, digits8.test.x[:2])
    pruned = res.notes["pruned"]
    assert out.conv.weight[pruned].abs().max() == 0 and out.bn.weight[pruned].abs().max() == 0


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("name,needs", [("fp", "convolution"), ("nad", "convolution"),
                                        ("anp", "BatchNorm")])  # fmt: skip
def test_a_defence_that_cannot_run_on_the_model_says_why(name, needs, digits8):
    model = _Linear()
    with pytest.raises(ValueError, match=needs):
        DEFENSES[name].check_model(model)
    with pytest.raises(ValueError, match=needs):
        DEFENSES[name].run(model, clean_set(digits8, 0.05), quick(name), device="cpu")


@pytest.mark.parametrize("name", ["sau", "ft", "ibau"])
def test_sau_ft_and_ibau_run_on_a_model_without_convolutions(name, digits8):
    assert DEFENSES[name].check_model is None
    res = DEFENSES[name].run(_Linear(), clean_set(digits8, 0.05), quick(name, rounds=1),
                             device="cpu")  # fmt: skip
    assert res.rounds_done == 1


# ----------------------------------------------------------------------------------- NAD
def test_nad_attention_maps_are_unit_vectors_and_the_loss_is_zero_for_equal_maps():
    f = torch.randn(4, 8, 5, 5)
    a = attention_map(f, 2.0)
    assert a.shape == (4, 25) and torch.allclose(a.norm(dim=1), torch.ones(4))
    # the map ignores the scale of the features and their sign
    assert torch.allclose(attention_map(-3 * f, 2.0), a, atol=1e-6)
    assert attention_loss(f, 2 * f, 2.0) < 1e-12
    assert attention_loss(f, torch.randn(4, 8, 5, 5), 2.0) > 0


def test_nad_distils_a_resnets_last_stages_and_a_cnns_last_relus(digits8):
    x = digits8.test.x[:1]
    assert attention_layers(create_model("preact_resnet10", digits8.info), x) == [
        "net.layer2", "net.layer3", "net.layer4"]  # fmt: skip
    # the small CNN: the ReLUs of its last three conv blocks (not the head's)
    assert attention_layers(create_model("small_cnn", digits8.info), x) == [
        "net.features.5", "net.features.9", "net.features.12"]  # fmt: skip


# ----------------------------------------------------------------------------------- ANP
def test_anp_masks_at_one_leave_the_model_as_it_is(tiny):
    model, clean, _, _ = tiny
    masks = NeuronMasks(create_model("small_cnn", clean.info, seed=0).eval())
    try:
        x = clean.x[:8]
        assert torch.allclose(masks(x), model.eval()(x), atol=1e-5)
        masks.mode = "pruned"  # masks of 1 survive any threshold up to 1
        masks.threshold = 1.0
        assert torch.allclose(masks(x), model(x), atol=1e-5)
    finally:
        masks.close()


def test_anp_masks_stay_in_the_unit_interval_and_threshold_zero_prunes_nothing(tiny):
    model, clean, test, bd = tiny
    res = get_defense("anp").run(model, clean, quick("anp", threshold=0.0, lr=5.0), test=test,
                                 backdoor=bd, device="cpu")  # fmt: skip
    assert res.notes["mask_min"] >= 0 and res.notes["mask_mean"] <= 1
    assert res.notes["mask_min"] < 1  # the masks did move (a large rate)
    assert res.notes["pruned"] == 0
    for a, b in zip(model.state_dict().values(), res.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # a threshold of 1 prunes every neuron whose mask moved below 1
    res = get_defense("anp").run(model, clean, quick("anp", threshold=1.0, lr=5.0), device="cpu")
    assert res.notes["pruned"] > 0


# --------------------------------------------------------------------------------- i-BAU
def test_ibau_hypergradient_matches_finite_differences_on_a_linear_model():
    """Inner: delta* = argmin_d -CE(W(x + d) + b) + lam ||d||^2 (strongly convex for small W);
    outer: CE(W(x + delta*) + b). The implicit hypergradient with many fixed-point iterations
    equals central finite differences of the outer loss with the inner problem re-solved."""
    torch.manual_seed(0)
    dtype = torch.float64
    x = torch.randn(6, 4, dtype=dtype)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    w = (0.3 * torch.randn(3, 4, dtype=dtype)).requires_grad_(True)
    b = (0.1 * torch.randn(3, dtype=dtype)).requires_grad_(True)
    lam, a = 1.0, 0.2

    def inner(d, w, b):
        return -nn.functional.cross_entropy((x + d) @ w.T + b, y) + lam * d.pow(2).sum()

    def solve(w, b, steps=3000):
        d = torch.zeros(1, 4, dtype=dtype, requires_grad=True)
        for _ in range(steps):
            (g,) = torch.autograd.grad(inner(d, w, b), d)
            d = (d - a * g).detach().requires_grad_(True)
        return d.detach()

    def outer_at(w, b):
        d = solve(w, b)
        return float(nn.functional.cross_entropy((x + d) @ w.T + b, y).detach())

    def phi(d):
        (g,) = torch.autograd.grad(inner(d, w, b), d, create_graph=True)
        return d - a * g

    delta = solve(w, b)
    grads = fixed_point_hypergradient(
        lambda d: nn.functional.cross_entropy((x + d) @ w.T + b, y), phi, delta, [w, b], K=500
    )
    direct = fixed_point_hypergradient(
        lambda d: nn.functional.cross_entropy((x + d) @ w.T + b, y), phi, delta, [w, b], K=0
    )
    h = 1e-5
    for p, g, g0 in zip([w, b], grads, direct, strict=True):
        fd = torch.zeros_like(p)
        for i in range(p.numel()):
            with torch.no_grad():
                p.view(-1)[i] += h
            up = outer_at(w, b)
            with torch.no_grad():
                p.view(-1)[i] -= 2 * h
            down = outer_at(w, b)
            with torch.no_grad():
                p.view(-1)[i] += h
            fd.view(-1)[i] = (up - down) / (2 * h)
        assert torch.allclose(g, fd, atol=1e-6, rtol=1e-4), (g, fd)
        # the implicit part matters here: the direct gradient alone is off
        assert not torch.allclose(g0, fd, atol=1e-4)
