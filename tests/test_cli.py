"""Tests for ``sau_core.cli``: the ``sau`` command end to end, in process, on digits at 8x8.

One backdoored checkpoint is trained per module (2 epochs, seconds on a CPU) and reused; SAU runs
with one round. Every bad input must end with exit status 2 and a one-line message on stderr,
never a traceback.
Grouped kornia-style: smoke, exception, cardinality, feature.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sau_core.attacks import ATTACKS
from sau_core.cli import main
from sau_core.data import DATASETS
from sau_core.models import MODELS

REPO = Path(__file__).resolve().parent.parent
# the small CNN, plain training: quick and sure to take at 8x8 (the digits defaults are the
# demo's, made for 16x16)
ATTACK_ARGS = ["--dataset", "digits", "--resolution", "8", "--attack", "badnets", "--epochs", "2",
               "--model", "small_cnn", "--augment", "none", "--label-smoothing", "0"]  # fmt: skip


def _run(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with stdout and stderr captured (usable from module-scoped fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    out = tmp_path_factory.mktemp("cli") / "badnets"
    rc, stdout, stderr = _run(["attack", *ATTACK_ARGS, "--out", str(out), "--device", "cpu"])
    return out, rc, stdout, stderr


@pytest.fixture(scope="module")
def ckpt(attacked: tuple[Path, int, str, str]) -> Path:
    out, rc, _, stderr = attacked
    assert rc == 0, stderr
    return out


@pytest.fixture(scope="module")
def purified(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    out = tmp_path_factory.mktemp("cli") / "purified"
    rc, stdout, stderr = _run(
        ["purify", "--checkpoint", str(ckpt), "--out", str(out), "--rounds", "1",
         "--eval-size", "0", "--device", "cpu", "--quiet"]
    )  # fmt: skip
    assert rc == 0, stderr
    return out, rc, stdout


def _assert_usage_error(rc: int, err: str, command: str, *needles: str) -> None:
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"sau {command}: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


# ------------------------------------------------------------------------------------- smoke
def test_attack_writes_outputs(attacked: tuple[Path, int, str, str]) -> None:
    out, rc, stdout, stderr = attacked
    assert rc == 0, stderr
    assert (out / "model.safetensors").is_file()
    assert (out / "checkpoint.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"acc", "asr", "ra", "per_class_asr", "config"} <= set(metrics)
    assert 0.0 <= metrics["acc"] <= 1.0 and 0.0 <= metrics["asr"] <= 1.0
    # all2one, target 0: every class but the target has a per-class ASR
    assert sorted(metrics["per_class_asr"]) == [str(c) for c in range(1, 10)]
    cfg = metrics["config"]
    assert cfg["data"]["kwargs"]["resolution"] == 8
    assert cfg["attack"]["name"] == "badnets" and cfg["train"]["epochs"] == 2
    assert cfg["model"] == "small_cnn"
    assert "backdoored small_cnn on digits with badnets" in stdout and "ASR" in stdout
    assert "[train] epoch 2/2" in stderr  # progress goes to stderr


def test_evaluate(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--checkpoint", str(ckpt), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "ACC" in out and "ASR" in out and "RA" in out


def test_evaluate_json(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--checkpoint", str(ckpt / "model.safetensors"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert {"acc", "asr", "ra", "per_class_asr", "attack"} <= set(got)
    # the same weights on the same test set give the numbers the attack wrote
    metrics = json.loads((ckpt / "metrics.json").read_text())
    for key in ("acc", "asr", "ra"):
        assert got[key] == pytest.approx(metrics[key], abs=1e-9)
    assert got["attack"]["name"] == "badnets"


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (*DATASETS, *MODELS, *ATTACKS):
        assert name in out


def test_console_script_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sau_core.cli", "attack", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--poison-ratio" in proc.stdout


# ------------------------------------------------------------------------------- cardinality
def test_purify_writes_outputs(purified: tuple[Path, int, str]) -> None:
    out, _, stdout = purified
    metrics = json.loads((out / "metrics.json").read_text())
    for block in ("before", "after"):
        assert {"acc", "asr", "ra", "per_class_asr", "off_target"} <= set(metrics[block])
        assert metrics[block]["asr"] is not None
        # every class but the target (0, all-to-one) has its off-target pull
        pull = metrics[block]["off_target"]
        assert sorted(pull) == [str(c) for c in range(1, 10)]
        assert all(0.0 <= v <= 1.0 for v in pull.values())
    assert 0.0 <= metrics["der"] <= 1.0
    assert metrics["rounds_done"] == 1
    lines = (out / "history.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["round"] == 1
    assert (out / "model.safetensors").is_file() and (out / "checkpoint.json").is_file()
    assert "before" in stdout and "after" in stdout and "DER" in stdout
    assert "adversarial examples land most on class" in stdout


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


def test_probe_json_has_the_figures_and_changes_nothing_already_saved(
    purified: tuple[Path, int, str],
) -> None:
    out = purified[0]
    assert sorted(p.name for p in (out / "probes").iterdir())  # SAU's snapshots, as the runner
    before = _tree(out)
    rc, stdout, stderr = _run(["probe", "--checkpoint", str(out), "--json", "--set", "epochs=2",
                               "--set", "clean=60", "--device", "cpu"])  # fmt: skip
    assert rc == 0, stderr
    got = json.loads(stdout)
    assert {"acc", "asr", "ra", "pull", "reactivation", "verdict", "recovery"} <= set(got)
    assert sorted(got["pull"]) == [str(c) for c in range(1, 10)]  # every class but the target
    re = got["reactivation"]
    assert len(re["model"]["asr"]) == len(re["baseline"]["asr"]) == 3  # before + 2 epochs
    assert re["model"]["asr"][0] == pytest.approx(got["asr"])
    assert got["verdict"]["headline"] and got["verdict"]["readings"]
    assert got["recovery"]["available"] and got["recovery"]["match"]["kind"] == "region"
    after = _tree(out)
    assert {k: v for k, v in after.items() if not k.startswith("probe/")} == before
    assert {"probe/probe.json", "probe/baseline/model.safetensors"} <= set(after)
    # a second probe reuses the baseline it trained
    rc, stdout, _ = _run(["probe", "--checkpoint", str(out), "--json", "--set", "epochs=1",
                          "--set", "clean=60"])  # fmt: skip
    assert rc == 0 and json.loads(stdout)["reactivation"]["baseline"]["cached"] is True


def test_probe_prints_the_verdict_and_what_it_cannot_measure(ckpt: Path, tmp_path: Path) -> None:
    rc, stdout, stderr = _run(["probe", "--checkpoint", str(ckpt), "--no-retune",
                               "--out", str(tmp_path / "p")])  # fmt: skip
    assert rc == 0, stderr
    assert stdout.startswith("verdict: still there: ASR")  # a backdoored model, undefended
    assert "Re-tuning was not run" in stdout and "not measured: trigger recovery" in stdout
    assert "thresholds: ACC kept" in stdout
    assert (tmp_path / "p" / "probe.json").is_file() and not (ckpt / "probe").exists()


def test_probe_of_a_model_with_no_known_trigger(ckpt: Path, tmp_path: Path) -> None:
    imported = tmp_path / "imported"
    (tmp_path / "w").mkdir()
    weights = shutil.copy(ckpt / "model.safetensors", tmp_path / "w" / "suspect.safetensors")
    rc, _, stderr = _run(["import", "--weights", str(weights), "--model",
                          "small_cnn", "--dataset", "digits", "--resolution", "8", "--out",
                          str(imported)])  # fmt: skip
    assert rc == 0, stderr
    rc, stdout, stderr = _run(["probe", "--checkpoint", str(imported), "--json"])
    assert rc == 0, stderr
    got = json.loads(stdout)
    assert got["asr"] is None and got["reactivation"] is None and got["acc"] > 0
    assert got["verdict"]["headline"] == "cannot judge: the trigger is unknown"
    assert any("the trigger is unknown" in u for u in got["unmeasured"])


def test_probe_never_writes_over_a_model_given_as_its_baseline(ckpt: Path, tmp_path: Path):
    before = _tree(ckpt)
    rc, _, err = _run(["probe", "--checkpoint", str(ckpt), "--baseline", str(ckpt), "--out",
                       str(tmp_path / "p")])  # fmt: skip
    _assert_usage_error(rc, err, "probe", "not a probe's never-backdoored baseline")
    assert _tree(ckpt) == before and not (tmp_path / "p").exists()


@pytest.mark.parametrize("flag, needle", [
    ("epochs=0", "re-tuning parameter 'epochs'"),
    ("lr=fast", "re-tuning parameter 'lr' must be a number"),
    ("nope=1", "the re-tuning settings are epochs, poisoned"),
])  # fmt: skip
def test_probe_bad_settings_exit_2_before_any_work(ckpt: Path, tmp_path: Path, flag, needle):
    rc, _, err = _run(["probe", "--checkpoint", str(ckpt), "--set", flag, "--out",
                       str(tmp_path / "p")])  # fmt: skip
    _assert_usage_error(rc, err, "probe", needle)
    assert not (tmp_path / "p").exists()


def test_purify_unknown_trigger(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "unknown"
    rc, stdout, stderr = _run(
        ["purify", "--checkpoint", str(ckpt), "--out", str(out), "--rounds", "1",
         "--eval-size", "0", "--unknown-trigger", "--quiet"]
    )  # fmt: skip
    assert rc == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["after"]["asr"] is None and metrics["before"]["asr"] is None
    assert metrics["after"]["off_target"] is None
    assert metrics["der"] is None and metrics["config"]["attack"] is None
    assert "DER" not in stdout


# ----------------------------------------------------------------------------------- feature
@pytest.mark.parametrize(("pull", "noted"), [(0.7, True), (0.05, False)])
def test_purify_notes_a_trigger_that_steers_elsewhere(
    pull: float, noted: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    from sau_core.cli import _print_caveats

    _print_caveats([], {"after": {"asr": 0.01, "ra": 0.3, "off_target": {"1": pull, "2": 0.0}}})
    err = capsys.readouterr().err
    assert (
        "note: The trigger still steers the purified model, now towards class 1" in err
    ) is noted


def test_purified_checkpoint_evaluates(
    purified: tuple[Path, int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _, _ = purified
    assert main(["evaluate", "--checkpoint", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    after = json.loads((out / "metrics.json").read_text())["after"]
    assert got["acc"] == pytest.approx(after["acc"], abs=1e-9)
    assert got["asr"] == pytest.approx(after["asr"], abs=1e-9)
    assert got["off_target"] == pytest.approx(after["off_target"], abs=1e-9)


# --------------------------------------------------------------------------------- exception
@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--dataset", "nope"], ["unknown data set 'nope'", "digits"]),
        (["--attack", "nope"], ["unknown attack 'nope'", "badnets"]),
        (["--param", "nonsense"], ["--param expects NAME=VALUE", "nonsense"]),
        (["--param", "size=99"], ["'size' must be <= 8, got 99"]),
        (["--target", "42"], ["target class must be an int in [0, 9], got 42"]),
        (["--poison-ratio", "2"], ["poison_ratio must be in (0, 1]"]),
        (["--epochs", "0"], ["'epochs' must be >= 1, got 0"]),
    ],
    ids=["dataset", "attack", "param-no-eq", "param-size", "target", "poison-ratio", "epochs"],
)
def test_attack_bad_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needles: list[str]
) -> None:
    out = tmp_path / "out"
    argv = ["attack", *ATTACK_ARGS, "--out", str(out), "--quiet", *extra]
    rc = main(argv)
    captured = capsys.readouterr()
    _assert_usage_error(rc, captured.err, "attack", *needles)
    assert not out.exists()  # nothing written


def test_evaluate_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["evaluate", "--checkpoint", str(tmp_path / "nowhere")])
    _assert_usage_error(rc, capsys.readouterr().err, "evaluate", "no checkpoint at")


def test_corrupt_weights(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage, not safetensors" * 4)
    rc = main(["evaluate", "--checkpoint", str(broken)])
    _assert_usage_error(rc, capsys.readouterr().err, "evaluate", "model.safetensors")
    rc = main(
        ["purify", "--checkpoint", str(broken), "--out", str(tmp_path / "p"), "--rounds", "1"]
    )
    _assert_usage_error(rc, capsys.readouterr().err, "purify", "model.safetensors")
    assert not (tmp_path / "p").exists()


@pytest.mark.skipif("cifar10" not in DATASETS, reason="the cifar10 loader is not registered yet")
def test_cifar10_files_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [
        "attack",
        "--dataset",
        "cifar10",
        "--data-root",
        str(empty),
        "--out",
        str(tmp_path / "o"),
    ]
    rc = main(argv)
    # the message says where the files must go
    _assert_usage_error(rc, capsys.readouterr().err, "attack", str(empty), "data_batch_1")


def test_purify_zero_rounds(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p"
    rc = main(["purify", "--checkpoint", str(ckpt), "--out", str(out), "--rounds", "0"])
    _assert_usage_error(rc, capsys.readouterr().err, "purify", "rounds")
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["purify", "--checkpoint", "x", "--out", "y", "--norm", "L3"],
        ["attack", "--out", "y", "--label-rule", "some2some"],
        ["attack", "--out", "y", "--epochs", "two"],
        ["attack"],  # --out is required
        [],  # a command is required
        ["frobnicate"],
        ["demo", "--preset", "resnet"],  # the lesson is blended_resnet
    ],
    ids=[
        "norm",
        "label-rule",
        "epochs-not-int",
        "no-out",
        "no-command",
        "unknown-command",
        "demo-preset",
    ],
)
def test_argparse_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


@pytest.mark.parametrize("preset", ["blended", "wanet", "blended_small", "blended_resnet"])
def test_demo_runs_the_chosen_preset(
    preset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sau demo --preset NAME`` plants that lesson's attack in that lesson's model, then
    purifies it. The preset is shrunk here (8x8 digits, 1 epoch, 1 round) to take seconds; what
    is checked is that the command follows it."""
    from dataclasses import replace

    from sau_core.lab import presets

    real = presets.TEACHING_PRESETS[preset]
    setup = real.setup
    small = replace(
        setup,
        data=replace(setup.data, kwargs={"resolution": 8, "seed": 0}),
        train=replace(setup.train, epochs=1),
        sau=replace(setup.sau, rounds=1, eval_size=64),
    )
    monkeypatch.setitem(presets.TEACHING_PRESETS, preset, replace(real, setup=small))
    rc, stdout, stderr = _run(
        ["demo", "--preset", preset, "--out", str(tmp_path), "--device", "cpu", "--quiet"]
    )
    assert rc == 0, stderr
    assert real.title in stderr
    meta = json.loads((tmp_path / "attack" / "checkpoint.json").read_text())
    assert (meta["arch"], meta["attack"]["name"]) == (setup.arch, setup.attack.name)
    metrics = json.loads((tmp_path / "purified" / "metrics.json").read_text())
    assert metrics["rounds_done"] == 1
    assert "before" in stdout and "after" in stdout


