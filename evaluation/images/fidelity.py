"""Image fidelity: FID, precision/recall (k-NN manifolds) and the Classification Accuracy Score.

FID and precision/recall compare the synthetic embeddings with the real HOLDOUT embeddings, not
the train ones: the feature network was fitted on train (its train embeddings are tighter than
on unseen data), and a reference of train images would reward a generator that copies them.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.linalg
import torch
from pydantic import BaseModel

from evaluation.images.features import predict, train_cnn

PR_K = 3


# --------------------------------------------------------------------------- FID


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), with the usual numerical fixes: when
    the product is near-singular (the square root is not finite) `eps * I` is added to both
    covariances; a small imaginary part from rounding is dropped (a large one is an error)."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "matrix is singular" notices; handled below
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag)):.3g} in sqrtm")
        covmean = covmean.real
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)  # rounding can make FID(x, x) a tiny negative number


def fid(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two embedding sets ([N, D] each)."""
    if len(real) < 2 or len(synthetic) < 2:
        return math.nan
    a, b = np.asarray(real, dtype=np.float64), np.asarray(synthetic, dtype=np.float64)
    return frechet_distance(
        a.mean(axis=0), np.cov(a, rowvar=False), b.mean(axis=0), np.cov(b, rowvar=False)
    )


# --------------------------------------------------------------------------- precision / recall


def pairwise_distances(a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Euclidean distances [len(a), len(b)] in float64."""
    ta = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    tb = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64))
    out = [torch.cdist(ta[i : i + chunk], tb) for i in range(0, len(ta), chunk)]
    return torch.cat(out).numpy()


def knn_radii(x: np.ndarray, k: int = PR_K) -> np.ndarray:
    """Distance from each point to its k-th nearest other point of the same set."""
    d = pairwise_distances(x, x)
    np.fill_diagonal(d, np.inf)
    k = min(k, len(x) - 1)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def coverage_share(query: np.ndarray, ref: np.ndarray, k: int = PR_K) -> float:
    """Share of `query` points inside at least one k-NN ball of `ref` (Kynkaanniemi et al.)."""
    radii = knn_radii(ref, k)
    d = pairwise_distances(query, ref)
    return float(np.mean((d <= radii[None, :]).any(axis=1)))


def precision_recall(real: np.ndarray, synthetic: np.ndarray, k: int = PR_K) -> tuple[float, float]:
    """Improved precision/recall (Kynkaanniemi et al. 2019): precision = share of synthetic
    embeddings inside the real k-NN manifold, recall = share of real inside the synthetic one."""
    if len(real) <= k or len(synthetic) <= k:
        return math.nan, math.nan
    return coverage_share(synthetic, real, k), coverage_share(real, synthetic, k)


# --------------------------------------------------------------------------- CAS


class Cas(BaseModel):
    """Train-on-synthetic vs train-on-real accuracy on the real holdout (same CNN and budget)."""

    cas: float
    real_accuracy: float
    cas_ratio: float
    n_train_images: int
    """Images each classifier was trained on: min(synthetic, train) count, seeded subsamples."""


def classification_accuracy_score(
    train: np.ndarray,
    train_labels: np.ndarray,
    holdout: np.ndarray,
    holdout_labels: np.ndarray,
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray,
    n_classes: int,
    *,
    seed: int = 0,
    epochs: int = 6,
    min_steps: int = 60,
) -> Cas:
    """CAS (Ravuri & Vinyals 2019): a fresh `SmallCNN` trained on synthetic images and labels,
    accuracy on the real holdout; the same network, seed and budget trained on as many real
    train images (seeded subsample) gives `real_accuracy`. Labels are class indices 0..K-1."""
    rng = np.random.default_rng(seed)
    n = min(len(synthetic), len(train))
    s_idx = np.sort(rng.choice(len(synthetic), n, replace=False))
    t_idx = np.sort(rng.choice(len(train), n, replace=False))
    scores = []
    sets = ((synthetic[s_idx], synthetic_labels[s_idx]), (train[t_idx], train_labels[t_idx]))
    for x, y in sets:
        model, _ = train_cnn(x, y, n_classes, seed=seed, epochs=epochs, min_steps=min_steps)
        scores.append(float(np.mean(predict(model, holdout) == holdout_labels)))
    cas, real = scores
    ratio = cas / real if real > 0 else math.nan
    return Cas(cas=cas, real_accuracy=real, cas_ratio=ratio, n_train_images=n)
