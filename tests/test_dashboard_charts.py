"""The dashboard's plain pieces, without a Streamlit runtime: chart builders, texts, form schemas."""

from __future__ import annotations

import pytest

from dashboard import charts
from dashboard.glossary import HELP, duration, pct, progress_label
from dashboard.widgets import field_schema, float_step, help_of
from sau_core.defenses.sau import SAUConfig
from sau_core.serving import JobView
from sau_core.train import TrainConfig, default_train_config

BEFORE = {"acc": 0.95, "asr": 1.0, "ra": 0.0, "per_class_asr": {"1": 1.0, "2": 0.9}}
ROUNDS = [
    {"round": 1, "rounds": 3, "acc": 0.94, "asr": 0.5, "ra": 0.4, "n": 90,
     "per_class_asr": {"1": 0.6, "2": 0.4}, "adv_h": 80, "adv_h0": 85, "common": 70, "shared": 60},
    {"round": 2, "rounds": 3, "acc": 0.95, "asr": 0.1, "ra": 0.8, "n": 90,
     "per_class_asr": {"1": 0.2, "2": 0.0}, "adv_h": 70, "adv_h0": 85, "common": 50, "shared": 20},
]  # fmt: skip


def _trace(fig, name):
    (t,) = [t for t in fig.data if t.name == name]
    return list(t.x), list(t.y)


def test_metric_curves_start_at_round_zero_with_the_backdoored_model():
    fig = charts.metric_curves(ROUNDS, BEFORE, total=3)
    assert [t.name for t in fig.data] == ["ACC", "ASR", "RA"]
    assert _trace(fig, "ASR") == ([0, 1, 2], [1.0, 0.5, 0.1])
    assert _trace(fig, "RA") == ([0, 1, 2], [0.0, 0.4, 0.8])
    assert list(fig.layout.xaxis.range) == [-0.3, 3.3]
    assert fig.layout.uirevision == "keep"  # the live redraw keeps hidden lines hidden


def test_metric_curves_draw_the_largest_off_target_pull_and_its_class():
    before = {**BEFORE, "off_target": {"1": 0.0, "2": 0.01}}
    rounds = [{**ROUNDS[0], "off_target": {"1": 0.3, "2": 0.05}},
              {**ROUNDS[1], "off_target": {"1": 0.1, "2": 0.6}}]  # fmt: skip
    fig = charts.metric_curves(rounds, before, total=3)
    assert [t.name for t in fig.data][-1] == "largest pull (to another class)"
    assert _trace(fig, "largest pull (to another class)") == ([0, 1, 2], [0.01, 0.3, 0.6])
    assert list(fig.data[-1].customdata) == [2, 1, 2]  # the class each point pulls to
    assert "pull" in fig.layout.title.text
    # records without pull (older runs, unknown trigger) draw no such line
    assert "largest pull (to another class)" not in [
        t.name for t in charts.metric_curves(ROUNDS, BEFORE).data]  # fmt: skip


def test_metric_curves_without_trigger_have_only_acc():
    rounds = [{**r, "asr": None, "ra": None, "per_class_asr": None} for r in ROUNDS]
    fig = charts.metric_curves(rounds, {"acc": 0.9, "asr": None, "ra": None})
    assert [t.name for t in fig.data] == ["ACC"]
    assert charts.per_class_asr_curves(rounds).data == ()


def test_per_class_asr_has_one_line_per_source_class():
    fig = charts.per_class_asr_curves(ROUNDS, BEFORE, class_names=["zero", "one", "two"])
    assert [t.name for t in fig.data] == ["class one", "class two"]
    assert _trace(fig, "class one") == ([0, 1, 2], [1.0, 0.6, 0.2])
    assert _trace(fig, "class two") == ([0, 1, 2], [0.9, 0.4, 0.0])
    # a clickable legend under the plot (beside it, it swallowed the chart at 1024 px), and one
    # colour per class, the same on every chart and in the report
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0
    assert [t.line.color for t in fig.data] == [charts.class_color(1), charts.class_color(2)]


