"""`evaluate_table`: every fidelity and privacy check on one synthetic table, then the gate."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from evaluation.anonymeter import AnonymeterRisks, anonymeter_risks
from evaluation.disclosure import RareValues, rare_values
from evaluation.encoding import DistanceEncoder
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
from evaluation.membership import Domias, domias
from evaluation.privacy import Privacy, membership_risk, privacy_distances
from evaluation.rules import RuleBreaks, rule_break_share
from evaluation.unique_copies import UniqueCopies, unique_copies
from synth.config import PrivacySpec, RulesSpec, Thresholds
from synth.data.schema import TableSchema
from synth.errors import InputDataError
from synth.progress import progress_bar


class TableEvaluation(BaseModel):
    """Everything measured on one synthetic table. `to_dict` is the shareable part."""

    metrics: dict[str, float | int | None]
    shapes: ColumnShapes
    pair_trends: PairTrends
    detection: Detection
    efficacy: Efficacy | None
    privacy: Privacy
    rare_values: RareValues
    unique_copies: UniqueCopies
    domias: Domias
    anonymeter: AnonymeterRisks
    rules: RuleBreaks
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
            # column names and counts only: never a value
            "rare_values": self.rare_values.model_dump(),
            "unique_copies": self.unique_copies.model_dump(),
            "domias": self.domias.model_dump(),
            "anonymeter": self.anonymeter.model_dump(),
            # rules by column names and counts: never a value
            "rules": self.rules.model_dump(),
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


@dataclass(frozen=True)
class EvalFrames:
    """The rows the checks see, subsampled once (seeded): every part draws the same rows."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    synthetic: pd.DataFrame
    train_same_size: pd.DataFrame
    n_synthetic_total: int
    privacy: PrivacySpec = field(default_factory=PrivacySpec)
    """The rare-value protection the model was trained under (`k`, the rare label)."""
    rules: RulesSpec = field(default_factory=RulesSpec)
    """How the logical rules are found in the real training rows."""

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "n_train": len(self.train),
            "n_holdout": len(self.holdout),
            "n_synthetic": len(self.synthetic),
            "n_synthetic_total": self.n_synthetic_total,
        }


def prepare_frames(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    seed: int = 0,
    max_rows: int = 10_000,
    privacy: PrivacySpec | None = None,
    rules: RulesSpec | None = None,
) -> EvalFrames:
    """Check the columns and subsample synthetic and holdout to `max_rows` and train to the
    synthetic size (for the fitted checks), in a fixed order from one seeded generator.
    `privacy` is the protection the rare-value check holds the synthetic rows to."""
    _check_columns(schema, train=train, holdout=holdout, synthetic=synthetic)
    rng = np.random.default_rng(seed)
    n_synthetic_total = len(synthetic)
    synthetic = _sample(synthetic, max_rows, rng)
    holdout = _sample(holdout, max_rows, rng)
    train_same_size = _sample(train, len(synthetic), rng)
    return EvalFrames(
        train, holdout, synthetic, train_same_size, n_synthetic_total,
        privacy or PrivacySpec(), rules or RulesSpec(),
    )  # fmt: skip


# Metric groups that run apart (a Prefect task each): frames -> JSON-able numbers only.
def _column_shapes(f: EvalFrames, schema: TableSchema, seed: int) -> dict[str, Any]:
    return column_shapes(f.train, f.synthetic, schema).model_dump()


def _pair_trends(f: EvalFrames, schema: TableSchema, seed: int) -> dict[str, Any]:
    return pair_trends(f.train, f.synthetic, schema).model_dump()


def _detection(f: EvalFrames, schema: TableSchema, seed: int) -> dict[str, Any]:
    encoder = DistanceEncoder.fit(f.train, schema)
    return detection_auc(f.train, f.synthetic, encoder, seed=seed).model_dump()


