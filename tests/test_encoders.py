"""TableEncoder: round trips on the churn table (exact inside the protected range), datetimes,
rare-value protection, and pickle-free persistence."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synth.data.schema import TableSchema, infer_schema
from synth.errors import NotFittedError
from synth.tabular.encoders import EncodedTable, TableEncoder


@pytest.fixture(scope="module")
def train(churn_split) -> pd.DataFrame:
    """The churn train split with extra gaps: 5% of total_charges and 3% of contract missing."""
    df = churn_split[0].copy()
    rng = np.random.default_rng(0)
    df.loc[rng.random(len(df)) < 0.05, "total_charges"] = np.nan
    df.loc[rng.random(len(df)) < 0.03, "contract"] = None
    return df


@pytest.fixture(scope="module")
def schema(train) -> TableSchema:
    return infer_schema(train, target="churn")


def protected_range(enc: TableEncoder, name: str) -> tuple[float, float]:
    """Where decoded values of a numeric column can land: the protected bounds, inside the
    outermost quantile knots."""
    j = enc.num_columns_.index(name)
    lo, hi = enc.bounds_[name]
    knots = enc.quantile_.quantiles_[:, j]
    return max(lo, knots[0]), min(hi, knots[-1])


def assert_round_trip(
    original: pd.DataFrame, back: pd.DataFrame, schema: TableSchema, enc: TableEncoder
) -> None:
    """Exact inside the protected range; outside it, clipped to its edges."""
    assert list(back.columns) == [c.name for c in schema.modelled]
    assert len(back) == len(original)
    for spec in schema.modelled:
        a, b = original[spec.name], back[spec.name]
        assert (a.isna().to_numpy() == b.isna().to_numpy()).all(), spec.name
        present = a.notna().to_numpy()
        if spec.kind == "categorical":
            assert list(b[present]) == list(a[present]), spec.name
            continue
        lo, hi = protected_range(enc, spec.name)
        expected = np.clip(a[present].to_numpy(float), lo, hi)
        if spec.integer:
            assert (b[present].to_numpy() == np.round(expected)).all(), spec.name
        else:
            np.testing.assert_allclose(
                b[present].to_numpy(float), expected, rtol=1e-6, err_msg=spec.name
            )
        clipped = (a[present] < lo) | (a[present] > hi)
        assert clipped.sum() < 2 * enc.min_rows + 10, spec.name  # only the extreme rows


@pytest.mark.parametrize("conditional", [True, False])
def test_churn_round_trip(train, schema, conditional):
    assert train["total_charges"].isna().mean() > 0.03
    enc = TableEncoder(schema, condition_on_target=conditional).fit(train)
    assert enc.conditional is conditional
    encoded = enc.transform(train)
    assert_round_trip(train, enc.inverse_transform(encoded), schema, enc)


def test_churn_layout(train, schema):
    enc = TableEncoder(schema).fit(train)
    e = enc.transform(train)
    assert enc.num_columns_ == ["tenure", "monthly_charges", "total_charges"]
    assert "churn" not in enc.cat_columns_ and "rownames" not in enc.cat_columns_
    assert enc.null_indicator_columns_ == ["total_charges"]
    assert enc.target_classes_ == ["No", "Yes"]
    assert e.x_num.dtype == np.float32 and e.x_num.shape == (len(train), 3)
    assert e.x_cat.dtype == np.int64 and e.x_cat.shape == (len(train), len(enc.num_classes))
    # categorical features first, null indicators last; contract gained a "missing" code
    assert enc.num_classes[-1] == 2
    assert enc.num_classes[enc.cat_columns_.index("contract")] == 4
    assert enc.num_classes[enc.cat_columns_.index("female")] == 2
    assert (e.x_cat.max(axis=0) < np.array(enc.num_classes)).all()
    np.testing.assert_array_equal(e.x_cat[:, -1], train["total_charges"].isna().to_numpy())
    np.testing.assert_array_equal(e.y, (train["churn"] == "Yes").to_numpy().astype(np.int64))
    # quantile-normalised continuous columns are close to standard normal (tenure has ties)
    continuous = e.x_num[:, 1:]
    assert np.abs(continuous.mean(axis=0)).max() < 0.05
    assert np.abs(continuous.std(axis=0) - 1).max() < 0.1


def test_unconditional_keeps_target_as_a_feature(train, schema):
    enc = TableEncoder(schema, condition_on_target=False).fit(train)
    e = enc.transform(train)
    assert e.y is None
    assert enc.cat_columns_[0] == "churn"
    assert len(enc.num_classes) == len(TableEncoder(schema).fit(train).num_classes) + 1


def test_holdout_rows_encode_with_the_train_fit(churn_split, train, schema):
    holdout = churn_split[1]
    enc = TableEncoder(schema).fit(train)
    back = enc.inverse_transform(enc.transform(holdout))
    assert list(back["contract"]) == list(holdout["contract"])
    inside = holdout["tenure"].between(*protected_range(enc, "tenure"))
    assert inside.mean() > 0.99
    assert (back["tenure"][inside] == holdout["tenure"][inside]).all()


def test_unseen_category_is_an_error(train, schema):
    enc = TableEncoder(schema).fit(train)
    bad = train.head(20).copy()
    bad.loc[3, "payment_method"] = "Bitcoin"
    with pytest.raises(ValueError, match="payment_method"):
        enc.transform(bad)


def test_decoded_numbers_respect_bounds_and_integers(train, schema):
    enc = TableEncoder(schema).fit(train)
    rng = np.random.default_rng(0)
    n = 500
    wild = EncodedTable(
        x_num=(rng.normal(size=(n, enc.n_num)) * 4).astype(np.float32),
        x_cat=np.stack([rng.integers(0, k, n) for k in enc.num_classes], axis=1),
        y=rng.integers(0, 2, n),
    )
    out = enc.inverse_transform(wild)
    tenure = out["tenure"]
    assert tenure.between(0, 72).all() and (tenure == np.round(tenure)).all()
    # inside the k-th smallest and largest training values, and reaching them
    k = enc.min_rows
    ordered = np.sort(train["monthly_charges"].to_numpy())
    assert enc.bounds_["monthly_charges"] == (ordered[k - 1], ordered[-k])
    assert out["monthly_charges"].between(ordered[k - 1], ordered[-k]).all()
    assert out["monthly_charges"].min() == ordered[k - 1]
    assert out["monthly_charges"].max() == ordered[-k]
    assert set(out["churn"]) <= {"No", "Yes"}
    assert out["total_charges"].isna().to_numpy().tolist() == (wild.x_cat[:, -1] == 1).tolist()


@pytest.mark.parametrize("form", ["ns", "us", "iso"])
def test_datetime_round_trip(form):
    rng = np.random.default_rng(5)
    n = 400
    ts = pd.Series(pd.Timestamp("2001-01-01") + pd.to_timedelta(rng.integers(0, 10**9, n), "s"))
    ts[rng.random(n) < 0.05] = pd.NaT
    if form == "iso":
        col = ts.dt.strftime("%Y-%m-%dT%H:%M:%S").where(ts.notna(), None)
    else:
        col = ts.astype(f"datetime64[{form}]")
    df = pd.DataFrame({"when": col, "amount": rng.gamma(2.0, 50.0, n)})
    schema = infer_schema(df)
    assert schema.column("when").kind == "datetime"
    enc = TableEncoder(schema).fit(df)
    back = enc.inverse_transform(enc.transform(df))["when"]
    assert pd.api.types.is_datetime64_any_dtype(back)
    assert (back.isna().to_numpy() == ts.isna().to_numpy()).all()
    present = ts.notna().to_numpy()
    truth = ts[present].astype("datetime64[ns]").astype("int64").to_numpy()
    got = back[present].astype("datetime64[ns]").astype("int64").to_numpy()
    # float32 codes: resolution is ~1e-7 of the range (seconds over 30 years), not exact
    span = truth.max() - truth.min()
    lo, hi = protected_range(enc, "when")
    assert np.abs(got - np.clip(truth, lo, hi)).max() <= 1e-6 * span
    # the extremes land on the protected bounds exactly: the k-th smallest and largest values,
    # never the most extreme record's
    k = enc.min_rows
    assert got.min() == np.sort(truth)[k - 1] and got.max() == np.sort(truth)[-k]
    assert ((truth < lo) | (truth > hi)).sum() == 2 * (k - 1)


def test_boolean_and_nullable_categories_round_trip():
    rng = np.random.default_rng(6)
    n = 200
    df = pd.DataFrame(
        {
            "flag": rng.random(n) < 0.4,
            "size": pd.Categorical(rng.choice(["s", "m", "l", None], n)),
            "score": rng.normal(size=n),
        }
    )
    schema = infer_schema(df)
    enc = TableEncoder(schema).fit(df)
    back = enc.inverse_transform(enc.transform(df))
    assert list(back["flag"]) == list(df["flag"])
    assert back["size"].isna().tolist() == df["size"].isna().tolist()
    assert list(back["size"].dropna()) == list(df["size"].dropna())


def test_not_fitted(schema, train):
    enc = TableEncoder(schema)
    for call in (
        lambda: enc.transform(train),
        lambda: enc.inverse_transform(EncodedTable(np.zeros((1, 3), np.float32), None, None)),
        enc.state_dict,
        lambda: enc.num_classes,
        lambda: enc.n_num,
    ):
        with pytest.raises(NotFittedError, match="fit"):
            call()
    assert issubclass(NotFittedError, ValueError)


def test_state_dict_json_round_trip(train, schema, churn_split):
    enc = TableEncoder(schema).fit(train)
    state = json.loads(json.dumps(enc.state_dict()))
    again = TableEncoder.from_state_dict(schema, state)
    assert again.num_classes == enc.num_classes
    assert again.conditional and again.target_classes_ == enc.target_classes_
    for df in (train, churn_split[1]):
        a, b = enc.transform(df), again.transform(df)
        np.testing.assert_array_equal(a.x_num, b.x_num)
        np.testing.assert_array_equal(a.x_cat, b.x_cat)
        np.testing.assert_array_equal(a.y, b.y)
        pd.testing.assert_frame_equal(enc.inverse_transform(a), again.inverse_transform(b))


def test_state_dict_without_numeric_columns(churn):
    df = churn[["churn", "contract", "female"]]
    schema = infer_schema(df, target="churn")
    enc = TableEncoder(schema).fit(df)
    assert enc.n_num == 0
    state = json.loads(json.dumps(enc.state_dict()))
    assert state["quantiles"] is None
    again = TableEncoder.from_state_dict(schema, state)
    back = again.inverse_transform(again.transform(df))
    assert list(back["contract"]) == list(df["contract"])
    assert list(back["churn"]) == list(df["churn"])


def test_fast_inverse_quantiles_match_sklearn_value_for_value():
    """The decoder's own inverse is sklearn's `inverse_transform`, bit for bit, at the edges
    (clipped z, exact grid points) and in parallel on large inputs."""
    from sklearn.preprocessing import QuantileTransformer

    from synth.tabular.encoders import _PARALLEL_ROWS, _inverse_quantiles

    rng = np.random.default_rng(0)
    x = np.stack([rng.gamma(2.0, 30.0, 5000), rng.integers(0, 72, 5000), rng.normal(size=5000)], 1)
    q = QuantileTransformer(n_quantiles=1000, output_distribution="normal", random_state=0).fit(x)
    for n in (1000, _PARALLEL_ROWS + 7):
        z = rng.standard_normal((n, 3)) * 2.5
        z[:4] = [[-9.0] * 3, [9.0] * 3, [0.0] * 3, [5.2] * 3]
        np.testing.assert_array_equal(_inverse_quantiles(q, z), q.inverse_transform(z))


def test_columns_to_frame_keeps_dtypes_and_order():
    from synth.tabular.encoders import columns_to_frame

    cols = {
        "b": np.array(["x", None, "y"], dtype=object),
        "a": np.array([1.5, np.nan, 2.0]),
        "i": np.arange(3),
    }
    df = columns_to_frame(cols)
    pd.testing.assert_frame_equal(df, pd.DataFrame(cols))
    assert df["b"].dtype == object  # never re-inferred (pandas 3 would make it `str`)
    assert columns_to_frame({}).empty
