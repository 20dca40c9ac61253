"""Parse and cast table values so that an error names the column and the row, never the value.

pandas, pyarrow and numpy quote the offending value in their messages ("Unknown datetime
string format, unable to parse: Jane Doe, at position 203"), and a message travels: to the
terminal, to `run.json`, to the orchestrator's logs and database. Every parse or cast of
protected values goes through these helpers instead: they coerce, find the first value that
did not convert, and raise a `BadValueError` (an `InputDataError`) that says where it is and
what was expected, with no chained exception (`from None`).

Rows are counted the way a person finds them in the file: `row N` is the N-th data row,
1-based, header excluded (line N + 1 of a CSV with a header). A Series keeps the row labels of
the table it came from (`load_table` gives a RangeIndex, and `dropna` keeps the labels), so
the label, not the position, names the row; a Series without integer labels is counted by
position.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd

from synth.errors import BadValueError

ROWS = "1-based, header excluded"
_CAST_ERRORS = (ValueError, TypeError, OverflowError, ArithmeticError)


def row_number(values: pd.Series, position: int) -> int:
    """The 1-based data row of `values.iloc[position]` (see the module docstring)."""
    label = values.index[position]
    if pd.api.types.is_integer_dtype(values.index.dtype) and isinstance(label, int | np.integer):
        return int(label) + 1
    return position + 1


def locate(column: str, values: pd.Series, position: int) -> str:
    """`column 'visit', row 204 (1-based, header excluded)`."""
    return f"column {column!r}, row {row_number(values, position)} ({ROWS})"


def first_failed(values: pd.Series, converted: pd.Series | np.ndarray) -> int | None:
    """Position of the first value that was present but did not convert (became NaN/NaT)."""
    failed = pd.isna(np.asarray(converted)) & ~pd.isna(values).to_numpy()
    hits = np.flatnonzero(failed)
    return int(hits[0]) if hits.size else None


def _first_raising(values: pd.Series, convert: Any) -> int | None:
    """Position of the first value that `convert` (one value) raises on: the slow path, used
    only after a whole-column conversion raised instead of coercing."""
    for i, v in enumerate(values.to_numpy(dtype=object)):
        if np.ndim(v) == 0 and pd.isna(v):
            continue
        try:
            convert(v)
        except Exception:  # whatever it raises, its text is not used
            return i
    return None


def _bad_value(
    column: str, values: pd.Series, position: int | None, expected: str, fix: str
) -> BadValueError:
    at = locate(column, values, position) if position is not None else f"column {column!r}"
    return BadValueError(f"{at}: expected {expected}; {fix}")


def _date_fix(column: str) -> str:
    return (
        "fix or blank that cell, or set source.columns."
        f"{column}.kind to categorical or id if the column is not a date"
    )


Offsets = Literal["none", "one", "mixed"]
"""What UTC offsets date text carries: none (naive), one for every value, or several."""

# The offset that ends date text with a time ("... 05:17:00+01:00", "...T05:17Z", "... 5:17 UTC").
_OFFSET = re.compile(
    r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE
)


def _offset_key(token: str) -> str:
    """One spelling per offset: "Z", "UTC", "+00" and "-0000" are all "+00:00"."""
    token = token.upper()
    if token in ("Z", "UTC", "GMT"):
        return "+00:00"
    digits = token[1:].replace(":", "").ljust(4, "0")
    key = f"{token[0]}{digits[:2]}:{digits[2:]}"
    return "+00:00" if key[1:] == "00:00" else key


def _text_offsets(values: pd.Series) -> Offsets:
    """Offsets read off the text itself (pandas would warn, or in pandas 3 raise, to say so)."""
    text = values.dropna().astype(str).str.strip()
    tokens = text.str.extract(_OFFSET, expand=False)
    present = tokens.dropna()
    if present.empty:
        return "none"
    if len(present) < len(text) or present.map(_offset_key).nunique() > 1:
        return "mixed"  # different offsets, or an offset on some values only
    return "one"


def _to_datetime(values: pd.Series) -> tuple[pd.Series, Offsets]:
    """Parse leniently (bad values become NaT) and say which offsets the text carried.

    Text with offsets is parsed with `utc=True`: each value becomes the same instant in UTC,
    whether one offset runs through the column or several (a summer and a winter offset, a
    feed merged from two zones); a value without an offset among them is read as UTC, as
    pandas does. Without `utc=True`, mixed offsets make pandas 2 warn (from whichever thread
    parses: `catch_warnings` is not thread-safe) and pandas 3 raise, so they are found in the
    text first."""
    offsets = _text_offsets(values)
    if offsets != "none":
        return pd.to_datetime(values, errors="coerce", format="mixed", utc=True), offsets
    parsed = None
    with warnings.catch_warnings(), contextlib.suppress(ValueError):
        warnings.simplefilter("ignore", FutureWarning)  # offsets the pattern did not see
        parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    if parsed is not None and pd.api.types.is_datetime64_any_dtype(parsed.dtype):
        if getattr(parsed.dt, "tz", None) is None:
            return parsed, "none"
        return parsed.dt.tz_convert("UTC"), "one"
    return pd.to_datetime(values, errors="coerce", format="mixed", utc=True), "mixed"


def to_datetimes(values: pd.Series) -> pd.Series:
    """Dates, or date text, as datetimes; a value that is not a date becomes NaT (checks that
    measure columns use this; `parse_datetimes` is the one that refuses). Text with mixed UTC
    offsets comes back in UTC rather than as objects, or as pandas 3's ValueError."""
    values = pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    return _to_datetime(values)[0]


