"""Orderings kept by construction: the upper column of `lower <= upper` is diffused as its
offset `upper - lower`, and decoded as `lower + offset`.

Why: a real table often holds an ordering *with ties*. In Ames housing the remodelling year
equals the build year in 54% of the rows, and the first floor is the whole living area in 57%.
Diffused as two separate columns, each tie is a thin diagonal that a model of continuous
noise misses: the synthetic rows had 13% and 1% of such ties, and a real/synthetic classifier
found them at once. An offset is a column of its own with a point mass at zero, which the
quantile encoding reproduces exactly (its knots there are all 0), and is never negative, so the
ordering holds without redrawing.

Which pairs: each upper column takes at most one lower column, the one it ties with on the
most training rows, and only when the ties are at least `min_ties` rows (the rules' support
floor: a tie shared by a handful of rows is no pattern). An ordering without ties is left to
rejection: coupling a column to a loosely related one would carry the lower column's errors
into it. The lower column must be present wherever the upper one is, so the offset is missing
exactly when the upper column is; the ordering must hold on every training row (a rule the
config adds need not); and the chosen pairs never form a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from synth.config import RulesSpec
from synth.data.categories import numeric_values
from synth.data.rules import FixedValue, Ordering, support_floor
from synth.data.schema import TableSchema


def configured_offsets(
    train: pd.DataFrame,
    schema: TableSchema,
    rules: Sequence[FixedValue | Ordering],
    spec: RulesSpec,
    k: int,
) -> dict[str, str]:
    """The offsets a run with the rules settings `spec` and rare-value floor `k` uses: none
    with `offsets: false`; otherwise ties held by as many rows as a rule's premise must be."""
    if not spec.offsets:
        return {}
    floor = support_floor(len(train), k, spec.min_support, spec.min_support_fraction)
    return choose_offsets(train, schema, rules, min_ties=floor)


def choose_offsets(
    train: pd.DataFrame,
    schema: TableSchema,
    rules: Sequence[FixedValue | Ordering],
    *,
    min_ties: int,
) -> dict[str, str]:
    """{upper: lower} for the orderings to encode as offsets (see the module docstring)."""
    kinds = {s.name: s.kind for s in schema.modelled}
    values: dict[str, np.ndarray] = {}

    def numbers(name: str) -> np.ndarray:
        if name not in values:
            values[name] = numeric_values(train[name], kinds[name])
        return values[name]

    ties: list[tuple[int, str, str]] = []
    for rule in rules:
        if not isinstance(rule, Ordering):
            continue
        lo, up = rule.lower, rule.upper
        if kinds.get(lo) not in ("numeric", "datetime") or kinds.get(up) != kinds[lo]:
            continue
        a, b = numbers(lo), numbers(up)
        if np.any(np.isnan(a) & ~np.isnan(b)):
            continue  # the offset would be missing where the upper column is not
        with np.errstate(invalid="ignore"):
            if np.any(a > b):
                continue  # an added rule that some training rows break: no offset of it
        tied = int(np.sum(a == b))
        if tied >= min_ties:
            ties.append((tied, lo, up))
    chosen: dict[str, str] = {}
    for _, lo, up in sorted(ties, key=lambda t: (-t[0], t[1], t[2])):
        if up in chosen or _reaches(chosen, lo, up):
            continue
        chosen[up] = lo
    return chosen


def _reaches(chosen: dict[str, str], start: str, target: str) -> bool:
    """Whether following lower columns from `start` comes to `target` (a cycle if added)."""
    seen = set()
    node: str | None = start
    while node is not None and node not in seen:
        if node == target:
            return True
        seen.add(node)
        node = chosen.get(node)
    return False


def decode_order(columns: Sequence[str], offsets: dict[str, str]) -> list[str]:
    """`columns` reordered so each lower column comes before the upper ones built on it."""
    done: list[str] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        if name in placed:
            return
        if name in offsets:
            place(offsets[name])
        placed.add(name)
        done.append(name)

    for name in columns:
        place(name)
    return done
