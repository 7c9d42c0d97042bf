"""Tests for ``sau_core.models``: the registry, ``create_model`` and the normalisation layer.

Every test is parametrised over EVERY entry of :data:`MODELS`, so a new architecture is tested
as soon as it is registered. Geometries cover the data sets the lab supports: digits at 8, 16
and 32 pixels, MNIST-like 28x28 grey, CIFAR-like 32x32 RGB and GTSRB-like 32x32 RGB with 43
classes. The heavy models (preact_resnet18, vgg19_bn, resnet18) run with a batch of 2 in eval
mode, and each (model, geometry) is built once per module, so the file stays fast on a CPU.
Grouped kornia-style: smoke, exception, cardinality, feature.
"""

from __future__ import annotations

import functools

import pytest
import torch

from sau_core.data import DatasetInfo
from sau_core.models import (
    MODELS,
    Classifier,
    Normalize,
    PreActResNet,
    PreActResNet18,
    create_model,
    list_models,
)

GEOMETRIES: dict[str, DatasetInfo] = {
    "digits8": DatasetInfo("digits", 10, (1, 8, 8), (0.3,), (0.37,), natural=False),
    "digits16": DatasetInfo("digits", 10, (1, 16, 16), (0.3,), (0.35,), natural=False),
    "digits32": DatasetInfo("digits", 10, (1, 32, 32), (0.3,), (0.34,), natural=False),
    "mnist28": DatasetInfo("mnist", 10, (1, 28, 28), (0.1307,), (0.3081,), natural=False),
    "cifar32": DatasetInfo(
        "cifar10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    ),
    "gtsrb32": DatasetInfo("gtsrb", 43, (3, 32, 32), (0.34, 0.31, 0.32), (0.27, 0.26, 0.27)),
}
NAMES = list(MODELS)  # every registered model, so new entries are tested automatically
BATCH = 2  # small enough for the heavy models on a CPU, > 1 so rows can be told apart


@functools.cache
def _model(name: str, geometry: str) -> Classifier:
    """One seeded model per (name, geometry), in eval mode, shared by the tests of this module."""
    return create_model(name, GEOMETRIES[geometry], seed=0).eval()


@functools.cache
def _forward(name: str, geometry: str) -> tuple[Classifier, torch.Tensor, torch.Tensor]:
    """The cached model, a batch of images and its logits (one forward per combination)."""
    model = _model(name, geometry)
    x = _images(GEOMETRIES[geometry])
    with torch.no_grad():
        return model, x, model(x)


@pytest.fixture(autouse=True, scope="module")
def _free_cached_models():
    """The cached models hold about 1 GB; let them go when this module is done."""
    yield
    _forward.cache_clear()
    _model.cache_clear()


def _images(info: DatasetInfo, n: int = BATCH, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *info.shape), generator=g)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------- smoke
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_and_finite(name: str, geometry: str) -> None:
    info = GEOMETRIES[geometry]
    _, _, out = _forward(name, geometry)
    assert out.shape == (BATCH, info.num_classes)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_classifier_attributes(name: str) -> None:
    info = GEOMETRIES["digits8"]
    model = _model(name, "digits8")
    assert isinstance(model, Classifier)
    assert model.arch == name
    assert model.info == info
    # the Grad-CAM layer name resolves to a real sub-module
    assert model.feature_layer in dict(model.named_modules())


def test_registry_lists_every_model() -> None:
    assert list_models() == list(MODELS)
    assert "small_cnn" in MODELS
    for entry in MODELS.values():
        assert callable(entry.build) and entry.help


# --------------------------------------------------------------------------------- exception
def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'") as err:
        create_model("nope", GEOMETRIES["digits8"])
    for name in MODELS:
        assert name in str(err.value)


def test_preact_resnet_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="4 stages"):
        PreActResNet(1, 10, blocks=(1, 1, 1))
    with pytest.raises(ValueError, match="4 stages"):
        PreActResNet(1, 10, blocks=(1, 0, 1, 1))


