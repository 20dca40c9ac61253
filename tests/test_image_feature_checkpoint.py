"""FID in the feature space of a local TorchScript checkpoint (the 'local Inception' option)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from evaluation.images.evaluate import evaluate_images
from evaluation.images.features import CheckpointFeatures
from synth.config import ImageThresholds
from synth.errors import InputDataError


class TinyInceptionLike(nn.Module):
    """Stands in for an exported Inception pool layer: 3 channels in, resized input, D out."""

    def __init__(self):
        super().__init__()
        self.input_size = 16  # read by CheckpointFeatures: images are resized to this
        self.in_channels = 3  # and grey images repeated to 3 channels
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 24, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 3 and x.shape[-1] == 16
        return self.pool(torch.relu(self.conv(x))).flatten(1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("features") / "inception_like.pt"
    torch.jit.script(TinyInceptionLike()).save(str(path))
    return path


def test_checkpoint_features_drive_fid(checkpoint):
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(x))
    tr, ho, fr = order[:900], order[900:1350], order[1350:]
    feats = CheckpointFeatures.load(checkpoint, (1, 8, 8))
    assert feats.dim == 96 and feats.mode == "checkpoint"
    noise = np.random.default_rng(1).random(x[fr].shape, dtype=np.float32)
    kw = {"class_names": [str(i) for i in range(10)], "progress": False, "features": feats}
    fresh = evaluate_images(
        x[tr], d.target[tr], x[ho], d.target[ho], x[fr], d.target[fr], ImageThresholds(), **kw
    )
    noisy = evaluate_images(
        x[tr], d.target[tr], x[ho], d.target[ho], noise, d.target[fr], ImageThresholds(), **kw
    )
    assert fresh.feature_space.mode == "checkpoint"
    assert fresh.metrics["fid"] < noisy.metrics["fid"] / 10


def test_a_missing_or_invalid_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(InputDataError, match="not a local file"):
        CheckpointFeatures.load(tmp_path / "nope.pt", (1, 8, 8))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torchscript")
    with pytest.raises(InputDataError, match="not a TorchScript module"):
        CheckpointFeatures.load(bad, (1, 8, 8))
