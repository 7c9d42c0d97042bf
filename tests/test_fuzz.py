"""Fuzzing the untrusted-file readers with hypothesis: only documented exceptions escape.

- ``load_checkpoint`` on mutated bytes of a valid safetensors file, on safetensors files with
  arbitrary headers, and on mutated or arbitrary JSON sidecars: it returns a model or raises
  :class:`CheckpointError`, nothing else.
- ``_read_image`` on mutated PNG and JPEG bytes: an array of the asked shape or ``ValueError``.

Bounded (200 examples each, no deadline); ``bench/bench_fuzz.py`` runs a larger seeded fuzz.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sau_core.data.safe_io import _read_image
from sau_core.io.checkpoint import SIDECAR, WEIGHTS, CheckpointError, load_checkpoint
from tests.hostile_corpus import (
    INFO,
    jpeg_bytes,
    mutate,
    png_bytes,
    safetensors_bytes,
    safetensors_raw,
    sidecar_dict,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID_WEIGHTS = safetensors_bytes()
VALID_SIDECAR = json.dumps(sidecar_dict()).encode()
IMAGES = {"png": png_bytes(16), "jpeg": jpeg_bytes(32)}


def _load(weights: bytes, sidecar: bytes | None = None):
    """load_checkpoint on these bytes in a fresh folder: the Checkpoint, or the CheckpointError."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / WEIGHTS).write_bytes(weights)
        if sidecar is not None:
            (Path(tmp) / SIDECAR).write_bytes(sidecar)
            target, kwargs = Path(tmp), {}
        else:
            target, kwargs = Path(tmp) / WEIGHTS, {"arch": "small_cnn", "info": INFO}
        try:
            return load_checkpoint(target, **kwargs)
        except CheckpointError as err:
            assert str(err)
            return err


def _edits():
    """Hypothesis-chosen edits: (kind, position fraction, bytes)."""
    return st.lists(
        st.tuples(
            st.sampled_from(["flip", "write", "cut", "insert"]),
            st.floats(0, 1, allow_nan=False),
            st.binary(min_size=1, max_size=16),
        ),
        min_size=1,
        max_size=4,
    )


def _apply(raw: bytes, edits) -> bytes:
    b = bytearray(raw)
    for kind, where, data in edits:
        at = int(where * len(b))
        if kind == "flip" and b:
            b[min(at, len(b) - 1)] ^= data[0] or 1
        elif kind == "write":
            b[at : at + len(data)] = data
        elif kind == "cut":
            del b[at:]
        else:
            b[at:at] = data
    return bytes(b)


def test_valid_inputs_load() -> None:
    """Control: the unmutated files load, so a fuzz failure is the mutation's doing."""
    assert not isinstance(_load(VALID_WEIGHTS), Exception)
    assert not isinstance(_load(VALID_WEIGHTS, VALID_SIDECAR), Exception)
    for raw in IMAGES.values():
        with tempfile.NamedTemporaryFile(suffix=".img") as f:
            f.write(raw)
            f.flush()
            assert _read_image(f.name, 8, 3).shape == (8, 8, 3)


@FUZZ
@given(edits=_edits())
def test_fuzz_mutated_safetensors(edits) -> None:
    _load(_apply(VALID_WEIGHTS, edits))


_DTYPES = st.sampled_from(["F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3", "X"])
_HEADER_ENTRY = st.fixed_dictionaries(
    {
        "dtype": _DTYPES,
        "shape": st.lists(st.integers(-2, 2**40), max_size=4),
        "data_offsets": st.lists(st.integers(-2, 2**40), min_size=0, max_size=3),
    }
)


@FUZZ
@given(
    header=st.dictionaries(
        st.sampled_from(["net.features.0.weight", "normalize.mean", "__metadata__", "x"]),
        _HEADER_ENTRY,
        max_size=3,
    ),
    data=st.binary(max_size=64),
    declared=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
)
def test_fuzz_safetensors_headers(header, data, declared) -> None:
    _load(safetensors_raw(header, data, declared))


@FUZZ
@given(edits=_edits())
def test_fuzz_mutated_sidecar(edits) -> None:
    _load(VALID_WEIGHTS, _apply(VALID_SIDECAR, edits))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = ["arch", "dataset", "dataset_name", "dataset_num_classes", "dataset_shape",
           "dataset_mean", "dataset_std", "dataset_params", "dataset_class_names"]  # fmt: skip


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(_FIELDS), _JSON, min_size=1, max_size=3))
def test_fuzz_sidecar_values(changes) -> None:
    _load(VALID_WEIGHTS, json.dumps(sidecar_dict(**changes)).encode())


@FUZZ
@given(kind=st.sampled_from(sorted(IMAGES)), edits=_edits(), channels=st.sampled_from([1, 3]))
def test_fuzz_image_reader(kind: str, edits, channels: int) -> None:
    with tempfile.NamedTemporaryFile(suffix=f".{kind}") as f:
        f.write(_apply(IMAGES[kind], edits))
        f.flush()
        try:
            arr = _read_image(f.name, 8, channels)
        except ValueError as err:
            assert "cannot read image" in str(err)
        else:
            assert arr.shape == (8, 8, channels) and arr.dtype == np.uint8


@pytest.mark.parametrize("seed", range(3))
def test_seeded_mutations_of_every_reader(seed: int) -> None:
    """The bench's mutation loop, a few hundred inputs, as a regression test."""
    rng = np.random.default_rng(seed)
    for _ in range(60):
        _load(mutate(VALID_WEIGHTS, rng))
        _load(VALID_WEIGHTS, mutate(VALID_SIDECAR, rng))
