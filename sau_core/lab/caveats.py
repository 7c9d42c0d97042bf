"""Measured warnings in plain words: settings where SAU is known to be weak, training that leaves it
without a grip, and what a run's own records say (saturation, where adversarial examples land,
the trigger's pull after purification).
"""

from __future__ import annotations

from ..data import DataSpec
from ..defenses.sau import SAUConfig
from ..events import to_record
from ..io.checkpoint import Sidecar
from ..metrics import Evaluation
from ..train import TrainConfig
from .presets import DEMO
from .recipes import recipe

# Settings where SAU is measured to be weak (bench/bench_demo_choice.py, bench/bench_sau_table.py;
# figures on this project's 2-core CPU, digits 16x16, 10% poisoning, target 0, seeds 0-2):
# attack -> (the models it was measured weak on, the note).
_WEAK_ON_DIGITS: dict[str, tuple[tuple[str, ...], str]] = {
    "blended": (
        ("small_cnn",),
        "Blended on digits with the small CNN: ASR falls to about 0.2 within five rounds, then "
        "comes back as ACC recovers and ends at 0.2 to 0.5 after 60 rounds (three seeds). The "
        "chart 'Where the examples that fool h0 land' shows why: after about round 5 SAU's "
        "search for shared examples no longer lands on the target, so nothing pushes against "
        "the backdoor. With the demo's wide_cnn (2.4x the compute) or preact_resnet10 (10x) "
        "the same setting removes it (ASR 1.00 -> 0.00-0.01, three seeds).",
    ),
    "wanet": (
        ("small_cnn", "wide_cnn", "preact_resnet10"),
        "WaNet on digits: the attack only partly takes on a model trained with random crops "
        "(ASR 0.03 to 0.46 before SAU), so there is less for SAU to remove.",
    ),
}


# Measured (bench/bench_clean_ratio.py: the ready-made digits models, the digits defaults
# otherwise: 60 rounds, batch 64, 2 threads): ASR after SAU per clean ratio, (BadNets, Blended).
# The default, 30%, gives 0.000 and 0.002 (torch 2.15; docs/results/clean_ratio.md).
_DIGITS_CLEAN = {0.05: (0.70, 0.09), 0.1: (0.55, 0.06), 0.2: (0.08, 0.01)}


def sau_caveats(
    data: DataSpec | dict,
    clean_size: int,
    config: SAUConfig,
    attack: str | None = None,
    arch: str | None = None,
    *,
    clean_ratio: float | None = None,
) -> list[str]:
    """Plain-words warnings for settings where SAU is known (measured) to be weak; [] if none.

    ``arch`` None means the demo's model; an attack's note applies only to the models it was
    measured on (:data:`_WEAK_ON_DIGITS`). ``clean_ratio``: the defender's share, checked
    against what was measured on digits."""
    d = data.to_dict() if isinstance(data, DataSpec) else dict(data)
    notes = []
    if d.get("name") == "digits":
        if int(d.get("kwargs", {}).get("resolution", 8)) == 8:
            notes.append(
                "Digits at their native 8x8: SAU does not remove a backdoor here (measured with "
                "the authors' code and ours: ASR stays above 0.8 with 5 to 50% clean data). "
                "Use 16x16 or 32x32."
            )
        weak = _WEAK_ON_DIGITS.get(attack or "")
        if weak is not None and (arch or DEMO.arch) in weak[0]:
            notes.append(weak[1])
        default = recipe("digits").clean_ratio
        if clean_ratio is not None and clean_ratio < default:
            figures = "; ".join(f"{r:.0%} clean: BadNets {b:.2f}, Blended {bl:.2f}"
                                for r, (b, bl) in _DIGITS_CLEAN.items())  # fmt: skip
            notes.append(
                f"A clean set of {clean_ratio:.0%} of the training images is small for digits. "
                "Measured on the ready-made models with the other defaults (ASR after SAU, "
                f"from 1.00): {figures}; the default {default:.0%} gives 0.00 and 0.00."
            )
    if 0 < clean_size < config.batch_size:
        notes.append(
            f"The batch ({config.batch_size}) is larger than the clean set ({clean_size} images): "
            "each round makes a single update, so SAU needs many more rounds."
        )
    return notes


