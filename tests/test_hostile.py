"""Hostile and broken inputs: each gets a clear error, nothing executes, nothing escapes.

The corpus is made by code (``tests/hostile_corpus.py``): pickles that carry code (as ``.pt``,
``.pth``, ``.ckpt`` and as CIFAR-10 batch files), damaged safetensors, wrong dtypes, shapes and
architectures, hostile JSON sidecars, non-images, truncated images, decompression bombs, zip
slips, run ids and symlinks that try to leave the runs directory, and out-of-range CLI flags.
Every code-carrying pickle would create a marker file when run; the marker must never appear.
Grouped kornia-style: exception tests, with a control that shows each payload is live.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sau_core import data as sau_data
from sau_core.cli import main
from sau_core.io.checkpoint import (
    SIDECAR,
    WEIGHTS,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from sau_core.models import create_model
from sau_core.serving import import_checkpoint
from sau_core.serving.runs import RunError, RunStore
from tests.hostile_corpus import (
    INFO,
    Payload,
    eval_pickle,
    jpeg_bytes,
    jpeg_declared,
    payload_pickle,
    png_bytes,
    png_chunks,
    safetensors_bytes,
    safetensors_raw,
    sidecar_dict,
    small_state,
    torch_payload,
    zero_rows,
    zip_slip_bytes,
)

MiB = 1 << 20


@pytest.fixture(scope="module")
def digits8():
    return sau_data.load_digits(resolution=8)


def _marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


def test_payload_is_live(tmp_path: Path) -> None:
    """Control: the corpus's payload does create its marker when plainly unpickled."""
    marker = _marker(tmp_path)
    pickle.loads(payload_pickle(marker))["data"].close()
    assert marker.exists()


# ------------------------------------------------------------------------ checkpoint files
def _state_with(**changes) -> dict[str, torch.Tensor]:
    state = small_state()
    for key, value in changes.items():
        state[key.replace("__", ".")] = value
    return state


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}


def _nan_state() -> dict[str, torch.Tensor]:
    state = small_state()
    first = next(k for k, v in state.items() if v.is_floating_point() and k.startswith("net."))
    state[first] = torch.full_like(state[first], float("nan"))
    return state


def _valid_header_bad_offsets() -> bytes:
    return safetensors_raw({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 30]}})


def _shape_bigger_than_data() -> bytes:
    return safetensors_raw(
        {"w": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 16]}}, b"\0" * 16
    )


# A refused .pt says why and what to do, never how to unpickle it (no weights_only=False).
REFUSED_PT = "never unpickles|not a file saved by torch.save"