def _ml_efficacy(f: EvalFrames, schema: TableSchema, seed: int) -> dict[str, Any] | None:
    efficacy = ml_efficacy(f.train_same_size, f.holdout, f.synthetic, schema, seed=seed)
    return None if efficacy is None else efficacy.model_dump()


def _privacy_distances(f: EvalFrames, schema: TableSchema, seed: int) -> dict[str, Any]:
    out = privacy_distances(f.train, f.holdout, f.synthetic, schema)
    return {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in out.items()}


def _membership(f: EvalFrames, schema: TableSchema, seed: int) -> dict[str, Any]:
    return membership_risk(f.train, f.holdout, f.synthetic, schema, seed=seed)


def _rare_values(f: EvalFrames, schema: TableSchema, seed: int) -> dict[str, Any]:
    p = f.privacy
    return rare_values(
        f.train, f.holdout, f.synthetic, schema,
        k=p.rare_category_min_rows, label=p.rare_category_label, check_numbers=p.dp is None,
    ).model_dump()  # fmt: skip


def _unique_copies(f: EvalFrames, schema: TableSchema, seed: int) -> dict[str, Any]:
    return unique_copies(f.train, f.holdout, f.synthetic, schema).model_dump()


def _domias(f: EvalFrames, schema: TableSchema, seed: int) -> dict[str, Any]:
    return domias(f.train, f.holdout, f.synthetic, schema, seed=seed).model_dump()


def _anonymeter(f: EvalFrames, schema: TableSchema, seed: int) -> dict[str, Any]:
    """Singling out, linkability and inference, with the holdout as the control population."""
    return anonymeter_risks(f.train, f.holdout, f.synthetic, schema, seed=seed).model_dump()


def _rules(f: EvalFrames, schema: TableSchema, seed: int) -> dict[str, Any]:
    return rule_break_share(
        f.train, f.holdout, f.synthetic, schema,
        k=f.privacy.rare_category_min_rows, spec=f.rules,
    ).model_dump()  # fmt: skip


EVALUATION_PARTS: dict[str, Callable[[EvalFrames, TableSchema, int], dict[str, Any] | None]] = {
    "column_shapes": _column_shapes,
    "pair_trends": _pair_trends,
    "detection": _detection,
    "ml_efficacy": _ml_efficacy,
    "privacy_distances": _privacy_distances,
    "membership": _membership,
    "rare_values": _rare_values,
    "unique_copies": _unique_copies,
    "domias": _domias,
    "anonymeter": _anonymeter,
    "rules": _rules,
}
"""Independent metric groups, by name. Each is deterministic in (frames, schema, seed)."""


def run_parts(
    frames: EvalFrames,
    schema: TableSchema,
    names: Sequence[str],
    *,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, Any] | None]:
    """The named metric groups on prepared frames, in the order given."""
    unknown = [n for n in names if n not in EVALUATION_PARTS]
    if unknown:
        raise ValueError(f"unknown evaluation parts {unknown}; parts: {list(EVALUATION_PARTS)}")
    parts: dict[str, dict[str, Any] | None] = {}
    bar = progress_bar(total=len(names), desc="evaluate", disable=not progress, leave=False)
    with bar:
        for name in names:
            bar.set_postfix_str(name.replace("_", " "))
            parts[name] = EVALUATION_PARTS[name](frames, schema, seed)
            bar.update()
    return parts