def test_per_class_asr_accepts_int_keys():
    fig = charts.per_class_asr_curves([{"round": 1, "per_class_asr": {3: 0.5}}])
    assert _trace(fig, "class 3") == ([1], [0.5])


def test_saturated_line_only_when_a_run_has_saturated_examples():
    assert "saturated (too sure to unlearn)" not in [t.name for t in charts.sae_counts(ROUNDS).data]
    rounds = [{**r, "saturated": s} for r, s in zip(ROUNDS, (50, 0, 0), strict=False)]
    fig = charts.sae_counts(rounds)
    assert _trace(fig, "saturated (too sure to unlearn)") == ([1, 2], [50, 0])


def test_landing_shares_per_class_with_the_target_drawn_thick():
    rounds = [{**r, "adv_classes": c} for r, c in zip(ROUNDS, ([6, 2, 0], [1, 1, 2]), strict=False)]
    fig = charts.adv_class_shares(rounds, target=0, class_names=["zero", "one", "two"])
    assert [t.name for t in fig.data] == ["class zero (target)", "class one", "class two"]
    assert _trace(fig, "class zero (target)") == ([1, 2], [0.75, 0.25])
    assert _trace(fig, "class two") == ([1, 2], [0.0, 0.5])
    assert fig.data[0].line.width > fig.data[1].line.width
    # runs recorded before the counts existed, or rounds with nothing to unlearn: no lines
    assert charts.adv_class_shares(ROUNDS).data == ()
    assert charts.adv_class_shares([{**ROUNDS[0], "adv_classes": [0, 0, 0]}]).data == ()


def test_attack_target_only_for_all_to_one():
    assert charts.attack_target({"attack": {"target": 3, "label_rule": "all2one"}}) == 3
    assert charts.attack_target({"attack": {"target": 3}}) == 3
    assert charts.attack_target({"attack": {"target": 3, "label_rule": "all2all"}}) is None
    assert charts.attack_target({"attack": None}) is None and charts.attack_target({}) is None


def test_sae_counts_and_losses():
    fig = charts.sae_counts(ROUNDS)
    assert _trace(fig, "shared (same wrong class)") == ([1, 2], [60, 20])
    assert "of 90 clean images" in fig.layout.yaxis.title.text
    batches = [{"step": 1, "loss": 2.0, "l_cl": 1.5, "l_shared": 0.5}, {"step": 2, "loss": 1.0}]
    fig = charts.loss_curves(batches)
    assert _trace(fig, "total") == ([1, 2], [2.0, 1.0])
    assert _trace(fig, "L_cl (clean)") == ([1, 2], [1.5, None])
    train = charts.loss_curves([{"step": 1, "loss": 2.3}], sau=False)
    assert [t.name for t in train.data] == ["training loss"]


def test_empty_histories_give_empty_figures():
    assert charts.metric_curves([]).data == ()
    assert charts.per_class_asr_curves([]).data == ()
    assert charts.loss_curves([]).data == ()
    assert len(charts.sae_counts([]).data) == 4  # four empty lines, still a valid figure


def test_train_curves_skip_epochs_without_evaluation():
    epochs = [{"epoch": 1, "train_acc": 0.5, "acc": None, "asr": None},
              {"epoch": 2, "train_acc": 0.7, "acc": 0.8, "asr": 0.9, "ra": 0.1}]  # fmt: skip
    fig = charts.train_curves(epochs)
    assert _trace(fig, "ACC") == ([2], [0.8])
    assert _trace(fig, "training accuracy") == ([1, 2], [0.5, 0.7])


def test_before_after_rows():
    metrics = {"before": BEFORE, "after": {"acc": 0.93, "asr": 0.02, "ra": 0.9}}
    rows = charts.before_after_rows(metrics)
    assert rows[0] == {"metric": "ACC", "before SAU": "95.0%", "after SAU": "93.0%",
                       "change": "-2.0 pts"}  # fmt: skip
    assert rows[1]["change"] == "-98.0 pts"
    none = charts.before_after_rows({"before": {"acc": 0.9, "asr": None}, "after": {"acc": 0.9}})
    assert [r["metric"] for r in none] == ["ACC"]  # what was not measured gets no row of dashes


