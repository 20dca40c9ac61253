"""What a category is: one key and one missing-value test, shared by the model and the checks.

The model encodes categories into codes and the checks compare real and synthetic categories;
both must agree on when two values are the same category, or a check could count a category the
model emits as unseen (or merge two the model keeps apart). Values are compared by canonical
text, so values that differ only in type are one category: 1, 1.0, True, np.int64(1) and "1"
are all "1". Tables read from CSV, Parquet and pandas' nullable dtypes then compare equal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synth.data.parsing import to_datetimes

MISSING = "__missing__"  # the category of a missing value (None, NaN, pd.NA, NaT)


def is_missing(value: Any) -> bool:
    """True for None, float NaN (Python or numpy), pd.NA and NaT: every way to say "no value"."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return isinstance(value, np.datetime64) and bool(np.isnat(value))


def category_key(value: Any) -> str:
    """Canonical text of one category value: 1, 1.0, True, np.int64(1) and "1" all map to "1";
    Timestamps map to their isoformat; a missing value maps to `MISSING`."""
    if is_missing(value):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def category_keys(values: pd.Series) -> pd.Series:
    """`category_key` of every value, except that missing values stay NaN (so callers can drop
    them or give them their own label). Real and synthetic columns that differ only in dtype
    (int vs float vs bool) compare equal; each distinct value is keyed once, so it is fast."""
    s = pd.Series(values)
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        s = pd.Series(s.to_numpy(dtype=float, na_value=np.nan), index=s.index)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    table = np.array([category_key(v) for v in uniques] + [np.nan], dtype=object)
    return pd.Series(table[codes], index=s.index, dtype=object)


def numeric_values(values: pd.Series, kind: str) -> np.ndarray:
    """A numeric or datetime column as float64 (datetimes as ns since the epoch, UTC), so the
    checks measure every number in one unit; unparsable values and missing values are NaN."""
    s = pd.Series(values)
    if kind == "datetime":
        s = to_datetimes(s)  # date text with mixed UTC offsets comes back in UTC
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        out = s.astype("datetime64[ns]").to_numpy().astype("int64").astype(float)
        out[s.isna().to_numpy()] = np.nan
        return out
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