WEIGHT_FILES = {
    # name: (file name, maker(marker) -> bytes, expected message fragment)
    "pickle_code_pt": ("w.pt", torch_payload, REFUSED_PT),
    "pickle_code_pth": ("w.pth", torch_payload, REFUSED_PT),
    "pickle_code_ckpt": ("w.ckpt", torch_payload, "unsupported checkpoint file"),
    "raw_pickle_pt": (
        "w.pt",
        lambda m: pickle.dumps({"w": Payload(m)}, protocol=2),
        REFUSED_PT,
    ),  # fmt: skip
    "eval_pickle_pth": (
        "w.pth",
        lambda m: eval_pickle(f"open({str(m)!r}, 'w')"),
        REFUSED_PT,
    ),  # fmt: skip
    "zip_slip_pt": ("w.pt", lambda m: zip_slip_bytes(), REFUSED_PT),
    "safetensors_as_pt": ("w.pt", lambda m: safetensors_bytes(), REFUSED_PT),
    "empty_pt": ("w.pt", lambda m: b"", REFUSED_PT),
    "random_pt": ("w.pt", lambda m: np.random.default_rng(1).bytes(4096), REFUSED_PT),
    "pt_list": ("w.pt", lambda m: _torch_bytes([torch.zeros(1)]), "state dict of tensors"),
    "pt_numbers": ("w.pt", lambda m: _torch_bytes({"a": 1}), "state dict of tensors"),
    "empty_safetensors": (WEIGHTS, lambda m: b"", "not a valid safetensors"),
    "random_safetensors": (
        WEIGHTS,
        lambda m: np.random.default_rng(2).bytes(4096),
        "not a valid safetensors",
    ),  # fmt: skip
    "truncated_safetensors": (
        WEIGHTS,
        lambda m: safetensors_bytes()[:5000],
        "not a valid safetensors",
    ),  # fmt: skip
    "truncated_header": (WEIGHTS, lambda m: safetensors_bytes()[:40], "not a valid safetensors"),
    "huge_declared_header": (
        WEIGHTS,
        lambda m: safetensors_raw(b"{}", declared=1 << 40),
        "header",
    ),  # fmt: skip
    "header_longer_than_file": (
        WEIGHTS,
        lambda m: safetensors_raw(b"{}", declared=10 * MiB),
        "header",
    ),  # fmt: skip
    "header_not_json": (
        WEIGHTS,
        lambda m: safetensors_raw(b"\xff\xfe not json"),
        "not a valid safetensors",
    ),  # fmt: skip
    "offsets_past_end": (
        WEIGHTS,
        lambda m: _valid_header_bad_offsets(),
        "not a valid safetensors",
    ),  # fmt: skip
    "shape_beyond_data": (
        WEIGHTS,
        lambda m: _shape_bigger_than_data(),
        "not a valid safetensors",
    ),  # fmt: skip
    "no_tensors": (WEIGHTS, lambda m: safetensors_bytes({}), "missing"),
    "wrong_dtype_int": (
        WEIGHTS,
        lambda m: safetensors_bytes(_cast(small_state(), torch.int32)),
        "dtype",
    ),  # fmt: skip
    "wrong_dtype_bool": (
        WEIGHTS,
        lambda m: safetensors_bytes(_cast(small_state(), torch.bool)),
        "dtype",
    ),  # fmt: skip
    "non_finite_weights": (WEIGHTS, lambda m: safetensors_bytes(_nan_state()), "not finite"),
    "wrong_shape": (
        WEIGHTS,
        lambda m: safetensors_bytes(_state_with(net__head__3__weight=torch.zeros(5, 128))),
        "wrong shape",
    ),  # fmt: skip
    "wrong_architecture": (
        WEIGHTS,
        lambda m: safetensors_bytes(small_state("preact_resnet18")),
        "does not match architecture",
    ),  # fmt: skip
    "unexpected_keys": (
        WEIGHTS,
        lambda m: safetensors_bytes(_state_with(net__evil=torch.zeros(3))),
        "unexpected",
    ),  # fmt: skip
}


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(WEIGHT_FILES))
def test_hostile_weights_file(tmp_path: Path, case: str) -> None:
    name, make, needle = WEIGHT_FILES[case]
    marker = _marker(tmp_path)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    path = folder / name
    path.write_bytes(make(marker))
    with pytest.raises(CheckpointError, match=needle) as err:
        load_checkpoint(path, arch="small_cnn", info=INFO)
    assert "weights_only=False" not in str(err.value)
    assert name in str(err.value)  # the user's own file is named
    # with a valid sidecar beside it, the same refusal (the sidecar never makes it trusted)
    (folder / SIDECAR).write_text(json.dumps(sidecar_dict()))
    with pytest.raises(CheckpointError, match=needle):
        load_checkpoint(path)
    assert not marker.exists(), "loading the file ran code from it"
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["ckpt", name, SIDECAR])


def test_oversized_weights_refused_before_reading(tmp_path: Path, monkeypatch) -> None:
    from sau_core.io import checkpoint

    path = tmp_path / WEIGHTS
    path.write_bytes(safetensors_bytes())
    monkeypatch.setattr(checkpoint, "MAX_BYTES", 1024)
    with pytest.raises(CheckpointError, match="over the"):
        load_checkpoint(path, arch="small_cnn", info=INFO)


