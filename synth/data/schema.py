"""A table schema the user can read and override: which columns are modelled, and how.

Inference follows SDV's spirit (metadata users can inspect) with scikit-learn-like
simplicity: a pure function from a DataFrame to a `TableSchema`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from synth.data.io import unknown_target
from synth.data.parsing import epoch_ns, parse_numbers, to_datetimes, utc_offsets
from synth.errors import InputDataError, SynthWarning, did_you_mean, warn_once

ColumnKind = Literal["numeric", "categorical", "datetime", "id", "constant"]
Scalar = str | bool | int | float

# An integer column with at most this many distinct values is treated as categorical (0/1 flags...).
MAX_INTEGER_CATEGORIES = 10
# A string column with at most this many distinct values is categorical without further tests;
# above, it is still categorical (airports, zip codes, products...) unless it is date text or
# identifies rows (see MIN_ID_DISTINCT_SHARE).
MAX_STRING_CATEGORIES = 100
# A text column whose distinct values are at least this share of its present values identifies
# rows (a key, an email, a free-text note): an ID, regenerated, never modelled. Below it, values
# repeat enough to be levels an analyst groups by; those held by fewer than k training rows are
# grouped by rare-value protection, so a near-unique column modelled as categorical would emit
# almost only the rare label.
MIN_ID_DISTINCT_SHARE = 0.95
# Below this many rows a column of unique values is not called an ID (too little evidence).
MIN_ROWS_FOR_ID = 20
# A text target is categorical up to this many classes (other text columns stop at
# MAX_STRING_CATEGORIES); a target with more is refused with this limit named.
MAX_TARGET_CLASSES = 500
# Integers beyond this lose exactness as float64, the model's number type.
MAX_EXACT_INTEGER = 2**53


class ColumnSpec(BaseModel):
    """How one column is modelled. `dtype` is the source dtype, kept so the export matches it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: ColumnKind
    dtype: str
    nullable: bool = False
    integer: bool = False
    min: float | None = None
    """A lower bound the user declared (`source.columns`); never inferred from the rows, where
    it would be one person's value. The model learns protected bounds from training rows."""
    max: float | None = None
    """An upper bound the user declared; see `min`."""
    decimals: int | None = Field(None, ge=0)
    """Decimal places a numeric column's synthetic values are rounded to, as the user declared
    it (`source.columns`). None: learned from the training rows (`synth.data.precision`)."""
    categories: list[Scalar] | None = None
    constant_value: Scalar | None = None
    timezone: str | None = None
    """"UTC" for a date column whose text carried UTC offsets: its values are normalised to UTC
    (the model works in UTC instants) and the export's column is a UTC timestamp, so an
    instant is never shifted silently. None for naive dates, and for typed datetimes (Parquet),
    whose dtype keeps their zone."""
    note: str | None = None
    """What reading the column changed, in words the export carries (never a value)."""

    @property
    def modelled(self) -> bool:
        return self.kind in ("numeric", "categorical", "datetime")


class ColumnOverride(BaseModel):
    """What a user may override in the config, per column."""

    model_config = ConfigDict(extra="forbid")

    kind: ColumnKind | None = None
    integer: bool | None = None
    min: float | None = None
    max: float | None = None
    decimals: int | None = Field(None, ge=0)
    """Decimal places to round a numeric column's synthetic values to (default: learned)."""
    categories: list[Scalar] | None = None
    """A categorical column's values, declared public: a DP run takes them as they are
    instead of spending budget to find them (`synth.dp.preprocess`)."""


