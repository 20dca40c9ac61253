"""A density-ratio membership attack in the manner of DOMIAS (van Breugel et al., AISTATS 2023).

The attacker holds the synthetic rows and reference rows from the same population, and scores
each candidate by how much denser the synthetic data is at it than the population is:
log p_synthetic(x) - log p_reference(x). A generator that memorised its training rows puts
extra mass on them, which a plain distance attack confuses with dense regions of the data.

Densities are Gaussian kernel estimates in the shared `DistanceEncoder` space over each
candidate's `NEIGHBOURS` nearest points: the synthetic one with a narrow bandwidth
(`BANDWIDTH_SHARE` of the holdout rows' typical nearest-neighbour spacing), so a copied or
nearly copied record makes a spike that no fresh row matches; the reference one smoother
(`REFERENCE_BANDWIDTH_SHARE`) and floored. The bandwidths were chosen on real tables (churn,
credit cards, Ames) so fresh real rows score AUC <= 0.53 and TPR@1%FPR <= 0.02, while 30%
copies or noisy copies of training rows score well above (tests/test_evaluation_leaks.py).

Members are a seeded training subset; non-members and reference rows are the two halves of the
holdout, and the halves swap roles (two folds), so every holdout row is scored
once against a reference it is not part of. The report gives the ROC AUC and the true-positive
rate at a 1% false-positive rate, the measure the MIDST challenge used on TabDDPM and TabSyn.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy.special import logsumexp
from sklearn.metrics import roc_auc_score, roc_curve

from evaluation.encoding import DistanceEncoder
from evaluation.neighbours import Points, nearest
from evaluation.privacy import TIE_TOL
from evaluation.threads import limit_threads
from synth.data.schema import TableSchema

NEIGHBOURS = 32
BANDWIDTH_SHARE = 0.2
REFERENCE_BANDWIDTH_SHARE = 0.5
REFERENCE_FLOOR_PERCENTILE = 10.0
"""The reference density is smoother (a sample of the population, not a spike per row) and
floored at this percentile over the candidates, so a candidate in a region the small reference
sample happens to miss does not outrank every copied record."""
TARGET_FPR = 0.01
MIN_NON_MEMBERS_FOR_TPR = 300
"""Below this many non-members, 1% false positives is under 3 rows: the TPR is not measured."""


class Domias(BaseModel):
    domias_auc: float
    domias_tpr_at_1pct_fpr: float | None
    n_members: int
    n_non_members: int
    bandwidth: float


def _log_density(data: Points, query: Points, h: float) -> np.ndarray:
    """log of a Gaussian KDE (up to the constant shared by every estimate with bandwidth `h`),
    summed over each query's nearest `NEIGHBOURS` data rows (the rest add nothing at this h)."""
    k = min(NEIGHBOURS, len(data))
    d = nearest(data, query, k)[1]
    return logsumexp(-(d**2) / (2.0 * h * h), axis=1) - math.log(len(data))


def _spacing(x: Points) -> float:
    """Median distance from each row to its nearest other row with a different position."""
    d = nearest(x, x, min(NEIGHBOURS, len(x)))[1]
    d = np.where(d > TIE_TOL, d, np.inf).min(axis=1)
    d = d[np.isfinite(d)]
    return float(np.median(d)) if d.size else 1.0


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float = TARGET_FPR) -> float:
    """True-positive rate at false-positive rate `fpr`, on the ROC curve's interpolation."""
    f, t, _ = roc_curve(labels, scores)
    return float(np.interp(fpr, f, t))


def domias(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    encoder: DistanceEncoder | None = None,
    *,
    seed: int = 0,
) -> Domias:
    """The attack's AUC and TPR at 1% FPR: ~0.5 and ~0.01 for a generator that memorised
    nothing."""
    with limit_threads(max(len(train), len(synthetic))):
        encoder = encoder or DistanceEncoder.fit(train, schema)
        rng = np.random.default_rng(seed)
        x_syn = encoder.points(synthetic)
        x_hold = encoder.points(holdout)
        halves = np.array_split(rng.permutation(len(x_hold)), 2)
        m = min(len(train), len(x_hold))
        x_mem = encoder.points(train.iloc[np.sort(rng.choice(len(train), m, replace=False))])
        mem_halves = np.array_split(np.arange(m), 2)
        if m < 2 or min(len(h) for h in halves) == 0 or len(x_syn) == 0:
            return Domias(
                domias_auc=math.nan, domias_tpr_at_1pct_fpr=math.nan, n_members=m,
                n_non_members=len(x_hold), bandwidth=math.nan,
            )  # fmt: skip
        h = BANDWIDTH_SHARE * _spacing(x_hold)
        scores, labels = [], []
        for fold in (0, 1):
            reference, non_members = x_hold.take(halves[1 - fold]), x_hold.take(halves[fold])
            members = x_mem.take(mem_halves[fold])
            candidates = Points.stack(members, non_members)
            log_ref = _log_density(
                reference, candidates, h * REFERENCE_BANDWIDTH_SHARE / BANDWIDTH_SHARE
            )
            log_ref = np.logaddexp(log_ref, np.percentile(log_ref, REFERENCE_FLOOR_PERCENTILE))
            score = _log_density(x_syn, candidates, h) - log_ref
            scores.append(score)
            labels.append(np.r_[np.ones(len(members)), np.zeros(len(non_members))])
    score, label = np.concatenate(scores), np.concatenate(labels)
    n_non = int((label == 0).sum())
    return Domias(
        domias_auc=float(roc_auc_score(label, score)),
        domias_tpr_at_1pct_fpr=tpr_at_fpr(label, score)
        if n_non >= MIN_NON_MEMBERS_FOR_TPR
        else None,
        n_members=int(label.sum()),
        n_non_members=n_non,
        bandwidth=h,
    )
