"""Encode a table into what the diffusion sees, and decode samples back into the table.

- numeric and datetime columns -> quantile-normalised floats (TabDDPM); missing values get a
  binary indicator that is diffused as a categorical, so missingness is modelled, not imputed;
- the upper column of an ordering `lower <= upper` that ties often is diffused as its offset
  `upper - lower` and decoded as `lower + offset` (`synth.tabular.offsets`): the ordering and
  its ties are kept by construction;
- categorical columns -> integer codes (missing is its own code); a column of more than
  `split_codes.SPLIT_ABOVE` levels -> two codes of about sqrt(levels) classes each, from its
  levels ranked by training frequency (see `synth.tabular.split_codes`);
- a categorical target used for conditioning -> a separate label vector `y`.

Everything is learned from the training rows passed to `fit`, under rare-value protection
with `k = min_rows` (see `synth.config.PrivacySpec`), so the fitted state, which is saved
with the model, holds no single person's value:
- a category held by fewer than `k` training rows is grouped into `rare_label` (text columns)
  or into a missing value (numeric and boolean columns): it is never emitted;
- decoded numbers are clipped to the `k`-th smallest and largest training values, and
  rounded to the decimals (datetimes: the day, hour, minute or second) the column is written
  with (`synth.data.precision`: a precision that fewer than `k` rows need is not kept);
- each quantile knot is the mean of a block of at least `k` sorted training values, and the
  fill value of a missing number is the mean of the middle `k` values;
- a text ID column keeps only the pattern of its IDs (`synth.data.id_format`), never an ID.
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

from synth.data.categories import MISSING, category_key, category_keys
from synth.data.id_format import IdFormat, fit_id_format
from synth.data.parsing import epoch_ns, locate, parse_numbers
from synth.data.precision import TIME_UNITS, protected_decimals, protected_time_unit
from synth.data.rare import common_categories, kth_bounds, numeric_like
from synth.data.schema import ColumnSpec, Scalar, TableSchema
from synth.errors import BadValueError, InputDataError, NotFittedError
from synth.tabular import split_codes
from synth.tabular.offsets import decode_order

# QuantileTransformer clips its normal output to +-ppf(1 - 1e-7); the column's min and max land
# there. Stored as float32, that z rounds toward zero, which decoded the min and max slightly
# inside the range; anything at or beyond the float32 edge decodes as the bound.
_PARALLEL_ROWS = 100_000  # below this, threads cost more than they save
_BOUNDS_THRESHOLD = 1e-7  # sklearn.preprocessing's, for the inverse transform's edges
_Z_EDGE = float(np.float32(stats.norm.ppf(1 - (_BOUNDS_THRESHOLD - np.spacing(1)))))
MAX_KNOTS = 1000  # as many as sklearn's QuantileTransformer keeps by default


@dataclass
class EncodedTable:
    x_num: np.ndarray  # float32 [n, n_num]
    x_cat: np.ndarray  # int64 [n, n_cat]
    y: np.ndarray | None  # int64 [n] when conditioning on a categorical target


def _as_float(spec: ColumnSpec, s: pd.Series) -> np.ndarray:
    """A bad value raises an error naming the column and row, never the value."""
    if spec.kind == "datetime":
        return epoch_ns(s, spec.name).to_numpy(dtype=float)
    return parse_numbers(s, spec.name).to_numpy(dtype=float, na_value=np.nan)


class TableEncoder:
    """scikit-learn style: `fit` learns, learned state ends in `_`, `inverse_transform` decodes."""

    def __init__(
        self,
        schema: TableSchema,
        condition_on_target: bool = True,
        seed: int = 0,
        min_rows: int = 5,
        rare_label: str = "_RARE_",
        offsets: dict[str, str] | None = None,
        protect_unseen: bool = False,
    ):
        self.schema = schema
        self.protect_unseen = protect_unseen
        self.condition_on_target = condition_on_target
        self.seed = seed
        self.min_rows = min_rows
        self.rare_label = rare_label
        self.offsets = offsets

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
        """Learn categories, bounds and quantiles from the training rows `df` only."""
        k = self.min_rows
        if len(df) < 2 * k:
            raise InputDataError(
                f"the training split has {len(df)} rows; rare-value protection with "
                f"privacy.rare_category_min_rows={k} needs at least {2 * k}"
            )
        target = self.schema.target if self.conditional else None
        self.num_columns_: list[str] = [
            c.name for c in self.schema.of_kind("numeric", "datetime") if c.name != target
        ]
        self.cat_columns_: list[str] = [
            c.name for c in self.schema.of_kind("categorical") if c.name != target
        ]
        self.categories_: dict[str, list[Any]] = {}
        self.rare_grouped_: dict[str, int] = {}
        for name in [*self.cat_columns_, *([target] if target else [])]:
            categories, grouped = _protected_categories(
                df[name], self.schema.column(name), k, self.rare_label, self.protect_unseen
            )
            self.categories_[name] = categories
            if grouped:
                self.rare_grouped_[name] = grouped
        self.target_classes_: list[Scalar] = self.categories_.pop(target) if target else []
        self.split_bases_: dict[str, int] = {}
        for name in self.cat_columns_:
            base = split_codes.split_base(len(self.categories_[name]))
            if base:  # many levels: ranked by training frequency, then split in two codes
                levels = self.categories_[name]
                codes = self._codes(df[name], levels, name)
                order = split_codes.frequency_order(codes, len(levels))
                self.categories_[name] = [levels[i] for i in order]
                self.split_bases_[name] = base
        self.never_emit_ = self._never_emitted(df) if self.protect_unseen else {}
        self.id_formats_: dict[str, IdFormat] = {}
        for spec in self.schema.of_kind("id"):
            if not spec.integer and not numeric_like(spec):
                found = fit_id_format(df[spec.name], k, salt=self.seed)
                if found is not None:
                    self.id_formats_[spec.name] = found

        values = {n: _as_float(self.schema.column(n), df[n]) for n in self.num_columns_}
        # chosen by `synth.tabular.offsets.choose_offsets`, which checks that they can be
        self.offsets_: dict[str, str] = dict(self.offsets or {})
        features = self._features(values)
        self.null_indicator_columns_: list[str] = [
            n for n in self.num_columns_ if np.isnan(features[n]).any()
        ]
        self.bounds_: dict[str, tuple[float, float]] = {}
        self.fill_values_: dict[str, float] = {}
        self.decimals_: dict[str, int | None] = {}
        self.time_units_: dict[str, str | None] = {}
        nums = []
        for name in self.num_columns_:
            present = np.sort(values[name][~np.isnan(values[name])])
            if len(present) < 2 * k:
                raise InputDataError(
                    f"column {name!r} has {len(present)} values in the training split; "
                    f"rare-value protection (k={k}) needs at least {2 * k}: fill it, or make "
                    "it categorical"
                )
            spec = self.schema.column(name)
            self.bounds_[name] = kth_bounds(present, spec, k)
            if spec.kind == "numeric" and not spec.integer:
                declared = spec.decimals
                self.decimals_[name] = (
                    declared if declared is not None else protected_decimals(present, k)
                )
            elif spec.kind == "datetime":
                self.time_units_[name] = protected_time_unit(present, k)
            feature = features[name]
            if name in self.offsets_:  # the fill is an offset's: the median of the offsets
                present = np.sort(feature[~np.isnan(feature)])
            self.fill_values_[name] = float(_middle(present, k).mean())
            nums.append(np.where(np.isnan(feature), self.fill_values_[name], feature))
        self.quantile_: QuantileTransformer | None = None
        if nums:
            self.quantile_ = _block_quantiles(np.stack(nums, axis=1), k)
        return self

    def _never_emitted(self, df: pd.DataFrame) -> dict[str, int]:
        """DP: the code of each column's protected category where the sketch `df` holds none
        of it. It stands for the training values the sketch did not release; the model
        learns from them, but must never emit it (a split column is left out)."""
        found = {}
        for name in self.cat_columns_:
            if name in self.split_bases_:
                continue
            spec = self.schema.column(name)
            protected = MISSING if numeric_like(spec) else category_key(self.rare_label)
            lookup = {category_key(c): i for i, c in enumerate(self.categories_[name])}
            if protected in lookup and protected not in set(
                category_keys(df[name]).fillna(MISSING)
            ):
                found[name] = lookup[protected]
        return found

    def _features(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The numbers the diffusion sees, before quantiles: each column's value, or its
        offset from its lower column (NaN where either is missing)."""
        offsets = self.offsets_
        return {n: v - values[offsets[n]] if n in offsets else v for n, v in values.items()}

    @property
    def split_columns(self) -> list[str]:
        """The categorical columns diffused as two codes, in `cat_columns_` order."""
        self._check_fitted()
        return [n for n in self.cat_columns_ if n in self.split_bases_]

    @property
    def num_classes(self) -> list[int]:
        """Number of categories of each diffused categorical feature: one per categorical
        column (a split column's bucket), then each split column's `within` code, then the
        null indicators. So feature j is always `cat_columns_[j]`."""
        self._check_fitted()
        first = []
        for n in self.cat_columns_:
            levels = len(self.categories_[n])
            base = self.split_bases_.get(n)
            first.append(split_codes.split_classes(levels, base)[0] if base else levels)
        within = [self.split_bases_[n] for n in self.split_columns]
        return first + within + [2] * len(self.null_indicator_columns_)

    def regenerate_ids(self, spec: ColumnSpec, start: int, n: int) -> np.ndarray:
        """Fresh IDs for rows `start` .. `start + n - 1`, unique across rows: integers number
        the rows; text keeps the training IDs' pattern, or `syn-000000001`... without one."""
        self._check_fitted()
        numbers = np.arange(start + 1, start + n + 1)
        if spec.integer:
            return numbers
        found = getattr(self, "id_formats_", {}).get(spec.name)
        if found is not None:
            return found.generate(start, n)
        return np.array([f"syn-{i:09d}" for i in numbers], dtype=object)

    @property
    def n_num(self) -> int:
        self._check_fitted()
        return len(self.num_columns_)

    # ---- encode / decode ----------------------------------------------------------------
    def _codes(self, values: pd.Series, categories: list[Any], name: str) -> np.ndarray:
        """Codes of `values`; a value that was rare in fit (or is unseen) takes the protected
        category's code, the rare label's or the missing value's."""
        lookup = {category_key(c): i for i, c in enumerate(categories)}
        keys = category_keys(values).fillna(MISSING)
        unknown = ~keys.isin(list(lookup))
        if unknown.any():
            protected = next(
                (p for p in (category_key(self.rare_label), MISSING) if p in lookup), None
            )
            if protected is None or name not in self.rare_grouped_:
                first = int(np.flatnonzero(unknown.to_numpy())[0])
                raise BadValueError(
                    f"{locate(name, keys, first)}: expected a category seen in fit "
                    f"({keys[unknown].nunique()} unseen): fit on data that holds it"
                )
            keys = keys.where(~unknown, protected)
        # a fresh, writable array: pandas (copy-on-write) hands out read-only views, which torch
        # warns about when it wraps them
        return np.array(keys.map(lookup), dtype=np.int64)

    def transform(self, df: pd.DataFrame) -> EncodedTable:
        self._check_fitted()
        n = len(df)
        if self.num_columns_:
            features = self._features(
                {c: _as_float(self.schema.column(c), df[c]) for c in self.num_columns_}
            )
            raw = np.stack([features[c] for c in self.num_columns_], axis=1)
            nulls = np.isnan(raw)
            fills = np.array([self.fill_values_[c] for c in self.num_columns_])
            x_num = self.quantile_.transform(np.where(nulls, fills, raw)).astype(np.float32)
        else:
            x_num, nulls = np.zeros((n, 0), np.float32), np.zeros((n, 0), bool)
        cats = [self._codes(df[c], self.categories_[c], c) for c in self.cat_columns_]
        within = []
        for j, c in enumerate(self.cat_columns_):
            if c in self.split_bases_:
                cats[j], low = split_codes.split(cats[j], self.split_bases_[c])
                within.append(low)
        cats += within
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
            offsets = self.offsets_
            index = {name: j for j, name in enumerate(self.num_columns_)}
            numbers: dict[str, np.ndarray] = {}
            for name in decode_order(self.num_columns_, offsets):
                spec = self.schema.column(name)
                col = x[:, index[name]]
                if name in offsets:  # lower + offset: never below the lower column
                    col = numbers[offsets[name]] + col
                col = np.clip(col, *self.bounds_[name])
                if spec.integer:
                    col = np.round(col)
                elif self.decimals_.get(name) is not None:  # as the source writes them
                    col = np.round(col, self.decimals_[name])
                elif self.time_units_.get(name):  # as `_datetimes` will, before any offset
                    unit = TIME_UNITS[self.time_units_[name]]
                    col = np.round(col / unit) * unit
                numbers[name] = col
            for name in self.num_columns_:
                spec = self.schema.column(name)
                col = numbers[name]
                if name in self.null_indicator_columns_:
                    k = (
                        len(self.cat_columns_)
                        + len(self.split_bases_)
                        + self.null_indicator_columns_.index(name)
                    )
                    col = np.where(enc.x_cat[:, k] == 1, np.nan, col)
                if spec.kind == "datetime":
                    out[name] = self._datetimes(col, self.time_units_.get(name))
                else:
                    out[name] = col
        split_columns = self.split_columns
        for j, name in enumerate(self.cat_columns_):
            codes, levels = enc.x_cat[:, j], self.categories_[name]
            if name in self.split_bases_:
                within = enc.x_cat[:, len(self.cat_columns_) + split_columns.index(name)]
                codes = split_codes.join(codes, within, self.split_bases_[name], len(levels))
            out[name] = _decode(codes, levels)
        if self.conditional and enc.y is not None:
            out[self.schema.target] = _decode(enc.y, self.target_classes_)
        ordered = [c.name for c in self.schema.modelled if c.name in out]
        return columns_to_frame({name: out[name] for name in ordered})

    @staticmethod
    def _datetimes(epoch_ns: np.ndarray, unit: str | None) -> pd.Series:
        """Decoded nanoseconds (NaN: missing) as datetimes, in whole `unit`s when the column
        is written in one. Counted in the unit, so whole hours stay whole: float64
        nanoseconds near today are only exact to about 256 ns."""
        if unit is None:
            return pd.to_datetime(pd.Series(np.round(epoch_ns)), unit="ns")
        ticks = np.round(epoch_ns / TIME_UNITS[unit])
        return pd.to_datetime(pd.Series(ticks), unit=unit)

    # ---- persistence without pickle -----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self._check_fitted()
        q = self.quantile_
        return {
            "condition_on_target": self.condition_on_target,
            "seed": self.seed,
            "min_rows": self.min_rows,
            "rare_label": self.rare_label,
            "rare_grouped": self.rare_grouped_,
            "never_emit": getattr(self, "never_emit_", {}),
            "bounds": {name: list(b) for name, b in self.bounds_.items()},
            "num_columns": self.num_columns_,
            "cat_columns": self.cat_columns_,
            "null_indicator_columns": self.null_indicator_columns_,
            "categories": self.categories_,
            "split_bases": self.split_bases_,
            "id_formats": {name: f.to_dict() for name, f in self.id_formats_.items()},
            "target_classes": self.target_classes_,
            "fill_values": self.fill_values_,
            "offsets": self.offsets_,
            "decimals": self.decimals_,
            "time_units": self.time_units_,
            "quantiles": None if q is None else q.quantiles_.tolist(),
            "references": None if q is None else q.references_.tolist(),
        }

    @classmethod
    def from_state_dict(cls, schema: TableSchema, state: dict[str, Any]) -> TableEncoder:
        enc = cls(
            schema,
            state["condition_on_target"],
            state["seed"],
            state["min_rows"],
            state["rare_label"],
        )
        enc.rare_grouped_ = state["rare_grouped"]
        enc.never_emit_ = state.get("never_emit", {})  # saved before DP: none
        enc.bounds_ = {name: (lo, hi) for name, (lo, hi) in state["bounds"].items()}
        enc.num_columns_ = state["num_columns"]
        enc.cat_columns_ = state["cat_columns"]
        enc.null_indicator_columns_ = state["null_indicator_columns"]
        enc.categories_ = state["categories"]
        enc.split_bases_ = state["split_bases"]
        enc.id_formats_ = {n: IdFormat.from_dict(f) for n, f in state["id_formats"].items()}
        enc.target_classes_ = state["target_classes"]
        enc.fill_values_ = state["fill_values"]
        enc.offsets_ = state.get("offsets", {})  # models saved before: no offsets
        enc.decimals_ = state.get("decimals", {})  # models saved before: unrounded
        enc.time_units_ = state.get("time_units", {})
        enc.quantile_ = None
        if state["quantiles"] is not None:
            q = QuantileTransformer(output_distribution="normal")
            q.quantiles_ = np.asarray(state["quantiles"], dtype=np.float64)
            q.references_ = np.asarray(state["references"], dtype=np.float64)
            q.n_quantiles_ = len(q.references_)
            q.n_features_in_ = q.quantiles_.shape[1]
            enc.quantile_ = q
        return enc


