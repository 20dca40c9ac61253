"""The job spec: defaults, strictness, `--set` overrides, YAML loading, and the spec hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.config import (
    JobSpec,
    ModelSpec,
    TrainingSpec,
    build_spec,
    default_steps,
    load_spec,
    parse_set_option,
)
from synth.data.schema import ColumnOverride
from synth.errors import ConfigError

BASE = {"source": {"path": "data/churn.csv", "target": "churn"}}


def test_defaults_are_valid():
    spec = build_spec(BASE)
    assert isinstance(spec, JobSpec)
    assert spec.source.path == Path("data/churn.csv")
    assert spec.source.format == "auto"
    assert spec.model == ModelSpec()
    assert spec.training == TrainingSpec()
    assert spec.model.hidden_dims == [256, 256, 256]
    assert spec.training.steps is None  # scaled to the data at fit: `default_steps`
    assert spec.sampling.scheduler == "dpmsolver"
    assert spec.split.holdout_fraction == 0.3
    assert spec.export.id_strategy == "regenerate"


def test_defaults_are_not_shared_between_specs():
    a, b = build_spec(BASE), build_spec(BASE)
    a.model.hidden_dims.append(8)
    assert b.model.hidden_dims == [256, 256, 256]


def test_source_is_required():
    with pytest.raises(ConfigError, match="source"):
        build_spec({})


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"trainig": {"steps": 3}}, "trainig"),
        ({"model": {"hiden_dims": [8]}}, "model.hiden_dims"),
        ({"evaluation": {"thresholds": {"mia_auc": 0.5}}}, "evaluation.thresholds.mia_auc"),
        ({"source": {**BASE["source"], "columns": {"tenure": {"knd": "id"}}}}, "knd"),
    ],
)
def test_unknown_keys_are_rejected(extra, key):
    with pytest.raises(ConfigError) as err:
        build_spec({**BASE, **extra})
    assert "unknown key" in str(err.value)
    assert key in str(err.value)


def test_invalid_values_name_the_field():
    with pytest.raises(ConfigError, match=r"training\.steps"):
        build_spec(BASE, {"training.steps": 0})
    with pytest.raises(ConfigError, match=r"sampling\.scheduler"):
        build_spec(BASE, {"sampling.scheduler": "euler"})


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("training.steps=5", ("training.steps", 5)),
        ("model.hidden_dims=[32, 16]", ("model.hidden_dims", [32, 16])),
        ("training.lr=0.0005", ("training.lr", 5e-4)),
        ("training.resume=false", ("training.resume", False)),
        ('sampling.conditions={"Yes": 3, "No": 7}', ("sampling.conditions", {"Yes": 3, "No": 7})),
        (" name =a=b", ("name", "a=b")),
    ],
)
def test_parse_set_option(item, expected):
    assert parse_set_option(item) == expected


def test_parse_set_option_needs_an_equals_sign():
    with pytest.raises(ConfigError, match="training.steps"):
        parse_set_option("training.steps")


def test_yaml_reads_yes_no_as_labels_and_1e_3_as_a_number():
    """PyYAML's YAML 1.1 reads bare Yes/No/on/off as booleans and `1e-3` as a string. Specs
    read YAML 1.2 booleans, so a Yes/No target's labels work unquoted as condition keys."""
    spec = build_spec(BASE, dict([parse_set_option("training.lr=1e-3")]))
    assert spec.training.lr == pytest.approx(1e-3)
    bare = dict([parse_set_option("sampling.conditions={Yes: 3, No: 7}")])
    assert build_spec(BASE, bare).sampling.conditions == {"Yes": 3, "No": 7}
    assert parse_set_option("name=off") == ("name", "off")
    assert parse_set_option("training.resume=true") == ("training.resume", True)
    with pytest.raises(ConfigError, match=r"sampling\.conditions"):
        build_spec(BASE, dict([parse_set_option("sampling.conditions={true: 3}")]))


def test_dotted_overrides_apply():
    sets = dict(
        map(
            parse_set_option,
            [
                "training.steps=5",
                "model.hidden_dims=[32, 16]",
                "source.columns.tenure.kind=categorical",
                "seed=7",
            ],
        )
    )
    spec = build_spec(BASE, sets)
    assert spec.training.steps == 5
    assert spec.model.hidden_dims == [32, 16]
    assert spec.source.columns == {"tenure": ColumnOverride(kind="categorical")}
    assert spec.seed == 7
    # the rest keeps its defaults / base values
    assert spec.training.batch_size == TrainingSpec().batch_size
    assert spec.source.target == "churn"