def combine_parts(
    parts: Mapping[str, dict[str, Any] | None],
    sizes: Mapping[str, int],
    schema: TableSchema,
    thresholds: Thresholds,
    *,
    seed: int = 0,
    override: bool = False,
    override_reason: str | None = None,
    dp: dict[str, Any] | None = None,
) -> TableEvaluation:
    """Assemble the parts' numbers (from `run_parts`, in any order) and apply the gate (`dp`:
    the DP figures the model was trained under, for require_dp and epsilon_max)."""
    missing = [name for name in EVALUATION_PARTS if name not in parts]
    if missing:
        raise ValueError(f"evaluation parts missing: {missing}")
    shapes = ColumnShapes.model_validate(parts["column_shapes"])
    pairs = PairTrends.model_validate(parts["pair_trends"])
    detection = Detection.model_validate(parts["detection"])
    raw_efficacy = parts["ml_efficacy"]
    efficacy = None if raw_efficacy is None else Efficacy.model_validate(raw_efficacy)
    privacy = Privacy.model_validate(
        {**(parts["privacy_distances"] or {}), **(parts["membership"] or {})}
    )
    rare = RareValues.model_validate(parts["rare_values"])
    copies = UniqueCopies.model_validate(parts["unique_copies"])
    attack = Domias.model_validate(parts["domias"])
    risks = AnonymeterRisks.model_validate(parts["anonymeter"])
    rules = RuleBreaks.model_validate(parts["rules"])

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
        "rare_values_emitted": rare.rare_values_emitted,
        "holdout_only_values_emitted": rare.holdout_only_values_emitted,
        "unique_copy_rate": copies.unique_copy_rate,
        "holdout_unique_copy_rate": copies.holdout_unique_copy_rate,
        "unique_copy_excess_lcb": copies.unique_copy_excess_lcb,
        "unique_near_copy_rate": copies.unique_near_copy_rate,
        "holdout_unique_near_copy_rate": copies.holdout_unique_near_copy_rate,
        "unique_near_copy_excess_lcb": copies.unique_near_copy_excess_lcb,
        "domias_auc": attack.domias_auc,
        "domias_tpr_at_1pct_fpr": attack.domias_tpr_at_1pct_fpr,
        # the stronger of the two singling-out attacks; each risk as its point estimate
        "singling_out_risk": max(risks.singling_out.risk, risks.singling_out_univariate.risk),
        "linkability_risk": risks.linkability.risk,
        "inference_risk": risks.inference.risk,
        "rule_breaks": rules.rule_breaks,
        "holdout_rule_breaks": rules.holdout_rule_breaks,
        "rule_break_excess": rules.rule_breaks - rules.holdout_rule_breaks,
        "n_train": sizes["n_train"],
        "n_holdout": sizes["n_holdout"],
        "n_synthetic": sizes["n_synthetic"],
        "n_synthetic_total": sizes["n_synthetic_total"],
    }
    gate = apply_gate(
        {k: v for k, v in metrics.items() if not k.startswith("n_")},  # type: ignore[misc]
        thresholds,
        override=override,
        override_reason=override_reason,
        dp=dp,
    )
    return TableEvaluation(
        metrics=metrics,
        shapes=shapes,
        pair_trends=pairs,
        detection=detection,
        efficacy=efficacy,
        privacy=privacy,
        rare_values=rare,
        unique_copies=copies,
        domias=attack,
        anonymeter=risks,
        rules=rules,
        gate=gate,
        kinds={c.name: c.kind for c in schema.modelled},
        seed=seed,
    )


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
    privacy: PrivacySpec | None = None,
    rules: RulesSpec | None = None,
) -> TableEvaluation:
    """Run every check and the gate: the `EVALUATION_PARTS` in turn, then `combine_parts`.

    Synthetic and holdout are subsampled (seeded) to `max_rows`; train is kept whole for
    copy/distance checks (a copy of any training row must be found) and for marginals, and
    subsampled to the synthetic size where a model is trained on it (detection, TRTR), so the
    TSTR gap measures quality and not training-set size.
    """
    frames = prepare_frames(
        train, holdout, synthetic, schema, seed=seed, max_rows=max_rows, privacy=privacy,
        rules=rules,
    )  # fmt: skip
    parts = run_parts(frames, schema, list(EVALUATION_PARTS), seed=seed, progress=progress)
    return combine_parts(
        parts,
        frames.sizes,
        schema,
        thresholds,
        seed=seed,
        override=override,
        override_reason=override_reason,
    )
