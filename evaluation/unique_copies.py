"""Copies of one-of-a-kind records: synthetic rows equal (or nearly equal) to a training row
that no other real row shares, against the rate fresh holdout rows show.

Copying a row that many people share reveals nobody; copying a row only one person has singles
that person out. A training row is one-of-a-kind when its modelled columns (`row_keys`) occur
once in train and in no holdout row. On a table with many natural duplicates the plain
exact-copy rate drowns a small leak in the natural rate; restricted to one-of-a-kind rows the
natural rate is small, so a leak stands out.

The holdout rate is measured leave-one-out: a holdout row counts when it equals (or is near) a
training row that occurs once in train and nowhere else in the holdout, which is exactly the
chance a fresh row has of hitting the one-of-a-kind set. The gate reads a one-sided lower
confidence bound of the excess (Agresti-Caffo, z = `Z_ONE_SIDED`): above zero, the synthetic
rows copy one-of-a-kind records more often than chance explains. A small holdout widens the
margin, and the report carries it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pydantic import BaseModel

from evaluation.encoding import DistanceEncoder
from evaluation.neighbours import Points, nearest
from evaluation.privacy import TIE_TOL, row_keys
from evaluation.threads import limit_threads
from synth.data.schema import TableSchema

Z_ONE_SIDED = 3.09  # 99.9%: fresh real rows fail about once in a thousand evaluations
NEAR_PERCENTILE = 1.0  # near: closer than the holdout's 1st percentile of non-zero distances


class UniqueCopies(BaseModel):
    n_one_of_a_kind: int
    """Training rows that no other real row shares."""
    unique_copy_rate: float
    holdout_unique_copy_rate: float
    unique_copy_excess: float
    unique_copy_excess_lcb: float
    near_threshold: float
    unique_near_copy_rate: float
    holdout_unique_near_copy_rate: float
    unique_near_copy_excess: float
    unique_near_copy_excess_lcb: float


def excess_lower_bound(hits: float, n: int, base_hits: float, base_n: int) -> float:
    """One-sided lower confidence bound of rate(hits/n) - rate(base_hits/base_n), the
    Agresti-Caffo interval (one success and one failure added to each group)."""
    if n == 0 or base_n == 0:
        return math.nan
    p1, p2 = (hits + 1) / (n + 2), (base_hits + 1) / (base_n + 2)
    se = math.sqrt(p1 * (1 - p1) / (n + 2) + p2 * (1 - p2) / (base_n + 2))
    return p1 - p2 - Z_ONE_SIDED * se


def _nearest(reference: Points, query: Points) -> tuple[np.ndarray, np.ndarray]:
    """Index of and exact distance to each query row's nearest reference row."""
    idx, d = nearest(reference, query, k=1)
    return idx[:, 0], d[:, 0]


def unique_copies(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    encoder: DistanceEncoder | None = None,
) -> UniqueCopies:
    """Exact and near copies of one-of-a-kind training rows, synthetic vs holdout."""
    k_train, k_hold, k_syn = (row_keys(df, schema) for df in (train, holdout, synthetic))
    in_train = pd.Series(k_train).value_counts()
    in_hold = pd.Series(k_hold).value_counts()
    n_syn, n_hold = len(k_syn), len(k_hold)

    def counts(table: pd.Series, keys: np.ndarray) -> np.ndarray:
        return table.reindex(keys, fill_value=0).to_numpy()

    # Leave-one-out: a synthetic row matching a key one holdout row holds is one-of-a-kind for
    # the holdout without that row, 1 of n_hold times; a holdout row counts its own key out.
    def syn_weight(keys: np.ndarray) -> np.ndarray:
        once = counts(in_train, keys) == 1
        c_hold = counts(in_hold, keys)
        return once * ((c_hold == 0) + (c_hold == 1) / max(n_hold, 1))

    syn_exact = syn_weight(k_syn)
    hold_exact = (counts(in_train, k_hold) == 1) & (counts(in_hold, k_hold) == 1)
    one_of_a_kind = (counts(in_train, k_train) == 1) & (counts(in_hold, k_train) == 0)

    with limit_threads(max(len(train), len(synthetic))):
        encoder = encoder or DistanceEncoder.fit(train, schema)
        x_train = encoder.points(train)
        syn_idx, syn_d = _nearest(x_train, encoder.points(synthetic))
        hold_idx, hold_d = _nearest(x_train, encoder.points(holdout))
    positive = hold_d[hold_d > TIE_TOL]
    eps = float(np.percentile(positive, NEAR_PERCENTILE)) if positive.size else 0.0
    near_key_syn = k_train[syn_idx]
    syn_near = (syn_d <= eps + TIE_TOL) * syn_weight(near_key_syn)
    near_key_hold = k_train[hold_idx]
    others = counts(in_hold, near_key_hold) - (near_key_hold == k_hold)
    hold_near = (hold_d <= eps + TIE_TOL) & (counts(in_train, near_key_hold) == 1) & (others == 0)

    def rate(w: np.ndarray) -> float:
        return float(w.mean()) if w.size else math.nan

    exact_s, exact_h = rate(syn_exact), rate(hold_exact)
    near_s, near_h = rate(syn_near), rate(hold_near)
    return UniqueCopies(
        n_one_of_a_kind=int(one_of_a_kind.sum()),
        unique_copy_rate=exact_s,
        holdout_unique_copy_rate=exact_h,
        unique_copy_excess=exact_s - exact_h,
        unique_copy_excess_lcb=excess_lower_bound(
            float(syn_exact.sum()), n_syn, float(hold_exact.sum()), n_hold
        ),
        near_threshold=eps,
        unique_near_copy_rate=near_s,
        holdout_unique_near_copy_rate=near_h,
        unique_near_copy_excess=near_s - near_h,
        unique_near_copy_excess_lcb=excess_lower_bound(
            float(syn_near.sum()), n_syn, float(hold_near.sum()), n_hold
        ),
    )
