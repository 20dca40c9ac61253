"""A feature space for image sets that needs no download: a small CNN fitted on the real train set.

FID, precision/recall and CAS are usually computed with ImageNet Inception-v3 features. Those
weights cannot be fetched here (no network), and for small grey-scale or medical images they
describe the wrong domain anyway. Instead `FeatureExtractor.fit` trains a small CNN on the REAL
TRAIN images:

* with labels: a classifier (cross-entropy); the embedding is the globally pooled last conv
  block, so it captures what separates the classes (the semantics FID is meant to measure);
* without labels: a convolutional autoencoder (mean-squared reconstruction error) whose encoder
  is the same CNN; the pooled code is the embedding. Self-supervised, still fitted on the real
  data, so it describes this domain rather than random filters.

Numbers in this space are comparable between runs with the same real train set and seed, not
with published Inception FIDs. Embeddings are standardised per dimension with the real train
mean and standard deviation (dimensions that are constant on train keep scale 1), so a FID of
`D` (= 128) corresponds to a shift of one train standard deviation in every dimension.

A pre-trained Inception-style checkpoint (local torchscript) could be plugged in behind the same
`embed` interface through the evaluation config; this module does not load one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from synth.errors import InputDataError

EMBED_DIM = 128
CHANNELS = (32, 64, 128)

THREADS = 1
"""Torch threads while these tiny networks train or embed: one thread is faster than several
for them, and does not stall when the cores are busy. The previous count is restored after."""

Mode = Literal["classifier", "autoencoder"]


@contextmanager
def torch_threads(n: int | None = THREADS) -> Iterator[None]:
    """Temporarily run torch on `n` threads (None: leave the setting alone)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def as_tensor(images: np.ndarray) -> torch.Tensor:
    """Validate an image set ([N, C, H, W] float in [0, 1]) and return it as float32."""
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {arr.shape}")
    if arr.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {arr.shape[1]}")
    if arr.shape[2] < 8 or arr.shape[3] < 8:
        raise ValueError(f"images must be at least 8x8, got {arr.shape[2]}x{arr.shape[3]}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


class SmallCNN(nn.Module):
    """Three conv blocks (conv3x3-BN-ReLU-maxpool, 32-64-128) and global average pooling."""

    def __init__(self, in_channels: int, n_classes: int | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out in CHANNELS:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(EMBED_DIM, n_classes) if n_classes else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(x)
        return self.head(z) if self.head is not None else z


class _Decoder(nn.Module):
    """Pooled code -> image: a linear map onto a (H/4, W/4) grid, two upsampling convs."""

    def __init__(self, out_channels: int, height: int, width: int) -> None:
        super().__init__()
        self.h, self.w = max(height // 4, 1), max(width // 4, 1)
        self.size = (height, width)
        self.fc = nn.Linear(EMBED_DIM, 32 * self.h * self.w)
        self.conv1 = nn.Conv2d(32, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc(z)).view(-1, 32, self.h, self.w)
        x = F.relu(self.conv1(F.interpolate(x, scale_factor=2, mode="nearest")))
        x = F.interpolate(x, size=self.size, mode="nearest")
        return torch.sigmoid(self.conv2(x))


def _steps(n: int, batch_size: int, epochs: int, min_steps: int, max_steps: int) -> int:
    return min(max(epochs * math.ceil(n / batch_size), min_steps), max_steps)


def train_cnn(
    images: np.ndarray,
    labels: np.ndarray | None,
    n_classes: int | None,
    *,
    seed: int = 0,
    epochs: int = 6,
    min_steps: int = 60,
    max_steps: int = 1_000,
    batch_size: int = 128,
    lr: float = 1e-2,
    threads: int | None = THREADS,
) -> tuple[SmallCNN, float]:
    """Fit a `SmallCNN` (classifier when `labels` are given, else autoencoder encoder).

    `epochs` passes over the data, but at least `min_steps` Adam steps (a small set still gets a
    fixed budget) and at most `max_steps` (a large one stays within minutes). Seeded: the global
    torch RNG is left untouched. Returns the model in eval mode and the mean training loss over
    the last epoch's worth of steps.
    """
    x = as_tensor(images)
    n, c, h, w = x.shape
    if n < 2:
        raise ValueError("need at least 2 images to train a feature network")
    y = None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(c, n_classes if y is not None else None)
        decoder = _Decoder(c, h, w) if y is None else None
    params = list(model.parameters()) + (list(decoder.parameters()) if decoder else [])
    opt = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    steps = _steps(n, batch_size, epochs, min_steps, max_steps)
    per_epoch = math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    losses: list[float] = []
    order = np.empty(0, dtype=np.int64)
    with torch_threads(threads):
        for _ in range(steps):
            if order.size < min(batch_size, n):
                order = np.concatenate([order, rng.permutation(n)])
            idx, order = order[:batch_size], order[batch_size:]
            xb = x[torch.from_numpy(idx)]
            if y is not None:
                loss = F.cross_entropy(model(xb), y[torch.from_numpy(idx)])
            else:
                assert decoder is not None
                loss = F.mse_loss(decoder(model.embed(xb)), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    model.eval()
    return model, float(np.mean(losses[-per_epoch:]))


def _batched(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 512
) -> torch.Tensor:
    with torch.no_grad(), torch_threads():
        return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def predict(model: SmallCNN, images: np.ndarray) -> np.ndarray:
    """Class indices predicted by a classifier `SmallCNN`."""
    model.eval()
    return _batched(model, as_tensor(images)).argmax(dim=1).numpy()


@dataclass
class FeatureExtractor:
    """A fitted `SmallCNN` and the train-set standardisation of its 128-d embedding."""

    model: SmallCNN
    mode: Mode
    mean: np.ndarray
    scale: np.ndarray
    shape: tuple[int, int, int]
    train_loss: float
    train_seconds: float
    seed: int

    @classmethod
    def fit(
        cls,
        train: np.ndarray,
        labels: np.ndarray | None = None,
        *,
        n_classes: int | None = None,
        seed: int = 0,
        epochs: int = 6,
        min_steps: int = 60,
        max_steps: int = 1_000,
        batch_size: int = 128,
    ) -> FeatureExtractor:
        """Train on the real train images: classifier with `labels` (class indices 0..K-1),
        autoencoder without. 1,200 images: about 13 s at 3x32x32, 3 s at 1x16x16 (2 cores)."""
        start = time.perf_counter()
        if labels is not None and n_classes is None:
            n_classes = int(np.max(labels)) + 1
        model, loss = train_cnn(
            train, labels, n_classes, seed=seed, epochs=epochs, min_steps=min_steps,
            max_steps=max_steps, batch_size=batch_size,
        )  # fmt: skip
        raw = _batched(model.embed, as_tensor(train)).numpy().astype(np.float64)
        mean = raw.mean(axis=0)
        std = raw.std(axis=0)
        scale = np.where(std > 1e-6, std, 1.0)
        return cls(
            model=model,
            mode="classifier" if labels is not None else "autoencoder",
            mean=mean,
            scale=scale,
            shape=tuple(np.asarray(train).shape[1:]),  # type: ignore[arg-type]
            train_loss=loss,
            train_seconds=time.perf_counter() - start,
            seed=seed,
        )

    def embed(self, images: np.ndarray) -> np.ndarray:
        """[N, C, H, W] in [0, 1] -> standardised embeddings [N, 128] (float64), eval mode."""
        x = as_tensor(images)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"images are {tuple(x.shape[1:])}, the extractor expects {self.shape}")
        self.model.eval()
        raw = _batched(self.model.embed, x).numpy().astype(np.float64)
        return (raw - self.mean) / self.scale

    @property
    def dim(self) -> int:
        return EMBED_DIM


@dataclass
class CheckpointFeatures:
    """Features from a local TorchScript checkpoint (e.g. an exported Inception-v3 pool layer).

    Used instead of the CNN trained on the real images when the job names one
    (`evaluation.feature_checkpoint`), so FID is comparable across runs and tools. Nothing is
    downloaded. The module maps float [N, C, H, W] in [0, 1] to [N, D]; images are resized to
    its `input_size` attribute (default: unchanged) and grey images are repeated to its
    `in_channels` (default 3). Only load checkpoints you trust: TorchScript carries code.
    """

    model: torch.jit.ScriptModule
    shape: tuple[int, int, int]
    dim: int
    train_seconds: float
    mode: str = "checkpoint"
    train_loss: float = 0.0

    @classmethod
    def load(cls, path: str | Path, shape: tuple[int, int, int]) -> CheckpointFeatures:
        path = Path(path)
        if not path.is_file():
            raise InputDataError(f"feature checkpoint {str(path)!r} is not a local file")
        start = time.perf_counter()
        try:
            model = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as err:  # noqa: BLE001 - any load failure is the user's file
            raise InputDataError(
                f"feature checkpoint {path.name} is not a TorchScript module "
                f"({err.__class__.__name__})"
            ) from None
        obj = cls(model=model, shape=tuple(shape), dim=0, train_seconds=0.0)  # type: ignore
        obj.dim = int(obj.embed(np.zeros((1, *shape), np.float32)).shape[1])
        obj.train_seconds = time.perf_counter() - start
        return obj

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        size = getattr(self.model, "input_size", None)
        if size and x.shape[-1] != int(size):
            x = torch.nn.functional.interpolate(
                x, size=(int(size), int(size)), mode="bilinear", align_corners=False, antialias=True
            )
        want = int(getattr(self.model, "in_channels", 3))
        if x.shape[1] == 1 and want == 3:
            x = x.repeat(1, 3, 1, 1)
        return x

    @torch.inference_mode()
    def embed(self, images: np.ndarray) -> np.ndarray:
        x = as_tensor(images)
        out = [
            self.model(self._prepare(x[i : i + 256])).float().flatten(1)
            for i in range(0, len(x), 256)
        ]
        return torch.cat(out).numpy().astype(np.float64)
