"""Encode a table into what the diffusion sees, and decode samples back into the table.

- numeric and datetime columns -> quantile-normalised floats (TabDDPM); missing values get a
  binary indicator that is diffused as a categorical, so missingness is modelled, not imputed;
- categorical columns -> integer codes (missing is its own code);
- a categorical target used for conditioning -> a separate label vector `y`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats
from sklearn.preprocessing import QuantileTransformer

from synth.data.categories import MISSING, category_key, is_missing
from synth.data.schema import ColumnSpec, Scalar, TableSchema
from synth.errors import NotFittedError

# QuantileTransformer clips its normal output to +-ppf(1 - 1e-7); the column's min and max land
# there. Stored as float32, that z rounds toward zero, which decoded the min and max slightly
# inside the range; anything at or beyond the float32 edge decodes as the bound.
_PARALLEL_ROWS = 100_000  # below this, threads cost more than they save
_BOUNDS_THRESHOLD = 1e-7  # sklearn.preprocessing's, for the inverse transform's edges
_Z_EDGE = float(np.float32(stats.norm.ppf(1 - (_BOUNDS_THRESHOLD - np.spacing(1)))))


@dataclass
class EncodedTable:
    x_num: np.ndarray  # float32 [n, n_num]
    x_cat: np.ndarray  # int64 [n, n_cat]
    y: np.ndarray | None  # int64 [n] when conditioning on a categorical target


def _as_float(spec: ColumnSpec, s: pd.Series) -> np.ndarray:
    if spec.kind == "datetime":
        ts = pd.to_datetime(s, format="mixed") if not pd.api.types.is_datetime64_any_dtype(s) else s
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
        out = ts.astype("datetime64[ns]").astype("int64").astype(float)
        out[ts.isna().to_numpy()] = np.nan
        return out.to_numpy()
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)


class TableEncoder:
    """scikit-learn style: `fit` learns, learned state ends in `_`, `inverse_transform` decodes."""

    def __init__(self, schema: TableSchema, condition_on_target: bool = True, seed: int = 0):
        self.schema = schema
        self.condition_on_target = condition_on_target
        self.seed = seed

    # ---- layout -------------------------------------------------------------------------
    @property
    def conditional(self) -> bool:
        return bool(
            self.condition_on_target
            and self.schema.target
            and self.schema.column(self.schema.target).kind == "categorical"
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "num_columns_"):
            raise NotFittedError("TableEncoder is not fitted yet: call fit(table) first")

    def fit(self, df: pd.DataFrame) -> TableEncoder:
        target = self.schema.target if self.conditional else None
        self.num_columns_: list[str] = [
            c.name for c in self.schema.of_kind("numeric", "datetime") if c.name != target
        ]
        self.cat_columns_: list[str] = [
            c.name for c in self.schema.of_kind("categorical") if c.name != target
        ]
        self.null_indicator_columns_: list[str] = [
            n for n in self.num_columns_ if self.schema.column(n).nullable
        ]
        self.categories_: dict[str, list[Any]] = {
            name: _distinct(self.schema.column(name)) for name in self.cat_columns_
        }
        self.target_classes_: list[Scalar] = _distinct(self.schema.column(target)) if target else []

        self.fill_values_: dict[str, float] = {}
        nums = []
        for name in self.num_columns_:
            values = _as_float(self.schema.column(name), df[name])
            fill = float(np.nanmedian(values))
            self.fill_values_[name] = fill
            nums.append(np.where(np.isnan(values), fill, values))
        self.quantile_: QuantileTransformer | None = None
        if nums:
            x = np.stack(nums, axis=1)
            self.quantile_ = QuantileTransformer(
                n_quantiles=max(10, min(1000, len(df))),
                output_distribution="normal",
                subsample=1_000_000_000,
                random_state=self.seed,
            ).fit(x)
        return self

    @property
    def num_classes(self) -> list[int]:
        """Number of categories of each diffused categorical feature (null indicators last)."""
        self._check_fitted()
        return [len(self.categories_[n]) for n in self.cat_columns_] + [2] * len(
            self.null_indicator_columns_
        )

    @property
    def n_num(self) -> int:
        self._check_fitted()
        return len(self.num_columns_)

    # ---- encode / decode ----------------------------------------------------------------
    def _codes(self, values: pd.Series, categories: list[Any], name: str) -> np.ndarray:
        lookup = {category_key(c): i for i, c in enumerate(categories)}
        keys = [category_key(v) for v in values]
        unknown = {k for k in keys if k not in lookup}
        if unknown:
            raise ValueError(f"column {name!r} holds {len(unknown)} categories unseen in fit")
        return np.fromiter((lookup[k] for k in keys), dtype=np.int64, count=len(keys))

    def transform(self, df: pd.DataFrame) -> EncodedTable:
        self._check_fitted()
        n = len(df)
        if self.num_columns_:
            raw = np.stack(
                [_as_float(self.schema.column(c), df[c]) for c in self.num_columns_], axis=1
            )
            nulls = np.isnan(raw)
            fills = np.array([self.fill_values_[c] for c in self.num_columns_])
            x_num = self.quantile_.transform(np.where(nulls, fills, raw)).astype(np.float32)
        else:
            x_num, nulls = np.zeros((n, 0), np.float32), np.zeros((n, 0), bool)
        cats = [self._codes(df[c], self.categories_[c], c) for c in self.cat_columns_]
        for c in self.null_indicator_columns_:
            cats.append(nulls[:, self.num_columns_.index(c)].astype(np.int64))
        x_cat = np.stack(cats, axis=1) if cats else np.zeros((n, 0), np.int64)
        y = None
        if self.conditional:
            y = self._codes(df[self.schema.target], self.target_classes_, self.schema.target)
        return EncodedTable(x_num=x_num, x_cat=x_cat, y=y)

    def inverse_transform(self, enc: EncodedTable) -> pd.DataFrame:
        """Decode to the modelled columns, in schema order, with bounds and integers restored."""
        self._check_fitted()
        out: dict[str, Any] = {}
        if self.num_columns_:
            z = np.asarray(enc.x_num, dtype=np.float64)
            z = np.where(np.abs(z) >= _Z_EDGE, np.sign(z) * (_Z_EDGE + 1.0), z)
            x = _inverse_quantiles(self.quantile_, z)
            for j, name in enumerate(self.num_columns_):
                spec = self.schema.column(name)
                col = x[:, j]
                if spec.min is not None and spec.max is not None:
                    col = np.clip(col, spec.min, spec.max)
                if spec.integer or spec.kind == "datetime":
                    col = np.round(col)
                if name in self.null_indicator_columns_:
                    k = len(self.cat_columns_) + self.null_indicator_columns_.index(name)
                    col = np.where(enc.x_cat[:, k] == 1, np.nan, col)
                if spec.kind == "datetime":
                    out[name] = pd.to_datetime(pd.Series(col), unit="ns")
                else:
                    out[name] = col
        for j, name in enumerate(self.cat_columns_):
            out[name] = _decode(enc.x_cat[:, j], self.categories_[name])
        if self.conditional and enc.y is not None:
            out[self.schema.target] = _decode(enc.y, self.target_classes_)
        ordered = [c.name for c in self.schema.modelled if c.name in out]
        return columns_to_frame({name: out[name] for name in ordered})

    # ---- persistence without pickle -----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self._check_fitted()
        q = self.quantile_
        return {
            "condition_on_target": self.condition_on_target,
            "seed": self.seed,
            "num_columns": self.num_columns_,
            "cat_columns": self.cat_columns_,
            "null_indicator_columns": self.null_indicator_columns_,
            "categories": self.categories_,
            "target_classes": self.target_classes_,
            "fill_values": self.fill_values_,
            "quantiles": None if q is None else q.quantiles_.tolist(),
            "references": None if q is None else q.references_.tolist(),
        }

    @classmethod
    def from_state_dict(cls, schema: TableSchema, state: dict[str, Any]) -> TableEncoder:
        enc = cls(schema, state["condition_on_target"], state["seed"])
        enc.num_columns_ = state["num_columns"]
        enc.cat_columns_ = state["cat_columns"]
        enc.null_indicator_columns_ = state["null_indicator_columns"]
        enc.categories_ = state["categories"]
        enc.target_classes_ = state["target_classes"]
        enc.fill_values_ = state["fill_values"]
        enc.quantile_ = None
        if state["quantiles"] is not None:
            q = QuantileTransformer(output_distribution="normal")
            q.quantiles_ = np.asarray(state["quantiles"], dtype=np.float64)
            q.references_ = np.asarray(state["references"], dtype=np.float64)
            q.n_quantiles_ = len(q.references_)
            q.n_features_in_ = q.quantiles_.shape[1]
            enc.quantile_ = q
        return enc


def _distinct(spec: ColumnSpec) -> list[Any]:
    """The column's categories, one per `category_key` (the first wins), then `MISSING` when
    the column is nullable: every category fitted is one that encoding can look up, so the
    model never learns, or emits, a category no value maps to."""
    out: dict[str, Any] = {}
    for c in spec.categories or []:
        if not is_missing(c):
            out.setdefault(category_key(c), c)
    if spec.nullable:
        out.setdefault(MISSING, MISSING)
    return list(out.values())


def _decode(codes: np.ndarray, categories: list[Any]) -> np.ndarray:
    values = np.array([None if c == MISSING else c for c in categories], dtype=object)
    return values.take(np.asarray(codes))  # any integer dtype: samples arrive as uint8


def _inverse_quantiles(q: QuantileTransformer, z: np.ndarray) -> np.ndarray:
    """`q.inverse_transform(z)` for a normal-output transformer, value for value, at a
    fraction of its cost: sklearn's path spends most of its time in `scipy.stats.norm.cdf`'s
    argument handling, and decoding runs on every sampled row."""
    refs = q.references_
    out = np.empty(z.shape, dtype=np.float64)

    def column(j: int) -> None:
        quantiles = q.quantiles_[:, j]
        u = special.ndtr(z[:, j])  # what stats.norm.cdf computes for loc=0, scale=1
        col = np.interp(u, refs, quantiles)
        with np.errstate(invalid="ignore"):
            col[u + _BOUNDS_THRESHOLD > 1] = quantiles[-1]
            col[u - _BOUNDS_THRESHOLD < 0] = quantiles[0]
        out[:, j] = col

    workers = min(z.shape[1], os.cpu_count() or 1)
    if len(z) < _PARALLEL_ROWS or workers < 2:
        for j in range(z.shape[1]):
            column(j)
    else:  # ndtr and interp release the GIL: columns decode side by side
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(column, range(z.shape[1])))
    return out


def columns_to_frame(columns: dict[str, Any]) -> pd.DataFrame:
    """A DataFrame over the given column arrays, built without consolidating them into 2-D
    blocks (for a million rows of object columns, the copy that `pd.DataFrame(dict)` makes
    costs more than the whole reverse diffusion on a GPU)."""
    if not columns:
        return pd.DataFrame(columns)
    series = [
        # numpy columns keep their dtype: no per-value inference (pandas 3 would otherwise
        # turn every object column of strings into its Arrow-backed string dtype, row by row)
        pd.Series(values, name=name, copy=False, dtype=getattr(values, "dtype", None))
        for name, values in columns.items()
    ]
    return pd.concat(series, axis=1, copy=False)
