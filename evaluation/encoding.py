"""One numeric encoding, fitted on the real train data, shared by every distance and classifier.

Privacy distances (DCR, NNDR, membership inference) are only comparable across synthetic and
holdout rows when both are measured in the same space, so the space is fitted once, on train:

* numeric and datetime columns are min-max scaled by the train range, so a full-range
  difference costs 1, like a category mismatch; a missing value becomes a 0/1 indicator column
  plus the train median, so "missing vs present" also costs at least 1;
* categorical columns are one-hot encoded and scaled by 1/sqrt(2), so two different categories
  are exactly Euclidean distance 1 apart; missing is its own category and values unseen in
  train share an "other" slot (still distance 1 from every train category).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synth.data.categories import MISSING, category_keys, numeric_values
from synth.data.schema import ColumnSpec, TableSchema

__all__ = ["MISSING", "OTHER", "DistanceEncoder", "category_keys", "numeric_values"]

OTHER = "__other__"
_ONE_HOT = 1.0 / math.sqrt(2.0)


@dataclass
class _NumericCol:
    name: str
    kind: str
    low: float
    scale: float
    fill: float
    indicator: bool


@dataclass
class _CategoricalCol:
    name: str
    categories: list[str]
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {c: i for i, c in enumerate(self.categories)}


@dataclass
class DistanceEncoder:
    """Maps rows of a table to vectors; see the module docstring for the geometry."""

    numeric: list[_NumericCol]
    categorical: list[_CategoricalCol]
    feature_names: list[str]

    @classmethod
    def fit(
        cls, train: pd.DataFrame, schema: TableSchema, columns: list[str] | None = None
    ) -> DistanceEncoder:
        """Learn ranges and categories from `train` for the modelled columns (or `columns`)."""
        specs: list[ColumnSpec] = [
            c for c in schema.modelled if columns is None or c.name in set(columns)
        ]
        numeric: list[_NumericCol] = []
        categorical: list[_CategoricalCol] = []
        for spec in specs:
            if spec.kind in ("numeric", "datetime"):
                v = numeric_values(train[spec.name], spec.kind)
                present = v[~np.isnan(v)]
                low = float(present.min()) if present.size else 0.0
                high = float(present.max()) if present.size else 1.0
                scale = high - low if high > low else 1.0
                fill = (float(np.median(present)) - low) / scale if present.size else 0.0
                has_na = bool(np.isnan(v).any()) or spec.nullable
                numeric.append(_NumericCol(spec.name, spec.kind, low, scale, fill, has_na))
            else:
                keys = category_keys(train[spec.name]).dropna().unique().tolist()
                categorical.append(_CategoricalCol(spec.name, sorted(keys) + [MISSING, OTHER]))
        names: list[str] = []
        for n in numeric:
            names.append(n.name)
            if n.indicator:
                names.append(f"{n.name}__isna")
        for c in categorical:
            names.extend(f"{c.name}={k}" for k in c.categories)
        return cls(numeric=numeric, categorical=categorical, feature_names=names)

    @property
    def columns(self) -> list[str]:
        """The source columns this encoder reads."""
        return [n.name for n in self.numeric] + [c.name for c in self.categorical]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Encode `df` (any row count) into a float64 matrix of shape (rows, n_features)."""
        n = len(df)
        out = np.zeros((n, self.n_features), dtype=np.float64)
        j = 0
        for col in self.numeric:
            v = (numeric_values(df[col.name], col.kind) - col.low) / col.scale
            isna = np.isnan(v)
            out[:, j] = np.where(isna, col.fill, v)
            j += 1
            if col.indicator:
                out[:, j] = isna.astype(float)
                j += 1
        rows = np.arange(n)
        for cat in self.categorical:
            keys = category_keys(df[cat.name]).fillna(MISSING)
            codes = pd.Index(cat.categories).get_indexer(keys)
            codes[codes < 0] = cat.index[OTHER]
            out[rows, j + codes] = _ONE_HOT
            j += len(cat.categories)
        return out
