"""Plain-words explanations of every number the dashboard shows, and small text formatters.

One place for the wording, so a metric reads the same on every page. No Streamlit here.
"""

from __future__ import annotations

import math
import re

HELP = {
    "acc": (
        "**ACC (clean accuracy)**: of the ordinary test images, the share the model labels "
        "correctly. It should stay high: a defence that breaks the model is no defence."
    ),
    "asr": (
        "**ASR (attack success rate)**: we stamp the attacker's trigger on test images that do "
        "not belong to the target class, and count how many the model sends to the attacker's "
        "target class. High means the backdoor works; a defence should drive it towards 0."
    ),
    "ra": (
        "**RA (robust accuracy)**: of those same triggered images, the share the model still "
        "labels with their true class. After a good defence RA comes close to ACC."
    ),
    "der": (
        "**DER (defence effectiveness rating)**: (ASR drop - ACC drop + 1) / 2, each drop counted "
        "only when positive. 0.5 means nothing changed; 1 means the backdoor is gone at no cost "
        "in accuracy."
    ),
    "shared": (
        "**Shared adversarial example**: a clean image plus a tiny, carefully searched change "
        "(the perturbation) that fools *both* the backdoored model h0 *and* the model being "
        "purified h into the *same* wrong class. A backdoor trigger is exactly such a change, so "
        "SAU searches for these each round and teaches h to stop agreeing with h0 on them."
    ),
    "per_class_asr": (
        "**Per-class ASR**: the attack success rate split by the triggered image's true class "
        "(its source class). One line per class; click a legend entry to hide it, double-click "
        "to show it alone. A class whose line stays high is one the backdoor still controls."
    ),
    "counts": (
        "**Adversarial examples found per round**, over the clean images SAU trains on: "
        "*adv h* fool the purified model, *adv h0* fool the backdoored one, *common* fool both, "
        "*shared* fool both into the same class (what SAU's search looks for; its unlearning "
        "loss then acts on every example that fools h0). *saturated*, drawn only when there "
        "are some: examples where h is so sure of h0's wrong class that the unlearning loss "
        "has almost no gradient."
    ),
    "landing": (
        "**Where the examples that fool h0 land**: of the examples SAU's loss acts on (those "
        "that fool the backdoored model), the share h0 puts in each class, per round. A "
        "backdoored model's adversarial examples crowd into the attack's target (thick line), "
        "which is how SAU finds the backdoor without knowing the trigger. When the target's "
        "share collapses while ASR is still high, SAU's search no longer reaches the backdoor "
        "and the clean loss can bring it back."
    ),
    "losses": (
        "**Losses**: L_cl is the ordinary cross entropy on clean images (keeps ACC up); "
        "L_shared pushes h away from the class h0 gives the shared adversarial examples "
        "(removes the backdoor). The total is their weighted sum."
    ),
    "round": (
        "**Round**: one pass of the defence over the defender's small clean set. Round 0 is "
        "the backdoored model before the defence."
    ),
    "h0_h": (
        "**h0** is the backdoored model, frozen. **h** starts as a copy of h0 and is the one SAU "
        "changes. Their labels for the adversarial example are shown under each image."
    ),
    "poison_ratio": "Share of the training images the attacker stamps with the trigger.",
    "target": "The class the attacker wants every triggered image to be sent to.",
    "clean_ratio": (
        "Share of the training set the defender holds as trusted clean data (true labels, "
        "no trigger). SAU learns from these images only."
    ),
    "trigger_known": (
        "When the trigger is known we can measure ASR and RA as SAU goes. SAU itself never sees "
        "it: it only uses the clean images."
    ),
}


def pct(value: float | None, digits: int = 1) -> str:
    """0.9876 -> '98.8%'; None or NaN -> '–'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.{digits}f}%"


def duration(seconds: float | None) -> str:
    """65.2 -> '1 min 05 s'; None -> '–'."""
    if seconds is None or math.isnan(seconds):
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_label(view, p) -> str:
    """The progress bar's text: 'round 3 of 20 · 45% · 12 s left · on cpu (2 threads)'.

    ``view`` is a :class:`sau_core.serving.JobView`, ``p`` its :class:`~sau_core.serving.Progress`.
    """
    if view.state == "queued":
        return "waiting for another job to finish"
    if view.t_started is None:
        return "loading the data and the model ..."
    parts = []
    if view.kind == "purify":
        rounds = view.rounds[-1]["rounds"] if view.rounds else None
        done = view.rounds[-1]["round"] if view.rounds else 0
        parts.append(f"round {done} of {rounds}" if rounds else "round 0")
    else:
        epochs = view.epochs[-1]["epochs"] if view.epochs else None
        done = view.epochs[-1]["epoch"] if view.epochs else 0
        parts.append(f"epoch {done} of {epochs}" if epochs else "epoch 0")
    parts.append(f"{100 * p.fraction:.0f}%")
    parts.append("estimating time left" if p.eta is None else f"{duration(p.eta)} left")
    if view.device:
        parts.append(f"on {view.device}")
    return " · ".join(parts)


ATTACK_NAMES = {"badnets": "BadNets", "blended": "Blended", "sig": "SIG", "wanet": "WaNet",
                "lc": "LC (label-consistent)", "lf": "LF (low frequency)",
                "ssba": "SSBA", "inputaware": "Input-aware",
                "custom": "your own trigger"}  # fmt: skip


def describe_attack(spec: dict | None) -> str:
    """An attack spec (``AttackSpec.to_dict()``) in words: 'BadNets, target class 0 (all to
    one), 10% of the training images poisoned, seed 0; size 3, location top-left'."""
    if not spec:
        return "unknown trigger"
    name = ATTACK_NAMES.get(spec.get("name"), str(spec.get("name")))
    rule = "all to one" if spec.get("label_rule", "all2one") == "all2one" else "class y to y+1"
    text = f"{name}, target class {spec.get('target', 0)} ({rule})"
    ratio = spec.get("poison_ratio")
    if isinstance(ratio, (int, float)):
        text += f", {100 * ratio:g}% of the training images poisoned"

    def shown(value):
        if isinstance(value, str) and value.startswith("data:image"):
            return "a picture"
        if isinstance(value, str) and value.startswith("data:"):  # LF's pattern
            return "computed when the backdoor was planted"
        if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):  # SSBA's encoder
            return value[:12] + "…"
        return value

    params = {k: shown(v) for k, v in (spec.get("params") or {}).items()}
    if params:
        text += "; " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in params.items())
    return text


def shorten_uris(obj):
    """``obj`` with every ``data:`` URI (a custom trigger's picture) shown by its size only."""
    if isinstance(obj, dict):
        return {k: shorten_uris(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [shorten_uris(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("data:"):
        return f"<{obj.split(';')[0][5:]} picture, {len(obj):,} characters>"
    return obj