# --------------------------------------------------------------------------------- sidecars
SIDECARS = {
    "not_json": b"{this is not json",
    "not_utf8": b"\xff\xfe\x00\x00garbage",
    "a_list": b"[1, 2, 3]",
    "arch_is_list": json.dumps(sidecar_dict(arch=["small_cnn"])).encode(),
    "arch_is_number": json.dumps(sidecar_dict(arch=7)).encode(),
    "unknown_arch": json.dumps(sidecar_dict(arch="os.system")).encode(),
    "dataset_is_text": json.dumps(sidecar_dict(dataset="digits")).encode(),
    "huge_num_classes": json.dumps(sidecar_dict(dataset_num_classes=10**9)).encode(),
    "negative_shape": json.dumps(sidecar_dict(dataset_shape=[1, -8, 8])).encode(),
    "huge_shape": json.dumps(sidecar_dict(dataset_shape=[1, 10**6, 10**6])).encode(),
    "nan_std": json.dumps(sidecar_dict(dataset_std=[float("nan")])).encode(),
    "zero_std": json.dumps(sidecar_dict(dataset_std=[0.0])).encode(),
    "mean_wrong_length": json.dumps(sidecar_dict(dataset_mean=[0.1, 0.2, 0.3])).encode(),
    "params_not_dict": json.dumps(sidecar_dict(dataset_params=5)).encode(),
    "deeply_nested": b'{"arch": "small_cnn", "dataset": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "enormous": json.dumps(sidecar_dict(padding="x" * (2 * MiB))).encode(),
}


@pytest.mark.parametrize("case", sorted(SIDECARS))
def test_hostile_sidecar(tmp_path: Path, case: str) -> None:
    folder = save_checkpoint(tmp_path / "ckpt", create_model("small_cnn", INFO, seed=0))
    (folder / SIDECAR).write_bytes(SIDECARS[case])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(folder)
    assert str(err.value) and "Traceback" not in str(err.value)
    assert len(str(err.value)) < 1000  # a message, not a dump of the file


@pytest.mark.parametrize("case", sorted(SIDECARS))
def test_hostile_upload_sidecar(tmp_path: Path, digits8, case: str) -> None:
    store = RunStore(tmp_path / "runs")
    with pytest.raises(ValueError):
        import_checkpoint(
            store, safetensors_bytes(), "m.safetensors", sidecar=SIDECARS[case], split=digits8
        )
    assert store.list() == []  # nothing half-imported


@pytest.mark.parametrize("case", sorted(WEIGHT_FILES))
def test_hostile_upload_weights(tmp_path: Path, digits8, case: str) -> None:
    name, make, _ = WEIGHT_FILES[case]
    marker = _marker(tmp_path)
    store = RunStore(tmp_path / "runs")
    with pytest.raises(ValueError):
        import_checkpoint(store, make(marker), name, arch="small_cnn",
                          data=_digits8_spec(), split=digits8)  # fmt: skip
    assert not marker.exists()
    assert store.list() == []


def _digits8_spec():
    from sau_core.data import DataSpec

    return DataSpec("digits", None, {"resolution": 8})


@pytest.mark.parametrize(
    "filename", ["../../escape.safetensors", "/etc/escape.safetensors", "a/../../b.safetensors"]
)
def test_upload_file_names_never_become_paths(tmp_path: Path, digits8, filename: str) -> None:
    store = RunStore(tmp_path / "runs")
    before = set(tmp_path.parent.iterdir())
    run = import_checkpoint(store, safetensors_bytes(), filename, arch="small_cnn",
                            data=_digits8_spec(), split=digits8)  # fmt: skip
    assert run.path.parent == store.root
    assert set(tmp_path.parent.iterdir()) == before
    assert not Path("/etc/escape.safetensors").exists()
    assert sorted(p.name for p in run.path.iterdir() if p.is_file()) == sorted(
        ["checkpoint.json", "config.json", "metrics.json", "model.safetensors", "status.json"]
    )


# ----------------------------------------------------------------------------------- images
def _bomb() -> bytes:  # declares 100,000 x 100,000 pixels in a file of a few hundred bytes
    return png_chunks(100_000, 100_000, zlib.compress(b"\0" * 1000))


IMAGES = {
    "empty": lambda: b"",
    "random_bytes": lambda: np.random.default_rng(3).bytes(2048),
    "text_as_png": lambda: b"just some text, renamed to .png\n" * 20,
    "pickle_as_png": None,  # made with the marker, below
    "truncated_png": lambda: png_bytes(64)[:200],
    "truncated_jpeg": lambda: jpeg_bytes(64)[:400],
    "bad_crc_png": lambda: _flip(png_bytes(16), 30),
    "decompression_bomb": _bomb,
    "over_limit_real_pixels": lambda: png_chunks(8000, 6000, zero_rows(8000, 6000)),
    "jpeg_declares_65000_squared": lambda: jpeg_declared(65000, 65000),
    "zero_width": lambda: png_chunks(0, 10, zlib.compress(b"")),
}