# ------------------------------------------------------------------------------------ texts
def test_every_metric_is_explained():
    for key in ("acc", "asr", "ra", "der", "shared", "per_class_asr", "counts", "losses"):
        assert len(HELP[key]) > 80, key


@pytest.mark.parametrize(
    "seconds, text", [(0.4, "0 s"), (59.6, "1 min 00 s"), (65.2, "1 min 05 s"), (7322, "2 h 02 min"), (None, "–")]
)  # fmt: skip
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_pct():
    assert pct(0.98765) == "98.8%" and pct(None) == "–" and pct(float("nan")) == "–"


def _view(**kw) -> JobView:
    base = dict(run_id="r", kind="purify", state="running", message="", device="cpu (2 threads)",
                step=10, total_steps=40, t_started=100.0, t_last=110.0, t_ended=None, epochs=[],
                rounds=[{"round": 1, "rounds": 4}], batches=[], before=None, final=None,
                probe=None, probe_rounds=[])  # fmt: skip
    return JobView(**{**base, **kw})


def test_progress_label_names_round_eta_and_device():
    v = _view()
    assert progress_label(v, v.progress(now=110.0)) == (
        "round 1 of 4 · 25% · 30 s left · on cpu (2 threads)"
    )
    v = _view(kind="attack", rounds=[], epochs=[{"epoch": 2, "epochs": 5}], step=0, t_last=100.0)
    assert progress_label(v, v.progress(now=100.0)).startswith("epoch 2 of 5 · 0% · estimating")
    assert "waiting" in progress_label(_view(state="queued"), v.progress())
    assert "loading" in progress_label(_view(t_started=None), v.progress())


# ------------------------------------------------------------------------------------ forms
def test_field_schema_carries_metadata_and_data_set_defaults():
    schema = {e["name"]: e for e in field_schema(SAUConfig, SAUConfig(rounds=7))}
    assert schema["rounds"]["default"] == 7 and schema["rounds"]["min"] == 1
    assert schema["norm"]["choices"] == ["Linf", "L2", "L1", "Reg"]
    assert schema["clip"]["type"] == "bool" and schema["eps"]["type"] == "float"
    assert set(schema) == {f for f in SAUConfig.__dataclass_fields__}
    train = {e["name"]: e for e in field_schema(TrainConfig, default_train_config("digits"))}
    assert train["lr"]["default"] == default_train_config("digits").lr
    with pytest.raises(TypeError):
        field_schema(dict)


def test_float_step_and_help():
    assert float_step(1e-4) == pytest.approx(1e-5)
    assert float_step(0.2) == pytest.approx(0.01) and float_step(0.0) == 0.01
    text = help_of({"help": "PGD steps", "min": 0, "max": 1000, "default": 5})
    assert text == "PGD steps (≥ 0, ≤ 1000) Default: 5."
    assert "> 0" in help_of({"help": "x", "min": 0.0, "exclusive_min": True, "default": 0.2})


def test_compare_rows_say_not_measured_without_a_trigger():
    rows = charts.compare_rows([("unknown", {"before": {"acc": 0.99, "asr": None},
                                             "after": {"acc": 0.98, "asr": None}, "der": None})])  # fmt: skip
    row = rows[0]
    assert row["ACC after"] == "98.0%"
    assert row["ASR after"] == row["RA before"] == row["DER"] == "not measured"
    assert charts.compare_rows([("queued", None)])[0]["ASR after"] == "–"  # nothing yet


def test_an_attack_in_words_shortens_what_was_recorded_when_planted():
    from dashboard.glossary import describe_attack

    text = describe_attack({"name": "ssba", "target": 0, "poison_ratio": 0.1,
                            "params": {"eps": 0.1, "encoder_sha256": "ab" * 32}})  # fmt: skip
    assert text == ("SSBA, target class 0 (all to one), 10% of the training images poisoned; "
                    "eps 0.1, encoder sha256 abababababab…")  # fmt: skip
