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
        (["--epochs", "0"], ["epochs must be >= 1, got 0"]),
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

    from sau_core import pipeline

    real = pipeline.TEACHING_PRESETS[preset]
    setup = real.setup
    small = replace(
        setup,
        data=replace(setup.data, kwargs={"resolution": 8, "seed": 0}),
        train=replace(setup.train, epochs=1),
        sau=replace(setup.sau, rounds=1, eval_size=64),
    )
    monkeypatch.setitem(pipeline.TEACHING_PRESETS, preset, replace(real, setup=small))
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
    from sau_core.pipeline import DEMO, TEACHING_PRESETS

    args = build_parser().parse_args(["demo"])
    assert TEACHING_PRESETS[args.preset].setup == DEMO