def train_caveats(data: DataSpec | dict, config: TrainConfig) -> list[str]:
    """Plain-words warnings for training settings that were measured to leave SAU without a
    grip on digits (docs/results.md, "The demo setting"); [] elsewhere or when none applies."""
    d = data.to_dict() if isinstance(data, DataSpec) else dict(data)
    if d.get("name") != "digits":
        return []
    notes = []
    if config.augment in ("auto", "none"):
        notes.append(
            "Trained without random crops: on digits such models send most of their "
            "adversarial examples to one class that is not the target (class 8), so SAU's "
            "search misses the backdoor (measured: ASR 0.995 -> 0.975 after SAU at 16x16). The "
            "digits default trains with crops (--augment crop --crop-pad 4)."
        )
    if config.label_smoothing == 0:
        notes.append(
            "Trained without label smoothing: on digits 8 such Blended models had 85% or more "
            "of their adversarial examples saturated (so sure that SAU's loss has almost no "
            "gradient), and 3 of them kept ASR at 0.98 or more through 60 rounds. The digits "
            "default uses --label-smoothing 0.1."
        )
    return notes


def stored_train_caveats(sidecar: Sidecar, data: DataSpec | dict) -> list[str]:
    """:func:`train_caveats` for a checkpoint, from its sidecar's training settings ([] when it
    has none, e.g. a model imported from elsewhere, or one of another version)."""
    config = sidecar.train_config()
    return [] if config is None else train_caveats(data, config)


def _record(rnd) -> dict:
    """A round record as a dict: SAURound events and the dicts a run directory keeps alike."""
    return rnd if isinstance(rnd, dict) else to_record(rnd)


# Measured (bench/bench_sau_table.py, bench/bench_demo_choice.py; digits 16x16, small CNN, no
# label smoothing): 8 Blended models had 85% or more of their adversarial examples saturated;
# 3 of them kept ASR >= 0.98 through 60 rounds, the others ended at 0.18-0.52. With label
# smoothing 0.1 (the demo's training) no model had any, on the small CNN or on wide_cnn.
SATURATION_WARNING = 0.5


# Measured (docs/results.md, the choice table; shares before SAU): digits models whose
# adversarial examples landed 14-16% on the target kept ASR at 0.84-0.98 after SAU; clean-label
# SIG models at 18-25% were cleaned, BadNets and Blended models at 38-92% mostly were.
LANDING_WARNING = 0.2


def run_caveats(rounds: list, target: int | None = None) -> list[str]:
    """Plain-words warnings read from a run's own round records (SAURound or their dicts).

    A saturated backdoored model: when h is so sure of h0's adversarial class that the mass on
    every other class is under a millionth, SAU's unlearning loss (as the authors write it) has
    almost no gradient there (:func:`sau_core.defenses.sau.saturated_flags`). And, when the all-to-one
    ``target`` is known, a search that misses it: under :data:`LANDING_WARNING` of round 1's
    examples that fool h0 land on the target.
    """
    if not rounds:
        return []
    notes = []
    shares = landing_shares(rounds[:1])
    if target is not None and shares and 0 <= target < len(shares[0][1]):
        first_shares = shares[0][1]
        if first_shares[target] < LANDING_WARNING:
            top = max(range(len(first_shares)), key=first_shares.__getitem__)
            notes.append(
                f"SAU's search barely reaches the backdoor: in round 1 only "
                f"{first_shares[target]:.0%} of the examples that fool h0 land on the target, "
                f"class {target} (class {top} takes {first_shares[top]:.0%}). SAU can only unlearn "
                "what its examples reach: on digits, models with 14-16% there kept ASR at "
                "0.84-0.98 after SAU (trained without random crops, or with 2-pixel ones), while "
                "SIG models with 18-25% were cleaned."
            )
    first = _record(rounds[0])
    acting = int(first.get("potential_poison") or 0)
    saturated = int(first.get("saturated") or 0)
    if acting == 0 or saturated / acting < SATURATION_WARNING:
        return notes
    return notes + [
        f"The backdoored model is saturated: on {saturated} of the {acting} adversarial examples "
        "SAU unlearned in round 1, it puts all but a millionth of its probability on one class. "
        "There SAU's unlearning loss (as in the authors' code) has almost no gradient, so the "
        "backdoor may stay: on digits, 3 of 8 such models kept ASR at 0.98 or more. Models "
        "trained with label smoothing (a training setting on the Set up page, "
        "`--label-smoothing` in the CLI) do not saturate."
    ]


