"""Image privacy: nearest-neighbour distances, near duplicates and membership inference.

Distances are measured in two spaces and both are reported:

* pixel space: L2 between flattened images divided by sqrt(C*H*W), i.e. the root-mean-square
  pixel difference in [0, 1]. The gate uses this one. Memorisation means reproducing a training
  image itself, and a pixel distance measures exactly that, independently of any learned model;
* the standardised embedding of `FeatureExtractor`. A network trained to classify maps every
  "3" close to every other "3": it is built to discard the very details that identify one
  record, so embedding distances mostly reflect class semantics and are reported for context.

Pixel distances do not see a copy that was shifted or flipped; the embedding figures help there.

Reference rates come from the real holdout, which the generator never saw: a synthetic set that
generalises sits as far from the train set as the holdout does (`nn_distance_ratio` ~ 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel
from sklearn.metrics import roc_auc_score

from evaluation.images.features import torch_threads

NEAR_DUPLICATE_QUANTILE = 0.001
"""The near-duplicate threshold is this quantile of real-to-train NN distances (0.1th pct)."""
HIST_BINS = 40
N_CLOSEST = 8

LossFn = Callable[[np.ndarray], np.ndarray]


class Histogram(BaseModel):
    edges: list[float]
    synthetic: list[int]
    holdout: list[int]


class DistanceStats(BaseModel):
    """Nearest-train-image distances in one space (pixel or embedding)."""

    space: Literal["pixel", "embedding"]
    median_synthetic: float
    median_holdout: float
    nn_distance_ratio: float
    near_duplicate_threshold: float
    near_duplicate_share: float
    holdout_near_duplicate_share: float


class ImagePrivacy(BaseModel):
    pixel: DistanceStats
    embedding: DistanceStats | None
    mia_auc: float
    mia_attack: Literal["loss", "distance"]
    mia_n: int
    """Members (train) and as many non-members (holdout) the attack scored."""
    histogram: Histogram
    """Pixel NN distances to train: synthetic vs holdout (aggregates only)."""
    closest_synthetic: list[int]
    """Indices (into the synthetic set) of the synthetic images closest to a train image,
    closest first."""
    closest_distances: list[float]


def flatten(images: np.ndarray) -> np.ndarray:
    """[N, C, H, W] -> [N, C*H*W] scaled by 1/sqrt(C*H*W): distances become RMS differences."""
    arr = np.asarray(images, dtype=np.float32)
    flat = arr.reshape(len(arr), -1)
    return flat / np.float32(math.sqrt(flat.shape[1]))


def nn_distances(
    query: np.ndarray, ref: np.ndarray, *, exclude_self: bool = False, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query row's nearest `ref` row, Euclidean.

    The search runs in float32 matrix products (chunked); the winning distance is then
    recomputed exactly from the difference, so an exact copy reads 0.0 and not rounding noise.
    `exclude_self`: `query` is `ref` and a row may not be its own neighbour.
    """
    q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))
    r = torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float32))
    if len(r) - int(exclude_self) < 1:
        raise ValueError("the reference set is empty")
    r_sq = (r * r).sum(dim=1)
    best = np.empty(len(q), dtype=np.int64)
    with torch_threads(None):
        for i in range(0, len(q), chunk):
            qb = q[i : i + chunk]
            d2 = (qb * qb).sum(dim=1, keepdim=True) + r_sq[None, :] - 2.0 * qb @ r.T
            if exclude_self:
                rows = torch.arange(len(qb))
                d2[rows, rows + i] = math.inf
            best[i : i + len(qb)] = d2.argmin(dim=1).numpy()
    diff = np.asarray(query, dtype=np.float64) - np.asarray(ref, dtype=np.float64)[best]
    return np.sqrt((diff * diff).sum(axis=1)), best


