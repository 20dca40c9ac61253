"""Which class labels to sample: exact requested counts, or the training label frequencies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from synth.errors import InputDataError
from synth.tabular.encoders import MISSING, _key


def draw_labels(
    n: int,
    conditions: dict[Any, int] | None,
    classes: Sequence[Any],
    counts: Sequence[int],
    rng: np.random.Generator,
) -> np.ndarray:
    """Class indices for `n` samples; with `conditions` ({label: count}) exactly those counts,
    shuffled. A label matches a class by value (1 == 1.0) or by its text ("1" for 1)."""
    if conditions:
        lookup = {_key(c): i for i, c in enumerate(classes)} | {
            str(c): i for i, c in enumerate(classes)
        }
        codes: list[int] = []
        for label, count in conditions.items():
            k = lookup.get(_key(label), lookup.get(str(label)))
            if k is None:
                shown = [c for c in classes if c != MISSING]
                raise InputDataError(f"condition label {label!r} is not a class; classes: {shown}")
            codes += [k] * int(count)
        labels = np.array(codes, dtype=np.int64)
        rng.shuffle(labels)
        return labels
    p = np.asarray(counts, dtype=float)
    return rng.choice(len(classes), size=n, p=p / p.sum())