def test_demo_refuses_bad_rounds_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    rc = main(["demo", "--rounds", "0", "--out", str(out), "--quiet"])
    _assert_usage_error(rc, capsys.readouterr().err, "demo", "rounds")
    assert not out.exists()  # nothing trained, nothing written


def test_demo_refuses_an_out_that_is_a_file_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sau_core.pipeline as pipeline

    def no_training(*args, **kwargs):
        raise AssertionError("the demo trained before checking --out")

    monkeypatch.setattr(pipeline, "plant_backdoor", no_training)
    out = tmp_path / "taken"
    out.write_text("a user's file")
    rc = main(["demo", "--out", str(out / "demo"), "--quiet"])
    _assert_usage_error(rc, capsys.readouterr().err, "demo", "is a file")
    assert out.read_text() == "a user's file"


def test_demo_defaults_to_the_demo_preset() -> None:
    from sau_core.cli import build_parser
    from sau_core.lab.presets import DEMO, TEACHING_PRESETS

    args = build_parser().parse_args(["demo"])
    assert TEACHING_PRESETS[args.preset].setup == DEMO


# ------------------------------------------------------------------- defaults and --help
def test_help_needs_no_torch() -> None:
    """`sau --help` builds only the command list: torch is not imported (it takes seconds)."""
    code = (
        "import sys\nfrom sau_core.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO TORCH')"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "purify" in proc.stdout and "import" in proc.stdout
    assert proc.stdout.strip().endswith("NO TORCH")


def test_help_prints_the_defaults_used(capsys: pytest.CaptureFixture[str]) -> None:
    from sau_core.lab.presets import DEMO
    from sau_core.lab.recipes import recipe

    with pytest.raises(SystemExit):
        main(["purify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{recipe('digits').clean_ratio:g} on digits" in text
    assert f"{DEMO.sau.batch_size} on digits, 256 on" in text  # not the reference's 256 alone
    assert f"{DEMO.sau.rounds} on digits, 100 on" in text
    with pytest.raises(SystemExit):
        main(["attack", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{DEMO.arch} on digits" in text
    assert f"{DEMO.train.label_smoothing:g} on digits" in text


def test_digits_defaults_are_the_demo() -> None:
    """`sau attack` and `sau purify` with no flags on digits run the measured demo setting."""
    from sau_core.defenses.sau import default_sau_config
    from sau_core.lab.presets import DEMO
    from sau_core.lab.recipes import recipe
    from sau_core.train import default_train_config

    r = recipe("digits")
    assert default_train_config("digits") == DEMO.train
    assert default_sau_config("digits") == DEMO.sau
    assert (r.arch, r.clean_ratio, r.data) == (DEMO.arch, DEMO.clean_ratio, DEMO.data.kwargs)


def test_attack_without_model_uses_the_data_sets_model(tmp_path: Path) -> None:
    from sau_core.lab.recipes import recipe

    out = tmp_path / "a"
    rc, _, stderr = _run(["attack", "--resolution", "8", "--epochs", "1", "--out", str(out),
                          "--quiet"])  # fmt: skip
    assert rc == 0, stderr
    assert json.loads((out / "checkpoint.json").read_text())["arch"] == recipe("digits").arch


# ------------------------------------------------------------------------ your own model
def _bare(ckpt: Path, folder: Path, name: str = "model.safetensors", transform=None) -> Path:
    """The checkpoint's weights alone (no sidecar), as safetensors or a torch.save'd dict."""
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(ckpt / "model.safetensors")
    if transform is not None:
        state = transform(state)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if name.endswith(".safetensors"):
        save_file(state, path)
    else:
        torch.save(state, path)
    return path


BARE = ["--model", "small_cnn", "--dataset", "digits", "--resolution", "8"]


def _acc(argv: list[str]) -> dict:
    rc, stdout, stderr = _run([*argv, "--json"])
    assert rc == 0, stderr
    return json.loads(stdout)


def test_bare_weights_need_model_and_dataset(ckpt: Path, tmp_path: Path) -> None:
    path = _bare(ckpt, tmp_path / "bare")
    rc, _, stderr = _run(["evaluate", "--checkpoint", str(path)])
    _assert_usage_error(rc, stderr, "evaluate", "--model and --dataset", "sau import")
    rc, _, stderr = _run(["evaluate", "--checkpoint", str(path), "--dataset", "digits"])
    _assert_usage_error(rc, stderr, "evaluate", "--model")
    want = json.loads((ckpt / "metrics.json").read_text())
    got = _acc(["evaluate", "--checkpoint", str(path), *BARE])
    assert got["acc"] == pytest.approx(want["acc"], abs=1e-9)
    assert got["asr"] is None  # no sidecar, no trigger named: not measured


@pytest.mark.parametrize(
    "layout",
    ["pt", "pt_state_dict_key", "pt_module_prefix", "bare_network"],
)
def test_bare_weights_key_layouts(ckpt: Path, tmp_path: Path, layout: str) -> None:
    """The layouts docs/your-model.md lists load to the same model (same ACC)."""
    import torch

    from sau_core.data import load_digits

    if layout == "pt":
        path = _bare(ckpt, tmp_path, "w.pt")
    elif layout == "pt_state_dict_key":
        path = tmp_path / "w.pt"
        torch.save({"epoch": 3, "model_state_dict": _bare_state(ckpt)}, path)
    elif layout == "pt_module_prefix":
        path = tmp_path / "w.pt"
        torch.save({"state_dict": {f"module.{k}": v for k, v in _bare_state(ckpt).items()}}, path)
    else:  # the network alone: normalisation from --mean/--std (here the data set's own)
        net = {k[4:]: v for k, v in _bare_state(ckpt).items() if k.startswith("net.")}
        path = _bare(ckpt, tmp_path, "w.safetensors", transform=lambda s: net)
    extra = []
    if layout == "bare_network":
        info = load_digits(resolution=8).info
        extra = ["--mean", str(info.mean[0]), "--std", str(info.std[0])]
    want = json.loads((ckpt / "metrics.json").read_text())
    got = _acc(["evaluate", "--checkpoint", str(path), *BARE, *extra])
    assert got["acc"] == pytest.approx(want["acc"], abs=1e-6)


def _bare_state(ckpt: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(ckpt / "model.safetensors")


def test_bare_network_names_its_normalisation(ckpt: Path, tmp_path: Path) -> None:
    net = {k[4:]: v for k, v in _bare_state(ckpt).items() if k.startswith("net.")}
    path = _bare(ckpt, tmp_path, "w.safetensors", transform=lambda s: net)
    rc, _, stderr = _run(["evaluate", "--checkpoint", str(path), *BARE])
    assert rc == 0
    assert "holds the bare network" in stderr and "--mean and --std" in stderr
    # weights that carry their normalisation refuse a second one
    full = _bare(ckpt, tmp_path / "full")
    rc, _, stderr = _run(["evaluate", "--checkpoint", str(full), *BARE, "--mean", "0.5"])
    _assert_usage_error(rc, stderr, "evaluate", "carries its own normalisation")
    rc, _, stderr = _run(["evaluate", "--checkpoint", str(path), *BARE, "--std", "0,1"])
    _assert_usage_error(rc, stderr, "evaluate", "--mean and --std need 1 value")


def test_minimal_sidecar_is_enough(ckpt: Path, tmp_path: Path) -> None:
    path = _bare(ckpt, tmp_path / "m")
    (path.parent / "checkpoint.json").write_text(json.dumps(
        {"arch": "small_cnn", "data": {"name": "digits", "kwargs": {"resolution": 8}}}))  # fmt: skip
    want = json.loads((ckpt / "metrics.json").read_text())
    assert _acc(["evaluate", "--checkpoint", str(path)])["acc"] == pytest.approx(want["acc"])
    (path.parent / "checkpoint.json").write_text(json.dumps({"data": {"name": "digits"}}))
    rc, _, stderr = _run(["evaluate", "--checkpoint", str(path)])
    _assert_usage_error(rc, stderr, "evaluate", "has no 'arch'", "wide_cnn")
    (path.parent / "checkpoint.json").write_text(json.dumps({"arch": "small_cnn"}))
    rc, _, stderr = _run(["evaluate", "--checkpoint", str(path)])
    _assert_usage_error(rc, stderr, "evaluate", "names no data set")


def test_import_writes_a_checkpoint_that_needs_no_flags(ckpt: Path, tmp_path: Path) -> None:
    path = _bare(ckpt, tmp_path / "own", "model.pt")
    out = tmp_path / "imported"
    argv = ["import", "--weights", str(path), *BARE, "--attack", "badnets", "--out", str(out)]
    rc, stdout, stderr = _run(argv)
    assert rc == 0, stderr
    assert "needs no other flag" in stdout
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["arch"] == "small_cnn" and meta["data"]["kwargs"]["resolution"] == 8
    assert meta["attack"]["name"] == "badnets" and meta["imported_from"] == "model.pt"
    want = json.loads((ckpt / "metrics.json").read_text())
    got = _acc(["evaluate", "--checkpoint", str(out)])
    assert got["acc"] == pytest.approx(want["acc"], abs=1e-9)
    assert got["asr"] == pytest.approx(want["asr"], abs=1e-9)
    # a second import into the same folder is refused unless told to overwrite
    rc, _, stderr = _run(argv)
    _assert_usage_error(rc, stderr, "import", "already holds results", "--overwrite")
    rc, _, stderr = _run([*argv, "--overwrite"])
    assert rc == 0, stderr


# ------------------------------------------------------------------------ your own trigger
def _png(path: Path, array) -> Path:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def test_custom_trigger_equal_to_badnets_gives_badnets_numbers(ckpt: Path, tmp_path: Path) -> None:
    """BadNets' white 3x3 patch at the bottom-right, given as an image and a mask, measures the
    same ASR, RA and per-class ASR as the registered attack."""
    import numpy as np

    img = np.zeros((8, 8))
    img[5:, 5:] = 255
    image = _png(tmp_path / "t.png", img)
    mask = _png(tmp_path / "m.png", img)  # white where the trigger goes
    want = _acc(["evaluate", "--checkpoint", str(ckpt)])
    got = _acc(["evaluate", "--checkpoint", str(ckpt), "--trigger-image", str(image),
                "--trigger-mask", str(mask)])  # fmt: skip
    assert got["attack"]["name"] == "custom" and got["attack"]["target"] == 0
    assert got["attack"]["params"]["image"].startswith("data:image/png;base64,")
    for key in ("acc", "asr", "ra"):
        assert got[key] == pytest.approx(want[key], abs=1e-9)
    assert got["per_class_asr"] == pytest.approx(want["per_class_asr"], abs=1e-9)


def test_custom_trigger_the_project_does_not_ship(ckpt: Path, tmp_path: Path) -> None:
    """A cross in the top-left corner, target 7, drawn as one transparent PNG (alpha = mask):
    measured end to end through evaluate and purify; the spec carries the picture."""
    import numpy as np
    from PIL import Image

    rgba = np.zeros((8, 8, 4), np.uint8)
    for i in range(3):
        rgba[i, i] = rgba[i, 2 - i] = (255, 255, 255, 255)
    path = tmp_path / "cross.png"
    Image.fromarray(rgba, "RGBA").save(path)
    got = _acc(["evaluate", "--checkpoint", str(ckpt), "--trigger-image", str(path),
                "--target", "7"])  # fmt: skip
    assert got["attack"]["target"] == 7 and got["asr"] is not None
    assert sorted(got["per_class_asr"]) == [str(c) for c in range(10) if c != 7]
    out = tmp_path / "p"
    rc, stdout, stderr = _run(["purify", "--checkpoint", str(ckpt), "--out", str(out),
                               "--trigger-image", str(path), "--target", "7", "--rounds", "1",
                               "--eval-size", "0", "--quiet"])  # fmt: skip
    assert rc == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["attack"]["name"] == "custom"
    assert metrics["before"]["asr"] == pytest.approx(got["asr"], abs=1e-9)
    # the purified checkpoint keeps the trigger: evaluate needs no flag to measure it again
    again = _acc(["evaluate", "--checkpoint", str(out)])
    assert again["asr"] == pytest.approx(metrics["after"]["asr"], abs=1e-9)


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--trigger-image", "nowhere.png"], ["--trigger-image nowhere.png: no such file"]),
        (["--trigger-mask", "m.png"], ["--trigger-mask needs --trigger-image"]),
        (["--trigger-image", "TEXT", "--attack", "blended"], ["drop --attack blended"]),
        (["--trigger-image", "TEXT"], ["notes.png is not an image", "give a PNG"]),
        (["--param", "size=2"], ["--param describe a trigger", "--attack"]),
        (["--target", "7"], ["--target describe a trigger"]),
    ],
    ids=["missing", "mask-alone", "with-attack", "not-an-image", "param-alone", "target-alone"],
)
def test_custom_trigger_bad_inputs(ckpt: Path, tmp_path: Path, extra, needles) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    extra = [str(text) if e == "TEXT" else e for e in extra]
    bare = _bare(ckpt, tmp_path / "b")
    rc, _, stderr = _run(["evaluate", "--checkpoint", str(bare), *BARE, *extra])
    _assert_usage_error(rc, stderr, "evaluate", *needles)


# ----------------------------------------------------------------------- unknown trigger
def test_unknown_trigger_says_what_it_measured(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "u"
    rc, stdout, stderr = _run(["purify", "--checkpoint", str(ckpt), "--out", str(out),
                               "--rounds", "2", "--eval-size", "0", "--unknown-trigger",
                               "--quiet"])  # fmt: skip
    assert rc == 0, stderr
    assert "ASR and RA: not measured (the trigger is unknown)" in stdout
    assert "Suspected target: class" in stdout and "an even spread would give 10%" in stdout
    assert "round 1:" in stdout and "round 2:" in stdout
    assert "  -  " not in stdout  # no dashes presented as a result


# ------------------------------------------------------------------ warnings before a run
def test_purify_warns_before_a_setting_measured_to_fail(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sau_core.pipeline as pipeline

    def no_sau(*args, **kwargs):
        raise KeyboardInterrupt  # stop right after the warnings

    monkeypatch.setattr(pipeline, "purify_checkpoint", no_sau)
    rc, _, stderr = _run(["purify", "--checkpoint", str(ckpt), "--out", str(tmp_path / "p"),
                          "--clean-ratio", "0.05"])  # fmt: skip
    assert rc == 130
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert any("A clean set of 5%" in w and "BadNets 0.70" in w for w in warnings), warnings
    assert any("native 8x8" in w for w in warnings)
    assert any("without random crops" in w for w in warnings)  # from the sidecar's training


def test_attack_warns_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sau_core.pipeline as pipeline

    monkeypatch.setattr(pipeline, "plant_backdoor", lambda *a, **k: (_ for _ in ()).throw(
        KeyboardInterrupt))  # fmt: skip
    rc, _, stderr = _run(["attack", "--attack", "blended", "--model", "small_cnn",
                          "--label-smoothing", "0", "--out", str(tmp_path / "a")])  # fmt: skip
    assert rc == 130
    assert "warning: Trained without label smoothing" in stderr
    assert "warning: Blended on digits with the small CNN" in stderr


# ---------------------------------------------------------------------------- sau demo
def test_demo_picks_a_fresh_directory(tmp_path: Path) -> None:
    from sau_core.cli import _fresh_dir

    base = tmp_path / "demo"
    assert _fresh_dir(base) == base
    base.mkdir()
    assert _fresh_dir(base) == tmp_path / "demo-2"
    (tmp_path / "demo-2").mkdir()
    assert _fresh_dir(base) == tmp_path / "demo-3"


def test_demo_refuses_to_overwrite_a_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sau_core.pipeline as pipeline

    monkeypatch.setattr(pipeline, "plant_backdoor", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("trained before checking --out")))  # fmt: skip
    (tmp_path / "purified").mkdir()
    (tmp_path / "purified" / "metrics.json").write_text("{}")
    rc = main(["demo", "--out", str(tmp_path), "--quiet"])
    _assert_usage_error(rc, capsys.readouterr().err, "demo", "already holds results", "--overwrite")
    assert (tmp_path / "purified" / "metrics.json").read_text() == "{}"


# --------------------------------------------------------------- review: sidecars and demo
@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"name": "digits", "kwargs": 5}, "must be a dict"),
        ({"name": "digits", "kwargs": {"resolutoin": 16}}, "'resolutoin' is not one of them"),
        ({"name": "cifar10", "kwargs": {"download": True}}, "'download' is not one of them"),
        ({"name": "digits", "kwargs": {"resolution": "16"}}, "must be a number"),
        ({"name": "digits", "root": 7}, "folder name"),
    ],
    ids=["kwargs-int", "typo", "download", "string-number", "root-not-text"],
)
def test_a_hostile_sidecar_data_block_is_one_line(ckpt: Path, tmp_path: Path, data, needle) -> None:
    path = _bare(ckpt, tmp_path / "h")
    (path.parent / "checkpoint.json").write_text(json.dumps({"arch": "small_cnn", "data": data}))
    rc, _, stderr = _run(["evaluate", "--checkpoint", str(path)])
    _assert_usage_error(rc, stderr, "evaluate", needle)
    assert not (REPO / "data").exists() or data.get("name") != "cifar10"  # nothing fetched


def test_a_minimal_sidecar_takes_the_data_sets_defaults(tmp_path: Path) -> None:
    """{"arch", "data": {"name": "digits"}} means digits at the recipe's 16x16, as --help says:
    the shipped wide_cnn BadNets model loads and scores its manifest's ACC."""
    from sau_core.lab.ready import list_ready

    entry = next(e for e in list_ready()[0] if e.name == "badnets")
    shutil.copy(entry.path / "model.safetensors", tmp_path / "model.safetensors")
    (tmp_path / "checkpoint.json").write_text(json.dumps({"arch": entry.arch,
                                                          "data": {"name": "digits"}}))  # fmt: skip
    got = _acc(["evaluate", "--checkpoint", str(tmp_path)])
    assert got["acc"] == pytest.approx(entry.metrics["acc"], abs=1e-6)


def test_demo_overwrite_without_out_uses_the_runs_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sau_core.pipeline as pipeline

    monkeypatch.setenv("SAU_LAB_RUNS", str(tmp_path / "my-runs"))
    monkeypatch.setattr(pipeline, "plant_backdoor", lambda *a, **k: (_ for _ in ()).throw(
        KeyboardInterrupt))  # fmt: skip
    rc, _, stderr = _run(["demo", "--quiet"])
    assert rc == 130 and f"-> {tmp_path / 'my-runs' / 'demo'}" in stderr
    (tmp_path / "my-runs" / "demo").mkdir(parents=True)
    rc, _, stderr = _run(["demo", "--quiet"])
    assert f"-> {tmp_path / 'my-runs' / 'demo-2'}" in stderr
    rc, _, stderr = _run(["demo", "--quiet", "--overwrite"])
    assert f"-> {tmp_path / 'my-runs' / 'demo'}" in stderr


# --------------------------------------------------------------------------- the operator
def test_jobs_lists_and_stops_a_servers_jobs(tmp_path: Path) -> None:
    """`sau jobs` lists queued and running runs; `sau jobs stop` writes their stop files, which
    a server's worker reads before every batch and its queue before a job starts."""
    from sau_core.serving.runs import RunStore
    from sau_core.serving.workers import STOP_FILE, StopFile

    store = RunStore(tmp_path)
    running = store.create("purify", {}, "alice's run", owner="a" * 16)
    running.claim()  # this process: alive
    running.update_status(state="running", step=3, total_steps=10)
    waiting = store.create("attack", {}, "bob's run", owner="b" * 16)
    done = store.create("purify", {}, "finished one")
    done.update_status(state="finished")
    code, out, _ = _run(["jobs", "--runs", str(tmp_path)])
    assert code == 0 and running.id in out and waiting.id in out and done.id not in out
    assert "3/10 steps" in out and "alice's run" in out
    code, _, err = _run(["jobs", "stop", "--runs", str(tmp_path)])
    assert code == 2 and "name the runs to stop, or --all" in err
    code, out, err = _run(["jobs", "stop", running.id, done.id, "20990101-000000-purify-abcdef",
                           "--runs", str(tmp_path)])  # fmt: skip
    assert code == 2 and "no such run" in err and "already finished" in err
    assert StopFile(running.path).reason() == "cancelled by the operator"
    assert not (waiting.path / STOP_FILE).exists() and not (done.path / STOP_FILE).exists()
    code, out, _ = _run(["jobs", "stop", "--all", "--reason", "class is over", "--runs",
                         str(tmp_path)])  # fmt: skip
    assert code == 0 and StopFile(waiting.path).reason() == "class is over"
    code, _, err = _run(["jobs", "--runs", str(tmp_path / "nowhere")])
    assert code == 2 and "no runs folder" in err


# ------------------------------------------------------------------------------- defences
def test_list_names_every_defence_with_its_settings():
    from sau_core.defenses import DEFENSES

    rc, stdout, _ = _run(["list"])
    assert rc == 0
    for name, entry in DEFENSES.items():
        assert f"  {name} " in stdout and entry.paper.venue in stdout
    assert "teacher_rounds" in stdout and "threshold" in stdout


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--defense", "nope"], "--defense: unknown defence 'nope'; choose from sau, ft, fp"),
        (["--defense", "ft", "--eps", "0.1"], "--eps: a SAU flag; ft's settings are"),
        (["--defense", "ft", "--set", "lr=-1"], "FT parameter 'lr' must be >= 0.0"),
        (["--defense", "ft", "--set", "nope=1"], "--set nope: ft has no such setting"),
        (["--defense", "ft", "--set", "lr"], "--set expects NAME=VALUE"),
        (["--defense", "nad", "--set", "rounds=5"], "'teacher_rounds' (10) must be smaller"),
        (["--defense", "anp", "--set", "threshold=yes"], "'threshold' must be a number"),
    ],
)
def test_purify_refuses_bad_defence_settings_before_any_work(ckpt, tmp_path, flags, message):
    out = tmp_path / "out"
    rc, _, stderr = _run(["purify", "--checkpoint", str(ckpt), "--out", str(out), *flags])
    assert rc == 2 and message in stderr
    assert not out.exists()  # nothing half-written