def utc_offsets(values: pd.Series) -> Offsets:
    """Which UTC offsets the date text in `values` carries (see `Offsets`); "none" for typed
    datetimes, whose dtype already says their zone. For a column whose values all parse."""
    values = pd.Series(values).dropna()
    if values.empty or pd.api.types.is_datetime64_any_dtype(values.dtype):
        return "none"
    return _to_datetime(values)[1]


def parse_datetimes(values: pd.Series, column: str) -> pd.Series:
    """Datetimes, or date strings in any mix of ISO-like formats, as a datetime Series.

    Text with UTC offsets (one throughout, or several: summer and winter time) comes back in
    UTC; naive text stays naive. A present value that is not a date raises an
    `InputDataError` naming the column and its row."""
    values = pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    try:
        parsed, _ = _to_datetime(values)
    except _CAST_ERRORS:
        position = _first_raising(values, lambda v: pd.to_datetime([v], format="mixed"))
        raise _bad_value(column, values, position, "a date", _date_fix(column)) from None
    position = first_failed(values, parsed)
    if position is not None:
        raise _bad_value(
            column, values, position, "a date (e.g. 2024-01-31 or 31/01/2024)", _date_fix(column)
        ) from None
    return parsed


def epoch_ns(values: pd.Series, column: str) -> pd.Series:
    """Datetimes (or date strings) -> int64 nanoseconds since the epoch, UTC, whatever the
    source unit (datetime64[us] from Parquet...). Missing values stay missing (as NaN, so the
    result is float64 when there are any). A date outside what nanoseconds hold (years
    1677-2262) raises an `InputDataError` naming its row."""
    parsed = parse_datetimes(values, column)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    try:
        out_of_range = (parsed < pd.Timestamp.min) | (parsed > pd.Timestamp.max)
    except _CAST_ERRORS:
        out_of_range = pd.Series(False, index=parsed.index)
    hits = np.flatnonzero(out_of_range.to_numpy())
    if hits.size:
        raise _bad_value(
            column,
            parsed,
            int(hits[0]),
            "a date between the years 1678 and 2261",
            "fix or blank that cell",
        ) from None
    try:
        ns = parsed.astype("datetime64[ns]")
    except _CAST_ERRORS:
        raise _bad_value(column, parsed, None, "dates", "fix the column's dates") from None
    ints = ns.to_numpy().view("int64")
    if ns.isna().any():  # NaT views as the smallest int64: make it NaN
        return pd.Series(np.where(ns.isna().to_numpy(), np.nan, ints), index=ns.index)
    return pd.Series(ints, index=ns.index)


def parse_numbers(
    values: pd.Series,
    column: str,
    expected: str = "a number",
    fix: str = "fix or blank that cell",
) -> pd.Series:
    """Numbers, or text that holds numbers, as a float or integer Series. A present value that
    is not a number raises an `InputDataError` naming the column and its row."""
    values = pd.Series(values)
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("Int64") if values.isna().any() else values.astype("int64")
    try:
        parsed = pd.to_numeric(values, errors="coerce")
    except _CAST_ERRORS:
        position = _first_raising(values, lambda v: pd.to_numeric([v]))
        raise _bad_value(column, values, position, expected, fix) from None
    position = first_failed(values, parsed)
    if position is not None:
        raise _bad_value(column, values, position, expected, fix) from None
    return parsed


def check_finite(values: pd.Series, column: str) -> None:
    """Raise on the first infinite number (inf or -inf): a model of real values cannot fit it,
    and an inf would otherwise fail deep in training with the column unnamed."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    hits = np.flatnonzero(np.isinf(numbers))
    if hits.size:
        raise _bad_value(
            column,
            values,
            int(hits[0]),
            "a finite number (not inf or -inf)",
            "fix or blank that cell",
        ) from None


def check_values(df: pd.DataFrame, columns: list[tuple[str, str]], table: str = "") -> None:
    """Every (name, kind) column of `df` that is numeric or datetime parses as such, checked
    on the whole table as read, so an error names the row of the file (a split's rows are
    renumbered). Also for tables read beside the one a schema was inferred from (a holdout, a
    synthetic table from another tool), whose bad cells would otherwise become missing values
    unseen. The error starts with `table` ("the holdout table"), if given."""
    for name, kind in columns:
        if name not in df.columns:
            continue
        try:
            if kind == "datetime":
                epoch_ns(df[name], name)
            elif kind == "numeric":
                check_finite(parse_numbers(df[name], name), name)
        except BadValueError as err:
            if not table:
                raise
            raise BadValueError(f"{table}: {err}") from None
