"""The UNet image synthesizer's contract, on scikit-learn's real digits (8x8, 10 classes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from synth.config import ImageModelSpec, TrainingSpec
from synth.errors import InputDataError, NotFittedError
from synth.images.io import ImageSet
from synth.images.synthesizer import ImageDiffusionSynthesizer

pytestmark = pytest.mark.slow
SMALL = ImageModelSpec(block_out_channels=[16, 32])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(images))
    train, holdout = order[:1200], order[1200:]
    return images[train], d.target[train], images[holdout], d.target[holdout]


def _training(steps: int, **kw) -> TrainingSpec:
    return TrainingSpec(steps=steps, batch_size=64, lr=2e-3, warmup_steps=5, ema_decay=0.99, **kw)


@pytest.fixture(scope="module")
def fitted(digits):
    x, y, _, _ = digits
    names = [str(i) for i in range(10)]
    train = ImageSet(images=x, labels=y, class_names=names)
    return ImageDiffusionSynthesizer(SMALL, _training(250), seed=0).fit(train, progress=False)


def test_constructor_only_stores_parameters():
    s = ImageDiffusionSynthesizer(SMALL, _training(5), seed=3)
    assert not [k for k in vars(s) if k.endswith("_")]
    with pytest.raises(NotFittedError):
        s.sample(4)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 8, 8), np.float32),
        np.zeros((4, 1, 8, 6), np.float32),
        np.full((4, 1, 8, 8), 2.0, np.float32),
    ],
)
def test_bad_images_are_rejected(bad):
    with pytest.raises(InputDataError):
        ImageDiffusionSynthesizer(SMALL, _training(1)).fit(ImageSet(bad, None, []))


def test_samples_are_images_with_requested_label_counts(fitted):
    images, labels = fitted.sample(conditions={"3": 7, "8": 5}, num_inference_steps=10)
    assert images.shape == (12, 1, 8, 8) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert sorted(labels.tolist()) == [3] * 7 + [8] * 5
    with pytest.raises(InputDataError, match="not a class"):
        fitted.sample(conditions={"eleven": 2})


def test_samples_carry_the_classes(fitted, digits):
    """Classification Accuracy Score: a classifier trained on synthetic digits reads real ones."""
    _, _, xh, yh = digits
    images, labels = fitted.sample(600, num_inference_steps=20, guidance_scale=2.0, seed=1)
    clf = LogisticRegression(max_iter=3000).fit(images.reshape(len(images), -1), labels)
    cas = clf.score(xh.reshape(len(xh), -1), yh)
    assert cas > 0.6, cas  # chance is 0.1; pure noise or unconditional output scores ~0.1


def test_save_load_round_trip_without_pickle(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    files = {p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*")}
    assert {
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        "synthesizer.json",
    } <= files
    assert not [f for f in files if f.endswith((".pkl", ".bin", ".pt", ".pth"))]
    loaded = ImageDiffusionSynthesizer.load(tmp_path / "m")
    a, la = fitted.sample(6, seed=5, num_inference_steps=5)
    b, lb = loaded.sample(6, seed=5, num_inference_steps=5)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert (la == lb).all()


def test_fine_tunes_from_a_local_pretrained_checkpoint(digits, tmp_path):
    x, y, _, _ = digits
    pre = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=16,
        add_attention=False,
    )
    pre.save_pretrained(tmp_path / "pipeline" / "unet")  # a pipeline-style folder
    spec = ImageModelSpec(block_out_channels=[16, 32], pretrained=tmp_path / "pipeline")
    s = ImageDiffusionSynthesizer(
        spec, TrainingSpec(steps=1, batch_size=8, lr=1e-12, warmup_steps=0, ema_decay=0.0)
    )
    s.fit(ImageSet(x[:64], y[:64], []), progress=False)
    assert torch.allclose(s.unet_.conv_in.weight, pre.conv_in.weight, atol=1e-6)  # started there
    assert s.unet_.config.num_class_embeds == 11  # 10 classes + the null class, added on top
    # The added embedding is initialised, never left as uninitialised memory (NaN seen before).
    emb = s.unet_.class_embedding.weight
    assert torch.isfinite(emb).all() and 0.5 < float(emb.std()) < 2.0
    with pytest.raises(InputDataError, match="no UNet2DModel"):
        ImageDiffusionSynthesizer(ImageModelSpec(pretrained=tmp_path)).fit(
            ImageSet(x[:8], None, [])
        )


def test_training_resumes_from_its_checkpoint(digits, tmp_path):
    x, y, _, _ = digits
    ckpt = tmp_path / "ckpt"
    ImageDiffusionSynthesizer(SMALL, _training(6, checkpoint_every=3)).fit(
        ImageSet(x[:128], y[:128], []), checkpoint_dir=ckpt, progress=False
    )
    assert json.loads((ckpt / "training_state" / "state.json").read_text())["step"] == 6
    ImageDiffusionSynthesizer(SMALL, _training(12, checkpoint_every=3)).fit(
        ImageSet(x[:128], y[:128], []), checkpoint_dir=ckpt, progress=False
    )
    assert json.loads((ckpt / "training_state" / "state.json").read_text())["step"] == 12


def test_denoising_loss_is_per_image_and_deterministic(fitted, digits):
    x, y, _, _ = digits
    a = fitted.denoising_loss(x[:20], y[:20])
    b = fitted.denoising_loss(x[:20], y[:20])
    assert a.shape == (20,) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b)


def test_a_class_of_fewer_than_k_images_is_never_sampled(digits, tmp_path):
    """Digit 7 keeps 3 training images (k = 5): it trains as the null class, its name is not
    saved with the model, it is never drawn, and asking for it is refused."""
    from synth.config import PrivacySpec

    x, y, _, _ = digits
    keep = np.flatnonzero(y != 7).tolist() + np.flatnonzero(y == 7)[:3].tolist()
    names = [f"digit-{i}" for i in range(10)]
    train = ImageSet(images=x[keep], labels=y[keep], class_names=names)
    privacy = PrivacySpec(rare_category_min_rows=5, rare_category_label="<protected>")
    s = ImageDiffusionSynthesizer(SMALL, _training(3), seed=0, privacy=privacy)
    s.fit(train, progress=False)
    assert s.protected_classes_ == [7]
    assert s.class_names_[7] == "<protected>" and s.label_counts_[7] == 0
    _, labels = s.sample(300, num_inference_steps=2)
    assert 7 not in set(labels.tolist()) and len(set(labels.tolist())) == 9
    with pytest.raises(InputDataError, match="not a class"):
        s.sample(conditions={"digit-7": 2}, num_inference_steps=2)
    with pytest.raises(InputDataError, match="protected class"):
        s.sample(conditions={"<protected>": 2}, num_inference_steps=2)
    s.save(tmp_path / "model")
    saved = b"".join(p.read_bytes() for p in (tmp_path / "model").rglob("*.json"))
    assert b"digit-7" not in saved and b"digit-6" in saved
    assert ImageDiffusionSynthesizer.load(tmp_path / "model").protected_classes_ == [7]
