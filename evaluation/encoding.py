"""One numeric encoding, fitted on the real train data, shared by every distance and classifier.

Privacy distances (DCR, NNDR, membership inference) are only comparable across synthetic and
holdout rows when both are measured in the same space, so the space is fitted once, on train:

* numeric and datetime columns are min-max scaled by the train range, so a full-range
  difference costs 1, like a category mismatch; a missing value becomes a 0/1 indicator column
  plus the train median, so "missing vs present" also costs at least 1;
* categorical columns are one-hot encoded and scaled by 1/sqrt(2), so two different categories
  are exactly Euclidean distance 1 apart; missing is its own category and values unseen in
  train share an "other" slot (still distance 1 from every train category).

A categorical with more than `WIDE_LEVELS` categories is "wide": in the distance space
(`points`) it is one integer code per row, a mismatch adding 1 to the squared distance (the
same geometry as its one-hot block, in memory linear in the rows; `evaluation.neighbours`).
The classifiers' features (`transform`) give it one column instead: the category's rank by
train frequency, scaled to [0, 1], which a tree splits as well as it would the one-hot block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from evaluation.neighbours import Points
from synth.data.categories import MISSING, category_keys, numeric_values
from synth.data.schema import ColumnSpec, TableSchema

__all__ = ["MISSING", "OTHER", "DistanceEncoder", "category_keys", "numeric_values"]

OTHER = "__other__"
_ONE_HOT = 1.0 / math.sqrt(2.0)
WIDE_LEVELS = 64
"""Categories (with missing and other) above which a column is a code, not a one-hot block."""


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
    wide: bool = False
    """A code in the distance space, a frequency rank as a feature (fixed at fit)."""
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {c: i for i, c in enumerate(self.categories)}

    def codes(self, df: pd.DataFrame) -> np.ndarray:
        keys = category_keys(df[self.name]).fillna(MISSING)
        codes = pd.Index(self.categories).get_indexer(keys)
        codes[codes < 0] = self.index[OTHER]
        return codes


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
                counts = category_keys(train[spec.name]).value_counts()
                keys = sorted(counts.index.tolist())
                wide = len(keys) + 2 > WIDE_LEVELS
                if wide:  # by frequency, then key: the rank feature
                    keys = sorted(keys, key=lambda k: (-counts[k], k))
                categorical.append(_CategoricalCol(spec.name, keys + [MISSING, OTHER], wide))
        names: list[str] = []
        for n in numeric:
            names.append(n.name)
            if n.indicator:
                names.append(f"{n.name}__isna")
        for c in categorical:
            if c.wide:
                names.append(f"{c.name}#rank")
            else:
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
        """Classifier features of `df` (any row count): a float64 (rows, n_features) matrix,
        a wide categorical as its scaled frequency rank."""
        out, j = self._numeric_block(df, self.n_features)
        rows = np.arange(len(df))
        for cat in self.categorical:
            codes = cat.codes(df)
            if cat.wide:
                out[:, j] = codes / (len(cat.categories) - 1)
                j += 1
            else:
                out[rows, j + codes] = _ONE_HOT
                j += len(cat.categories)
        return out

    def points(self, df: pd.DataFrame) -> Points:
        """`df` in the distance space: see the module docstring."""
        narrow = [c for c in self.categorical if not c.wide]
        width = sum(1 + n.indicator for n in self.numeric) + sum(len(c.categories) for c in narrow)
        dense, j = self._numeric_block(df, width)
        rows = np.arange(len(df))
        for cat in narrow:
            dense[rows, j + cat.codes(df)] = _ONE_HOT
            j += len(cat.categories)
        wide = [c.codes(df) for c in self.categorical if c.wide]
        codes = np.stack(wide, axis=1) if wide else np.zeros((len(df), 0), dtype=np.int64)
        return Points(dense, codes)

    def _numeric_block(self, df: pd.DataFrame, width: int) -> tuple[np.ndarray, int]:
        """A zero (rows, width) matrix with the numeric columns filled in, and the next column."""
        n = len(df)
        out = np.zeros((n, width), dtype=np.float64)
        j = 0
        for col in self.numeric:
            v = (numeric_values(df[col.name], col.kind) - col.low) / col.scale
            isna = np.isnan(v)
            out[:, j] = np.where(isna, col.fill, v)
            j += 1
            if col.indicator:
                out[:, j] = isna.astype(float)
                j += 1
        return out, j