def test_a_defence_that_cannot_run_on_the_model_is_refused(ckpt, tmp_path, monkeypatch):
    """Every model of the registry has convolutions and BatchNorm, so the guard is driven here
    by a registry entry whose check refuses the model: the CLI names why, writes nothing."""
    import dataclasses

    from sau_core import defenses

    def refuse(model):
        raise ValueError("FP needs a convolutional layer to prune; this model has none")

    entry = dataclasses.replace(defenses.DEFENSES["fp"], check_model=refuse)
    monkeypatch.setitem(defenses.DEFENSES, "fp", entry)
    for argv in (["purify", "--defense", "fp"], ["compare", "--defenses", "ft", "fp"]):
        out = tmp_path / argv[0]
        rc, _, stderr = _run([*argv, "--checkpoint", str(ckpt), "--out", str(out)])
        assert rc == 2 and "fp: FP needs a convolutional layer" in stderr, stderr
        assert not out.exists()


def test_purify_runs_another_defence_and_records_it(ckpt, tmp_path):
    out = tmp_path / "ft"
    rc, stdout, stderr = _run(["purify", "--checkpoint", str(ckpt), "--out", str(out),
                               "--defense", "ft", "--rounds", "2", "--set", "lr=0.005",
                               "--device", "cpu"])  # fmt: skip
    assert rc == 0, stderr
    assert "[ft] round 2/2" in stderr and "ft done in" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["defense"] == "ft" and metrics["rounds_done"] == 2
    assert metrics["config"]["settings"]["lr"] == 0.005 and "sau" not in metrics["config"]
    side = json.loads((out / "checkpoint.json").read_text())
    assert side["defense"]["name"] == "ft" and "sau" not in side
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["event"] for h in history] == ["DefenseRound", "DefenseRound"]
    # the defended checkpoint is a checkpoint like any other
    rc, stdout, stderr = _run(["evaluate", "--checkpoint", str(out), "--device", "cpu"])
    assert rc == 0, stderr


