"""The report's figures per column and the worst-first lists: aggregates safe to publish.

No statistic here is one person's value:
* `low` and `high` are the `k`-th smallest and largest values (`k` =
  `privacy.rare_category_min_rows`), the protected bounds the model itself uses
  (`synth.data.rare.protected_bounds`; a bound the schema declares wins), never the raw
  minimum and maximum;
* `mean` and `std` are of the values clamped to those bounds, so an extreme record moves them
  no more than the `k`-th one does;
* missing shares and distinct counts are counts.
Synthetic columns get the same treatment, so the two sides compare like for like, and a value
a generator should not have emitted is not shown by its own report. Category names never
appear here: a categorical column gets its missing share and distinct count only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluation.fidelity import ColumnShapes, PairScore, PairTrends
from evaluation.rules import RuleBreaks
from synth.data.categories import category_keys, numeric_values
from synth.data.rare import protected_bounds
from synth.data.schema import ColumnSpec, TableSchema

N_WORST = 5
MISSING_SHIFT = 0.005
"""A change in a column's missing share at least this large (absolute) is listed first."""


@dataclass(frozen=True)
class SideStats:
    """One column on one side (real train or synthetic); None where it does not apply."""

    mean: float | None
    std: float | None
    low: float | None
    """The `k`-th smallest value (or the declared minimum)."""
    high: float | None
    """The `k`-th largest value (or the declared maximum)."""
    missing: float
    """Share of rows with no value."""
    n_missing: int
    distinct: int


@dataclass(frozen=True)
class ColumnStats:
    name: str
    kind: str
    metric: str
    score: float
    real: SideStats
    synthetic: SideStats


def side_stats(values: pd.Series, spec: ColumnSpec, k: int) -> SideStats:
    """`values` summarised as the module docstring says (`k`: the rare-value threshold)."""
    if spec.kind == "categorical":
        keys = category_keys(values)
        n_missing = int(keys.isna().sum())
        return SideStats(None, None, None, None, _share(n_missing, len(keys)), n_missing,
                         int(keys.nunique(dropna=True)))  # fmt: skip
    x = numeric_values(values, spec.kind)
    present = x[~np.isnan(x)]
    n_missing = int(x.size - present.size)
    distinct = int(np.unique(present).size)
    bound = protected_bounds(values, spec, k)
    if bound is None or present.size == 0:  # fewer than k values: nothing safe to show
        return SideStats(None, None, None, None, _share(n_missing, x.size), n_missing, distinct)
    clamped = np.clip(present, *bound)
    std = float(np.std(clamped, ddof=1)) if clamped.size > 1 else None
    return SideStats(float(np.mean(clamped)), std, bound[0], bound[1],
                     _share(n_missing, x.size), n_missing, distinct)  # fmt: skip


def _share(n: int, total: int) -> float:
    return n / total if total else math.nan


def column_stats(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    shapes: ColumnShapes,
    k: int,
) -> list[ColumnStats]:
    """Every modelled column's figures on both sides, with its shape score, worst first."""
    out = [
        ColumnStats(
            name=spec.name,
            kind=spec.kind,
            metric=shapes.metric.get(spec.name, ""),
            score=shapes.per_column.get(spec.name, math.nan),
            real=side_stats(train[spec.name], spec, k),
            synthetic=side_stats(synthetic[spec.name], spec, k),
        )
        for spec in schema.modelled
    ]
    return sorted(out, key=lambda c: _worst_key(c.score))


def _worst_key(score: float) -> float:
    """Lowest first; a score that could not be computed (no values on a side) before all."""
    return -math.inf if math.isnan(score) else score


def worst_columns(stats: list[ColumnStats], n: int = N_WORST) -> list[ColumnStats]:
    return sorted(stats, key=lambda c: _worst_key(c.score))[:n]


def worst_pairs(pairs: PairTrends, n: int = N_WORST) -> list[PairScore]:
    """The lowest-scoring pairs; a pair without a real association (a constant column) has no
    score and is not listed."""
    scored = [p for p in pairs.pairs if not math.isnan(p.score)]
    return sorted(scored, key=lambda p: p.score)[:n]


def missing_shifts(stats: list[ColumnStats], n: int = N_WORST) -> list[ColumnStats]:
    """The columns whose missing share moved by at least `MISSING_SHIFT`, largest move first."""

    def shift(c: ColumnStats) -> float:
        return abs(np.nan_to_num(c.synthetic.missing - c.real.missing))

    moved = [c for c in stats if shift(c) >= MISSING_SHIFT]
    return sorted(moved, key=shift, reverse=True)[:n]


@dataclass(frozen=True)
class RuleShare:
    rule: str
    kind: str
    synthetic_breaks: int
    synthetic_share: float
    holdout_breaks: int
    holdout_share: float


def rule_shares(rules: RuleBreaks, n_synthetic: int, n_holdout: int) -> list[RuleShare]:
    """Each rule (by its columns) with the share of rows breaking it, most broken first."""
    out = [
        RuleShare(
            g.rule,
            g.kind,
            g.synthetic_breaks,
            _share(g.synthetic_breaks, n_synthetic),
            g.holdout_breaks,
            _share(g.holdout_breaks, n_holdout),
        )  # fmt: skip
        for g in rules.groups
    ]
    return sorted(out, key=lambda r: (-np.nan_to_num(r.synthetic_share), r.rule))
