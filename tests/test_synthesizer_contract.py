"""The synthesizer contract, checked on every synthesizer (like scikit-learn's check_estimator).

Each synthesizer in `CASES` is built, fitted on a real data set with a tiny budget, and put
through the same checks: the constructor only stores, nothing works before `fit`, save/load is
pickle-free and exact, sampling is seeded, conditions give exact counts, and shards add up.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits, load_wine

from synth.config import ImageModelSpec, ModelSpec, PrivacySpec, RulesSpec, TrainingSpec
from synth.data.schema import infer_schema
from synth.errors import NotFittedError
from synth.images.io import ImageSet
from synth.images.synthesizer import ImageDiffusionSynthesizer
from synth.synthesizer import Shard, Synthesizer
from synth.tabular.synthesizer import TabularDiffusionSynthesizer

pytestmark = pytest.mark.usefixtures("torch_single_thread")

PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol >= 2; torch.save's zip archive


@dataclass
class Case:
    """One synthesizer under test: how to build it, what to fit it on, how to read its output."""

    cls: type
    params: Callable[[], dict[str, Any]]  # constructor arguments
    train: Callable[[], Any]
    conditions: dict[Any, int]  # two classes and their counts
    labels: Callable[[Any, Any], list[Any]]  # (fitted, sample output) -> the class of each record
    join: Callable[[list[Shard]], Any]  # shards -> what `sample` returns
    fingerprint: Callable[[Any], bytes]  # sample output -> bytes, equal iff outputs are equal
    sample_kw: dict[str, Any]


def _wine() -> pd.DataFrame:
    df = load_wine(as_frame=True).frame
    df["target"] = df["target"].map({0: "class_0", 1: "class_1", 2: "class_2"})
    return df


def _digits() -> ImageSet:
    d = load_digits()
    images = (d.images[:256] / 16.0).astype(np.float32)[:, None]
    return ImageSet(images=images, labels=d.target[:256], class_names=[str(i) for i in range(10)])


def _join_images(shards: list[Shard]) -> tuple[np.ndarray, np.ndarray | None]:
    labels = None if shards[0].labels is None else np.concatenate([s.labels for s in shards])
    return np.concatenate([s.data for s in shards]), labels


CASES = {
    "tabular": Case(
        cls=TabularDiffusionSynthesizer,
        params=lambda: {
            "schema": infer_schema(_wine(), target="target"),
            "model": ModelSpec(hidden_dims=[32, 32]),
            "training": TrainingSpec(steps=30, batch_size=128),
            "seed": 4,
            "device": "cpu",
            "privacy": PrivacySpec(rare_category_min_rows=3),
            "rules": RulesSpec(min_support=10),
        },
        train=_wine,
        conditions={"class_0": 7, "class_2": 4},
        labels=lambda fitted, out: out["target"].tolist(),
        join=lambda shards: pd.concat([s.data for s in shards], ignore_index=True),
        fingerprint=lambda out: out.to_csv(index=False).encode(),
        sample_kw={"num_inference_steps": 4},
    ),
    "image": Case(
        cls=ImageDiffusionSynthesizer,
        params=lambda: {
            "model": ImageModelSpec(block_out_channels=[8, 16]),
            "training": TrainingSpec(steps=8, batch_size=32, lr=2e-3, warmup_steps=2),
            "seed": 4,
            "device": "cpu",
            "privacy": PrivacySpec(rare_category_min_rows=3),
        },
        train=_digits,
        conditions={"3": 5, "8": 2},
        labels=lambda fitted, out: [fitted.class_names_[i] for i in out[1]],
        join=_join_images,
        fingerprint=lambda out: out[0].tobytes() + out[1].tobytes(),
        sample_kw={"num_inference_steps": 3},
    ),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request) -> Case:
    return CASES[request.param]


@pytest.fixture(scope="module")
def fitted(torch_single_thread, case) -> Synthesizer:
    return case.cls(**case.params()).fit(case.train(), progress=False)


def test_constructor_only_stores_parameters(case):
    params = case.params()
    synth = case.cls(**params)
    assert vars(synth) == params
    assert all(getattr(synth, k) is v for k, v in params.items())
    assert not [k for k in vars(synth) if k.endswith("_")]
    assert isinstance(synth, Synthesizer)


def test_fit_returns_self_and_learns_only_underscored_state(case, fitted):
    params = case.params()
    assert isinstance(fitted, case.cls) and isinstance(fitted, Synthesizer)
    learned = set(vars(fitted)) - set(params)
    assert learned and all(k.endswith("_") for k in learned), learned
    assert (fitted.seed, fitted.device) == (params["seed"], params["device"])


def test_nothing_works_before_fit(case, tmp_path):
    synth = case.cls(**case.params())
    with pytest.raises(NotFittedError, match="fit"):
        synth.sample(4)
    with pytest.raises(NotFittedError):
        list(synth.sample_shards(4))
    with pytest.raises(NotFittedError):
        synth.sample_shard(4, seed=0)
    with pytest.raises(NotFittedError):
        synth.save(tmp_path / "model")
    with pytest.raises(NotFittedError):
        synth.protection()
    assert not (tmp_path / "model").exists()


def test_save_load_round_trip_without_pickle(case, fitted, tmp_path):
    folder = fitted.save(tmp_path / "model")
    assert Path(folder) == tmp_path / "model"
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    assert [p.name for p in files if p.suffix not in (".safetensors", ".json")] == []
    assert [p.name for p in files if p.read_bytes().startswith(PICKLE_MAGIC)] == []
    loaded = case.cls.load(folder, device="cpu")
    assert isinstance(loaded, case.cls) and loaded.seed == fitted.seed
    assert loaded.protection() == fitted.protection()
    a = fitted.sample(9, seed=3, **case.sample_kw)
    b = loaded.sample(9, seed=3, **case.sample_kw)
    assert case.fingerprint(a) == case.fingerprint(b)


def test_sampling_is_seeded(case, fitted):
    a = case.fingerprint(fitted.sample(9, seed=1, **case.sample_kw))
    assert a == case.fingerprint(fitted.sample(9, seed=1, **case.sample_kw))
    assert a != case.fingerprint(fitted.sample(9, seed=2, **case.sample_kw))
    # no seed means the synthesizer's own
    default = case.fingerprint(fitted.sample(9, **case.sample_kw))
    assert default == case.fingerprint(fitted.sample(9, seed=fitted.seed, **case.sample_kw))


def test_conditions_give_exact_counts(case, fitted):
    out = fitted.sample(conditions=case.conditions, seed=5, **case.sample_kw)
    assert Counter(case.labels(fitted, out)) == case.conditions
    shard = fitted.sample_shard(1, case.conditions, seed=6, **case.sample_kw)
    joined = case.join([shard])
    assert len(shard) == sum(case.conditions.values())
    assert Counter(case.labels(fitted, joined)) == case.conditions


def test_shards_add_up(case, fitted):
    n, rows = 11, 4
    shards = list(fitted.sample_shards(n, shard_rows=rows, seed=7, **case.sample_kw))
    assert all(isinstance(s, Shard) for s in shards)
    assert len(shards) == math.ceil(n / rows)
    assert [s.start for s in shards] == [0, 4, 8]
    assert [len(s) for s in shards] == [4, 4, 3] and sum(len(s) for s in shards) == n
    assert all(s.labels is None or len(s.labels) == len(s) for s in shards)
    # sample() is those shards, joined
    whole = fitted.sample(n, shard_rows=rows, seed=7, **case.sample_kw)
    assert case.fingerprint(case.join(shards)) == case.fingerprint(whole)

    one = fitted.sample_shard(5, seed=9, offset=20, **case.sample_kw)
    assert isinstance(one, Shard) and (one.start, len(one)) == (20, 5)
    again = fitted.sample_shard(5, seed=9, offset=20, **case.sample_kw)
    assert case.fingerprint(case.join([one])) == case.fingerprint(case.join([again]))


def test_protection_reports_k_and_counts_only(case, fitted):
    """The report's account of rare-value protection: `k` and counts, JSON-able, no values."""
    summary = fitted.protection()
    assert summary["rare_category_min_rows"] == 3
    text = json.dumps(summary)
    train = case.train()
    if isinstance(train, pd.DataFrame):
        assert not any(f'"{v}"' in text for v in train["target"].unique())
    else:
        assert not any(f'"{v}"' in text for v in train.class_names)
