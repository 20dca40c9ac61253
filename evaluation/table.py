"""`evaluate_table`: every fidelity and privacy check on one synthetic table, then the gate."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from tqdm.auto import tqdm

from evaluation.encoding import TableEncoder
from evaluation.fidelity import (
    ColumnShapes,
    Detection,
    Efficacy,
    PairTrends,
    column_shapes,
    detection_auc,
    ml_efficacy,
    pair_trends,
)
from evaluation.gate import GateResult, apply_gate
from evaluation.privacy import Privacy, privacy_metrics
from synth.config import Thresholds
from synth.data.schema import TableSchema
from synth.errors import InputDataError


class TableEvaluation(BaseModel):
    """Everything measured on one synthetic table. `to_dict` is the shareable part."""

    metrics: dict[str, float | int | None]
    shapes: ColumnShapes
    pair_trends: PairTrends
    detection: Detection
    efficacy: Efficacy | None
    privacy: Privacy
    gate: GateResult
    kinds: dict[str, str]
    seed: int

    @property
    def per_column(self) -> dict[str, float]:
        return self.shapes.per_column

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: metrics, column names, counts and histograms of distances only;
        no real data values (no matrices, no category labels, no numeric ranges)."""
        out = {
            "metrics": self.metrics,
            "gate": self.gate.to_dict(),
            "per_column": {
                name: {
                    "kind": self.kinds[name],
                    "metric": self.shapes.metric[name],
                    "score": score,
                }
                for name, score in self.shapes.per_column.items()
            },
            "pair_trends": [p.model_dump() for p in self.pair_trends.pairs],
            "efficacy": None
            if self.efficacy is None
            else {"task": self.efficacy.task, "metric": self.efficacy.metric},
            "privacy": {
                "near_copy_threshold": self.privacy.near_copy_threshold,
                "nndr_threshold": self.privacy.nndr_threshold,
                "holdout_nndr_low_share": self.privacy.holdout_nndr_low_share,
                "median_dcr_synthetic": self.privacy.median_dcr_synthetic,
                "median_dcr_holdout": self.privacy.median_dcr_holdout,
                "dcr_histogram": self.privacy.dcr_histogram.model_dump(),
            },
            "seed": self.seed,
        }
        return json_safe(out)


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, so `json.dumps(allow_nan=False)` works."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _sample(df: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(df) <= n:
        return df
    return df.iloc[np.sort(rng.choice(len(df), n, replace=False))]


def _check_columns(schema: TableSchema, **frames: pd.DataFrame) -> None:
    needed = [c.name for c in schema.modelled]
    for label, df in frames.items():
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise InputDataError(f"the {label} table lacks modelled columns {missing}")
        if len(df) == 0:
            raise InputDataError(f"the {label} table is empty: nothing to evaluate")


def evaluate_table(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    thresholds: Thresholds,
    *,
    seed: int = 0,
    max_rows: int = 10_000,
    progress: bool = True,
    override: bool = False,
    override_reason: str | None = None,
) -> TableEvaluation:
    """Run every check and the gate.

    Synthetic and holdout are subsampled (seeded) to `max_rows`; train is kept whole for
    copy/distance checks (a copy of any training row must be found) and for marginals, and
    subsampled to the synthetic size where a model is trained on it (detection, TRTR), so the
    TSTR gap measures quality and not training-set size.
    """
    _check_columns(schema, train=train, holdout=holdout, synthetic=synthetic)
    rng = np.random.default_rng(seed)
    n_synthetic_total = len(synthetic)
    synthetic = _sample(synthetic, max_rows, rng)
    holdout = _sample(holdout, max_rows, rng)
    train_same_size = _sample(train, len(synthetic), rng)

    steps = ["column shapes", "pair trends", "detection", "ML efficacy", "privacy"]
    bar = tqdm(total=len(steps), desc="evaluate", disable=not progress, leave=False)

    def step(name: str) -> None:
        bar.set_postfix_str(name)

    try:
        step(steps[0])
        shapes = column_shapes(train, synthetic, schema)
        bar.update()
        step(steps[1])
        pairs = pair_trends(train, synthetic, schema)
        bar.update()
        step(steps[2])
        encoder = TableEncoder.fit(train, schema)
        detection = detection_auc(train, synthetic, encoder, seed=seed)
        bar.update()
        step(steps[3])
        efficacy = ml_efficacy(train_same_size, holdout, synthetic, schema, seed=seed)
        bar.update()
        step(steps[4])
        privacy = privacy_metrics(train, holdout, synthetic, schema, encoder, seed=seed)
        bar.update()
    finally:
        bar.close()

    metrics: dict[str, float | int | None] = {
        "column_shapes": shapes.score,
        "pair_trends": pairs.score,
        "detection_auc": detection.auc,
        "tstr": None if efficacy is None else efficacy.tstr,
        "trtr": None if efficacy is None else efficacy.trtr,
        "tstr_gap": None if efficacy is None else efficacy.gap,
        "exact_copy_rate": privacy.exact_copy_rate,
        "holdout_exact_copy_rate": privacy.holdout_exact_copy_rate,
        "exact_copy_excess": privacy.exact_copy_excess,
        "near_copy_rate": privacy.near_copy_rate,
        "holdout_near_copy_rate": privacy.holdout_near_copy_rate,
        "near_copy_excess": privacy.near_copy_excess,
        "dcr_share": privacy.dcr_share,
        "nndr_low_share": privacy.nndr_low_share,
        "mia_auc": privacy.mia_auc,
        "n_train": len(train),
        "n_holdout": len(holdout),
        "n_synthetic": len(synthetic),
        "n_synthetic_total": n_synthetic_total,
    }
    gate = apply_gate(
        {k: v for k, v in metrics.items() if not k.startswith("n_")},  # type: ignore[misc]
        thresholds,
        override=override,
        override_reason=override_reason,
    )
    return TableEvaluation(
        metrics=metrics,
        shapes=shapes,
        pair_trends=pairs,
        detection=detection,
        efficacy=efficacy,
        privacy=privacy,
        gate=gate,
        kinds={c.name: c.kind for c in schema.modelled},
        seed=seed,
    )
