"""Fidelity metrics: known answers, and agreement with SDMetrics on the real churn table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evaluation_fixtures import ChurnSplit, garbled, split_churn

from evaluation.encoding import DistanceEncoder
from evaluation.fidelity import (
    column_shapes,
    detection_auc,
    ks_complement,
    ml_efficacy,
    pair_trends,
    tv_complement,
)
from synth.data.schema import infer_schema


@pytest.fixture(scope="module")
def churn() -> ChurnSplit:
    return split_churn()


def test_identical_data_scores_one(churn: ChurnSplit) -> None:
    assert column_shapes(churn.train, churn.train, churn.schema).score == 1.0
    pt = pair_trends(churn.train, churn.train, churn.schema)
    assert pt.score == pytest.approx(1.0)
    assert len(pt.pairs) == 20 * 19 // 2  # every modelled pair, rownames (an id) excluded
    np.testing.assert_allclose(pt.real_matrix, pt.synthetic_matrix)


def test_column_shifted_out_of_range_has_ks_zero(churn: ChurnSplit) -> None:
    shifted = churn.fresh.copy()
    shifted["monthly_charges"] += 1_000.0
    shapes = column_shapes(churn.train, shifted, churn.schema)
    assert shapes.per_column["monthly_charges"] == 0.0
    assert shapes.metric["monthly_charges"] == "KSComplement"
    assert shapes.metric["contract"] == "TVComplement"


def test_tv_complement_known_value() -> None:
    real = pd.Series(["a"] * 5 + ["b"] * 3 + ["c"] * 2)  # .5 .3 .2
    syn = pd.Series(["a"] * 2 + ["b"] * 2 + ["d"] * 1)  # .4 .4 0 .2
    # TVD = (|.5-.4| + |.3-.4| + |.2-0| + |0-.2|) / 2 = 0.3
    assert tv_complement(real, syn) == pytest.approx(0.7)
    # dtype does not matter: 1, 1.0 and True are one category; NaN is dropped (as SDMetrics)
    assert tv_complement(pd.Series([0, 1, 1]), pd.Series([0.0, 1.0, 1.0, np.nan])) == 1.0


def test_ks_complement_known_value() -> None:
    real = pd.Series([1.0, 2.0, 3.0, 4.0])
    syn = pd.Series([3.0, 4.0, 5.0, 6.0, np.nan])
    assert ks_complement(real, syn) == pytest.approx(0.5)  # ECDFs differ by .5 at x in [2, 3)
    dates = pd.Series(pd.to_datetime(["2020-01-01", "2021-01-01"]))
    assert ks_complement(dates, dates.astype(str), kind="datetime") == 1.0


def test_shapes_match_sdmetrics(churn: ChurnSplit) -> None:
    from sdmetrics.single_column import KSComplement, TVComplement

    shapes = column_shapes(churn.train, churn.fresh, churn.schema)
    for spec in churn.schema.modelled:
        metric = KSComplement if spec.kind == "numeric" else TVComplement
        expected = metric.compute(churn.train[spec.name], churn.fresh[spec.name])
        assert shapes.per_column[spec.name] == pytest.approx(expected, abs=1e-9), spec.name
    assert 0.95 < shapes.score < 1.0


def test_pair_trends_match_sdmetrics(churn: ChurnSplit) -> None:
    from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity

    real, syn = churn.train, churn.fresh
    pt = pair_trends(real, syn, churn.schema)
    score = {(p.column_1, p.column_2): p for p in pt.pairs}

    pair = ["tenure", "total_charges"]  # total_charges has NaNs: both drop incomplete rows
    got = score[tuple(pair)]
    assert got.metric == "CorrelationSimilarity"
    assert got.score == pytest.approx(CorrelationSimilarity.compute(real[pair], syn[pair]))

    pair = ["contract", "payment_method"]
    assert score[tuple(pair)].score == pytest.approx(
        ContingencySimilarity.compute(real[pair], syn[pair])
    )

    # numeric x categorical: SDMetrics bins by equal width; ours by real quantiles, so feed
    # SDMetrics the same quantile bins and compare the contingency part.
    edges = np.unique(np.quantile(real["tenure"], np.linspace(0, 1, 11)[1:-1]))
    binned_r = pd.DataFrame({"t": np.digitize(real["tenure"], edges), "c": real["contract"]})
    binned_s = pd.DataFrame({"t": np.digitize(syn["tenure"], edges), "c": syn["contract"]})
    assert score[("tenure", "contract")].score == pytest.approx(
        ContingencySimilarity.compute(binned_r, binned_s)
    )
    assert 0.9 < pt.score < 1.0


def test_pair_trends_sees_broken_correlations(churn: ChurnSplit) -> None:
    assert pair_trends(churn.train, garbled(churn.fresh), churn.schema).score < 0.9


def test_detection_real_vs_real_is_chance(churn: ChurnSplit) -> None:
    encoder = DistanceEncoder.fit(churn.train, churn.schema)
    auc = detection_auc(churn.train, churn.fresh, encoder, seed=0).auc
    assert abs(auc - 0.5) < 0.1


def test_detection_spots_garbled_rows(churn: ChurnSplit) -> None:
    encoder = DistanceEncoder.fit(churn.train, churn.schema)
    result = detection_auc(churn.train, garbled(churn.fresh), encoder, seed=0)
    assert result.auc > 0.8
    assert result.n_per_class == len(churn.fresh)  # balanced: train subsampled to synthetic


def test_ml_efficacy_fresh_matches_real(churn: ChurnSplit) -> None:
    eff = ml_efficacy(churn.train, churn.holdout, churn.fresh, churn.schema, seed=0)
    assert eff is not None and eff.task == "classification" and eff.metric == "roc_auc"
    assert 0.75 < eff.trtr < 0.95
    assert abs(eff.gap) < 0.05
    assert eff.gap == pytest.approx(eff.trtr - eff.tstr)


def test_ml_efficacy_single_class_synthetic_is_chance(churn: ChurnSplit) -> None:
    only_no = churn.fresh[churn.fresh["churn"] == "No"]
    eff = ml_efficacy(churn.train, churn.holdout, only_no, churn.schema, seed=0)
    assert eff is not None and eff.tstr == 0.5


def test_ml_efficacy_regression_and_no_target(churn: ChurnSplit) -> None:
    df = pd.concat([churn.train, churn.holdout])
    schema = infer_schema(df, target="monthly_charges")
    eff = ml_efficacy(churn.train, churn.holdout, churn.fresh, schema, seed=0)
    assert eff is not None and eff.metric == "r2"
    assert eff.trtr > 0.9  # charges follow from the services subscribed
    assert ml_efficacy(churn.train, churn.holdout, churn.fresh, infer_schema(df)) is None


def test_ml_efficacy_multiclass(churn: ChurnSplit) -> None:
    schema = infer_schema(pd.concat([churn.train, churn.holdout]), target="contract")
    # same-size training sets keep the three-class boosting fits quick
    train, fresh = churn.train.iloc[:800], churn.fresh.iloc[:800]
    eff = ml_efficacy(train, churn.holdout, fresh, schema, seed=0)
    assert eff is not None and 0.7 < eff.trtr <= 1.0 and abs(eff.gap) < 0.05
