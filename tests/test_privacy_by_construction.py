"""Privacy by construction, through the job's own steps on the real churn table with the
issue's planted values: a city held by one training row, a city held by one holdout row, and a
note held by one row. None may come out (in a row, or a Parquet dictionary), none may be stored
with the model, and the private folders are the owner's alone.

The steps are the plain functions the Prefect flow calls (load, split, check, train, sample,
export); the flow itself is tested in test_flow.py.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from jobs.lineage import lineage_for
from jobs.paths import JobPaths
from jobs.registry import modality_for
from synth.config import build_spec
from synth.data.split import split_indices
from synth.errors import InputDataError

pytestmark = pytest.mark.slow

CITIES = ["Aston", "Brigg", "Calne", "Derby", "Epsom", "Frome", "Goole", "Hythe"]
TRAIN_ONLY, HOLDOUT_ONLY, NOTE = "Zeal-Monachorum", "Quy-cum-Stow", "ssn 078-05-1120"


@pytest.fixture(scope="module")
def planted(churn: pd.DataFrame, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """Churn with a city and a note column; the three planted values on known rows."""
    df = churn.copy()
    rng = np.random.default_rng(0)
    df["city"] = rng.choice(CITIES, len(df))
    df["note"] = rng.choice(["none", "called", "emailed"], len(df))
    train, holdout = split_indices(
        len(df), 0.3, 0, stratify=df["churn"].astype(str).to_numpy()
    )  # exactly the job's split (seed 0, stratified on the target)
    rows = {"train_only": int(train[9]), "holdout_only": int(holdout[27]), "note": int(train[40])}
    df.loc[rows["train_only"], "city"] = TRAIN_ONLY
    df.loc[rows["holdout_only"], "city"] = HOLDOUT_ONLY
    df.loc[rows["note"], "note"] = NOTE
    path = tmp_path_factory.mktemp("planted") / "secret.csv"
    df.to_csv(path, index=False)
    return path, rows


def _spec(csv: Path, out: Path, **overrides):
    base = {
        "source": {"path": str(csv), "target": "churn"},
        "model": {"hidden_dims": [64, 64]},
        "training": {"steps": 80, "batch_size": 512, "checkpoint_every": 1000},
        "sampling": {"rows": 3000, "num_inference_steps": 4},
        "export": {"out": str(out)},
    }
    return build_spec(base, overrides)


def _run(spec) -> tuple[JobPaths, list[Path], dict]:
    """load -> split -> check -> train -> sample -> evaluate -> export, as the flow runs
    them: the export carries the report, so it is searched for planted values too."""
    steps, paths = modality_for(spec), JobPaths(Path(spec.export.out))
    source = steps.load(spec, paths)
    split_path = steps.split(spec, paths, source)
    steps.check(spec, paths, source, split_path)
    model_hash = steps.train(spec, paths, source, split_path, progress=False)
    n_train = len(json.loads(split_path.read_text())["train"])
    steps.sample(spec, paths, n_train, progress=False)
    lineage = lineage_for(spec, source.data_hash, split_path, model_hash)
    report = steps.evaluate(spec, paths, source, split_path, lineage, progress=False)
    protection = report["extra"]["protection"]
    return paths, steps.export(spec, paths, source, report), protection


def _bytes_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.fixture(scope="module")
def protected_run(planted, tmp_path_factory):
    csv, _ = planted
    return _run(_spec(csv, tmp_path_factory.mktemp("job") / "out"))


def test_no_planted_value_leaves_in_any_row_or_dictionary(protected_run):
    paths, files, _ = protected_run
    rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert len(rows) == 3000
    assert set(rows["city"]) <= set(CITIES) | {"_RARE_"}
    assert (
        {"none", "called", "emailed"}
        <= set(rows["note"])
        <= {"none", "called", "emailed", "_RARE_"}
    )
    assert (paths.export / "_report.json").is_file()  # the report travels in the export
    raw = _bytes_under(paths.export)
    for value in (TRAIN_ONLY, HOLDOUT_ONLY, NOTE):
        assert value.encode() not in raw  # not in a row, a dictionary page, metadata, report


def test_the_model_and_work_folders_hold_no_planted_value(protected_run):
    paths, _, _ = protected_run
    for folder in (paths.model, paths.work):
        raw = _bytes_under(folder)
        for value in (TRAIN_ONLY, HOLDOUT_ONLY, NOTE):
            assert value.encode() not in raw, (folder.name, value)
    state = json.loads((paths.model / "synthesizer.json").read_text())
    categories = state["encoder"]["categories"]
    assert sorted(categories["city"]) == sorted([*CITIES, "_RARE_"])  # the one-row city: grouped
    assert state["schema"]["columns"][0].get("min") is None


def test_private_folders_are_the_owners_alone(protected_run):
    paths, _, _ = protected_run
    for folder in (paths.model, paths.work):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder.name


def test_the_report_counts_what_was_grouped(protected_run):
    _, files, protection = protected_run
    assert protection["rare_category_min_rows"] == 5
    assert protection["grouped_values"]["city"] == 1  # the train-only city
    assert protection["grouped_values"]["note"] == 1
    metadata = b"".join(pq.read_schema(files[0]).metadata.values())
    assert b'"grouped_values"' in metadata  # the export's stored report carries the counts


def test_k_of_one_turns_protection_off_and_the_lineage_records_it(planted, tmp_path):
    csv, _ = planted
    spec = _spec(csv, tmp_path / "out", **{"privacy.rare_category_min_rows": 1})
    paths, files, protection = _run(spec)
    assert protection["grouped_values"] == {}
    lineage = lineage_for(spec, "d" * 64, paths.split, "m" * 64)
    assert lineage["rare_category_min_rows"] == 1
    state = (paths.model / "synthesizer.json").read_text()
    assert TRAIN_ONLY in state  # what protection withholds, now stored: the choice is visible
    assert HOLDOUT_ONLY not in state  # never: the model sees training rows only
    rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert HOLDOUT_ONLY not in set(rows["city"])


def test_too_large_a_k_fails_before_training(planted, tmp_path):
    csv, _ = planted
    spec = _spec(csv, tmp_path / "out", **{"privacy.rare_category_min_rows": 5000})
    steps, paths = modality_for(spec), JobPaths(tmp_path / "out")
    source = steps.load(spec, paths)
    split_path = steps.split(spec, paths, source)
    with pytest.raises(InputDataError, match="rare_category_min_rows=5000"):
        steps.check(spec, paths, source, split_path)
    assert not paths.model.exists()  # nothing trained, not even a model folder