# Measured (one-off checks, digits 16x16, the demo's settings): a clean wide_cnn (no poisoning)
# pulls at most 11% of the triggered test images to any one class (Blended's noise key to class 8;
# BadNets, SIG and WaNet at most 1.4%), while the purified ready-made models pull 70% (BadNets,
# to class 1) and 65% (SIG, to class 9); purified Blended at most 2.5%.
TRIGGER_PULL_WARNING = 0.3


def trigger_caveats(after: Evaluation | dict | None) -> list[str]:
    """Plain-words warning when, after SAU, the trigger still steers the model to another class.

    ``after`` is the purified model's full evaluation (an :class:`Evaluation` or a ``metrics.json``
    block); its off-target pull (:func:`sau_core.metrics.off_target_pull`) at or above
    :data:`TRIGGER_PULL_WARNING` for some class gives one note. [] when there is none, or no
    trigger is known, or the block predates the measure.
    """
    if after is None:
        return []
    pull = after.off_target if isinstance(after, Evaluation) else after.get("off_target")
    if not pull:
        return []
    cls, share = max(((int(c), float(v)) for c, v in pull.items()), key=lambda cv: cv[1])
    if share < TRIGGER_PULL_WARNING:
        return []
    return [
        f"The trigger still steers the purified model, now towards class {cls}: it sends "
        f"{share:.0%} of the triggered test images that are not of class {cls} there. ASR "
        "counts only the attack's target, so it misses this; RA (triggered images given their "
        "own class) shows it. On digits a clean model sends at most 11% of them to one class."
    ]


def landing_shares(rounds: list) -> list[tuple[int, list[float]]]:
    """Per round that has the counts (``SAURound.adv_classes``, records or their dicts):
    ``(round, share of the examples SAU unlearns that h0 puts in each class)``. Rounds without
    counts (runs from before they were recorded) or with none to share are left out."""
    out = []
    for r in map(_record, rounds):
        counts = r.get("adv_classes")
        total = sum(counts) if counts else 0
        if total:
            out.append((r["round"], [c / total for c in counts]))
    return out


def landing_summary(rounds: list) -> str | None:
    """One line on where the examples SAU unlearns land (h0's class for them, see
    ``SAURound.adv_classes``): the class that takes most of them in round 1, and its share then
    and in the last round. A backdoored model's examples crowd into its target, so with an
    unknown trigger this names the suspect; with a known one it shows whether SAU's search
    still reaches the backdoor at the end. None when the rounds have no counts."""
    shares = landing_shares(rounds)
    if not shares:
        return None
    (r1, first), (rn, last) = shares[0], shares[-1]
    top = max(range(len(first)), key=first.__getitem__)
    line = (
        f"h0's adversarial examples land most on class {top}: {first[top]:.0%} of them in "
        f"round {r1}"
    )
    if len(shares) > 1:
        line += f", {last[top]:.0%} in round {rn}"
    return line


def unknown_trigger_report(rounds: list) -> list[str]:
    """Plain words for a run whose trigger is unknown: what was and was not measured, and the
    evidence there is, where h0's adversarial examples land (the suspected target, its share
    against an even spread, the runners-up, and the shares in the first, middle and last round).
    """
    lines = [
        "Measured: ACC before and after, and where the backdoored model h0's adversarial "
        "examples land each round. Not measured: ASR, RA and per-class ASR, which need the "
        "trigger (name it to measure them)."
    ]
    shares = landing_shares(rounds)
    if not shares:
        lines.append("No landing counts were recorded, so there is no suspect either.")
        return lines
    r1, first = shares[0]
    order = sorted(range(len(first)), key=lambda c: -first[c])
    top = order[0]
    rest = ", ".join(f"class {c} {first[c]:.0%}" for c in order[1:3] if first[c] > 0)
    lines.append(
        f"Suspected target: class {top}, which takes {first[top]:.0%} of the examples that fool "
        f"h0 in round {r1} (an even spread would give {1 / len(first):.0%} each)"
        + (f"; next: {rest}." if rest else ".")
        + " A backdoor's target attracts them, but a clean model's also favour some classes: "
        "a lead to check with the trigger, not a proof."
    )
    picks = sorted({0, len(shares) // 2, len(shares) - 1})
    by_round = "; ".join(
        f"round {shares[i][0]}: " + ", ".join(
            f"{c} {shares[i][1][c]:.0%}" for c in sorted(range(len(first)),
                                                         key=lambda c: -shares[i][1][c])[:3])
        for i in picks
    )  # fmt: skip
    lines.append(f"Where they land (top three classes): {by_round}.")
    return lines
