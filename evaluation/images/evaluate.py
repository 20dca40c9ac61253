"""`evaluate_images`: every fidelity and privacy check on one synthetic image set, then the gate."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from pydantic import BaseModel

from evaluation.gate import GateResult, apply_gate
from evaluation.images.features import CheckpointFeatures, FeatureExtractor
from evaluation.images.fidelity import Cas, classification_accuracy_score, fid, precision_recall
from evaluation.images.privacy import ImagePrivacy, LossFn, image_privacy
from evaluation.table import json_safe
from synth.config import ImageThresholds
from synth.errors import InputDataError
from synth.progress import progress_bar

IMAGE_FIDELITY = ("fid", "precision", "recall", "cas_ratio")
MIN_IMAGES = 10
"""Each of train, holdout and synthetic needs at least this many images to be evaluated."""
MIN_CLASS_COUNT = 5
"""Real per-class counts below this are not written to the report (null / "<5")."""

DESCRIPTIONS: dict[str, str] = {
    "fid": "Frechet distance, synthetic vs real holdout, in the train-fitted CNN embedding.",
    "fid_real_baseline": (
        "Frechet distance, real holdout vs real train, in the same embedding: the FID two real "
        "image sets show, so fid's scale means something (a figure, not a check)."
    ),
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
    if len(arr) < MIN_IMAGES:
        raise InputDataError(
            f"{name} has {len(arr)} images; need at least {MIN_IMAGES} to evaluate"
        )
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


# --------------------------------------------------------------------------- parts


@dataclass
class ImageFrames:
    """The images the checks see: validated, subsampled once (seeded), labels as class
    indices. The feature network is fitted lazily, once, and shared by the parts that use it."""

    train: np.ndarray
    train_labels: np.ndarray | None
    holdout: np.ndarray
    holdout_labels: np.ndarray | None
    synthetic: np.ndarray
    synthetic_labels: np.ndarray | None
    synthetic_index: np.ndarray
    """Positions of the evaluated synthetic images in the caller's array."""
    class_names: list[str] | None
    class_counts: dict[str, dict[str, int]] | None
    n_synthetic_total: int
    seed: int
    loss_fn: LossFn | None = None
    features: FeatureExtractor | CheckpointFeatures | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])  # type: ignore[return-value]

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "n_train": len(self.train),
            "n_holdout": len(self.holdout),
            "n_synthetic": len(self.synthetic),
            "n_synthetic_total": self.n_synthetic_total,
        }

    @cached_property
    def extractor(self) -> FeatureExtractor | CheckpointFeatures:
        if self.features is not None:
            if self.features.shape != self.shape:
                raise InputDataError(
                    f"features expect {self.features.shape} images, these are {self.shape}"
                )
            return self.features
        n_classes = None if self.class_names is None else len(self.class_names)
        return FeatureExtractor.fit(
            self.train, self.train_labels, n_classes=n_classes, seed=self.seed
        )

    @cached_property
    def embeddings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, holdout, synthetic) in the feature space."""
        return tuple(self.extractor.embed(x) for x in (self.train, self.holdout, self.synthetic))  # type: ignore[return-value]


def prepare_images(
    train: np.ndarray,
    train_labels: np.ndarray | None,
    holdout: np.ndarray,
    holdout_labels: np.ndarray | None,
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray | None,
    *,
    class_names: Sequence[str] | None = None,
    loss_fn: LossFn | None = None,
    features: FeatureExtractor | CheckpointFeatures | None = None,
    seed: int = 0,
    max_images: int = 10_000,
) -> ImageFrames:
    """Check the three sets and subsample synthetic and holdout to `max_images` (seeded)."""
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
    return ImageFrames(
        train, train_labels, holdout, holdout_labels, synthetic, synthetic_labels,
        s_idx, names, class_counts, n_synthetic_total, seed, loss_fn, features,
    )  # fmt: skip


def _timed(part: Callable[[ImageFrames], dict[str, Any] | None]):
    """Record each part's wall time under "seconds": the report lists where time went."""

    def run(f: ImageFrames) -> dict[str, Any]:
        start = time.perf_counter()
        out = part(f)
        return {"seconds": round(time.perf_counter() - start, 3), "result": out}

    run.__name__ = part.__name__
    return run


@_timed
def _features(f: ImageFrames) -> dict[str, Any]:
    extractor = f.extractor
    f.embeddings  # noqa: B018 - embedding the three sets is this part's work
    return FeatureSpace(
        mode=extractor.mode,
        dim=extractor.dim,
        train_loss=extractor.train_loss,
        train_seconds=extractor.train_seconds,
    ).model_dump()


@_timed
def _fidelity(f: ImageFrames) -> dict[str, Any]:
    """FID and precision/recall of synthetic against the real holdout, and FID's real
    baseline: the holdout against the train set, in the same embedding."""
    e_train, e_hold, e_syn = f.embeddings
    precision, recall = precision_recall(e_hold, e_syn)
    return {
        "fid": fid(e_hold, e_syn),
        "fid_real_baseline": fid(e_train, e_hold),
        "precision": precision,
        "recall": recall,
    }


