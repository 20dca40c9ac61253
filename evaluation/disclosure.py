"""Rare or unseen values emitted: synthetic cells holding a value the protected model may not.

Under rare-value protection (`synth.data.rare`, `k` = `privacy.rare_category_min_rows`) a model
emits only categorical values held by at least `k` training rows (or the rare label, or a
missing value) and numbers within the `k`-th smallest..`k`-th largest training value (or the
bounds the schema declares). A synthetic cell outside that set is a rare value emitted; a
categorical cell whose value no training row holds but the holdout does is a value the model
can only have learned from rows it must never see. Both tolerances are zero.

Counts and column names only: no value is ever reported.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel

from synth.data.categories import category_key, category_keys, numeric_values
from synth.data.rare import protected_values
from synth.data.schema import TableSchema

# A number this close (relative) outside a bound is float noise (a float32 or Parquet round
# trip), not a value beyond it. Datetimes are nanoseconds since the epoch, ~1e18: tighter.
BOUND_TOLERANCE = {"numeric": 1e-6, "datetime": 1e-12}


class ColumnDisclosure(BaseModel):
    rare: int
    holdout_only: int


class RareValues(BaseModel):
    k: int
    rare_values_emitted: int
    holdout_only_values_emitted: int
    per_column: dict[str, ColumnDisclosure]
    """Only the columns with a count above zero."""


def _outside(values: np.ndarray, bound: tuple[float, float] | None, kind: str) -> np.ndarray:
    present = ~np.isnan(values)
    if bound is None:
        return present
    lo, hi = bound
    tol = BOUND_TOLERANCE.get(kind, 1e-6) * max(abs(lo), abs(hi), hi - lo, 1.0)
    with np.errstate(invalid="ignore"):
        return present & ((values < lo - tol) | (values > hi + tol))


def rare_values(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    k: int,
    label: str,
    check_numbers: bool = True,
) -> RareValues:
    """Count the synthetic cells a model protected with `k` on `train` could not emit.

    Categorical cells compare by `category_key`; missing values and the rare label are what
    protection emits, so they never count. Holdout-only cells (no training row holds the value,
    some holdout row does) are counted apart; they are rare values too. Numeric and datetime
    cells count as rare when they lie outside the protected bounds. The schema's `min`/`max`
    are read as declared bounds (a job's stored schema holds only declared ones).
    `check_numbers` false (a DP model): numbers are not counted, for its bounds are DP
    estimates from many people's values, which may reach past the `k`-th extremes by a bin
    without releasing anyone's value; categories are counted as ever."""
    allowed = protected_values(train, schema, k, label)
    label_key = category_key(label)
    per_column: dict[str, ColumnDisclosure] = {}
    for spec in schema.modelled:
        if spec.kind == "categorical":
            keys = category_keys(synthetic[spec.name])
            emitted = keys.notna() & (keys != label_key)
            rare = emitted & ~keys.isin(allowed.categories[spec.name])
            in_train = keys.isin(set(category_keys(train[spec.name]).dropna()))
            in_holdout = keys.isin(set(category_keys(holdout[spec.name]).dropna()))
            n_rare = int(rare.sum())
            n_holdout_only = int((emitted & ~in_train & in_holdout).sum())
        elif not check_numbers:
            n_rare = n_holdout_only = 0
        else:
            values = numeric_values(synthetic[spec.name], spec.kind)
            n_rare = int(_outside(values, allowed.bounds[spec.name], spec.kind).sum())
            n_holdout_only = 0
        if n_rare or n_holdout_only:
            per_column[spec.name] = ColumnDisclosure(rare=n_rare, holdout_only=n_holdout_only)
    return RareValues(
        k=k,
        rare_values_emitted=sum(c.rare for c in per_column.values()),
        holdout_only_values_emitted=sum(c.holdout_only for c in per_column.values()),
        per_column=per_column,
    )
