"""The decimal precision of a numeric column, learned without any one row's say.

A model decodes continuous numbers, while real columns are written with a fixed number of
decimals (prices in cents, depths in tenths). Left unrounded, synthetic numbers sit between
the values real rows can take, and a classifier tells them apart by that alone: on
`ggplot2::diamonds`, rounding ours to the source's decimals took detection AUC from 0.989 to
0.769. The precision is a property of the column, but one row written with more decimals
than the rest would set it, so rows that need more decimals count only when at least `k` do
(the rare-value threshold): fewer are rounded like the rest.

Datetimes have the same trait in time units: `nycflights13::flights`' `time_hour` holds whole
hours, and a model's continuous nanoseconds do not.
"""

from __future__ import annotations

import numpy as np

MAX_DECIMALS = 6
"""Beyond this, a column is treated as continuous and left unrounded."""
_RELATIVE_TOLERANCE = 1e-9  # float noise: 0.23 * 100 is 23.000000000000004


def protected_decimals(values: np.ndarray, k: int, max_decimals: int = MAX_DECIMALS) -> int | None:
    """The fewest decimals (0..`max_decimals`) that all but fewer than `k` of the finite
    `values` are written with; None when even `max_decimals` leaves `k` or more off the grid."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    for decimals in range(max_decimals + 1):
        scaled = v * 10.0**decimals
        off = np.abs(scaled - np.round(scaled)) > _RELATIVE_TOLERANCE * np.maximum(
            1.0, np.abs(scaled)
        )
        if int(off.sum()) < k:
            return decimals
    return None


TIME_UNITS = {"D": 86_400 * 10**9, "h": 3_600 * 10**9, "m": 60 * 10**9, "s": 10**9}
"""Units a datetime column may be written in, coarsest first, in nanoseconds. Finer ones are
not tried: float64 nanoseconds near today are only exact to about 256 ns."""
_TIME_TOLERANCE_NS = 10_000  # float64 rounding of epoch nanoseconds, far below a second


def protected_time_unit(epoch_ns: np.ndarray, k: int) -> str | None:
    """The coarsest of `TIME_UNITS` that all but fewer than `k` of the finite epoch-nanosecond
    values are whole multiples of (UTC: a day means midnight UTC); None when none is."""
    v = np.asarray(epoch_ns, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    for unit, ns in TIME_UNITS.items():
        off = np.abs(v - np.round(v / ns) * ns) > _TIME_TOLERANCE_NS
        if int(off.sum()) < k:
            return unit
    return None
