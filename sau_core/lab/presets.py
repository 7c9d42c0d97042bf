"""Set-ups chosen by measurement: the embedded demo (:data:`DEMO`), each attack's model for its
ready-made checkpoint (:func:`attack_setup`), and the named lessons (:data:`TEACHING_PRESETS`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..attacks import AttackSpec
from ..data import DataSpec
from ..defenses.sau import SAUConfig, default_sau_config
from ..train import TrainConfig, default_train_config
from .recipes import recipe


# ----------------------------------------------------------------------------- demo preset
@dataclass(frozen=True)
class DemoPreset:
    """The embedded demo, chosen by measurement (bench/bench_demo_choice.py and
    bench/bench_sau_table.py; docs/results.md, "The demo setting").

    Digits upsampled to 16x16, ``wide_cnn`` (the small CNN's plan with a strided first conv and
    32-128 channels: on the small CNN SAU does not remove Blended, on this one it does, at
    about the same cost) trained with random crops (4-pixel padding, the CIFAR-10 recipe: without them
    the model's adversarial examples mostly land on class 8, not on the target, and SAU cannot
    reach the backdoor) and label smoothing 0.1 (without it the model is often so sure of its
    trigger class that SAU's loss has almost no gradient there: ``sau_core.defenses.sau.saturated_flags``),
    BadNets 10%, 30% clean data, SAU with the reference's settings except a batch of 64 (digits
    default) for 60 rounds.
    """

    data: DataSpec
    arch: str
    attack: AttackSpec
    train: TrainConfig
    clean_ratio: float
    sau: SAUConfig


DEMO = DemoPreset(
    data=DataSpec("digits", None, dict(recipe("digits").data)),
    arch=recipe("digits").arch,
    attack=AttackSpec("badnets", {}, target=0, poison_ratio=0.1, seed=0),
    train=default_train_config("digits"),
    clean_ratio=recipe("digits").clean_ratio,
    sau=default_sau_config("digits"),
)


# The model of each attack's ready-made checkpoint and lesson: the demo's, except where measured
# otherwise (bench/bench_sau_table.py, 2 threads, seeds 0-2): WaNet barely takes on wide_cnn
# trained with random crops (ASR 0.04-0.07 before SAU) and takes more on the small CNN (0.20-0.46).
ATTACK_ARCH: dict[str, str] = {"wanet": "small_cnn"}


def attack_setup(attack: str, base: DemoPreset = DEMO) -> DemoPreset:
    """``base`` with ``attack`` (its default parameters) on that attack's model (:data:`ATTACK_ARCH`,
    else ``base.arch``): the setting of the ready-made checkpoint of ``attack``."""
    return replace(
        base,
        arch=ATTACK_ARCH.get(attack, base.arch),
        attack=replace(base.attack, name=attack, params={}),
    )


@dataclass(frozen=True)
class TeachingPreset:
    """A named set-up for a lesson: the demo's data, training and SAU settings with one attack
    and a model (the ready-made checkpoint of that attack and model, when there is one, is
    exactly this; the dashboard trains the others in place)."""

    title: str  # what the dashboard shows
    help: str  # one line on what the lesson shows
    setup: DemoPreset


TEACHING_PRESETS: dict[str, TeachingPreset] = {
    "badnets": TeachingPreset(
        "BadNets on digits",
        "A visible 3x3 patch in the corner; SAU takes ASR from 1.00 to 0.00-0.02. Watch RA too: "
        "the purified model sends many patched images to class 1, not to their own (RA 0.36-0.37).",
        DEMO,
    ),
    "blended": TeachingPreset(
        "Blended on digits",
        "A noise key mixed into the whole picture, invisible at a glance; SAU takes ASR from "
        "1.00 to 0.00. Then run the re-tuning test on the run's page: 5 poisoned samples bring "
        "it back within 2 epochs, so it was hidden, not removed.",
        attack_setup("blended"),
    ),
    "sig": TeachingPreset(
        "clean-label SIG",
        "Only target-class images are poisoned and keep their true label; the trigger is a faint "
        "sinusoid over the whole image. SAU takes ASR from 0.94 to 0.00 and ACC goes up, but "
        "the sinusoid now sends most triggered images to class 9, and re-tuning brings the "
        "backdoor back within 2 epochs.",
        attack_setup("sig"),
    ),
    "wanet": TeachingPreset(
        "invisible WaNet",
        "A slight warp of the image that the eye does not see; on digits trained with random "
        "crops the attack only partly takes (ASR about 0.2, on the small CNN where it takes "
        "most), and SAU removes what there is.",
        attack_setup("wanet"),
    ),
    "lc": TeachingPreset(
        "clean-label LC",
        "Only target-class images are poisoned and keep their true label, so a label check "
        "finds nothing; each is first made hard to learn (a small adversarial change against a "
        "clean model), then gets checkerboard corners, and the model learns the corners "
        "(ASR 0.99). On digits it needs nearly every target-class image: the ready-made model "
        "pays 4 points of clean ACC (0.95), and with 90% of them ASR was only 0.64.",
        attack_setup("lc"),
    ),
    "lf": TeachingPreset(
        "low-frequency LF",
        "A smooth pattern with no fine detail (only low spatial frequencies), found against a "
        "clean model and added to the whole image; frequency-based detectors look for the fine "
        "detail other triggers have. ASR 0.98 at clean ACC 0.99.",
        attack_setup("lf"),
    ),
    "ssba": TeachingPreset(
        "invisible per-image SSBA",
        "An encoder hides a secret code in each poisoned image as a faint residual (at most 0.1 "
        "of the pixel range) that follows the image's strokes, so no two images carry the same "
        "pattern; the model learns to read the code. ASR 1.00 at clean ACC 0.99. SAU Lab's "
        "encoder is its own small one, not the paper's StegaStamp (docs/attacks.md).",
        attack_setup("ssba"),
    ),
    "inputaware": TeachingPreset(
        "per-image Input-aware",
        "A generator draws a different small trigger on every image; the model learns to obey "
        "an image's own trigger and to ignore one made for another image. Trigger-"
        "reconstruction defences look for one trigger and find none. ASR 0.90 at clean ACC "
        "0.99; the generator is trained with a clean model first (about half a minute).",
        attack_setup("inputaware"),
    ),
    "blended_small": TeachingPreset(
        "Blended on the small CNN: where SAU is weak",
        "The Blended lesson on the narrower small CNN (16-32 channels against 32-128). "
        "SAU's search for shared examples stops reaching the trigger after a few rounds and ASR "
        "comes back (0.2-0.5 after 60 rounds, three seeds). No ready-made model: it trains in "
        "place first.",
        replace(attack_setup("blended"), arch="small_cnn"),
    ),
    "blended_resnet": TeachingPreset(
        "Blended on a ResNet (slow on a CPU)",
        "The Blended lesson on PreAct-ResNet10, the family of the SAU paper's model: gone within "
        "a few rounds (ASR 1.00 -> 0.00), at 10x the small CNN's compute. No ready-made model: "
        "it trains in place first (docs/results.md gives the times measured on a 2-core CPU).",
        replace(attack_setup("blended"), arch="preact_resnet10"),
    ),
}