def distance_stats(
    space: Literal["pixel", "embedding"],
    train: np.ndarray,
    holdout: np.ndarray,
    synthetic: np.ndarray,
    *,
    seed: int = 0,
) -> tuple[DistanceStats, np.ndarray, np.ndarray]:
    """NN-distance figures for flattened rows (already in the chosen space).

    Near-duplicate threshold: the 0.1th percentile of the distances between DISTINCT real images
    (each holdout image to its nearest train image, and each of up to len(holdout) train images
    to its nearest other train image); exact real duplicates (distance 0) are left out. A
    synthetic image closer than that to a train image is closer than real images ever are.
    Returns the stats and the synthetic and holdout distances.
    """
    d_syn, _ = nn_distances(synthetic, train)
    d_ho, _ = nn_distances(holdout, train)
    rng = np.random.default_rng(seed)
    n_loo = min(len(train), max(len(holdout), 1))
    loo = np.sort(rng.choice(len(train), n_loo, replace=False))
    d_tr, _ = nn_distances(train[loo], np.concatenate([train[loo], np.delete(train, loo, 0)]),
                           exclude_self=True)  # fmt: skip
    real = np.concatenate([d_ho, d_tr])
    real = real[real > 0]
    threshold = float(np.quantile(real, NEAR_DUPLICATE_QUANTILE)) if real.size else 0.0
    med_syn, med_ho = float(np.median(d_syn)), float(np.median(d_ho))
    stats = DistanceStats(
        space=space,
        median_synthetic=med_syn,
        median_holdout=med_ho,
        nn_distance_ratio=med_syn / med_ho if med_ho > 0 else math.nan,
        near_duplicate_threshold=threshold,
        near_duplicate_share=float(np.mean(d_syn < threshold)),
        holdout_near_duplicate_share=float(np.mean(d_ho < threshold)),
    )
    return stats, d_syn, d_ho


def membership_auc(
    train: np.ndarray,
    holdout: np.ndarray,
    synthetic: np.ndarray,
    loss_fn: LossFn | None = None,
    *,
    seed: int = 0,
) -> tuple[float, Literal["loss", "distance"], int]:
    """ROC AUC of a membership-inference attack on equal-size train (member) and holdout
    (non-member) subsamples; 0.5 = the attacker cannot tell, 1 = it always can.

    With `loss_fn` (per-image denoising loss of the diffusion model; members are expected to
    have a LOWER loss) the score is -loss: the standard loss-threshold attack on the model
    itself. Without it the attacker only sees the synthetic set and scores each image by minus
    its pixel distance to the nearest synthetic image. AUC is not folded: < 0.5 means members
    look LESS like members, which is no leak.
    """
    rng = np.random.default_rng(seed)
    n = min(len(train), len(holdout))
    members = train[np.sort(rng.choice(len(train), n, replace=False))]
    others = holdout[np.sort(rng.choice(len(holdout), n, replace=False))]
    y = np.r_[np.ones(n), np.zeros(n)]
    if loss_fn is not None:
        scores = []
        for part in (members, others):
            loss = np.asarray(loss_fn(part), dtype=np.float64).reshape(-1)
            if loss.shape != (len(part),):
                raise ValueError(f"loss_fn returned {loss.shape[0]} losses for {len(part)} images")
            scores.append(-loss)
        score, attack = np.concatenate(scores), "loss"
    else:
        d, _ = nn_distances(flatten(np.concatenate([members, others])), flatten(synthetic))
        score, attack = -d, "distance"
    if not np.isfinite(score).all():
        return math.nan, attack, n  # type: ignore[return-value]
    return float(roc_auc_score(y, score)), attack, n  # type: ignore[return-value]


def _histogram(d_syn: np.ndarray, d_ho: np.ndarray) -> Histogram:
    hi = float(max(np.percentile(d_syn, 99.5), np.percentile(d_ho, 99.5), 1e-6))
    edges = np.linspace(0.0, hi, HIST_BINS + 1)
    return Histogram(
        edges=edges.tolist(),
        synthetic=np.histogram(np.clip(d_syn, 0, hi), edges)[0].tolist(),
        holdout=np.histogram(np.clip(d_ho, 0, hi), edges)[0].tolist(),
    )


def image_privacy(
    train: np.ndarray,
    holdout: np.ndarray,
    synthetic: np.ndarray,
    *,
    train_embedding: np.ndarray | None = None,
    holdout_embedding: np.ndarray | None = None,
    synthetic_embedding: np.ndarray | None = None,
    loss_fn: LossFn | None = None,
    seed: int = 0,
) -> ImagePrivacy:
    """Pixel (gated) and embedding (reported) NN distances, near duplicates, and the MIA."""
    pixel, d_syn, d_ho = distance_stats(
        "pixel", flatten(train), flatten(holdout), flatten(synthetic), seed=seed
    )
    embedding = None
    embeddings = (train_embedding, holdout_embedding, synthetic_embedding)
    if all(e is not None for e in embeddings):
        embedding, _, _ = distance_stats("embedding", *embeddings, seed=seed)  # type: ignore[arg-type]
    auc, attack, n = membership_auc(train, holdout, synthetic, loss_fn, seed=seed)
    order = np.argsort(d_syn, kind="stable")[:N_CLOSEST]
    return ImagePrivacy(
        pixel=pixel,
        embedding=embedding,
        mia_auc=auc,
        mia_attack=attack,
        mia_n=n,
        histogram=_histogram(d_syn, d_ho),
        closest_synthetic=order.tolist(),
        closest_distances=d_syn[order].tolist(),
    )
