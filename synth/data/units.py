"""The privacy unit of a table: which column names the person each row belongs to.

A person with many rows (a patient's visits, a customer's claims) is the thing to protect.
The split keeps each person on one side, and DP-SGD bounds each person's contribution, so
both need the column; its values are turned into integer codes and never kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synth.data.parsing import locate
from synth.data.schema import ColumnOverride
from synth.data.split import unit_codes
from synth.errors import ConfigError, InputDataError, did_you_mean

ROW = "row"


def unit_column(unit: str, columns: list[str]) -> str | None:
    """The column `privacy.unit` names, or None when each row is its own person."""
    if unit in ("auto", ROW):
        return None
    if unit not in columns:
        raise ConfigError(
            f"privacy.unit {unit!r} is not a column of the table{did_you_mean(unit, columns)}: "
            "name the column that identifies a person, or use row"
        )
    return unit


def with_unit_as_id(
    overrides: dict[str, ColumnOverride], column: str | None
) -> dict[str, ColumnOverride]:
    """The unit column identifies people: it is an ID (never modelled, regenerated or
    dropped on export) unless the config says otherwise."""
    if column is None or column in overrides:
        return overrides
    return {**overrides, column: ColumnOverride(kind="id")}


def table_units(df: pd.DataFrame, column: str | None) -> np.ndarray | None:
    """Each row's person code (None: every row its own person). A row with no unit value is
    refused, naming the column and the row."""
    if column is None:
        return None
    values = df[column]
    missing = np.flatnonzero(values.isna().to_numpy())
    if len(missing):
        raise InputDataError(
            f"{locate(column, values, int(missing[0]))}: the privacy unit is missing "
            f"({len(missing)} rows): every row must name its person"
        )
    return unit_codes(values)