def _protected_categories(
    values: pd.Series, spec: ColumnSpec, k: int, rare_label: str, protect_unseen: bool = False
) -> tuple[list[Any], int]:
    """The column's categories as the training rows hold them, one per `category_key` (the
    first value seen wins), sorted, then the protected category, then `MISSING` when the
    column has missing values (or grouped rare values into one). Values held by fewer than
    `k` rows are grouped: returns (categories, how many distinct values were grouped).
    `protect_unseen` (DP, fitted on a sketch): the protected category is always there, for
    the training rows' values the sketch did not release."""
    keys = category_keys(values)
    common = common_categories(values, k)
    firsts = keys.dropna().drop_duplicates()  # each key's first row, in row order
    raw = pd.Series(values).to_numpy(dtype=object)
    first: dict[str, Any] = {
        key: _plain(raw[pos])
        for key, pos in zip(firsts, keys.index.get_indexer(firsts.index), strict=True)
        if key in common
    }
    categories: list[Any] = [first[key] for key in sorted(first)]
    grouped = int(keys.nunique(dropna=True) - len(common)) + int(protect_unseen)
    text = not numeric_like(spec)
    missing = bool(keys.isna().any())
    if grouped and not text:
        missing = True
    elif grouped and category_key(rare_label) not in first:
        categories.append(rare_label)
    if missing:
        categories.append(MISSING)
    if not categories:
        raise InputDataError(f"column {spec.name!r} has no category in the training split")
    return categories, grouped