class TableSchema(BaseModel):
    """The inferred (and possibly overridden) description of a table."""

    model_config = ConfigDict(extra="forbid")

    columns: list[ColumnSpec]
    target: str | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def of_kind(self, *kinds: ColumnKind) -> list[ColumnSpec]:
        return [c for c in self.columns if c.kind in kinds]

    @property
    def modelled(self) -> list[ColumnSpec]:
        return [c for c in self.columns if c.modelled]

    @property
    def target_kind(self) -> ColumnKind | None:
        return self.column(self.target).kind if self.target else None

    def structure(self, overrides: dict[str, ColumnOverride] | None = None) -> TableSchema:
        """This schema without the values inference read from the rows: category lists and
        bounds only where the user declared them (`overrides`). What a job stores and trains
        from, so the values the model may emit are learned from the training split alone."""
        overrides = overrides or {}
        columns = []
        for c in self.columns:
            declared = overrides.get(c.name)
            kept = {
                "min": declared.min if declared else None,
                "max": declared.max if declared else None,
                "categories": declared.categories if declared else None,
            }
            columns.append(c.model_copy(update=kept))
        return TableSchema(columns=columns, target=self.target)


def _to_scalar(value: Any) -> Scalar:
    """numpy/pandas scalars -> plain JSON-able Python scalars."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _sorted_categories(values: pd.Series) -> list[Scalar]:
    uniques = [_to_scalar(v) for v in values.dropna().unique()]
    return sorted(uniques, key=lambda v: (type(v).__name__, v))


def _looks_like_datetime(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).head(200)
    if sample.empty or not sample.str.contains(r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}").all():
        return False
    return bool(to_datetimes(sample).notna().all())


MIXED_OFFSETS_NOTE = "mixed UTC offsets normalised to UTC"
ONE_OFFSET_NOTE = "UTC offset normalised to UTC"


class TimezoneNormalisedWarning(SynthWarning):
    """A date column's mixed UTC offsets were normalised to UTC (its local times are gone)."""


def _warn_once(name: str, present: pd.Series) -> None:
    """Warn about a column's mixed offsets once per column of one table in this process: the
    CLI's preflight and the job's load step read the same table. The key is a hash of the
    column, never shown; the warning names the column alone."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(present, index=False).to_numpy())
    warn_once(
        ("utc-offsets", name, digest.hexdigest()),
        f"column {name!r}: its dates carry different UTC offsets; they are normalised to UTC "
        "and exported as UTC timestamps",
        TimezoneNormalisedWarning,
        stacklevel=2,
    )


def _with_offsets(spec: ColumnSpec, present: pd.Series) -> ColumnSpec:
    """A date column read from text: record (and warn) when its offsets are normalised to UTC.
    One offset throughout is normalised too, so every zoned text column exports the same way;
    naive dates stay naive."""
    offsets = utc_offsets(present)
    if offsets == "none":
        return spec
    if offsets == "mixed":
        _warn_once(spec.name, present)
    note = MIXED_OFFSETS_NOTE if offsets == "mixed" else ONE_OFFSET_NOTE
    return spec.model_copy(update={"timezone": "UTC", "note": note})


def _epoch_ns(values: pd.Series) -> pd.Series:
    """Datetimes (or date strings) -> int64 nanoseconds since the epoch, UTC, whatever the
    source unit (datetime64[us] from Parquet...): the encoder works in nanoseconds. A bad
    value raises an error naming the column (the Series' name) and row, never the value."""
    return epoch_ns(values, str(values.name))


def _infer_column(name: str, s: pd.Series) -> ColumnSpec:
    dtype = str(s.dtype)
    nullable = bool(s.isna().any())
    present = s.dropna()
    if present.empty:
        raise InputDataError(
            f"column {name!r} is entirely null: drop it from the table, or fill it, and run again"
        )
    n_unique = int(present.nunique())
    base = {"name": name, "dtype": dtype, "nullable": nullable}

    if n_unique == 1 and not nullable:
        return ColumnSpec(**base, kind="constant", constant_value=_to_scalar(present.iloc[0]))
    if pd.api.types.is_bool_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype):
        return ColumnSpec(**base, kind="categorical", categories=_sorted_categories(present))
    if pd.api.types.is_datetime64_any_dtype(s):
        return ColumnSpec(**base, kind="datetime")
    if pd.api.types.is_numeric_dtype(s):
        with np.errstate(invalid="ignore"):  # inf is not integral; the load step names it
            integral = bool(np.all(np.mod(present.to_numpy(dtype=float), 1) == 0))
        is_unique = n_unique == len(s) and len(s) >= MIN_ROWS_FOR_ID
        if integral and is_unique:
            return ColumnSpec(**base, kind="id", integer=True)
        if integral and n_unique <= MAX_INTEGER_CATEGORIES:
            return ColumnSpec(**base, kind="categorical", categories=_sorted_categories(present))
        return ColumnSpec(**base, kind="numeric", integer=integral)
    # strings / objects
    if n_unique <= MAX_STRING_CATEGORIES and n_unique < len(present):
        return ColumnSpec(**base, kind="categorical", categories=_sorted_categories(present))
    if _looks_like_datetime(present):
        _epoch_ns(present)  # every value must parse, or the column is not a date column
        return _with_offsets(ColumnSpec(**base, kind="datetime"), present)
    if _identifies_rows(n_unique, len(present)):
        return ColumnSpec(**base, kind="id")
    return ColumnSpec(**base, kind="categorical", categories=_sorted_categories(present))


