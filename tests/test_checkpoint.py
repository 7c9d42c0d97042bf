"""Tests for ``sau_core.io.checkpoint``: safetensors + JSON sidecar, bare state dicts, refusals.

Checkpoints are never unpickled: a ``.pt`` file is read with ``weights_only=True``, and one that
carries code (a ``__reduce__`` payload) must be refused without running it. Every broken input
(missing, truncated, garbage, wrong architecture, wrong class count, malformed sidecar) must be
a :class:`CheckpointError` with a message that says what is wrong.
Grouped kornia-style: smoke, exception, cardinality, feature.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from sau_core import __version__
from sau_core.data import DatasetInfo
from sau_core.io.checkpoint import (
    FORMAT,
    SIDECAR,
    WEIGHTS,
    Checkpoint,
    CheckpointError,
    Sidecar,
    load_checkpoint,
    save_checkpoint,
)
from sau_core.models import Classifier, create_model
from tests.hostile_corpus import INFO  # digits at 8x8, the geometry of load_digits(resolution=8)

META = {"seed": 7, "attack": {"name": "badnets", "target": 0}, "extra": [1, "two", None]}


def _model(seed: int = 0) -> Classifier:
    """A seeded small CNN whose BatchNorm statistics are not the defaults (they must round trip)."""
    model = create_model("small_cnn", INFO, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
        elif name.endswith("num_batches_tracked"):
            buf.fill_(12)
    return model.eval()


def _x(n: int = 4) -> torch.Tensor:
    return torch.rand((n, *INFO.shape), generator=torch.Generator().manual_seed(1))


def _outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(_x())


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Classifier]:
    model = _model()
    directory = save_checkpoint(tmp_path / "ckpt", model, META)
    return directory, model


def _bare_dir(tmp_path: Path) -> Path:
    """A folder with no sidecar in it, for bare state dicts."""
    d = tmp_path / "bare"
    d.mkdir(exist_ok=True)
    return d


# ------------------------------------------------------------------------------------- smoke
def test_round_trip_directory(saved: tuple[Path, Classifier]) -> None:
    directory, model = saved
    assert (directory / WEIGHTS).is_file() and (directory / SIDECAR).is_file()
    ckpt = load_checkpoint(directory)
    assert isinstance(ckpt, Checkpoint) and ckpt.path == directory
    assert ckpt.model.arch == "small_cnn" and ckpt.info == INFO
    assert not ckpt.model.training
    assert torch.equal(_outputs(ckpt.model), _outputs(model))
    loaded = ckpt.model.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(loaded[k], v), k


def test_round_trip_via_weights_file(saved: tuple[Path, Classifier]) -> None:
    directory, model = saved
    ckpt = load_checkpoint(directory / WEIGHTS)
    assert ckpt.sidecar.seed == 7  # the sidecar beside the file was found
    assert torch.equal(_outputs(ckpt.model), _outputs(model))
    # a str path works as well as a Path
    assert torch.equal(_outputs(load_checkpoint(str(directory)).model), _outputs(model))


# ------------------------------------------------------------------------------- cardinality
def test_sidecar_contents(saved: tuple[Path, Classifier]) -> None:
    directory, _ = saved
    side = json.loads((directory / SIDECAR).read_text())
    assert side["format"].startswith("sau-lab-checkpoint/")
    assert side["arch"] == "small_cnn"
    assert side["dataset"] == INFO.to_dict()
    assert DatasetInfo.from_dict(side["dataset"]) == INFO
    assert side["dataset"]["params"] == {"resolution": 8}
    assert set(side["versions"]) == {"sau_lab", "torch", "torchvision", "python"}
    assert side["versions"]["sau_lab"] == __version__
    assert side["versions"]["torch"] == torch.__version__
    for k, v in META.items():
        assert side[k] == v
    assert "created" in side
    assert load_checkpoint(directory).sidecar.to_dict() == side
    typed = load_checkpoint(directory).sidecar
    assert typed.attack == META["attack"] and typed.extra["extra"] == META["extra"]
    assert typed.dataset == INFO and typed.arch == "small_cnn"


def test_save_leaves_no_temporary_files(saved: tuple[Path, Classifier]) -> None:
    directory, _ = saved
    assert sorted(p.name for p in directory.iterdir()) == sorted([WEIGHTS, SIDECAR])


def test_save_overwrites(saved: tuple[Path, Classifier]) -> None:
    directory, _ = saved
    other = _model(seed=3)
    save_checkpoint(directory, other, {"seed": 3})
    ckpt = load_checkpoint(directory)
    assert ckpt.sidecar.seed == 3 and "extra" not in ckpt.sidecar.extra
    assert torch.equal(_outputs(ckpt.model), _outputs(other))


# ----------------------------------------------------------------------------------- feature
@pytest.mark.parametrize("suffix", [".pt", ".pth"])
@pytest.mark.parametrize("layout", ["full", "bare_net", "wrapped"])
def test_bare_state_dict(tmp_path: Path, suffix: str, layout: str) -> None:
    model = _model()
    state = {
        "full": model.state_dict(),
        "bare_net": model.net.state_dict(),  # saved without the normalisation wrapper
        "wrapped": {"state_dict": model.state_dict(), "epoch": 3},
    }[layout]
    path = _bare_dir(tmp_path) / f"weights{suffix}"
    torch.save(state, path)
    ckpt = load_checkpoint(path, arch="small_cnn", info=INFO)
    assert ckpt.model.arch == "small_cnn" and ckpt.info == INFO
    assert ckpt.sidecar.arch == "small_cnn" and ckpt.sidecar.dataset == INFO
    assert torch.equal(_outputs(ckpt.model), _outputs(model))


def test_arch_and_info_checked_against_sidecar(saved: tuple[Path, Classifier]) -> None:
    directory, model = saved
    assert torch.equal(
        _outputs(load_checkpoint(directory, arch="small_cnn").model), _outputs(model)
    )
    with pytest.raises(CheckpointError, match="resnet18"):
        load_checkpoint(directory, arch="resnet18")


# --------------------------------------------------------------------------------- exception
@pytest.mark.parametrize(
    "given", [{}, {"arch": "small_cnn"}, {"info": INFO}], ids=["none", "arch", "info"]
)
def test_bare_state_dict_needs_arch_and_info(tmp_path: Path, given: dict) -> None:
    path = _bare_dir(tmp_path) / "weights.pt"
    torch.save(_model().state_dict(), path)
    with pytest.raises(CheckpointError, match="name the architecture and the data set"):
        load_checkpoint(path, **given)


class _Payload:
    """Unpickling this runs ``open(marker, "w")``, creating the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _bare_dir(tmp_path) / "evil.pt"
    torch.save({"net.weight": torch.zeros(1), "x": _Payload(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(path, arch="small_cnn", info=INFO)
    assert not marker.exists(), "loading the checkpoint ran code from the pickle"


def test_pickle_payload_is_live(tmp_path: Path) -> None:
    """Control for the test above: plain unpickling of the same payload does create the file."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(marker))).close()
    assert marker.exists()


def test_pt_with_non_tensors(tmp_path: Path) -> None:
    path = _bare_dir(tmp_path) / "odd.pt"
    torch.save({"a": 1, "b": [2, 3]}, path)
    with pytest.raises(CheckpointError, match="state dict of tensors"):
        load_checkpoint(path, arch="small_cnn", info=INFO)
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="state dict of tensors"):
        load_checkpoint(path, arch="small_cnn", info=INFO)


def _edit_sidecar(directory: Path, **changes) -> None:
    side = json.loads((directory / SIDECAR).read_text())
    for key, value in changes.items():
        if key == "num_classes":
            side["dataset"]["num_classes"] = value
        else:
            side[key] = value
    (directory / SIDECAR).write_text(json.dumps(side))


def test_wrong_architecture_names_tensors(saved: tuple[Path, Classifier]) -> None:
    directory, _ = saved
    _edit_sidecar(directory, arch="resnet18")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(directory)
    msg = str(err.value)
    assert "resnet18" in msg
    # the first of resnet18's tensors (sorted) that the file lacks, and small_cnn's extra ones
    assert "tensors are missing" in msg and "net.bn1.bias" in msg
    assert "28 are unexpected" in msg and "net.features.0.weight" in msg


def test_wrong_number_of_classes_names_tensors(saved: tuple[Path, Classifier]) -> None:
    directory, _ = saved
    _edit_sidecar(directory, num_classes=5)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(directory)
    msg = str(err.value)
    assert "wrong shape" in msg
    assert "net.head.3.weight: (10, 128) vs expected (5, 128)" in msg


def test_wrong_classes_for_bare_state_dict(tmp_path: Path) -> None:
    path = _bare_dir(tmp_path) / "weights.pt"
    torch.save(_model().state_dict(), path)
    info43 = DatasetInfo("gtsrb", 43, (1, 8, 8), (0.3,), (0.37,))
    with pytest.raises(CheckpointError, match=r"net\.head\.3\.weight"):
        load_checkpoint(path, arch="small_cnn", info=info43)
    with pytest.raises(CheckpointError, match=r"missing \(e\.g\. net\.bn\.bias"):
        load_checkpoint(path, arch="preact_resnet18", info=INFO)


def test_unknown_architecture_in_sidecar(saved: tuple[Path, Classifier]) -> None:
    directory, _ = saved
    _edit_sidecar(directory, arch="no_such_net")
    with pytest.raises(CheckpointError, match="unknown model 'no_such_net'"):
        load_checkpoint(directory)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "huge_header"])
def test_damaged_safetensors(saved: tuple[Path, Classifier], damage: str) -> None:
    directory, _ = saved
    weights = directory / WEIGHTS
    raw = weights.read_bytes()
    weights.write_bytes(
        {
            "truncated": raw[: len(raw) // 2],
            "garbage": bytes(range(256)) * 8,
            "empty": b"",
            "huge_header": (1 << 40).to_bytes(8, "little") + b"{}",
        }[damage]
    )
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(directory)
    with pytest.raises(CheckpointError):
        load_checkpoint(weights)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nowhere")


def test_directory_without_weights(saved: tuple[Path, Classifier]) -> None:
    directory, _ = saved
    (directory / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match=f"has no {WEIGHTS}"):
        load_checkpoint(directory)


def test_unsupported_suffix(saved: tuple[Path, Classifier]) -> None:
    directory, _ = saved
    odd = directory / "model.txt"
    shutil.copy(directory / WEIGHTS, odd)
    with pytest.raises(CheckpointError, match="unsupported checkpoint file"):
        load_checkpoint(odd)


@pytest.mark.parametrize(
    "text",
    ["{not json", "", "[1, 2]", '{"arch": "small_cnn"}', "\xff\xfe"],
    ids=["syntax", "empty", "list", "no_dataset", "not_utf8"],
)
def test_malformed_sidecar(saved: tuple[Path, Classifier], text: str) -> None:
    directory, _ = saved
    side = directory / SIDECAR
    if text == "\xff\xfe":
        side.write_bytes(b"\xff\xfe\x00garbage")
    else:
        side.write_text(text)
    with pytest.raises(CheckpointError, match=SIDECAR):
        load_checkpoint(directory)


def test_malformed_dataset_block(saved: tuple[Path, Classifier]) -> None:
    directory, _ = saved
    _edit_sidecar(directory, dataset={"name": "digits"})
    with pytest.raises(CheckpointError, match="malformed 'dataset'"):
        load_checkpoint(directory)


# ------------------------------------------------------------- uploads that cannot harm (#16)
def _deflated_pt(path: Path, state: dict) -> Path:
    """``state`` saved by torch.save, then every member re-packed with deflate: tiny on disk,
    the full size once unpacked (a zip bomb of zeros, in the real .pt format)."""
    import zipfile

    raw = path.with_suffix(".raw")
    torch.save(state, raw)
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    raw.unlink()
    return path


def test_a_pt_that_would_unpack_far_beyond_its_size_is_refused_unread(tmp_path: Path) -> None:
    from sau_core.io.checkpoint import UNPACK_SLACK

    big = {"w": torch.zeros(UNPACK_SLACK // 4 + (8 << 20))}  # 96 MiB of zeros
    path = _deflated_pt(tmp_path / "bomb.pt", big)
    assert path.stat().st_size < 1 << 20  # under a megabyte on disk
    with pytest.raises(CheckpointError, match=r"would unpack to 96 MiB .*refused before reading"):
        load_checkpoint(path, arch="small_cnn", info=INFO)


def test_a_compressed_pt_of_ordinary_size_still_loads(tmp_path: Path) -> None:
    model = _model()
    path = _deflated_pt(tmp_path / "zipped.pt", model.state_dict())
    ckpt = load_checkpoint(path, arch="small_cnn", info=INFO)
    torch.testing.assert_close(_outputs(ckpt.model), _outputs(model))


def test_huge_finite_weights_whose_outputs_overflow_are_refused(tmp_path: Path) -> None:
    """3e38 is a finite float32, but the logits overflow: refused at load, with the reason."""
    model = _model()
    state = model.state_dict()
    state["net.features.0.weight"] = torch.full_like(state["net.features.0.weight"], 3e38)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    path = tmp_path / "huge.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"outputs are not finite on \d+ of 8 .*overflow"):
        load_checkpoint(path, arch="small_cnn", info=INFO)


# ------------------------------------------------------------------------------ typed sidecar
def test_sidecar_is_typed_and_round_trips() -> None:
    raw = {"format": FORMAT, "arch": "small_cnn", "dataset": INFO.to_dict(), "seed": 3,
           "attack": {"name": "badnets", "target": 1}, "train": {"epochs": 2},
           "created": "2026-11-30", "purified_from": "runs/x"}  # fmt: skip
    side = Sidecar.parse(json.dumps(raw).encode())
    assert side.arch == "small_cnn" and side.dataset == INFO and side.seed == 3
    assert side.extra == {"format": FORMAT, "created": "2026-11-30", "purified_from": "runs/x"}
    assert side.to_dict() == raw
    assert side.attack_spec().target == 1 and side.attack_spec().name == "badnets"
    assert side.train_config().epochs == 2
    # the data set: the geometry's name and parameters, the recipe's options for the rest
    spec = side.data_spec()
    assert spec.name == "digits" and spec.kwargs["resolution"] == 8 and "seed" in spec.kwargs


def test_sidecar_data_block_wins_and_minimal_digits_means_the_recipe() -> None:
    side = Sidecar.from_dict({"arch": "wide_cnn", "data": {"name": "digits", "kwargs": {}}})
    assert side.dataset is None and side.data_spec().kwargs["resolution"] == 16
    assert Sidecar.from_dict({"arch": "x", "dataset": INFO.to_dict(),
                              "data": {"name": "digits", "kwargs": {"resolution": 32}}}
                             ).data_spec().kwargs["resolution"] == 32  # fmt: skip
    assert Sidecar.from_dict({"arch": "x", "data": {"name": "digits"},
                              "train": {"epochs": "many"}}).train_config() is None  # fmt: skip


@pytest.mark.parametrize(
    "meta, needle",
    [
        ({"arch": "x", "dataset": {}, "seed": "7"}, "malformed 'dataset'"),
        ({"arch": "x", "data": {"name": "digits"}, "seed": "7"}, "'seed' must be an integer"),
        ({"arch": "x", "data": {"name": "digits"}, "seed": True}, "'seed' must be an integer"),
        ({"arch": "x", "data": {"name": "digits"}, "attack": "badnets"}, "'attack' must be"),
        ({"arch": "x", "data": {"name": "digits"}, "train": [1]}, "'train' must be"),
        ({"arch": "x", "data": {"name": "nope"}}, "unknown data set"),
        ({"arch": 3, "data": {"name": "digits"}}, "'arch' must be a model name"),
    ],
)
def test_sidecar_refuses_malformed_blocks(meta: dict, needle: str) -> None:
    with pytest.raises(CheckpointError, match=needle):
        Sidecar.from_dict(meta, "checkpoint.json")