def test_compare_runs_defences_in_turn_and_writes_the_table(ckpt, tmp_path):
    out = tmp_path / "cmp"
    rc, stdout, stderr = _run(["compare", "--checkpoint", str(ckpt), "--defenses", "ft", "ibau",
                               "--out", str(out), "--device", "cpu", "--quiet"])  # fmt: skip
    assert rc == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].split()[:4] == ["defence", "ACC", "ASR", "RA"]
    assert lines[1].startswith("none (backdoored)") and lines[2].startswith("ft")
    assert lines[3].startswith("ibau")
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["defense"] for r in rows] == ["none (backdoored)", "ft", "ibau"]
    for r in rows[1:]:
        m = json.loads((out / r["defense"] / "metrics.json").read_text())
        assert r["asr"] == m["after"]["asr"] and r["der"] == m["der"]
        assert r["seconds"] > 0
    csv_lines = (out / "comparison.csv").read_text().splitlines()
    assert csv_lines[0].startswith("defense,acc,asr,ra,pull") and len(csv_lines) == 4
    # a second compare into the same folder needs --overwrite
    rc, _, stderr = _run(["compare", "--checkpoint", str(ckpt), "--defenses", "ft", "--out",
                          str(out), "--device", "cpu"])  # fmt: skip
    assert rc == 2 and "already holds results" in stderr
    rc, _, stderr = _run(["compare", "--checkpoint", str(ckpt), "--defenses", "ft", "bogus",
                          "--out", str(tmp_path / "x")])  # fmt: skip
    assert rc == 2 and "--defenses: unknown defence 'bogus'" in stderr
    assert not (tmp_path / "x").exists()


