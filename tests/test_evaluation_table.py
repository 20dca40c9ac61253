"""End to end: fresh real rows pass the default gate; memorising generators fail it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evaluation_fixtures import ChurnSplit, noisy_train, planted_copies, split_churn

from evaluation.report import write_report
from evaluation.table import TableEvaluation, evaluate_table
from synth.config import Thresholds
from synth.data.rare import group_rare_values
from synth.data.schema import infer_schema

FIGURES = {
    "column_shapes", "pair_trends", "detection_auc", "tstr", "trtr", "tstr_gap",
    "exact_copy_rate", "holdout_exact_copy_rate", "exact_copy_excess", "near_copy_rate",
    "holdout_near_copy_rate", "near_copy_excess", "dcr_share", "nndr_low_share", "mia_auc",
    "n_train", "n_holdout", "n_synthetic", "rare_values_emitted", "holdout_only_values_emitted",
    "unique_copy_excess_lcb", "unique_near_copy_excess_lcb", "domias_auc",
    "domias_tpr_at_1pct_fpr",
}  # fmt: skip


@pytest.fixture(scope="module")
def churn() -> ChurnSplit:
    return split_churn()


def _evaluate(churn: ChurnSplit, synthetic: pd.DataFrame, **kw: object) -> TableEvaluation:
    ev = evaluate_table(
        churn.train, churn.holdout, synthetic, churn.schema, Thresholds(), progress=False, **kw
    )
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in ev.metrics.items()})
    return ev


def _failed(ev: TableEvaluation) -> set[str]:
    return {c.name for c in ev.gate.checks if c.applicable and not c.passed}


@pytest.fixture(scope="module")
def fresh_eval(churn: ChurnSplit) -> TableEvaluation:
    """Fresh rows as a model under the default rare-value protection would emit them (the raw
    rows hold rare values and extremes, which the rare-value check rightly fails)."""
    fresh = group_rare_values(churn.fresh, churn.train, churn.schema, 5, "_RARE_")
    return _evaluate(churn, fresh)


def test_fresh_real_rows_pass(fresh_eval: TableEvaluation, churn: ChurnSplit) -> None:
    assert fresh_eval.gate.passed, fresh_eval.gate.failures()
    assert not fresh_eval.gate.overridden
    m = fresh_eval.metrics
    assert set(m) >= FIGURES
    assert (m["n_train"], m["n_holdout"], m["n_synthetic"]) == (3000, 1500, 1500)
    assert abs(m["detection_auc"] - 0.5) < 0.1
    assert set(fresh_eval.per_column) == {c.name for c in churn.schema.modelled}


def test_to_dict_is_strict_json_without_row_values(fresh_eval: TableEvaluation) -> None:
    d = fresh_eval.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert {c["name"] for c in d["gate"]["checks"]} == {c.name for c in fresh_eval.gate.checks}
    assert "Electronic check" not in text and "Fiber optic" not in text  # no category labels


def test_planted_train_copies_fail(churn: ChurnSplit) -> None:
    ev = _evaluate(churn, planted_copies(churn, share=0.3))
    assert not ev.gate.passed
    assert {"exact_copy_excess", "near_copy_excess", "nndr_low_share"} <= _failed(ev)
    assert ev.metrics["exact_copy_rate"] == pytest.approx(0.3, abs=0.01)
    assert any(f.startswith("exact_copy_excess = 0.29") for f in ev.gate.failures())


def test_noisy_train_rows_fail(churn: ChurnSplit) -> None:
    ev = _evaluate(churn, noisy_train(churn, rel=0.01))
    assert not ev.gate.passed
    assert {"dcr_share", "mia_auc", "nndr_low_share"} <= _failed(ev)
    assert ev.metrics["exact_copy_rate"] == 0.0  # invisible to exact matching alone


def test_subsampling_override_and_no_target(churn: ChurnSplit) -> None:
    schema = churn.schema.model_copy(update={"target": None})
    ev = evaluate_table(
        churn.train, churn.holdout, churn.train, schema, Thresholds(),
        max_rows=500, progress=True, override=True, override_reason="test",
    )  # fmt: skip
    assert ev.metrics["n_synthetic"] == 500 and ev.metrics["n_holdout"] == 500
    assert ev.metrics["tstr_gap"] is None and ev.gate.not_applicable == ["tstr_gap"]
    assert ev.gate.passed and ev.gate.overridden and ev.gate.failures()


def test_mixed_kinds_numeric_target_and_report(tmp_path: Path) -> None:
    """Datetimes, missing categories, a numeric target and an unseen category run end to end."""
    rng = np.random.default_rng(0)
    n = 900
    df = pd.DataFrame(
        {
            "when": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), "D"),
            "group": rng.choice(["a", "b", None], n),
            "x": rng.normal(size=n),
            "flag": rng.random(n) < 0.3,
        }
    )
    df["y"] = 2 * df["x"] + (df["group"] == "a") + rng.normal(scale=0.1, size=n)
    schema = infer_schema(df, target="y")
    assert {c.name: c.kind for c in schema.columns}["when"] == "datetime"
    train, holdout, syn = df.iloc[:400], df.iloc[400:600], df.iloc[600:].copy()
    syn.loc[syn.index[:5], "group"] = "never-seen"
    ev = evaluate_table(train, holdout, syn, schema, Thresholds(), progress=False)
    assert ev.efficacy is not None and ev.efficacy.metric == "r2" and ev.metrics["trtr"] > 0.9
    assert ev.metrics["detection_auc"] < 0.7 and ev.metrics["column_shapes"] > 0.85
    json.dumps(ev.to_dict(), allow_nan=False)
    json_path, html_path = write_report(ev, tmp_path, train=train, synthetic=syn, schema=schema)
    assert json_path.exists() and html_path.stat().st_size > 10_000