def test_overrides_do_not_mutate_the_base_and_none_is_ignored():
    base = {"source": {"path": "a.csv"}, "training": {"steps": 9}}
    spec = build_spec(base, {"training.steps": None, "training.batch_size": 64})
    assert spec.training.steps == 9
    assert spec.training.batch_size == 64
    assert base == {"source": {"path": "a.csv"}, "training": {"steps": 9}}


def test_override_through_a_scalar_is_rejected():
    with pytest.raises(ConfigError, match="not a section"):
        build_spec({**BASE, "name": "job"}, {"name.first": "x"})


def test_unknown_override_key_is_rejected():
    with pytest.raises(ConfigError, match=r"training\.stepz"):
        build_spec(BASE, {"training.stepz": 5})


def test_load_spec_from_yaml(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(
        "name: churn\nsource:\n  path: churn.csv\n  target: churn\n"
        "training:\n  steps: 50\nmodel:\n  hidden_dims: [64, 64]\n"
    )
    spec = load_spec(path, {"training.steps": 5})
    assert spec.name == "churn"
    assert spec.model.hidden_dims == [64, 64]
    assert spec.training.steps == 5


def test_load_spec_without_a_file_uses_overrides():
    spec = load_spec(None, {"source.path": "x.parquet", "source.format": "parquet"})
    assert spec.source.format == "parquet"


def test_load_spec_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_spec(missing)
    assert str(missing) in str(err.value)


def test_load_spec_invalid_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("source:\n  path: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(path)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_load_spec_non_mapping(tmp_path, text):
    path = tmp_path / "list.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="mapping"):
        load_spec(path)


def test_load_spec_unknown_key_in_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("source:\n  path: a.csv\nsampling:\n  num_steps: 3\n")
    with pytest.raises(ConfigError, match=r"sampling\.num_steps"):
        load_spec(path)


def test_spec_hash_is_stable_and_sensitive(tmp_path):
    a = build_spec(BASE)
    h = a.spec_hash()
    assert len(h) == 64 and int(h, 16) >= 0
    assert build_spec(BASE).spec_hash() == h
    assert JobSpec.model_validate_json(a.model_dump_json()).spec_hash() == h
    # key order in the file does not matter
    (tmp_path / "a.yaml").write_text("seed: 0\nsource: {path: data/churn.csv, target: churn}\n")
    (tmp_path / "b.yaml").write_text("source: {target: churn, path: data/churn.csv}\nseed: 0\n")
    assert load_spec(tmp_path / "a.yaml").spec_hash() == h
    assert load_spec(tmp_path / "b.yaml").spec_hash() == h
    # any change does
    assert build_spec(BASE, {"training.steps": 1999}).spec_hash() != h
    assert build_spec(BASE, {"evaluation.thresholds.mia_auc_max": 0.61}).spec_hash() != h
    assert build_spec(BASE, {"source.target": None}).spec_hash() == h  # None = not set
    assert build_spec({"source": {"path": "data/churn.csv"}}).spec_hash() != h


@pytest.mark.parametrize(
    ("rows", "columns", "numeric", "steps"),
    [
        (4_930, 20, 3, 2_250),  # the demo
        (124, 13, 10, 1_000),  # wine's training split: the floor
        (6_899, 23, 15, 3_750),  # lending_club: mostly numeric, so more steps
        (2_051, 74, 23, 2_500),  # Ames: 3,250 by its width, held to 1,250 epochs
        (35_000, 18, 13, 6_000),  # 50k flights: the ceiling
        (235_743, 18, 13, 6_000),  # all of flights
    ],
)
def test_the_training_budget_scales_with_rows_and_columns(rows, columns, numeric, steps):
    assert default_steps(rows, columns, numeric) == steps
    spec = TrainingSpec().resolved(rows, columns, numeric)
    assert spec.steps == steps and TrainingSpec().steps is None
    assert TrainingSpec(steps=7).resolved(rows, columns).steps == 7  # a set budget is kept
    # the epoch cap follows the batch: half the batch, twice the steps allowed
    assert default_steps(2_051, 74, 23, batch_size=512) == 3_250


def test_the_budget_grows_with_rows_and_with_columns():
    by_rows = [default_steps(n, 20) for n in (1_000, 5_000, 10_000, 20_000, 40_000)]
    by_columns = [default_steps(5_000, c) for c in (10, 20, 40, 80)]
    by_numeric = [default_steps(5_000, 20, n) for n in (0, 5, 10, 20)]
    for grows in (by_rows, by_columns, by_numeric):
        assert grows == sorted(grows) and grows[0] < grows[-1]
