"""The ready-made checkpoints: the shipped ones follow the demo preset (each attack on its model),
and ``make_ready`` puts each attack on the model ``attack_setup`` names."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sau_core.attacks import AttackSpec
from sau_core.io.checkpoint import load_checkpoint
from sau_core.lab.presets import DEMO, attack_setup
from sau_core.lab.ready import DEFAULT_DIR, list_ready, make_ready, verify
from tests.lab import TINY


def test_the_shipped_checkpoints_are_the_demo_preset() -> None:
    entries, note = list_ready(DEFAULT_DIR)
    assert note == "" and [e.name for e in entries] == ["badnets", "blended", "sig", "wanet",
                                                        "lc", "lf", "ssba", "inputaware"]  # fmt: skip
    manifest = json.loads((DEFAULT_DIR / "manifest.json").read_text())
    assert manifest["preset"]["train"] == DEMO.train.to_dict()
    assert manifest["preset"]["data"] == DEMO.data.to_dict()
    for entry in entries:
        verify(entry)  # the files match their SHA-256
        setup = attack_setup(entry.name)
        planted = AttackSpec.from_dict(entry.attack)
        assert planted.prepared()  # LF's pattern, computed when it was planted, is carried
        asked = {**entry.attack, "params": {k: v for k, v in entry.attack["params"].items()
                                            if k not in ("pattern", "generator")}}  # fmt: skip
        assert entry.arch == setup.arch and asked == setup.attack.to_dict()
        assert entry.data == setup.data.to_dict()
        ckpt = load_checkpoint(entry.path)
        assert ckpt.sidecar.arch == entry.arch
        assert ckpt.sidecar.train == DEMO.train.to_dict()
        assert ckpt.sidecar.train_config() == DEMO.train
    archs = {e.name: e.arch for e in entries}
    assert archs == {"badnets": "wide_cnn", "blended": "wide_cnn", "sig": "wide_cnn",
                     "wanet": "small_cnn", "lc": "wide_cnn", "lf": "wide_cnn",
                     "ssba": "wide_cnn", "inputaware": "wide_cnn"}  # fmt: skip
    # as measured when they were made (docs/results.md, "The demo's results"): the backdoors took
    asr = {e.name: e.metrics["asr"] for e in entries}
    assert min(asr["badnets"], asr["blended"], asr["sig"]) > 0.9 and asr["wanet"] > 0.15
    assert min(asr["lc"], asr["lf"], asr["ssba"], asr["inputaware"]) > 0.9


@pytest.mark.parametrize("arch", ["wide_cnn", "preact_resnet10"])
def test_make_ready_puts_each_attack_on_its_model(tmp_path, arch: str) -> None:
    manifest = make_ready(tmp_path, ["badnets", "wanet"], replace(TINY, arch=arch))
    made = {e["name"]: e["arch"] for e in manifest["checkpoints"]}
    assert made == {"badnets": arch, "wanet": "small_cnn"}
    for name, want in made.items():
        assert json.loads((tmp_path / name / "checkpoint.json").read_text())["arch"] == want