def _identifies_rows(n_unique: int, n_present: int) -> bool:
    """Text whose values (nearly) never repeat is a key, not levels; a tiny table is too
    little evidence either way, so it keeps the old rule (unique means ID)."""
    if n_present < MIN_ROWS_FOR_ID:
        return n_unique == n_present
    return n_unique >= MIN_ID_DISTINCT_SHARE * n_present


def infer_schema(
    df: pd.DataFrame,
    target: str | None = None,
    overrides: dict[str, ColumnOverride] | None = None,
) -> TableSchema:
    """Describe every column of `df`; `overrides` (from the config) win over inference."""
    if target is not None and target not in df.columns:
        raise unknown_target(target, df.columns)
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(df.columns))
    if unknown:
        raise InputDataError(
            f"schema overrides name columns not in the table: {unknown}"
            f"{did_you_mean(unknown[0], df.columns)}; fix source.columns"
        )

    if target is not None and df[target].dropna().nunique() == 1:
        raise InputDataError(
            f"target {target!r} has one class; a conditional model needs at least two: pick "
            "another source.target, or leave it unset to model the table unconditionally"
        )

    columns = []
    for name in df.columns:
        spec = _infer_column(str(name), df[name])
        override = overrides.get(name)
        if override is not None:
            spec = _apply_override(spec, override, df[name])
        if override is None or override.kind is None:
            if name == target:
                spec = _target_classes(spec, df[name])
            _refuse_mixed_numbers(spec, df[name])
        _refuse_inexact_integers(spec, df[name])
        columns.append(spec)

    if target is not None:
        t = next(c for c in columns if c.name == target)
        if t.kind not in ("numeric", "categorical"):
            raise InputDataError(
                f"target column {target!r} was inferred as {t.kind}; a target must be numeric or "
                f"categorical (override its kind under source.columns.{target}.kind)"
            )
    return TableSchema(columns=columns, target=target)


def _target_classes(spec: ColumnSpec, s: pd.Series) -> ColumnSpec:
    """A text target with repeated values is categorical up to MAX_TARGET_CLASSES classes
    (even when near-unique, which makes other text columns IDs); beyond, refused: the
    evaluation's classifier grows with each class, unlike a modelled feature's levels."""
    if spec.kind not in ("id", "categorical") or pd.api.types.is_numeric_dtype(s.dtype):
        return spec
    if isinstance(s.dtype, pd.CategoricalDtype):
        return spec  # levels the user declared
    present = s.dropna()
    n_classes = int(present.nunique())
    if spec.kind == "categorical" and n_classes <= MAX_TARGET_CLASSES:
        return spec
    if n_classes == len(present):
        return spec  # a different value in every row: an ID, refused as a target below
    if n_classes > MAX_TARGET_CLASSES:
        raise InputDataError(
            f"target {spec.name!r} has {n_classes} classes; at most {MAX_TARGET_CLASSES} are "
            "supported (the evaluation's classifier grows with each class): group its classes, "
            "or pick another source.target"
        )
    categories = _sorted_categories(present)
    return spec.model_copy(update={"kind": "categorical", "categories": categories})


