"""Rare-value protection as a pure function of the training rows: what a model may emit.

With `k` = `privacy.rare_category_min_rows`, a categorical value held by fewer than `k` training
rows is grouped (into the rare label for a text column, into a missing value for a numeric or
boolean column, whose type has no room for a label), and numbers and datetimes are clipped to the
`k`-th smallest and largest training values unless the schema declares a bound. The checks use
`protected_values` to decide what a synthetic cell may hold; `group_rare_values` applies the same
rules to any table (for example fresh real rows, to see what a protected model would emit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from synth.data.categories import category_keys, numeric_values
from synth.data.schema import ColumnSpec, TableSchema


@dataclass(frozen=True)
class ProtectedValues:
    """Per modelled column: the category keys held by at least `k` training rows, or the
    allowed closed range of a number or datetime (None when no range is allowed)."""

    k: int
    label: str
    categories: Mapping[str, frozenset[str]]
    bounds: Mapping[str, tuple[float, float] | None]


def numeric_like(spec: ColumnSpec) -> bool:
    """A column whose source type has no room for a text label (numbers, booleans)."""
    try:
        dtype = pd.api.types.pandas_dtype(spec.dtype)
    except TypeError:
        return False
    if isinstance(dtype, pd.CategoricalDtype):
        return False
    return pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)


def common_categories(values: pd.Series, k: int) -> frozenset[str]:
    """The category keys held by at least `k` of `values` (missing values excluded)."""
    counts = category_keys(values).value_counts(dropna=True)
    return frozenset(counts.index[counts >= k])


def protected_bounds(values: pd.Series, spec: ColumnSpec, k: int) -> tuple[float, float] | None:
    """The `k`-th smallest and largest present values (in `numeric_values` units), each
    replaced by the bound the schema declares, if any; None when fewer than `k` values are
    present and nothing is declared."""
    present = np.sort(numeric_values(values, spec.kind))
    present = present[~np.isnan(present)]
    if len(present) < k and (spec.min is None or spec.max is None):
        return None
    return kth_bounds(present, spec, k)


def kth_bounds(present: np.ndarray, spec: ColumnSpec, k: int) -> tuple[float, float]:
    """The bounds of sorted, present values (at least `k` of them, unless the schema declares
    both): the `k`-th smallest and largest, so no single most extreme record sets one; a bound
    the schema declares wins."""
    lo = float(spec.min) if spec.min is not None else float(present[k - 1])
    hi = float(spec.max) if spec.max is not None else float(present[-k])
    return lo, max(lo, hi)


def protected_values(
    train: pd.DataFrame, schema: TableSchema, k: int, label: str
) -> ProtectedValues:
    """What a model protected with `k` may emit, learned from the training rows only.

    The schema's `min`/`max` are read as bounds the user declared: pass a schema whose bounds
    were not inferred from the rows (a job's stored schema is)."""
    categories: dict[str, frozenset[str]] = {}
    bounds: dict[str, tuple[float, float] | None] = {}
    for spec in schema.modelled:
        if spec.kind == "categorical":
            categories[spec.name] = common_categories(train[spec.name], k)
        else:
            bounds[spec.name] = protected_bounds(train[spec.name], spec, k)
    return ProtectedValues(k=k, label=label, categories=categories, bounds=bounds)


def group_rare_values(
    rows: pd.DataFrame, train: pd.DataFrame, schema: TableSchema, k: int, label: str
) -> pd.DataFrame:
    """`rows` as a model protected with `k` on `train` would emit them: rare categorical values
    become `label` (text columns) or missing (numeric and boolean columns), and numbers and
    datetimes are clipped to the protected bounds. Other columns are left as they are."""
    allowed = protected_values(train, schema, k, label)
    out = rows.copy()
    for spec in schema.modelled:
        col = out[spec.name]
        if spec.kind == "categorical":
            keys = category_keys(col)
            rare = keys.notna() & ~keys.isin(allowed.categories[spec.name])
            if not rare.any():
                continue
            if numeric_like(spec):
                base = col.astype(object) if pd.api.types.is_bool_dtype(col) else col.astype(float)
                out[spec.name] = base.where(~rare)
            else:
                out[spec.name] = col.astype(object).where(~rare, label)
            continue
        bound = allowed.bounds[spec.name]
        values = numeric_values(col, spec.kind)
        clipped = np.full_like(values, np.nan) if bound is None else np.clip(values, *bound)
        if spec.kind == "datetime":
            out[spec.name] = pd.to_datetime(pd.Series(clipped, index=col.index), unit="ns")
        else:
            clipped_col = pd.Series(clipped, index=col.index)
            if pd.api.types.is_integer_dtype(col.dtype) and not np.isnan(clipped).any():
                clipped_col = clipped_col.astype(col.dtype)  # integer bounds of integer rows
            out[spec.name] = clipped_col
    return out
