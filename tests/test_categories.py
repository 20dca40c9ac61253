"""One category key for the model and the checks, on the real breast-cancer table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from evaluation.encoding import OTHER
from evaluation.encoding import DistanceEncoder as CheckEncoder
from synth.data.categories import MISSING, category_key, category_keys, is_missing
from synth.data.schema import ColumnSpec, TableSchema, infer_schema
from synth.errors import InputDataError
from synth.labels import draw_labels
from synth.tabular.encoders import TableEncoder as ModelEncoder

ONES = [True, 1, 1.0, "1", np.int64(1), np.float32(1.0), np.bool_(True), np.uint8(1)]
ZEROS = [False, 0, 0.0, "0", np.int64(0), np.float64(0.0), np.bool_(False), np.int8(0)]
NONES = [None, np.nan, pd.NA, pd.NaT, np.float32("nan"), np.datetime64("NaT")]


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    """Breast cancer (569 rows), plus `flag`: the diagnosis as 0.0/1.0 with every 7th missing."""
    df = load_breast_cancer(as_frame=True).frame
    flag = df["target"].astype(float)
    flag[::7] = np.nan
    return df.assign(flag=flag)


@pytest.fixture(scope="module")
def mixed(clean) -> pd.DataFrame:
    """The same table with `flag` spelled in every type a category value arrives in."""
    values = []
    for i, v in enumerate(clean["flag"]):
        pool = NONES if np.isnan(v) else ONES if v == 1 else ZEROS
        values.append(pool[i % len(pool)])
    return clean.assign(flag=pd.Series(values, index=clean.index, dtype=object))


@pytest.fixture(scope="module")
def schema(clean) -> TableSchema:
    return infer_schema(clean, target="target")


def test_one_key_for_every_spelling():
    assert {category_key(v) for v in ONES} == {"1"}
    assert {category_key(v) for v in ZEROS} == {"0"}
    assert {category_key(v) for v in NONES} == {MISSING}
    assert all(is_missing(v) for v in NONES)
    assert not any(is_missing(v) for v in ONES + ZEROS + ["", "nan", MISSING])
    assert category_key(2.5) == "2.5" and category_key("Yes") == "Yes"
    assert category_key(pd.Timestamp("2024-01-02 03:04")) == "2024-01-02T03:04:00"


def test_series_keys_agree_with_value_keys(mixed):
    keys = category_keys(mixed["flag"])
    expected = [category_key(v) for v in mixed["flag"]]
    assert keys.fillna(MISSING).tolist() == expected
    assert keys.isna().sum() == mixed["flag"].map(is_missing).sum() > 0


def test_model_and_checks_see_the_same_categories(clean, mixed, schema):
    assert schema.column("flag").kind == "categorical"
    model = ModelEncoder(schema).fit(clean)
    checks = CheckEncoder.fit(clean, schema)
    j = model.cat_columns_.index("flag")
    codes = model.transform(mixed).x_cat[:, j]
    np.testing.assert_array_equal(codes, model.transform(clean).x_cat[:, j])
    model_keys = [category_key(model.categories_["flag"][c]) for c in codes]

    first = checks.feature_names.index(f"flag={checks.categorical[0].categories[0]}")
    block = checks.transform(mixed)[:, first : first + len(checks.categorical[0].categories)]
    np.testing.assert_array_equal(block, checks.transform(clean)[:, first : first + block.shape[1]])
    check_keys = [checks.categorical[0].categories[k] for k in block.argmax(axis=1)]

    assert OTHER not in check_keys
    assert model_keys == check_keys == category_keys(mixed["flag"]).fillna(MISSING).tolist()
    decoded = model.inverse_transform(model.transform(mixed))["flag"]
    assert decoded.isna().sum() == mixed["flag"].map(is_missing).sum()
    assert set(decoded.dropna()) == {0.0, 1.0}  # decoding gives back the stored categories


def test_categories_sharing_a_key_keep_the_first(clean):
    """Categories come from the training rows, one per key: the first value seen wins, in key
    order, whatever the schema lists (here a list in another order and with other types)."""
    flag = ColumnSpec(
        name="flag", kind="categorical", dtype="object", nullable=True, categories=[1, True, "1", 0]
    )
    target = ColumnSpec(
        name="target", kind="categorical", dtype="int64", categories=[0, "0", 1, 1.0]
    )
    schema = TableSchema(columns=[flag, target], target="target")
    train = clean.assign(flag=clean["flag"].astype(object))
    train.loc[1, "flag"] = True  # the first 1-like value in row order, before any 1.0
    assert category_key(train.loc[0, "flag"]) == "__missing__"
    assert train.loc[1:, "flag"].dropna().iloc[0] is True
    enc = ModelEncoder(schema).fit(train)
    first_zero = train["flag"].dropna()[train["flag"].dropna() == 0].iloc[0]
    assert enc.categories_["flag"] == [first_zero, True, MISSING]
    assert enc.target_classes_ == [0, 1]
    assert enc.num_classes == [3]
    df = pd.DataFrame({"flag": [True, "1", 0, None], "target": [1.0, "0", True, 0]})
    e = enc.transform(df)
    assert e.x_cat[:, 0].tolist() == [1, 1, 0, 2] and e.y.tolist() == [1, 0, 1, 0]
    back = enc.inverse_transform(e)
    assert back["flag"].tolist() == [True, True, 0.0, None]
    assert back["target"].tolist() == [1, 0, 1, 0]


def test_condition_labels_match_classes_by_key():
    rng = np.random.default_rng(0)
    assert draw_labels(3, {"1": 3}, [0, 1], [5, 5], rng).tolist() == [1, 1, 1]
    assert draw_labels(2, {1.0: 2}, ["0", "1"], [5, 5], rng).tolist() == [1, 1]
    assert draw_labels(2, {"Yes": 2}, ["No", "Yes"], [5, 5], rng).tolist() == [1, 1]
    with pytest.raises(InputDataError, match="not a class"):
        draw_labels(2, {"yes": 2}, ["No", "Yes"], [5, 5], rng)
