"""Image-set evaluation on real images: scikit-learn's digits (1,797 8x8 images, 10 classes),
upscaled to 16x16 and split (seeded) into train 900 / holdout 450 / fresh 447 (image_fixtures).

`fresh` is real data the "generator" never saw: what a perfect synthesiser would emit, so it
must pass the gate with the default `ImageThresholds`. Leaky and broken sets must fail.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from image_fixtures import N_HOLDOUT, SIZE, Digits, load_split
from PIL import Image

from evaluation.gate import DP_FIELDS
from evaluation.images import FeatureExtractor, ImageEvaluation, evaluate_images, image_gate
from evaluation.images.fidelity import fid, precision_recall
from evaluation.images.privacy import membership_auc
from evaluation.images.report import (
    RARE_CLASS,
    class_labels,
    fid_html,
    png_bytes,
    write_image_report,
)
from synth.config import ImageThresholds
from synth.errors import InputDataError

PLANTED_SHARE = 0.3
CHECKS = [f.rpartition("_")[0] for f in ImageThresholds.model_fields if f not in DP_FIELDS]


def _key(image: np.ndarray) -> bytes:
    return hashlib.sha1(np.ascontiguousarray(image, dtype=np.float32).tobytes()).digest()


@pytest.fixture(scope="module")
def digits() -> Digits:
    return load_split()


@pytest.fixture(scope="module")
def features(digits: Digits) -> FeatureExtractor:
    """One classifier feature space for every labelled run on this train set (saves refits)."""
    return FeatureExtractor.fit(digits.train, digits.train_labels, n_classes=10, seed=0)


def _evaluate(
    digits: Digits, synthetic: np.ndarray, labels: np.ndarray | None, **kw
) -> ImageEvaluation:
    has = labels is not None
    return evaluate_images(
        digits.train, digits.train_labels if has else None,
        digits.holdout, digits.holdout_labels if has else None,
        synthetic, labels, ImageThresholds(), progress=False, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def fresh_eval(digits: Digits, features: FeatureExtractor) -> ImageEvaluation:
    return _evaluate(digits, digits.fresh, digits.fresh_labels, features=features)


@pytest.fixture(scope="module")
def planted(digits: Digits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fresh images with 30% of them (random positions) replaced by train images."""
    rng = np.random.default_rng(1)
    n = len(digits.fresh)
    k = int(PLANTED_SHARE * n)
    where = rng.choice(n, k, replace=False)
    source = rng.choice(len(digits.train), k, replace=False)
    images, labels = digits.fresh.copy(), digits.fresh_labels.copy()
    images[where], labels[where] = digits.train[source], digits.train_labels[source]
    return images, labels, where


