"""The DP plan of one fit: the unit, the people, and what the schema leaves to estimate."""

from __future__ import annotations

import numpy as np

from synth.config import PrivacySpec, TrainingSpec
from synth.data.schema import TableSchema
from synth.dp.accounting import DPPlan, plan_training
from synth.dp.preprocess import estimated_columns


def unit_name(privacy: PrivacySpec, grouped: bool) -> str:
    """The unit as reports state it: `row` when each record is its own person."""
    if not grouped:
        return "row"
    return "PatientID" if privacy.unit == "auto" else privacy.unit


def n_people(units: np.ndarray | None, n_rows: int) -> int:
    return n_rows if units is None else len(np.unique(units))


def dp_plan(
    schema: TableSchema | None,
    privacy: PrivacySpec,
    training: TrainingSpec,
    units: np.ndarray | None,
    n_rows: int,
    estimated: list[str] | None = None,
) -> DPPlan | None:
    """The plan for a table (`schema`) or an image set (`estimated` given), None without DP.
    Raises `PrivacyBudgetError` when the budget cannot cover the training."""
    if privacy.dp is None:
        return None
    if estimated is None:
        estimated = estimated_columns(schema) if schema is not None else []
    return plan_training(
        privacy.dp,
        n_units=n_people(units, n_rows),
        steps=int(training.steps),
        batch_size=training.batch_size,
        unit=unit_name(privacy, units is not None),
        estimated=estimated,
    )
