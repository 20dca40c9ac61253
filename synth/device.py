"""Pick the compute device: CUDA when present, CPU otherwise."""

from __future__ import annotations

import torch

from synth.errors import ConfigError


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was asked for but no CUDA GPU is visible; use --device cpu"
        )
    if preference not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {preference!r}; use auto, cpu or cuda")
    return torch.device(preference)


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; a disabled no-op elsewhere (CPU bf16 is slower than fp32 here)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