def memorising_loss(digits: Digits):  # noqa: ANN201
    """A diffusion model's per-image loss that is lower on its training images."""
    members = {_key(x) for x in digits.train}

    def loss_fn(images: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(len(images))
        is_member = np.array([_key(x) in members for x in images])
        return 0.30 - 0.15 * is_member + rng.normal(0, 0.05, len(images))

    return loss_fn


@pytest.fixture(scope="module")
def planted_eval(
    digits: Digits, features: FeatureExtractor, planted: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> ImageEvaluation:
    images, labels, _ = planted
    return _evaluate(digits, images, labels, features=features, loss_fn=memorising_loss(digits))


# --------------------------------------------------------------------------- gate outcomes


def test_fresh_real_images_pass(fresh_eval: ImageEvaluation) -> None:
    m = fresh_eval.metrics
    assert fresh_eval.gate.passed and not fresh_eval.gate.overridden, fresh_eval.gate.failures()
    assert [c.name for c in fresh_eval.gate.checks] == CHECKS
    assert all(c.applicable for c in fresh_eval.gate.checks)
    assert m["fid"] < 10
    # FID's real baseline (holdout vs train) is a figure, not a check, on the same scale
    assert 0 < m["fid_real_baseline"] < 10 and m["fid"] < 3 * m["fid_real_baseline"]
    assert m["precision"] > 0.8 and m["recall"] > 0.8
    assert m["real_accuracy"] > 0.9 and 0.95 < m["cas_ratio"] < 1.05
    assert 0.9 < m["nn_distance_ratio"] < 1.1
    assert m["near_duplicate_share"] <= 0.01
    assert fresh_eval.mia_attack == "distance" and 0.4 < m["mia_auc"] < 0.6
    kinds = {c.name: c.kind for c in fresh_eval.gate.checks}
    assert kinds["fid"] == kinds["cas_ratio"] == "fidelity"
    assert kinds["near_duplicate_share"] == kinds["mia_auc"] == "privacy"
    assert all(c.description for c in fresh_eval.gate.checks)
    assert fresh_eval.feature_space.mode == "classifier"


def test_planted_copies_fail(
    fresh_eval: ImageEvaluation,
    planted_eval: ImageEvaluation,
    planted: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    m = planted_eval.metrics
    assert not planted_eval.gate.passed
    failed = {c.name for c in planted_eval.gate.checks if not c.passed}
    assert "near_duplicate_share" in failed
    assert m["near_duplicate_share"] >= PLANTED_SHARE - 0.01  # every copy is found
    assert m["nn_distance_ratio"] < fresh_eval.metrics["nn_distance_ratio"] - 0.08
    # the memorising model's loss gives the loss-based attack away
    assert planted_eval.mia_attack == "loss" and m["mia_auc"] > 0.9 and "mia_auc" in failed
    # the closest synthetic images are planted copies, at distance 0
    _, _, where = planted
    assert set(planted_eval.privacy.closest_synthetic) <= set(where.tolist())
    assert max(planted_eval.privacy.closest_distances) == 0.0


def test_noise_fails_fidelity(
    digits: Digits, features: FeatureExtractor, fresh_eval: ImageEvaluation
) -> None:
    noise = np.random.default_rng(2).random(digits.fresh.shape, dtype=np.float32)
    ev = _evaluate(digits, noise, digits.fresh_labels, features=features)
    failed = {c.name for c in ev.gate.checks if not c.passed}
    assert {"fid", "precision", "cas_ratio"} <= failed
    assert ev.metrics["fid"] > 100 and ev.metrics["cas_ratio"] < 0.5
    # the baseline compares real sets only: the same whatever the synthetic images are
    baseline = ev.metrics["fid_real_baseline"]
    assert baseline == pytest.approx(fresh_eval.metrics["fid_real_baseline"])
    assert ev.metrics["fid"] > 20 * baseline


def test_blank_fails_without_labels(digits: Digits) -> None:
    """No labels at all: autoencoder features, CAS not applicable, fidelity still fails."""
    ev = _evaluate(digits, np.zeros_like(digits.fresh), None)
    assert ev.feature_space.mode == "autoencoder"
    assert ev.cas is None and ev.metrics["cas"] is None and ev.gate.not_applicable == ["cas_ratio"]
    failed = {c.name for c in ev.gate.checks if not c.passed}
    assert {"fid", "precision"} <= failed and not ev.gate.passed
    assert ev.class_counts is None


def test_override_passes_but_keeps_failures(planted_eval: ImageEvaluation) -> None:
    gate = image_gate(planted_eval.metrics, ImageThresholds(), override=True, override_reason="x")
    assert gate.passed and gate.overridden and gate.failures()


# --------------------------------------------------------------------------- known answers


def test_fid_known_answers() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 16))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-6)
    shifts = [0.0, 0.25, 0.5, 1.0]
    values = [fid(x, x + s) for s in shifts]
    assert values == sorted(values) and values[-1] > values[1] > 0
    # a pure shift leaves the covariances equal: FID = ||shift||^2
    assert values[-1] == pytest.approx(16 * 1.0**2, rel=1e-3)
    assert fid(x, rng.normal(size=(500, 16))) < 1.0  # same distribution, finite-sample bias


def test_precision_recall_known_answers() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    assert precision_recall(x, x) == (1.0, 1.0)
    p, r = precision_recall(x, rng.normal(size=(300, 8)))
    assert p > 0.6 and r > 0.6
    assert precision_recall(x, x + 100.0) == (0.0, 0.0)
    # synthetic collapsed onto one real mode: precise but no recall
    p, r = precision_recall(x, x[:1] + rng.normal(scale=0.01, size=(300, 8)))
    assert p == 1.0 and r < 0.1


def test_membership_auc_loss_based(digits: Digits) -> None:
    auc, attack, n = membership_auc(
        digits.train, digits.holdout, digits.fresh, memorising_loss(digits)
    )
    assert attack == "loss" and n == N_HOLDOUT and auc > 0.9

    def random_loss(images: np.ndarray) -> np.ndarray:
        return np.random.default_rng(len(images) + int(images.sum())).random(len(images))

    auc, _, _ = membership_auc(digits.train, digits.holdout, digits.fresh, random_loss)
    assert 0.4 < auc < 0.6
    with pytest.raises(ValueError, match="losses"):
        membership_auc(digits.train, digits.holdout, digits.fresh, lambda x: np.zeros(3))


def test_feature_extractor_is_seeded(digits: Digits) -> None:
    def fit() -> np.ndarray:
        fe = FeatureExtractor.fit(
            digits.train[:200], digits.train_labels[:200], n_classes=10, seed=3, min_steps=4
        )
        return fe.embed(digits.holdout[:50])

    state = torch.random.get_rng_state()
    a, b = fit(), fit()
    assert a.shape == (50, 128) and np.array_equal(a, b)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched


