"""Privacy: does the synthetic table sit closer to the training rows than fresh real rows do?

Every check compares the synthetic data against a *fresh real* baseline, the holdout: real
tables contain duplicates and tight clusters, so an absolute "distance to train" means little,
while "closer to train than unseen real rows are" is the signature of memorisation.
All distances live in the shared `DistanceEncoder` space fitted on train.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn.metrics import roc_auc_score

from evaluation.encoding import DistanceEncoder, category_keys, numeric_values
from evaluation.neighbours import Points, nearest
from evaluation.threads import limit_threads
from synth.data.schema import TableSchema

# Distances within this of each other are a tie (the encoding is exact, so this is float noise).
TIE_TOL = 1e-9
NEAR_COPY_PERCENTILE = 1.0
NNDR_PERCENTILE = 5.0
HIST_BINS = 30


class DcrHistogram(BaseModel):
    """Counts of distance-to-closest-train-record, on shared bins (aggregates only).

    The last bin also holds everything beyond the 99th percentile, so outliers do not squash it.
    """

    edges: list[float]
    synthetic: list[int]
    holdout: list[int]


class Privacy(BaseModel):
    exact_copy_rate: float
    holdout_exact_copy_rate: float
    exact_copy_excess: float
    near_copy_threshold: float
    near_copy_rate: float
    holdout_near_copy_rate: float
    near_copy_excess: float
    dcr_share: float
    nndr_threshold: float
    nndr_low_share: float
    holdout_nndr_low_share: float
    mia_auc: float
    median_dcr_synthetic: float
    median_dcr_holdout: float
    dcr_histogram: DcrHistogram


# --------------------------------------------------------------------------- exact copies


def row_keys(df: pd.DataFrame, schema: TableSchema) -> np.ndarray:
    """One 64-bit hash per row over the modelled columns.

    Floats are rounded to 10 significant digits (relative 1e-9) so a value that went through a
    float32/parquet round trip still matches; NaN matches NaN; categories compare by
    `category_keys`, so 1, 1.0 and True are the same category.
    """
    parts: dict[str, np.ndarray] = {}
    for spec in schema.modelled:
        if spec.kind == "categorical":
            parts[spec.name] = category_keys(df[spec.name]).fillna("\x00nan").to_numpy(dtype=str)
        else:
            v = numeric_values(df[spec.name], spec.kind)
            parts[spec.name] = np.char.mod("%.9e", v)
    keyed = pd.DataFrame(parts)
    return pd.util.hash_pandas_object(keyed, index=False).to_numpy()


def exact_copy_rate(rows: pd.DataFrame, reference: pd.DataFrame, schema: TableSchema) -> float:
    """Share of `rows` that equal some row of `reference` on every modelled column."""
    if len(rows) == 0:
        return math.nan
    return float(np.isin(row_keys(rows, schema), row_keys(reference, schema)).mean())


# --------------------------------------------------------------------------- distances


def nearest_distances(
    reference: np.ndarray | Points, query: np.ndarray | Points, k: int = 1
) -> np.ndarray:
    """Sorted Euclidean distances from each query row to its `k` nearest reference rows; a
    copy is exactly 0 (`evaluation.neighbours.nearest`)."""
    return nearest(reference, query, k)[1]


def nndr(distances: np.ndarray) -> np.ndarray:
    """Nearest / second-nearest distance ratio; 0 when the second distance is 0 (a row with
    two identical train neighbours is as close as it gets)."""
    d1, d2 = distances[:, 0], distances[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d2 > 0, d1 / np.where(d2 > 0, d2, 1.0), 0.0)


def dcr_share(to_train: np.ndarray, to_holdout: np.ndarray) -> float:
    """Share of synthetic rows closer to the train subset than to the equal-size holdout; ties
    count 0.5. 0.5 is ideal; 1.0 means every row hugs a training record."""
    if to_train.size == 0:
        return math.nan
    tie = np.abs(to_train - to_holdout) <= TIE_TOL
    closer = (to_train < to_holdout) & ~tie
    return float(closer.mean() + 0.5 * tie.mean())


def mia_auc(
    members: np.ndarray | Points, non_members: np.ndarray | Points, synthetic: np.ndarray | Points
) -> float:
    """Distance attack: score each candidate by -(distance to nearest synthetic row) and ask how
    well that separates training members from holdout non-members (ROC AUC, 0.5 ideal)."""
    members, non_members, synthetic = (Points.of(p) for p in (members, non_members, synthetic))
    if len(members) == 0 or len(non_members) == 0 or len(synthetic) == 0:
        return math.nan
    candidates = Points.stack(members, non_members)
    score = -nearest_distances(synthetic, candidates, k=1)[:, 0]
    label = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    return float(roc_auc_score(label, score))


def dcr_histogram(
    synthetic: np.ndarray, holdout: np.ndarray, bins: int = HIST_BINS
) -> DcrHistogram:
    both = np.concatenate([synthetic, holdout])
    top = float(np.percentile(both, 99)) if both.size else 1.0
    top = top if top > 0 else max(float(both.max(initial=0.0)), 1.0)
    edges = np.linspace(0.0, top, bins + 1)

    def counts(d: np.ndarray) -> list[int]:
        return np.histogram(np.clip(d, 0.0, top), bins=edges)[0].astype(int).tolist()

    return DcrHistogram(
        edges=[round(float(e), 6) for e in edges],
        synthetic=counts(synthetic),
        holdout=counts(holdout),
    )


# --------------------------------------------------------------------------- all together


def privacy_metrics(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    encoder: DistanceEncoder | None = None,
    *,
    seed: int = 0,
) -> Privacy:
    """Every privacy figure for one synthetic table, each next to its holdout baseline.

    * exact copies: synthetic vs holdout exact-match rate against train;
    * near copies: closer to train than the holdout's 1st-percentile DCR (`<=`);
    * DCR share and MIA use a seeded train subset the size of the holdout, so a perfect
      generator scores 0.5 on both (DCR share is diluted when train >> holdout: copies of
      rows outside the subset count 0.5, so copying all of a 2x train scores 0.75, not 1);
    * NNDR: share of synthetic rows below the holdout's 5th-percentile NNDR (ideal ~0.05).
    """
    encoder = encoder or DistanceEncoder.fit(train, schema)
    return Privacy(
        **privacy_distances(train, holdout, synthetic, schema, encoder),
        **membership_risk(train, holdout, synthetic, schema, encoder, seed=seed),
    )


def privacy_distances(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    encoder: DistanceEncoder | None = None,
) -> dict[str, float | DcrHistogram]:
    """Exact copies, near copies, NNDR and the DCR summary: the `Privacy` fields that need
    nearest-train distances of every synthetic and holdout row (no randomness)."""
    with limit_threads(max(len(train), len(synthetic))):
        encoder = encoder or DistanceEncoder.fit(train, schema)
        x_train = encoder.points(train)
        syn_rate = exact_copy_rate(synthetic, train, schema)
        hold_rate = exact_copy_rate(holdout, train, schema)

        syn_d = nearest_distances(x_train, encoder.points(synthetic), k=2)
        hold_d = nearest_distances(x_train, encoder.points(holdout), k=2)
    syn_dcr, hold_dcr = syn_d[:, 0], hold_d[:, 0]

    near_thr = float(np.percentile(hold_dcr, NEAR_COPY_PERCENTILE))
    near_syn = float(np.mean(syn_dcr <= near_thr))
    near_hold = float(np.mean(hold_dcr <= near_thr))

    hold_ratio = nndr(hold_d)
    nndr_thr = float(np.percentile(hold_ratio, NNDR_PERCENTILE))
    nndr_syn = float(np.mean(nndr(syn_d) < nndr_thr))
    nndr_hold = float(np.mean(hold_ratio < nndr_thr))
    return {
        "exact_copy_rate": syn_rate,
        "holdout_exact_copy_rate": hold_rate,
        "exact_copy_excess": syn_rate - hold_rate,
        "near_copy_threshold": near_thr,
        "near_copy_rate": near_syn,
        "holdout_near_copy_rate": near_hold,
        "near_copy_excess": near_syn - near_hold,
        "nndr_threshold": nndr_thr,
        "nndr_low_share": nndr_syn,
        "holdout_nndr_low_share": nndr_hold,
        "median_dcr_synthetic": float(np.median(syn_dcr)),
        "median_dcr_holdout": float(np.median(hold_dcr)),
        "dcr_histogram": dcr_histogram(syn_dcr, hold_dcr),
    }


def membership_risk(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    encoder: DistanceEncoder | None = None,
    *,
    seed: int = 0,
) -> dict[str, float]:
    """DCR share and the membership-inference AUC, on a seeded train subset the size of the
    holdout against the holdout (so a perfect generator scores 0.5 on both)."""
    with limit_threads(max(len(train), len(synthetic))):
        encoder = encoder or DistanceEncoder.fit(train, schema)
        rng = np.random.default_rng(seed)
        m = min(len(train), len(holdout))
        members = encoder.points(train.iloc[rng.choice(len(train), m, replace=False)])
        non_members = encoder.points(holdout.iloc[rng.choice(len(holdout), m, replace=False)])
        x_syn = encoder.points(synthetic)
        share = dcr_share(
            nearest_distances(members, x_syn)[:, 0], nearest_distances(non_members, x_syn)[:, 0]
        )
        return {"dcr_share": share, "mia_auc": mia_auc(members, non_members, x_syn)}