@_timed
def _cas(f: ImageFrames) -> dict[str, Any] | None:
    labels = (f.train_labels, f.holdout_labels, f.synthetic_labels)
    if f.class_names is None or any(x is None for x in labels):
        return None
    cas = classification_accuracy_score(
        f.train, f.train_labels, f.holdout, f.holdout_labels, f.synthetic, f.synthetic_labels,
        len(f.class_names), seed=f.seed,
    )  # fmt: skip
    return cas.model_dump()


@_timed
def _privacy(f: ImageFrames) -> dict[str, Any]:
    e_train, e_hold, e_syn = f.embeddings
    privacy = image_privacy(
        f.train, f.holdout, f.synthetic,
        train_embedding=e_train, holdout_embedding=e_hold, synthetic_embedding=e_syn,
        loss_fn=f.loss_fn, seed=f.seed,
    )  # fmt: skip
    # closest_synthetic indexes the caller's synthetic array, not the evaluated subsample
    privacy.closest_synthetic = [int(f.synthetic_index[i]) for i in privacy.closest_synthetic]
    return privacy.model_dump()


IMAGE_PARTS: dict[str, Callable[[ImageFrames], dict[str, Any]]] = {
    "features": _features,
    "fidelity": _fidelity,
    "cas": _cas,
    "privacy": _privacy,
}
"""The image metric groups, by name, in the order they run. `features` fits the feature
network that `fidelity` and `privacy` embed with, so the parts run together, in one process."""


def combine_image_parts(
    parts: Mapping[str, dict[str, Any] | None],
    frames: ImageFrames,
    thresholds: ImageThresholds,
    *,
    override: bool = False,
    override_reason: str | None = None,
    dp: dict[str, Any] | None = None,
) -> ImageEvaluation:
    """Assemble the parts' numbers (from `IMAGE_PARTS`) and apply the gate."""
    missing = [name for name in IMAGE_PARTS if name not in parts]
    if missing:
        raise ValueError(f"evaluation parts missing: {missing}")
    result = {name: (parts[name] or {}).get("result") for name in IMAGE_PARTS}
    timings = {name: float((parts[name] or {}).get("seconds", 0.0)) for name in IMAGE_PARTS}
    feature_space = FeatureSpace.model_validate(result["features"])
    fidelity = result["fidelity"] or {}
    cas = None if result["cas"] is None else Cas.model_validate(result["cas"])
    privacy = ImagePrivacy.model_validate(result["privacy"])
    px, emb = privacy.pixel, privacy.embedding
    metrics: dict[str, float | int | None] = {
        "fid": fidelity["fid"],
        "fid_real_baseline": fidelity.get("fid_real_baseline"),
        "precision": fidelity["precision"],
        "recall": fidelity["recall"],
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
        **frames.sizes,
    }
    gate = image_gate(
        metrics, thresholds, override=override, override_reason=override_reason, dp=dp
    )
    return ImageEvaluation(
        metrics=metrics,
        gate=gate,
        privacy=privacy,
        cas=cas,
        feature_space=feature_space,
        class_counts=frames.class_counts,
        image_shape=frames.shape,
        timings=timings,
        seed=frames.seed,
    )


def run_image_parts(
    frames: ImageFrames, names: Sequence[str], progress: bool = False
) -> dict[str, dict[str, Any]]:
    """The named parts on prepared frames, in registry order (the feature network is shared)."""
    unknown = [n for n in names if n not in IMAGE_PARTS]
    if unknown:
        raise ValueError(f"unknown evaluation parts {unknown}; parts: {list(IMAGE_PARTS)}")
    chosen = [n for n in IMAGE_PARTS if n in names]
    out = {}
    bar = progress_bar(total=len(chosen), desc="evaluate images", disable=not progress, leave=False)
    with bar:
        for name in chosen:
            bar.set_postfix_str(name)
            out[name] = IMAGE_PARTS[name](frames)
            bar.update()
    return out


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
    """Run every image check and the gate: the `IMAGE_PARTS` in turn, then the gate.

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
    frames = prepare_images(
        train, train_labels, holdout, holdout_labels, synthetic, synthetic_labels,
        class_names=class_names, loss_fn=loss_fn, features=features, seed=seed,
        max_images=max_images,
    )  # fmt: skip
    parts = run_image_parts(frames, list(IMAGE_PARTS), progress=progress)
    return combine_image_parts(
        parts, frames, thresholds, override=override, override_reason=override_reason
    )


def image_gate(
    metrics: dict[str, float | int | None],
    thresholds: ImageThresholds,
    *,
    override: bool = False,
    override_reason: str | None = None,
    dp: dict[str, Any] | None = None,
) -> GateResult:
    """`apply_gate` with the image check kinds (fidelity / privacy) and descriptions."""
    gated = {
        k: (None if v is None else float(v)) for k, v in metrics.items() if not k.startswith("n_")
    }
    gate = apply_gate(gated, thresholds, override=override, override_reason=override_reason, dp=dp)
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