def test_bad_inputs_are_rejected(digits: Digits) -> None:
    with pytest.raises(InputDataError, match=r"\[0, 1\]"):
        _evaluate(digits, digits.fresh * 255, None)
    with pytest.raises(InputDataError, match="train images are"):
        _evaluate(digits, digits.fresh[:, :, :8, :8], None)
    with pytest.raises(InputDataError, match="labels"):
        _evaluate(digits, digits.fresh, digits.fresh_labels[:10])


# --------------------------------------------------------------------------- report


def _embedded_pngs(page: str) -> list[np.ndarray]:
    found = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(b)))) for b in found]


def test_report_files_and_no_train_images(
    tmp_path: Path,
    digits: Digits,
    planted_eval: ImageEvaluation,
    planted: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    images, _, _ = planted
    json_path, html_path = write_image_report(
        planted_eval, tmp_path, train=digits.train, synthetic=images, extra={"job": "digits"}
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json"]
    payload = json.loads(json_path.read_text())
    assert [c["name"] for c in payload["gate"]["checks"]] == CHECKS
    assert set(CHECKS) <= set(payload["metrics"]) and payload["extra"] == {"job": "digits"}
    assert payload["privacy"]["mia_attack"] == "loss" and not payload["gate"]["passed"]
    assert len(json_path.read_text()) < 50_000  # aggregates only, no pixel data
    assert payload["metrics"]["fid_real_baseline"] == planted_eval.metrics["fid_real_baseline"]

    page = html_path.read_text()
    assert "GATE FAILED" in page and "near_duplicate_share" in page
    assert fid_html(planted_eval.metrics) in page
    assert re.search(r"FID [\d.]+</strong> \(real holdout vs real train: [\d.]+\)", page)
    assert 'class="label"' not in page  # no labels given, none shown
    pngs = _embedded_pngs(page)
    assert len(pngs) > 20  # sample grid, closest images, histogram
    assert "withheld" in page  # planted copies in the grid / closest panel are not drawn
    for x in digits.train:
        assert base64.b64encode(png_bytes(x)).decode() not in page
    train_pixels = {np.clip(np.round(x[0] * 255), 0, 255).astype(np.uint8).tobytes()
                    for x in digits.train}  # fmt: skip
    assert not any(p.tobytes() in train_pixels for p in pngs if p.shape == (SIZE, SIZE))


def test_report_shows_synthetic_samples(
    tmp_path: Path, digits: Digits, fresh_eval: ImageEvaluation
) -> None:
    _, html_path = write_image_report(
        fresh_eval, tmp_path, train=digits.train, synthetic=digits.fresh,
        synthetic_labels=digits.fresh_labels,
    )  # fmt: skip
    page = html_path.read_text()
    assert "GATE PASSED" in page
    samples = [p for p in _embedded_pngs(page) if p.shape == (SIZE, SIZE)]
    assert len(samples) >= 48
    # every thumbnail over its own class label (the label values: no class_names given)
    captions = re.findall(r'<span class="label">([^<]*)</span><span>#(\d+) d=', page)
    assert len(captions) >= 48
    assert all(name == str(digits.fresh_labels[int(i)]) for name, i in captions)
    assert len({name for name, _ in captions}) > 5
    counts = json.loads((tmp_path / "report.json").read_text())["class_counts"]
    assert sum(c["synthetic"] for c in counts.values()) == len(digits.fresh)


def test_thumbnail_labels_name_classes_and_hide_rare_ones(fresh_eval: ImageEvaluation) -> None:
    """A label is an index into class_names (or, without them, the name is its value); a class
    with fewer than MIN_CLASS_COUNT train images is not named under a thumbnail."""
    counts = {str(v): {"train": 50, "holdout": 20, "synthetic": 9} for v in range(10)}
    counts["7"] = {"train": 3, "holdout": 0, "synthetic": 4}  # rare in train
    ev = fresh_eval.model_copy(update={"class_counts": counts})
    labels = np.array([0, 7, 9, 7])
    assert class_labels(ev, labels, None) == ["0", RARE_CLASS, "9", RARE_CLASS]
    names = [f"class-{v}" for v in range(10)]
    renamed = {f"class-{k}": v for k, v in counts.items()}
    ev = fresh_eval.model_copy(update={"class_counts": renamed})
    assert class_labels(ev, labels, names) == ["class-0", RARE_CLASS, "class-9", RARE_CLASS]
    assert class_labels(ev, None, names) is None