def _refuse_mixed_numbers(spec: ColumnSpec, s: pd.Series) -> None:
    """A text column whose values are mostly numbers, with some text ("n/a", "unknown", a
    code), would otherwise become an ID and be replaced, or thousands of levels with the
    numbers' order lost: name its first text cell instead."""
    if spec.kind not in ("id", "categorical") or pd.api.types.is_numeric_dtype(s.dtype):
        return
    if isinstance(s.dtype, pd.CategoricalDtype):
        return  # levels the user declared
    present = s.dropna()
    if spec.kind == "categorical" and present.nunique() <= MAX_STRING_CATEGORIES:
        return  # a few codes, some of them numbers: levels as they always were
    numbers = pd.to_numeric(present.astype(object), errors="coerce")
    share = float(numbers.notna().mean())
    if 0.5 <= share < 1.0:
        parse_numbers(
            present,
            spec.name,
            expected="a number (most of the column is numbers; a column mixing numbers and "
            "text is not guessed at)",
            fix=f"fix or blank that cell, or set source.columns.{spec.name}.kind to "
            "categorical or id",
        )


def _refuse_inexact_integers(spec: ColumnSpec, s: pd.Series) -> None:
    """The model works in float64: an integer beyond 2**53 would come out changed."""
    if spec.kind not in ("numeric", "categorical") or not pd.api.types.is_numeric_dtype(s.dtype):
        return
    if pd.api.types.is_bool_dtype(s.dtype):
        return
    values = s.dropna()
    if values.empty:
        return
    if pd.api.types.is_integer_dtype(values.dtype):
        big = bool((values.abs() > MAX_EXACT_INTEGER).any())  # exact in int64/uint64
    elif not spec.integer:
        return  # large floats are not integers that lost their digits
    else:
        f = values.to_numpy(dtype=float)
        big = bool(np.any((np.abs(f) > MAX_EXACT_INTEGER) & (np.mod(f, 1) == 0)))
    if big:
        raise InputDataError(
            f"column {spec.name!r} holds integers beyond 2**53, which the model's float64 "
            "numbers cannot keep exact: store the column as text, or set "
            f"source.columns.{spec.name}.kind to id"
        )


def _apply_override(spec: ColumnSpec, o: ColumnOverride, s: pd.Series) -> ColumnSpec:
    present = s.dropna()
    kind = o.kind or spec.kind
    data: dict[str, Any] = spec.model_dump()
    data["kind"] = kind
    if kind != spec.kind:
        data.update(categories=None, min=None, max=None, constant_value=None)
        data.update(timezone=None, note=None)
        if kind == "categorical":
            data["categories"] = _sorted_categories(present)
        elif kind == "numeric":
            values = parse_numbers(
                present,
                spec.name,
                fix=f"fix or blank that cell, or drop the override source.columns.{spec.name}",
            ).astype(float)
            data["integer"] = bool(np.all(np.mod(values, 1) == 0))
        elif kind == "datetime":
            _epoch_ns(present)  # every value must parse
        elif kind == "constant":
            data["constant_value"] = _to_scalar(present.iloc[0])
    for field in ("integer", "min", "max", "decimals"):
        value = getattr(o, field)
        if value is not None:
            data[field] = value
    if kind == "datetime" and kind != spec.kind:
        return _with_offsets(ColumnSpec(**data), present)
    return ColumnSpec(**data)