def _plain(value: Any) -> Any:
    """numpy scalars -> Python ones, so the categories save as JSON."""
    return value.item() if isinstance(value, np.generic) else value


def _middle(present: np.ndarray, k: int) -> np.ndarray:
    """The `k` values around the median of sorted `present` (all when there are fewer)."""
    start = max(0, (len(present) - k) // 2)
    return present[start : start + k]


def _block_quantiles(x: np.ndarray, k: int) -> QuantileTransformer:
    """A normal-output quantile transformer whose knots each average a block of at least `k`
    sorted training values (at most `MAX_KNOTS` blocks), at evenly spaced references. With
    `k` = 1 and up to 1000 rows, the knots are the sorted values, as sklearn's would be."""
    n = len(x)
    n_knots = max(2, min(MAX_KNOTS, n // k))
    blocks = np.array_split(np.arange(n), n_knots)
    ordered = np.sort(x, axis=0)
    knots = np.stack([ordered[b].mean(axis=0) for b in blocks])
    q = QuantileTransformer(n_quantiles=n_knots, output_distribution="normal")
    q.quantiles_ = np.maximum.accumulate(knots, axis=0)  # float noise must not break order
    q.references_ = np.linspace(0.0, 1.0, n_knots)
    q.n_quantiles_ = n_knots
    q.n_features_in_ = x.shape[1]
    return q


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
