"""Which class labels to sample: exact requested counts, or the training label frequencies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from synth.data.categories import MISSING, category_key
from synth.errors import InputDataError


def draw_labels(
    n: int,
    conditions: dict[Any, int] | None,
    classes: Sequence[Any],
    counts: Sequence[int],
    rng: np.random.Generator,
) -> np.ndarray:
    """Class indices for `n` samples; with `conditions` ({label: count}) exactly those counts,
    shuffled. A label matches a class when their `category_key`s agree: 1, 1.0 and "1" all
    match class 1, "Yes" matches "Yes" (the first class wins if two classes share a key)."""
    if conditions:
        lookup: dict[str, int] = {}
        for i, c in enumerate(classes):
            lookup.setdefault(category_key(c), i)
        codes: list[int] = []
        for label, count in conditions.items():
            k = lookup.get(category_key(label))
            if k is None:  # the classes are data values: counted, never listed
                n_classes = sum(1 for c in classes if c != MISSING)
                raise InputDataError(
                    f"condition label {label!r} is not a class of the target ({n_classes} "
                    "classes): use a label that occurs in the training data"
                )
            codes += [k] * int(count)
        labels = np.array(codes, dtype=np.int64)
        rng.shuffle(labels)
        return labels
    p = np.asarray(counts, dtype=float)
    return rng.choice(len(classes), size=n, p=p / p.sum())
