"""The pieces the Explain page and the run report need, as plain functions: a purify run's two
models (h0, the checkpoint it started from, and h, the purified one), the images to explain
(clean test images and their triggered versions, a probe batch's shared adversarial examples, an
uploaded picture, checked before decoding), and the images the trigger focus is measured on.

Models are read with :func:`~sau_core.io.checkpoint.load_checkpoint` (safetensors, never unpickled)
and returned in eval mode; nothing here changes them.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..attacks import AttackSpec
from ..data import DatasetInfo, DataSpec, ImageData
from ..events import ProbeSnapshot
from ..io.checkpoint import CheckpointError, load_checkpoint
from ..serving.runs import Run, RunError
from .pictures import sample_images

__all__ = [
    "IMAGE_FORMATS",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_PIXELS",
    "ModelPair",
    "decode_image",
    "focus_images",
    "load_model",
    "load_run_pair",
    "probe_versions",
    "test_versions",
]

IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")  # what an uploaded picture may be
MAX_UPLOAD_BYTES = 8 << 20  # 8 MiB: larger files are refused before decoding
MAX_UPLOAD_PIXELS = 4096 * 4096  # larger images (decompression bombs) are refused before decoding


@dataclass
class ModelPair:
    """The backdoored model h0 and, for a purify run, the purified h (None for a lone model)."""

    h0: nn.Module
    h: nn.Module | None
    info: DatasetInfo  # the models' data set geometry
    data: DataSpec  # how to load their data set
    attack: AttackSpec | None  # the trigger when known
    title: str

    @property
    def models(self) -> list[nn.Module]:
        return [self.h0] if self.h is None else [self.h0, self.h]

    @property
    def names(self) -> list[str]:
        return ["h0"] if self.h is None else ["h0", "h"]


def _spec(d) -> AttackSpec | None:
    return None if not d else AttackSpec.from_dict(d)


def load_model(path: str | Path, title: str = "", device: str = "cpu") -> ModelPair:
    """One checkpoint (a ready-made model, an attack or import run) as a pair with no h."""
    try:
        ckpt = load_checkpoint(path, device=device)
        spec = ckpt.sidecar.attack_spec()
        data = ckpt.sidecar.data_spec()
    except (CheckpointError, ValueError) as err:
        raise ValueError(f"cannot load the model at {path}: {err}") from None
    return ModelPair(ckpt.model, None, ckpt.info, data, spec, title or str(path))


def load_run_pair(run: Run, device: str = "cpu") -> ModelPair:
    """h0 (the checkpoint the purify run started from) and h (its purified checkpoint).

    ValueError when the run is not a finished purify run or a checkpoint cannot be read.
    """
    if run.kind != "purify":
        raise ValueError(f"run {run.id} is a {run.kind} run, not a purify run")
    if not run.has_checkpoint():
        raise ValueError(f"run {run.id} has no purified checkpoint (it has not finished)")
    try:
        job = run.config().get("job") or {}
        source = job["checkpoint"]
        h0 = load_checkpoint(source, device=device)
        h = load_checkpoint(run.path, device=device)
        spec = _spec(job.get("attack"))
        data = DataSpec.from_dict(job["data"]) if job.get("data") else h0.sidecar.data_spec()
    except KeyError as err:
        raise ValueError(f"run {run.id}: its config.json lacks {err}") from None
    except (CheckpointError, RunError, ValueError) as err:
        raise ValueError(f"run {run.id}: {err}") from None
    a, b = h0.info, h.info
    if tuple(a.shape) != tuple(b.shape) or a.num_classes != b.num_classes:
        raise ValueError(f"run {run.id}: h0 and h are made for different data sets")
    label = run.config().get("label") or run.id
    return ModelPair(h0.model, h.model, h.info, data, spec, str(label))


# -------------------------------------------------------------------------------- images
def _pool(test: ImageData, spec: AttackSpec | None) -> ImageData:
    """Test images outside an all-to-one attack's target class (all of them otherwise)."""
    if spec is None or spec.label_rule != "all2one":
        return test
    keep = (test.y != spec.target).nonzero().squeeze(1)
    return test.subset(keep) if len(keep) else test


def test_versions(
    test: ImageData, spec: AttackSpec | None, n: int = 4, seed: int = 0
) -> tuple[dict[str, Tensor], Tensor]:
    """``n`` test images (outside the target class when the trigger is known): ``{"clean": x}``
    plus ``"triggered"`` with the trigger applied when ``spec`` is given; and their labels y."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of images must be an int >= 1, got {n!r}")
    x, y = sample_images(_pool(test, spec), n, seed)  # (n, C, H, W), (n,)
    versions = {"clean": x}
    if spec is not None:
        with torch.no_grad():
            versions["triggered"] = spec.trigger(test.info)(x)
    return versions, y


def probe_versions(
    probe: ProbeSnapshot, n: int = 4, shared_only: bool = True
) -> tuple[dict[str, Tensor], Tensor]:
    """The probe batch's clean images and their adversarial examples x + delta (clipped to
    [0, 1]), the shared ones first (only those with ``shared_only``, when there are any)."""
    idx = torch.arange(len(probe.y))
    shared = probe.shared.bool().cpu()
    if shared_only and bool(shared.any()):
        idx = idx[shared]
    else:
        idx = torch.cat([idx[shared], idx[~shared]])
    idx = idx[:n]
    x = probe.x[idx].float()
    adv = (x + probe.delta[idx].float()).clamp(0, 1)
    return {"clean": x, "shared adversarial": adv}, probe.y[idx]


def focus_images(test: ImageData, spec: AttackSpec, n: int = 64, seed: int = 1) -> Tensor:
    """Clean test images outside the target class, for measuring the trigger focus."""
    x, _ = sample_images(_pool(test, spec), n, seed)
    return x


def decode_image(
    data: bytes,
    info: DatasetInfo,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_UPLOAD_PIXELS,
) -> Tensor:
    """An uploaded picture as one image (1, C, H, W) in [0, 1] of the models' size.

    Only PNG, JPEG, BMP, GIF (first frame) and WebP are read; the file size and the pixel count
    are checked before the pixels are decoded (a decompression bomb is refused). The picture is
    converted to the models' channels (grey or RGB) and resized to their (H, W).

    Raises:
        ValueError with a message that says what is wrong with the file.
    """
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray)):
        raise ValueError("the upload must be a file's bytes")
    if not data:
        raise ValueError("the file is empty")
    if len(data) > max_bytes:
        raise ValueError(
            f"the file is {len(data) / 2**20:.1f} MiB; at most {max_bytes / 2**20:.0f} MiB"
        )
    channels, height, width = info.shape
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(bytes(data)), formats=IMAGE_FORMATS) as im:
                w, h = im.size
                if w < 1 or h < 1:
                    raise ValueError("the image has no pixels")
                if w * h > max_pixels:
                    raise ValueError(
                        f"the image is {w} x {h} pixels; at most {max_pixels:,} pixels are read"
                    )
                im.seek(0)
                im.load()
                pic = im.convert("L" if channels == 1 else "RGB")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError("the image has too many pixels (a decompression bomb?)") from None
        except UnidentifiedImageError:
            raise ValueError(
                f"not a picture in a supported format ({', '.join(IMAGE_FORMATS)})"
            ) from None
        except (OSError, SyntaxError, EOFError) as err:
            raise ValueError(f"the picture cannot be decoded: {err}") from None
    pic = pic.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(pic, dtype=np.float32) / 255.0  # (H, W) or (H, W, 3)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]  # (1, C, H, W)
