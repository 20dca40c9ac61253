"""Privacy metrics and the shared encoding: known answers on the real churn table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from evaluation_fixtures import ChurnSplit, split_churn

from evaluation.encoding import DistanceEncoder, category_keys
from evaluation.privacy import (
    dcr_share,
    exact_copy_rate,
    mia_auc,
    nearest_distances,
    nndr,
    privacy_metrics,
)
from synth.data.schema import infer_schema


@pytest.fixture(scope="module")
def churn() -> ChurnSplit:
    return split_churn()


@pytest.fixture(scope="module")
def small(churn: ChurnSplit) -> ChurnSplit:
    """Train cut to the holdout size, so the DCR-share train subset is all of train."""
    return ChurnSplit(churn.train.iloc[:1500], churn.holdout, churn.fresh, churn.schema)


# --------------------------------------------------------------------------- encoding


def test_encoding_geometry() -> None:
    train = pd.DataFrame({"x": [0.5, 10.5, np.nan], "c": ["a", "b", "a"]})
    schema = infer_schema(pd.concat([train] * 10, ignore_index=True))
    enc = DistanceEncoder.fit(train, schema)
    assert enc.feature_names == [
        "x", "x__isna", "c=a", "c=b", "c=__missing__", "c=__other__",
    ]  # fmt: skip
    rows = enc.transform(pd.DataFrame({"x": [0.5, 10.5, np.nan, 0.5], "c": ["a", "a", "a", "z"]}))
    d = np.linalg.norm(rows[:, None] - rows[None], axis=2)
    assert d[0, 1] == pytest.approx(1.0)  # full train range
    assert d[0, 3] == pytest.approx(1.0)  # category mismatch (unseen "z" too)
    assert d[0, 2] >= 1.0  # missing vs present
    assert category_keys(pd.Series([1, 0])).tolist() == ["1", "0"]
    assert category_keys(pd.Series([True, None], dtype=object)).tolist()[0] == "1"
    assert category_keys(pd.Series([1.0, np.nan])).isna().tolist() == [False, True]


# --------------------------------------------------------------------------- exact copies


def test_exact_copy_rates(churn: ChurnSplit) -> None:
    assert exact_copy_rate(churn.train, churn.train, churn.schema) == 1.0
    assert exact_copy_rate(churn.fresh, churn.train, churn.schema) < 0.01
    # a parquet/float round trip, NaN included, still matches; id columns are ignored
    recast = churn.train.astype({"tenure": float, "senior_citizen": float}).assign(rownames=0)
    assert exact_copy_rate(recast, churn.train, churn.schema) == 1.0
    nudged = churn.train.assign(monthly_charges=churn.train["monthly_charges"] + 0.01)
    assert exact_copy_rate(nudged, churn.train, churn.schema) < 0.01


# --------------------------------------------------------------------------- distances


def test_nearest_distances_are_exact_for_copies() -> None:
    x = np.random.default_rng(0).random((50, 7)) * 1e3
    d = nearest_distances(x, x[:10], k=2)
    assert (d[:, 0] == 0).all() and (d[:, 1] > 0).all()


def test_nndr_and_dcr_share_definitions() -> None:
    assert nndr(np.array([[0.0, 0.0], [1.0, 2.0], [0.0, 3.0]])).tolist() == [0.0, 0.5, 0.0]
    assert dcr_share(np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 1.0])) == 0.5
    assert math.isnan(dcr_share(np.array([]), np.array([])))


def test_dcr_share_holdout_copies_is_zero(small: ChurnSplit) -> None:
    p = privacy_metrics(small.train, small.holdout, small.holdout, small.schema, seed=0)
    assert p.dcr_share < 0.02  # only holdout rows that also occur in train tie
    assert p.mia_auc < 0.5


def test_train_copies_fail_every_privacy_figure(small: ChurnSplit) -> None:
    p = privacy_metrics(small.train, small.holdout, small.train, small.schema, seed=0)
    assert p.dcr_share == pytest.approx(1.0, abs=0.01)
    assert p.exact_copy_rate == 1.0
    assert p.exact_copy_excess > 0.98
    assert p.near_copy_rate == 1.0
    assert p.nndr_low_share > 0.95
    assert p.mia_auc > 0.95
    assert p.median_dcr_synthetic == 0.0


def test_fresh_rows_look_like_the_holdout(churn: ChurnSplit) -> None:
    p = privacy_metrics(churn.train, churn.holdout, churn.fresh, churn.schema, seed=0)
    assert abs(p.exact_copy_excess) < 0.01
    assert abs(p.near_copy_excess) < 0.01
    assert abs(p.dcr_share - 0.5) < 0.05
    assert abs(p.nndr_low_share - 0.05) < 0.03
    assert abs(p.mia_auc - 0.5) < 0.05
    h = p.dcr_histogram
    assert len(h.edges) == len(h.synthetic) + 1
    assert sum(h.synthetic) == len(churn.fresh) and sum(h.holdout) == len(churn.holdout)


def test_mia_auc_direct() -> None:
    rng = np.random.default_rng(0)
    members, non_members = rng.random((200, 5)), rng.random((200, 5))
    assert mia_auc(members, non_members, members) == 1.0
    assert abs(mia_auc(members, non_members, rng.random((400, 5))) - 0.5) < 0.1
