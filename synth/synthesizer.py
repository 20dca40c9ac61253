"""The contract every synthesizer keeps (tables and images), and what they share to keep it.

In the manner of scikit-learn: the constructor only stores parameters, `fit` learns (learned
state ends in `_`), and using a model before `fit` (or `load`) raises `NotFittedError`. In the
manner of diffusers: `save(dir)` writes a folder of safetensors and JSON that `load(dir)` reads
back, never pickle. Sampling comes in shards, so memory stays flat in the number of records and
shards can be drawn on different machines; `tests/test_synthesizer_contract.py` checks all of it
on every synthesizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd
import torch


@dataclass(frozen=True)
class Shard:
    """One slice of a synthetic sample: records start .. start + len(shard) - 1."""

    start: int
    data: pd.DataFrame | np.ndarray  # a table's rows; or images float32 [b, C, H, W] in [0, 1]
    labels: np.ndarray | None = None  # images: class index per image, or None; tables: None
    # (a table's label is one of its columns)

    def __len__(self) -> int:
        return len(self.data)


@runtime_checkable
class Synthesizer(Protocol):
    """What a job needs from a synthesizer, whatever it synthesizes."""

    seed: int
    device: str

    def fit(
        self,
        train: Any,
        *,
        checkpoint_dir: Path | str | None = None,
        progress: bool = True,
        fingerprint: str | None = None,
    ) -> Self:
        """Learn from `train`; with `checkpoint_dir`, checkpoint there as training goes, and
        resume only from a checkpoint made for the same `fingerprint` (by default one of
        `train` and the synthesizer's settings)."""
        ...

    def sample_shard(
        self,
        n: int,
        conditions: dict[Any, int] | None = None,
        *,
        seed: int,
        offset: int = 0,
        num_inference_steps: int = ...,
        scheduler: str = ...,
        guidance_scale: float = 1.0,
        **kwargs: Any,
    ) -> Shard:
        """One independent shard of `n` records (or exactly `conditions`' counts), drawn from
        its own `seed` alone, starting at record `offset`."""
        ...

    def sample_shards(
        self,
        n: int | None = None,
        conditions: dict[Any, int] | None = None,
        *,
        shard_rows: int | None = None,
        seed: int | None = None,
        progress: bool = False,
        **kwargs: Any,
    ) -> Iterator[Shard]:
        """`n` records (or `conditions`' counts) as shards of `shard_rows`, from one seed."""
        ...

    def sample(self, n: int | None = None, conditions: dict[Any, int] | None = None, **kwargs):
        """All of `sample_shards` at once: a DataFrame for tables; (images, labels) for images."""
        ...

    def protection(self) -> dict[str, Any]:
        """What rare-value protection grouped or withheld when fitting, as `k` and counts
        (never a value): the report shows it."""
        ...

    def save(self, directory: Path | str) -> Path:
        """Write the fitted model as a folder of safetensors and JSON."""
        ...

    @classmethod
    def load(cls, directory: Path | str, device: str = "auto") -> Self:
        """Read back what `save` wrote, ready to sample."""
        ...


def guided(
    predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    labels: torch.Tensor | None,
    scale: float,
    null_label: int,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Classifier-free guidance, written once: returns denoise(x, t).

    `predict(x, t, labels_or_None)` is the network's output. Without labels the model is
    unconditional; at scale 1 guidance is the conditional output alone; otherwise one batched
    pass over [x, x] with [labels, null] gives cond and uncond, and out = uncond + scale * (cond -
    uncond), in float32.
    """

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if labels is None:
            return predict(x, t, None)
        if scale == 1.0:
            return predict(x, t, labels)
        null = torch.full_like(labels, null_label)
        both = predict(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
        cond, uncond = both.float().chunk(2)
        return uncond + scale * (cond - uncond)

    return denoise