def _flip(raw: bytes, at: int) -> bytes:
    b = bytearray(raw)
    b[at] ^= 0xFF
    return bytes(b)


@pytest.mark.parametrize("case", sorted(IMAGES))
def test_hostile_image(tmp_path: Path, case: str) -> None:
    marker = _marker(tmp_path)
    raw = payload_pickle(marker) if IMAGES[case] is None else IMAGES[case]()
    path = tmp_path / "img.png"
    path.write_bytes(raw)
    pil_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match="cannot read image"):
        sau_data.safe_io._read_image(path, 8, 1)
    assert pil_limit == Image.MAX_IMAGE_PIXELS  # PIL's global state untouched
    assert not marker.exists()


def test_image_limit_is_ours_not_pils(tmp_path: Path, monkeypatch) -> None:
    """Even with PIL's own bomb check switched off, the engine refuses the oversized image."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    path = tmp_path / "big.png"
    path.write_bytes(_bomb())
    with pytest.raises(ValueError, match="more than the limit"):
        sau_data.safe_io._read_image(path, 8, 1)


def test_imagefolder_names_the_bad_file(tmp_path: Path) -> None:
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            (tmp_path / c / f"{i}.png").write_bytes(png_bytes(8, seed=i))
    (tmp_path / "b" / "bomb.png").write_bytes(_bomb())
    with pytest.raises(ValueError, match="bomb.png"):
        sau_data.load_imagefolder(tmp_path, resolution=8)


# ------------------------------------------------------------------------- CIFAR-10 pickles
CIFAR_FILES = {
    "reduce_open": lambda m: payload_pickle(m),
    "reduce_open_protocol5": lambda m: payload_pickle(m, protocol=5),
    "builtins_eval": lambda m: eval_pickle(f"open({str(m)!r}, 'w')"),
    "empty": lambda m: b"",
    "truncated": lambda m: pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]})[
        :100
    ],  # fmt: skip
    "random_bytes": lambda m: np.random.default_rng(4).bytes(4096),
    "not_a_dict": lambda m: pickle.dumps([1, 2, 3], protocol=2),
    "float_images": lambda m: pickle.dumps({"data": np.zeros((2, 3072)), "labels": [0, 1]}),
    "labels_out_of_range": lambda m: pickle.dumps(
        {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 99]}
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", sorted(CIFAR_FILES))
def test_hostile_cifar_batch(tmp_path: Path, case: str) -> None:
    marker = _marker(tmp_path)
    folder = tmp_path / "data" / sau_data.CIFAR10_FOLDER
    folder.mkdir(parents=True)
    for name in (*sau_data.CIFAR10_TRAIN_FILES, sau_data.CIFAR10_TEST_FILE):
        (folder / name).write_bytes(CIFAR_FILES[case](marker))
    with pytest.raises(ValueError, match="data_batch_1"):
        sau_data.load_cifar10(tmp_path / "data")
    assert not marker.exists()


def test_hostile_cifar_meta(tmp_path: Path) -> None:
    marker = _marker(tmp_path)
    folder = tmp_path / sau_data.CIFAR10_FOLDER
    folder.mkdir()
    (folder / sau_data.CIFAR10_META_FILE).write_bytes(payload_pickle(marker))
    with pytest.raises(ValueError, match="batches.meta"):
        sau_data.cifar10._cifar10_classes(folder)
    assert not marker.exists()


# ---------------------------------------------------------------------------- runs directory
@pytest.mark.parametrize(
    "run_id",
    ["../outside", "/etc/passwd", "20240101-000000-purify-abcdef/../../x", "..", "",
     "20240101-000000-purify-abcdef\x00", "20240101-000000-purify-ABCDEF", None, 42,
     "20240101-000000-purify-abcdef/"],
)  # fmt: skip
def test_run_ids_never_become_paths(tmp_path: Path, run_id) -> None:
    store = RunStore(tmp_path / "runs")
    with pytest.raises(RunError, match="not a run id"):
        store.get(run_id)


def _outside_run(tmp_path: Path, run_id: str) -> Path:
    """A directory outside the store that looks like a run (config.json, status.json)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text(json.dumps({"id": run_id, "kind": "purify", "job": {}}))
    (outside / "status.json").write_text(json.dumps({"state": "finished"}))
    (outside / "secret.txt").write_text("not for you")
    return outside