def test_a_defence_added_as_one_module_and_one_entry_reaches_the_cli(ckpt, tmp_path, monkeypatch):
    """tests/toy_defense.py is a defence written outside sau_core; registering it is the only
    other step. `sau list` shows it, `sau purify --defense` runs it with --set, its outputs
    name it, and its own model check and bounds are the ones enforced."""
    from sau_core.defenses import DEFENSES
    from tests import toy_defense

    monkeypatch.setitem(DEFENSES, "last_layer", toy_defense.DEFENSE)
    rc, stdout, _ = _run(["list"])
    assert rc == 0 and "  last_layer " in stdout and "lr" in stdout
    out = tmp_path / "toy"
    rc, _, stderr = _run(["purify", "--checkpoint", str(ckpt), "--defense", "last_layer",
                          "--set", "lr=0.1", "--set", "rounds=1", "--out", str(out),
                          "--device", "cpu", "--quiet"])  # fmt: skip
    assert rc == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["defense"] == "last_layer"
    assert (
        metrics["config"]["settings"]["lr"] == 0.1 and metrics["config"]["settings"]["rounds"] == 1
    )
    assert (out / "model.safetensors").is_file()
    rc, _, stderr = _run(["purify", "--checkpoint", str(ckpt), "--defense", "last_layer",
                          "--set", "rounds=500", "--out", str(tmp_path / "bad")])  # fmt: skip
    assert rc == 2 and "last-layer parameter 'rounds' must be <= 100" in stderr
    assert not (tmp_path / "bad").exists()
