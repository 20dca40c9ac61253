"""`evaluate_images`: every fidelity and privacy check on one synthetic image set, then the gate."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel
from tqdm.auto import tqdm

from evaluation.gate import GateResult, apply_gate
from evaluation.images.features import CheckpointFeatures, FeatureExtractor
from evaluation.images.fidelity import Cas, classification_accuracy_score, fid, precision_recall
from evaluation.images.privacy import ImagePrivacy, LossFn, image_privacy
from evaluation.table import json_safe
from synth.config import ImageThresholds
from synth.errors import InputDataError

IMAGE_FIDELITY = ("fid", "precision", "recall", "cas_ratio")
MIN_CLASS_COUNT = 5
"""Real per-class counts below this are not written to the report (null / "<5")."""

DESCRIPTIONS: dict[str, str] = {
    "fid": "Frechet distance, synthetic vs real holdout, in the train-fitted CNN embedding.",
    "precision": "Share of synthetic images inside the real k-NN (k=3) manifold; 1 = all.",
    "recall": "Share of real holdout images inside the synthetic k-NN manifold; 1 = all.",
    "cas_ratio": "Holdout accuracy of a CNN trained on synthetic / one trained on as much real.",
    "nn_distance_ratio": "Median pixel NN distance synthetic->train / holdout->train; ~1 ideal.",
    "near_duplicate_share": "Synthetic images closer to a train image than real images ever are.",
    "mia_auc": "Membership-inference ROC AUC, train vs holdout images; 0.5 = cannot tell.",
}


class FeatureSpace(BaseModel):
    mode: str
    dim: int
    train_loss: float
    train_seconds: float


class ImageEvaluation(BaseModel):
    """Everything measured on one synthetic image set. `to_dict` is the shareable part."""

    metrics: dict[str, float | int | None]
    gate: GateResult
    privacy: ImagePrivacy
    cas: Cas | None
    feature_space: FeatureSpace
    class_counts: dict[str, dict[str, int]] | None
    """class name -> {"train", "holdout", "synthetic"} counts (None without labels)."""
    image_shape: tuple[int, int, int]
    timings: dict[str, float]
    seed: int

    @property
    def mia_attack(self) -> str:
        return self.privacy.mia_attack

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: metrics, gate, distance aggregates and counts; no pixel data and
        no train indices. Real per-class counts below MIN_CLASS_COUNT are written as null."""
        p = self.privacy
        counts = None
        if self.class_counts is not None:
            counts = {
                name: {
                    k: (None if k != "synthetic" and 0 < v < MIN_CLASS_COUNT else v)
                    for k, v in c.items()
                }
                for name, c in self.class_counts.items()
            }
        out = {
            "metrics": self.metrics,
            "gate": self.gate.to_dict(),
            "feature_space": self.feature_space.model_dump(),
            "cas": None if self.cas is None else self.cas.model_dump(),
            "privacy": {
                "gated_space": "pixel",
                "pixel": p.pixel.model_dump(),
                "embedding": None if p.embedding is None else p.embedding.model_dump(),
                "mia_attack": p.mia_attack,
                "mia_n": p.mia_n,
                "nn_distance_histogram": p.histogram.model_dump(),
                "closest_synthetic": p.closest_synthetic,
                "closest_distances": p.closest_distances,
            },
            "class_counts": counts,
            "image_shape": list(self.image_shape),
            "timings": self.timings,
            "seed": self.seed,
        }
        return json_safe(out)


# --------------------------------------------------------------------------- inputs


def _check_images(name: str, images: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3) or arr.shape[2] != arr.shape[3]:
        raise InputDataError(f"{name} images must be [N, C, H, W] with C in (1, 3), H == W; "
                             f"got {arr.shape}")  # fmt: skip
    if shape is not None and arr.shape[1:] != shape:
        raise InputDataError(f"{name} images are {arr.shape[1:]}, train images are {shape}")
    if len(arr) < 10:
        raise InputDataError(f"{name} has {len(arr)} images; need at least 10 to evaluate")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise InputDataError(f"{name} images contain NaN or inf")
    if arr.min() < -1e-3 or arr.max() > 1 + 1e-3:
        raise InputDataError(f"{name} images must be scaled to [0, 1] "
                             f"(range {arr.min():.3g}..{arr.max():.3g})")  # fmt: skip
    return np.clip(arr, 0.0, 1.0)


