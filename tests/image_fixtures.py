"""Real images for the image evaluation tests: scikit-learn's digits (1,797 8x8 images, 10
classes), upscaled to 16x16 and split (seeded) into train 900 / holdout 450 / fresh 447.

`fresh` is real data the "generator" never saw: what a perfect synthesiser would emit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.nn import functional as F

SIZE = 16
SPLIT_SEED = 0
N_TRAIN, N_HOLDOUT = 900, 450


@dataclass(frozen=True)
class Digits:
    train: np.ndarray
    train_labels: np.ndarray
    holdout: np.ndarray
    holdout_labels: np.ndarray
    fresh: np.ndarray
    fresh_labels: np.ndarray


@functools.cache
def load_split() -> Digits:
    """The split (cached: treat the arrays as read-only)."""
    d = load_digits()
    x = torch.from_numpy(d.images[:, None].astype(np.float32) / 16.0)
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    images = x.clamp(0, 1).numpy()
    labels = d.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    tr, ho, fr = np.split(order, [N_TRAIN, N_TRAIN + N_HOLDOUT])
    return Digits(images[tr], labels[tr], images[ho], labels[ho], images[fr], labels[fr])
