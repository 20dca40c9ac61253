"""Schema inference on real and hand-made columns, and user overrides."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synth.data.schema import ColumnOverride, TableSchema, infer_schema
from synth.errors import InputDataError

FLAGS = ["female", "senior_citizen", "partner", "dependents", "phone_service", "paperless_billing"]


@pytest.fixture(scope="module")
def churn_schema(churn: pd.DataFrame) -> TableSchema:
    return infer_schema(churn, target="churn")


def _ns(ts: pd.Timestamp) -> float:
    return float(pd.Timestamp(ts).as_unit("ns").value)


def test_churn_columns_in_order_with_target(churn, churn_schema):
    assert churn_schema.names == list(churn.columns)
    assert churn_schema.target == "churn"
    assert churn_schema.target_kind == "categorical"


def test_churn_id_and_categoricals(churn_schema):
    rownames = churn_schema.column("rownames")
    assert rownames.kind == "id"
    assert not rownames.modelled
    assert churn_schema.column("churn").kind == "categorical"
    assert churn_schema.column("churn").categories == ["No", "Yes"]
    for flag in FLAGS:
        spec = churn_schema.column(flag)
        assert spec.kind == "categorical", flag
        assert spec.categories == [0, 1], flag
    assert churn_schema.column("contract").categories == ["Month-to-month", "One year", "Two year"]


def test_churn_numerics(churn, churn_schema):
    tenure = churn_schema.column("tenure")
    assert (tenure.kind, tenure.integer, tenure.nullable) == ("numeric", True, False)
    # bounds are never inferred: the table's min and max are two people's values
    assert (tenure.min, tenure.max) == (None, None)

    monthly = churn_schema.column("monthly_charges")
    assert (monthly.kind, monthly.integer, monthly.nullable) == ("numeric", False, False)

    total = churn_schema.column("total_charges")
    assert churn["total_charges"].isna().sum() == 11
    assert (total.kind, total.integer, total.nullable) == ("numeric", False, True)
    assert (total.min, total.max) == (None, None)


def test_schema_json_round_trip(churn_schema):
    again = TableSchema.model_validate_json(churn_schema.model_dump_json())
    assert again == churn_schema
    assert {c.name for c in again.modelled} == {
        c.name for c in churn_schema.columns if c.name != "rownames"
    }


def test_booleans_and_pandas_category():
    n = 60
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "flag": rng.random(n) < 0.3,
            "size": pd.Categorical(rng.choice(["small", "large", "medium"], n)),
            "grade": pd.Categorical(rng.choice(["b", "a", None], n)),
        }
    )
    schema = infer_schema(df)
    flag = schema.column("flag")
    assert (flag.kind, flag.categories, flag.nullable) == ("categorical", [False, True], False)
    size = schema.column("size")
    assert (size.kind, size.categories) == ("categorical", ["large", "medium", "small"])
    grade = schema.column("grade")
    assert (grade.kind, grade.categories, grade.nullable) == ("categorical", ["a", "b"], True)


@pytest.mark.parametrize("unit", ["ns", "us", "s"])
def test_datetime64_column(unit):
    """Any source unit (Parquet gives `us`) is a datetime column, with no inferred bounds."""
    rng = np.random.default_rng(1)
    ts = pd.Timestamp("2015-06-01") + pd.to_timedelta(rng.integers(0, 10**8, 120), unit="s")
    df = pd.DataFrame({"when": pd.Series(ts).astype(f"datetime64[{unit}]")})
    spec = infer_schema(df).column("when")
    assert spec.kind == "datetime"
    assert (spec.min, spec.max) == (None, None)


def test_timezone_aware_datetimes_use_utc():
    ts = pd.Series(pd.date_range("2021-01-01", periods=50, freq="7h", tz="Europe/Paris"))
    spec = infer_schema(pd.DataFrame({"when": ts})).column("when")
    assert spec.kind == "datetime"
    assert (spec.min, spec.max) == (None, None)


def test_iso_strings_in_object_column_are_datetimes():
    rng = np.random.default_rng(2)
    ts = pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 400, 200), unit="D")
    iso = pd.Series(ts).dt.strftime("%Y-%m-%d")
    assert iso.dtype == object and iso.nunique() > 100
    spec = infer_schema(pd.DataFrame({"day": iso})).column("day")
    assert spec.kind == "datetime"
    assert spec.dtype == "object"
    assert (spec.min, spec.max) == (None, None)


def test_constant_column(churn):
    df = churn.head(100).assign(country="US", version=3)
    schema = infer_schema(df)
    assert schema.column("country").kind == "constant"
    assert schema.column("country").constant_value == "US"
    assert schema.column("version").kind == "constant"
    assert schema.column("version").constant_value == 3
    assert not schema.column("country").modelled


def test_high_cardinality_strings_are_categorical_unless_they_identify_rows():
    """Over 100 distinct values used to make an ID; now only (near-)unique text is one
    (issue 11): repeated levels are what an analyst groups by."""
    rng = np.random.default_rng(3)
    names = [f"customer-{i:05d}" for i in rng.integers(0, 400, 300)]
    emails = [f"u{i}@example.org" for i in range(300)]
    near = [*emails[:290], *emails[:10]]  # 290 distinct of 300: 97%, still a key
    df = pd.DataFrame({"customer": names, "email": emails, "contact": near})
    assert df["customer"].nunique() > 100 and df["customer"].nunique() < 0.95 * len(df)
    schema = infer_schema(df)
    assert schema.column("customer").kind == "categorical"
    assert schema.column("email").kind == "id"
    assert schema.column("contact").kind == "id"


def test_few_unique_integers_are_not_an_id():
    """Unique values in a tiny table are too little evidence for an ID."""
    df = pd.DataFrame({"x": np.arange(15) * 7})
    assert infer_schema(df).column("x").kind == "numeric"


def test_all_null_column_is_rejected(churn):
    df = churn.head(50).assign(notes=None)
    with pytest.raises(InputDataError, match="'notes'"):
        infer_schema(df)
    with pytest.raises(InputDataError, match="'gap'"):
        infer_schema(churn.head(50).assign(gap=np.nan))


def test_missing_target_lists_the_columns(churn):
    with pytest.raises(InputDataError) as err:
        infer_schema(churn, target="Churn")
    message = str(err.value)
    assert "'Churn'" in message
    for name in churn.columns:
        assert name in message


def test_id_target_is_rejected(churn):
    with pytest.raises(InputDataError, match="rownames"):
        infer_schema(churn, target="rownames")


def test_override_numeric_to_categorical(churn):
    schema = infer_schema(churn, overrides={"tenure": ColumnOverride(kind="categorical")})
    tenure = schema.column("tenure")
    assert tenure.kind == "categorical"
    assert tenure.categories == list(range(73))
    assert (tenure.min, tenure.max) == (None, None)
    # untouched columns are inferred as before
    assert schema.column("monthly_charges").kind == "numeric"


def test_override_categorical_flag_to_numeric(churn):
    spec = infer_schema(churn, overrides={"female": ColumnOverride(kind="numeric")}).column(
        "female"
    )
    assert (spec.kind, spec.integer, spec.min, spec.max) == ("numeric", True, None, None)
    assert spec.categories is None


def test_override_bounds_and_integer(churn):
    overrides = {
        "monthly_charges": ColumnOverride(min=0.0, max=200.0),
        "total_charges": ColumnOverride(integer=True),
    }
    schema = infer_schema(churn, overrides=overrides)
    monthly = schema.column("monthly_charges")
    assert (monthly.kind, monthly.min, monthly.max) == ("numeric", 0.0, 200.0)
    total = schema.column("total_charges")
    assert total.integer is True
    assert total.nullable is True
    assert total.min is None  # not declared, so not inferred


def test_override_string_to_numeric_is_rejected(churn):
    with pytest.raises(InputDataError, match="'contract'"):
        infer_schema(churn, overrides={"contract": ColumnOverride(kind="numeric")})


def test_override_unknown_column(churn):
    with pytest.raises(InputDataError, match="no_such_column"):
        infer_schema(churn, overrides={"no_such_column": ColumnOverride(kind="categorical")})


def test_override_rejects_unknown_fields():
    with pytest.raises(ValueError, match="levels"):
        ColumnOverride.model_validate({"levels": ["a"]})


def test_declared_categories_survive_structure_and_inferred_ones_do_not(churn):
    """A DP run takes declared categories as public; inferred ones are data, so dropped."""
    overrides = {"contract": ColumnOverride(categories=["Month-to-month", "One year"])}
    bare = infer_schema(churn, target="churn", overrides=overrides).structure(overrides)
    assert bare.column("contract").categories == ["Month-to-month", "One year"]
    assert bare.column("payment_method").categories is None


def test_structure_keeps_kinds_and_declared_bounds_only(churn):
    overrides = {"monthly_charges": ColumnOverride(min=0.0, max=200.0)}
    schema = infer_schema(churn, target="churn", overrides=overrides)
    bare = schema.structure(overrides)
    assert [c.kind for c in bare.columns] == [c.kind for c in schema.columns]
    assert bare.target == "churn"
    assert all(c.categories is None for c in bare.columns)
    assert schema.column("contract").categories  # inference still describes them
    assert (bare.column("monthly_charges").min, bare.column("monthly_charges").max) == (0, 200)
    assert "Month-to-month" not in bare.model_dump_json()