def _check_labels(name: str, labels: np.ndarray | None, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    arr = np.asarray(labels).reshape(-1)
    if len(arr) != n:
        raise InputDataError(f"{name} has {len(arr)} labels for {n} images")
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputDataError(f"{name} labels must be integers, got {arr.dtype}")
    return arr.astype(np.int64)


def _sample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= k else np.sort(rng.choice(n, k, replace=False))


def _class_index(
    labels: Sequence[np.ndarray | None], class_names: Sequence[str] | None
) -> tuple[list[str], dict[int, int]]:
    """Class names and label value -> index 0..K-1. With `class_names`, labels are indices into
    it; otherwise the sorted label values seen in any set are the classes."""
    seen = np.unique(np.concatenate([x for x in labels if x is not None]))
    if class_names is not None:
        bad = seen[(seen < 0) | (seen >= len(class_names))]
        if bad.size:
            raise InputDataError(f"labels {bad[:5].tolist()} are not indices into class_names "
                                 f"({len(class_names)} names)")  # fmt: skip
        return [str(c) for c in class_names], {i: i for i in range(len(class_names))}
    return [str(v) for v in seen], {int(v): i for i, v in enumerate(seen)}


def _remap(labels: np.ndarray | None, index: dict[int, int]) -> np.ndarray | None:
    if labels is None:
        return None
    return np.array([index[int(v)] for v in labels], dtype=np.int64)


# --------------------------------------------------------------------------- evaluation


def evaluate_images(
    train: np.ndarray,
    train_labels: np.ndarray | None,
    holdout: np.ndarray,
    holdout_labels: np.ndarray | None,
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray | None,
    thresholds: ImageThresholds,
    *,
    class_names: Sequence[str] | None = None,
    loss_fn: LossFn | None = None,
    seed: int = 0,
    progress: bool = True,
    override: bool = False,
    override_reason: str | None = None,
    max_images: int = 10_000,
    features: FeatureExtractor | CheckpointFeatures | None = None,
) -> ImageEvaluation:
    """Run every image check and the gate.

    Images: float [N, C, H, W] in [0, 1], C = 1 or 3, same shape in all three sets. Labels:
    integer class ids (indices into `class_names` when given) or None.

    * features: a small CNN fitted on the whole real train set (classifier with train labels,
      autoencoder without; see `features.py`);
    * fidelity: FID and precision/recall of synthetic vs the real HOLDOUT embeddings; CAS when
      train, holdout and synthetic all have labels, else `cas`/`cas_ratio` are None (n/a);
    * privacy: pixel-space NN distances to the whole train set (a copy of any train image must
      be found), near duplicates, and a membership-inference AUC: loss-based with `loss_fn`
      (per-image diffusion loss; lower = member), else distance-to-synthetic based.

    Synthetic and holdout are subsampled (seeded) to `max_images`. `features`: reuse an
    extractor already fitted on this same train set (e.g. when comparing several synthetic sets
    or checkpoints) instead of fitting one.
    """
    train = _check_images("train", train, None)
    shape = train.shape[1:]
    holdout = _check_images("holdout", holdout, shape)
    synthetic = _check_images("synthetic", synthetic, shape)
    train_labels = _check_labels("train", train_labels, len(train))
    holdout_labels = _check_labels("holdout", holdout_labels, len(holdout))
    synthetic_labels = _check_labels("synthetic", synthetic_labels, len(synthetic))

    rng = np.random.default_rng(seed)
    n_synthetic_total = len(synthetic)
    s_idx, h_idx = _sample(len(synthetic), max_images, rng), _sample(len(holdout), max_images, rng)
    synthetic = synthetic[s_idx]
    synthetic_labels = None if synthetic_labels is None else synthetic_labels[s_idx]
    holdout = holdout[h_idx]
    holdout_labels = None if holdout_labels is None else holdout_labels[h_idx]

    all_labels = (train_labels, holdout_labels, synthetic_labels)
    names: list[str] | None = None
    class_counts = None
    if any(x is not None for x in all_labels):
        names, index = _class_index(all_labels, class_names)
        train_labels, holdout_labels, synthetic_labels = (_remap(x, index) for x in all_labels)
        parts = dict(
            zip(
                ("train", "holdout", "synthetic"),
                (train_labels, holdout_labels, synthetic_labels),
                strict=True,
            )
        )
        class_counts = {
            name: {part: int(np.sum(y == i)) for part, y in parts.items() if y is not None}
            for i, name in enumerate(names)
        }

    steps = ["features", "FID / precision-recall", "CAS", "privacy"]
    bar = tqdm(total=len(steps), desc="evaluate images", disable=not progress, leave=False)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def done(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now
        bar.update()

    try:
        bar.set_postfix_str(steps[0])
        if features is not None and features.shape != shape:
            raise InputDataError(f"features expect {features.shape} images, these are {shape}")
        extractor = features or FeatureExtractor.fit(
            train, train_labels, n_classes=None if names is None else len(names), seed=seed
        )
        e_train, e_hold, e_syn = (extractor.embed(x) for x in (train, holdout, synthetic))
        done("features")
        bar.set_postfix_str(steps[1])
        fid_value = fid(e_hold, e_syn)
        precision, recall = precision_recall(e_hold, e_syn)
        done("fidelity")
        bar.set_postfix_str(steps[2])
        cas = None
        if names is not None and all(x is not None for x in all_labels):
            assert train_labels is not None and holdout_labels is not None
            assert synthetic_labels is not None
            cas = classification_accuracy_score(
                train, train_labels, holdout, holdout_labels, synthetic, synthetic_labels,
                len(names), seed=seed,
            )  # fmt: skip
        done("cas")
        bar.set_postfix_str(steps[3])
        privacy = image_privacy(
            train, holdout, synthetic,
            train_embedding=e_train, holdout_embedding=e_hold, synthetic_embedding=e_syn,
            loss_fn=loss_fn, seed=seed,
        )  # fmt: skip
        # closest_synthetic indexes the caller's synthetic array, not the evaluated subsample
        privacy.closest_synthetic = [int(s_idx[i]) for i in privacy.closest_synthetic]
        done("privacy")
    finally:
        bar.close()

    px, emb = privacy.pixel, privacy.embedding
    metrics: dict[str, float | int | None] = {
        "fid": fid_value,
        "precision": precision,
        "recall": recall,
        "cas": None if cas is None else cas.cas,
        "real_accuracy": None if cas is None else cas.real_accuracy,
        "cas_ratio": None if cas is None else cas.cas_ratio,
        "nn_distance_ratio": px.nn_distance_ratio,
        "near_duplicate_share": px.near_duplicate_share,
        "holdout_near_duplicate_share": px.holdout_near_duplicate_share,
        "near_duplicate_threshold": px.near_duplicate_threshold,
        "median_nn_distance_synthetic": px.median_synthetic,
        "median_nn_distance_holdout": px.median_holdout,
        "nn_distance_ratio_embedding": None if emb is None else emb.nn_distance_ratio,
        "near_duplicate_share_embedding": None if emb is None else emb.near_duplicate_share,
        "mia_auc": privacy.mia_auc,
        "n_train": len(train),
        "n_holdout": len(holdout),
        "n_synthetic": len(synthetic),
        "n_synthetic_total": n_synthetic_total,
    }
    gate = image_gate(metrics, thresholds, override=override, override_reason=override_reason)
    return ImageEvaluation(
        metrics=metrics,
        gate=gate,
        privacy=privacy,
        cas=cas,
        feature_space=FeatureSpace(
            mode=extractor.mode,
            dim=extractor.dim,
            train_loss=extractor.train_loss,
            train_seconds=extractor.train_seconds,
        ),
        class_counts=class_counts,
        image_shape=shape,  # type: ignore[arg-type]
        timings=timings,
        seed=seed,
    )


def image_gate(
    metrics: dict[str, float | int | None],
    thresholds: ImageThresholds,
    *,
    override: bool = False,
    override_reason: str | None = None,
) -> GateResult:
    """`apply_gate` with the image check kinds (fidelity / privacy) and descriptions."""
    gated = {
        k: (None if v is None else float(v)) for k, v in metrics.items() if not k.startswith("n_")
    }
    gate = apply_gate(gated, thresholds, override=override, override_reason=override_reason)
    checks = [
        c.model_copy(
            update={
                "kind": "fidelity" if c.name in IMAGE_FIDELITY else "privacy",
                "description": DESCRIPTIONS.get(c.name, c.description),
            }
        )
        for c in gate.checks
    ]
    return gate.model_copy(update={"checks": checks})
