"""Device choice and the speed switches: bf16 autocast (CUDA) and channels-last memory."""

from __future__ import annotations

import contextlib
import copy

import torch

__all__ = ["autocast", "cpu_copy", "describe", "memory_format", "pick_device"]


def pick_device(preference: str | torch.device | None = None) -> torch.device:
    """The caller's device, or the best available one: cuda, then mps, then cpu.

    Raises ValueError for an unknown or unavailable device name.
    """
    if preference in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"unknown device {preference!r}: use auto, cpu, cuda, cuda:N or mps"
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but no CUDA GPU is available here")
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            have = ", ".join(f"cuda:{i}" for i in range(count))
            raise ValueError(
                f"device {str(device)!r} asked for, but this machine has {count} CUDA "
                f"GPU{'s' if count != 1 else ''} ({have}): use one of those, or cuda"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but Apple's MPS is not available here")
    return device


def cpu_copy(obj):
    """A copy of ``obj`` with every tensor in it (nested dicts and lists) detached onto the CPU:
    a state dict, an optimizer's state, kept between rounds or epochs to resume from."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [cpu_copy(v) for v in obj]
    return copy.deepcopy(obj)


def describe(device: torch.device) -> str:
    """A human label: ``cpu (2 threads)`` or ``cuda:0 (NVIDIA H200)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA when enabled; a no-op context elsewhere (CPU runs stay fp32)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(
    device: torch.device, channels_last: bool = True, cpu: bool = False
) -> torch.memory_format:
    """Channels-last when asked for on CUDA, and on the CPU too when ``cpu``; contiguous elsewhere.

    Callers pass ``cpu`` where it was measured to pay: SAU's loop, 1.25x per round on the small
    CNN (bench/bench_sau_speed.py). oneDNN's channels-last kernels round differently, as another
    thread count does: the perturbations can differ where a gradient is about 0 (none of the
    small CNN's first batch of 256 with 2 threads; 0.6% of the pixels of a random-weight
    PreAct-ResNet18 batch). With ``channels_last=False`` SAU's perturbations are the reference
    loop's bit for bit, its losses and weights equal to float rounding
    (:data:`sau_core.defenses.sau.OUTER_FORWARDS`).
    """
    wanted = device.type == "cuda" or (cpu and device.type == "cpu")
    return torch.channels_last if channels_last and wanted else torch.contiguous_format