# ------------------------------------------------------------------------------- cardinality
def test_preact_family_sizes() -> None:
    """PreAct-ResNet18 keeps its published size and its state-dict names (ready-made and user
    checkpoints load by name); the ResNet10 is one block per stage at half width."""

    def count(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    cifar, digits = GEOMETRIES["cifar32"], GEOMETRIES["digits16"]
    r18 = _model("preact_resnet18", "cifar32")
    assert count(r18.net) == 11_172_170  # unchanged since the class was written
    assert isinstance(r18.net, PreActResNet18)
    assert "net.layer4.1.conv2.weight" in r18.state_dict()
    r10 = create_model("preact_resnet10", digits, seed=0)
    assert count(r10.net) == 1_227_498
    assert [r10.net.layer4[0].conv1.out_channels, len(r10.net.layer4)] == [256, 1]
    assert count(create_model("preact_resnet10", cifar, seed=0).net) == 1_228_074
    assert r10.feature_layer in dict(r10.named_modules())


def test_wide_cnn_downsamples_first_and_is_wider() -> None:
    """wide_cnn: the strided first conv halves the resolution, the channels run 32-128 (the small
    CNN's 16-32), and the size is the one docs/results.md's measurements were taken on."""
    digits = GEOMETRIES["digits16"]
    wide, small = (
        create_model("wide_cnn", digits, seed=0),
        create_model("small_cnn", digits, seed=0),
    )
    assert sum(p.numel() for p in wide.net.parameters()) == 206_122
    x = torch.rand(2, *digits.shape)
    with torch.no_grad():
        first = wide.net.features[:3](wide.normalize(x))
        last = wide.net.features(wide.normalize(x))
    assert first.shape == (2, 32, 8, 8) and last.shape == (2, 128, 4, 4)
    convs = [m.out_channels for m in wide.net.features if isinstance(m, torch.nn.Conv2d)]
    small_convs = [m.out_channels for m in small.net.features if isinstance(m, torch.nn.Conv2d)]
    assert convs == [32, 32, 64, 64, 128] and max(small_convs) == 32


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_batch_sizes_small_cnn(batch: int) -> None:
    info = GEOMETRIES["digits16"]
    model = _model("small_cnn", "digits16")
    with torch.no_grad():
        out = model(_images(info, batch))
    assert out.shape == (batch, 10)


@pytest.mark.parametrize("name", NAMES)
def test_rows_are_independent_in_eval_mode(name: str) -> None:
    """In eval mode each image's logits do not depend on the rest of the batch."""
    info = GEOMETRIES["digits8"]
    model = _model(name, "digits8")
    x = _images(info, 2)
    with torch.no_grad():
        both = model(x)
        first = model(x[:1])
    torch.testing.assert_close(both[:1], first, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------- feature
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("name", NAMES)
def test_normalisation_is_first_layer(name: str, geometry: str) -> None:
    info = GEOMETRIES[geometry]
    model, x, out = _forward(name, geometry)
    first_name, first = next(iter(model.named_children()))
    assert first_name == "normalize" and isinstance(first, Normalize)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    torch.testing.assert_close(model.normalize.mean, mean)
    torch.testing.assert_close(model.normalize.std, std)
    with torch.no_grad():
        torch.testing.assert_close(out, model.net((x - mean) / std))


def test_normalize_by_hand() -> None:
    norm = Normalize((0.5, 0.0), (0.25, 2.0))
    x = torch.tensor([[[[1.0]], [[1.0]]]])  # (1, 2, 1, 1)
    assert norm(x).flatten().tolist() == [2.0, 0.5]
    assert {name for name, _ in norm.named_buffers()} == {"mean", "std"}


@pytest.mark.parametrize("name", NAMES)
def test_seed_is_deterministic_and_keeps_global_rng(name: str) -> None:
    info = GEOMETRIES["digits8"]
    before = torch.random.get_rng_state()
    again = create_model(name, info, seed=0)
    other = create_model(name, info, seed=1)
    after = torch.random.get_rng_state()
    assert torch.equal(before, after), "create_model(seed=...) changed the global RNG state"
    assert _same_weights(again, _model(name, "digits8"))
    assert not _same_weights(again, other)


def test_unseeded_models_differ() -> None:
    info = GEOMETRIES["digits8"]
    assert not _same_weights(create_model("small_cnn", info), create_model("small_cnn", info))


def test_input_gradient_flows() -> None:
    """Attacks, PGD and saliency need d logits / d pixels."""
    info = GEOMETRIES["digits8"]
    model = create_model("small_cnn", info, seed=0).eval()
    x = _images(info).requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ devices
def test_pick_device_refuses_a_gpu_index_this_machine_lacks(monkeypatch) -> None:
    """cuda:N beyond the GPUs present is refused by name before any CUDA call (on a GPU
    machine torch would otherwise fail later with 'invalid device ordinal')."""
    from sau_core.device import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda:1")
    assert pick_device("cuda") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"'cuda:2'.*2 CUDA GPUs \(cuda:0, cuda:1\)"):
        pick_device("cuda:2")