def test_symlinked_run_directory_is_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    store.root.mkdir()
    run_id = "20240101-000000-purify-abcdef"
    outside = _outside_run(tmp_path, run_id)
    (store.root / run_id).symlink_to(outside, target_is_directory=True)
    with pytest.raises(RunError, match="link"):
        store.get(run_id)
    with pytest.warns(UserWarning, match="not a run directory"):
        assert store.list() == []


def test_symlinks_inside_a_run_never_escape(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    run = store.create("purify", {}, "x")
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / "key.txt").write_text("secret")
    (run.path / "events.jsonl").symlink_to(victim)
    (run.path / "metrics.json").symlink_to(tmp_path / "victim.txt")
    (run.path / "leak").symlink_to(secret_dir, target_is_directory=True)
    (run.path / "probes").mkdir()
    (run.path / "probes" / "round_0001.safetensors").symlink_to(victim)
    with pytest.raises(RunError, match="link"):
        run.append_event({"event": "Note"})
    with pytest.raises(RunError, match="link"):
        run.metrics()
    with pytest.raises(RunError, match="link"):
        run.load_probe(1)
    run.update_status(state="finished")  # replaces its own file, never writes through a link
    assert victim.read_text() == "original"
    names = zipfile.ZipFile(io.BytesIO(run.zip_bytes())).namelist()
    assert names and all(n.startswith(f"{run.id}/") and ".." not in n for n in names)
    assert not any("key.txt" in n or "events" in n or "metrics" in n for n in names)


def test_zip_export_entries_stay_inside(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    run = store.create("attack", {}, "../../label/with/slashes")
    (run.path / "weird name ..txt").write_text("x")
    for info in zipfile.ZipFile(io.BytesIO(run.zip_bytes())).infolist():
        assert not os.path.isabs(info.filename)
        assert ".." not in Path(info.filename).parts
        assert info.filename.startswith(f"{run.id}/")


def test_foreign_files_in_runs_root_are_skipped(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    good = store.create("purify", {}, "ok")
    (store.root / "notes.txt").write_text("hello")
    (store.root / "20240101-000000-purify-000000").mkdir()  # no files
    bad = store.root / "20240101-000000-attack-111111"
    bad.mkdir()
    (bad / "config.json").write_bytes(b"[" * 100_000)
    (bad / "status.json").write_bytes(os.urandom(64))
    with pytest.warns(UserWarning):
        ids = [r.id for r in store.list()]
    assert ids == [good.id]


# ------------------------------------------------------------------------------------- CLI
def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own errors
            rc = exc.code
    return rc, err.getvalue()


def _assert_one_error(err: str) -> None:
    """One error line, last, and no traceback (argparse's own errors print the usage first)."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert lines and [i for i, line in enumerate(lines) if "error:" in line] == [len(lines) - 1], (
        err
    )
    assert lines[-1].startswith(
        ("sau purify: error:", "sau attack: error:", "sau evaluate: error:")
    ), err
    if not lines[0].startswith("usage:"):
        assert len(lines) == 1, err


@pytest.fixture(scope="module")
def cli_ckpt(tmp_path_factory, digits8) -> Path:
    from sau_core.data import DataSpec

    folder = tmp_path_factory.mktemp("cli") / "ckpt"
    model = create_model("small_cnn", digits8.info, seed=0)
    save_checkpoint(folder, model, {"data": DataSpec("digits", None, {"resolution": 8}).to_dict()})
    return folder


FAST = ["--rounds", "1", "--eval-size", "0", "--probe-size", "0", "--quiet", "--device", "cpu"]
ATTACK = ["attack", "--dataset", "digits", "--resolution", "8", "--epochs", "1", "--quiet"]
PURIFY_FLAGS = {
    "rounds_negative": ["--rounds", "-1"],
    "rounds_text": ["--rounds", "abc"],
    "rounds_huge": ["--rounds", "10000000"],
    "clean_ratio_zero": ["--clean-ratio", "0"],
    "clean_ratio_nan": ["--clean-ratio", "nan"],
    "clean_ratio_inf": ["--clean-ratio", "1e999"],
    "eps_nan": ["--eps", "nan"],
    "lr_inf": ["--lr", "inf"],
    "lr_negative": ["--lr", "-0.1"],
    "batch_size_zero": ["--batch-size", "0"],
    "seed_overflow": ["--seed", str(2**70)],
    "clean_seed_overflow": ["--clean-seed", str(2**70)],
    "norm_unknown": ["--norm", "L3"],
    "device_unknown": ["--device", "toaster"],
    "device_cuda_99": ["--device", "cuda:99"],
    "target_negative": ["--attack", "badnets", "--target", "-1"],
    "param_not_pair": ["--attack", "badnets", "--param", "size"],
    "param_huge": ["--attack", "badnets", "--param", "size=1e308"],
    "param_list": ["--attack", "badnets", "--param", "size=[1,2]"],
}


@pytest.mark.parametrize("case", sorted(PURIFY_FLAGS))
def test_cli_purify_bad_flags(tmp_path: Path, cli_ckpt: Path, case: str) -> None:
    out = tmp_path / "out"
    argv = ["purify", "--checkpoint", str(cli_ckpt), "--out", str(out), *FAST, *PURIFY_FLAGS[case]]
    rc, err = _run(argv)
    assert rc == 2, err
    _assert_one_error(err)
    assert not out.exists()


ATTACK_FLAGS = {
    "resolution_7": ["--resolution", "7"],
    "resolution_huge": ["--dataset", "imagefolder", "--data-root", ".", "--resolution", "100000"],
    "epochs_zero": ["--epochs", "0"],
    "lr_nan": ["--lr", "nan"],
    "poison_nan": ["--poison-ratio", "nan"],
    "poison_negative": ["--poison-ratio", "-0.5"],
    "model_unknown": ["--model", "__import__('os')"],
    "dataset_unknown": ["--dataset", "../../etc"],
    "data_root_nul": ["--dataset", "imagefolder", "--data-root", "a\x00b"],
    "split_seed_overflow": ["--split-seed", str(2**70)],
}


@pytest.mark.parametrize("case", sorted(ATTACK_FLAGS))
def test_cli_attack_bad_flags(tmp_path: Path, case: str) -> None:
    out = tmp_path / "out"
    rc, err = _run([*ATTACK, "--out", str(out), *ATTACK_FLAGS[case]])
    assert rc == 2, err
    _assert_one_error(err)
    assert not out.exists()


def test_cli_hostile_checkpoints(tmp_path: Path, cli_ckpt: Path) -> None:
    """A code-carrying .pt beside a valid sidecar, /dev/null, and an --out that is a file."""
    marker = _marker(tmp_path)
    evil = tmp_path / "evil"
    evil.mkdir()
    shutil.copy(cli_ckpt / SIDECAR, evil / SIDECAR)
    (evil / "w.pt").write_bytes(torch_payload(marker))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        ["evaluate", "--checkpoint", str(evil / "w.pt")],
        ["purify", "--checkpoint", str(evil / "w.pt"), "--out", str(tmp_path / "o"), *FAST],
        ["evaluate", "--checkpoint", os.devnull],
        ["evaluate", "--checkpoint", str(tmp_path / "missing")],
        ["purify", "--checkpoint", str(cli_ckpt), "--out", str(a_file / "sub"), *FAST],
        ["purify", "--checkpoint", str(cli_ckpt), "--out", str(a_file), *FAST],
    ]
    for argv in cases:
        rc, err = _run(argv)
        assert rc == 2, (argv, err)
        _assert_one_error(err)
    assert not marker.exists()
    assert a_file.read_text() == "x"


def test_symlinked_probe_folder_is_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    run = store.create("purify", {}, "x")
    outside = tmp_path / "outside_probes"
    outside.mkdir()
    (outside / "round_0001.safetensors").write_bytes(safetensors_bytes())
    (run.path / "probes").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RunError, match="link"):
        run.load_probe(1)
