"""DP-SGD for the shared training loop, through Opacus.

One step:
1. Poisson-sample people: each is in the batch with probability q, independently (Opacus's
   `UniformWithReplacementSampler`, the sampled Gaussian mechanism its accountant assumes);
2. take one record of each sampled person, so a person, however many records they have,
   adds at most one example to a step;
3. per example, average the gradient over `noise_multiplicity` draws of timestep and noise
   (DPDM, Dockhorn et al. 2023): free in privacy, since it is still one example;
4. Opacus's `DPOptimizer` clips each example's gradient to `max_grad_norm`, adds Gaussian
   noise of std `noise_multiplier x max_grad_norm`, and divides by the expected batch.
So the clipped sum a person can change is bounded by `max_grad_norm`, per step, and the
accountant's (epsilon, delta) holds per person.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from opacus.validators import ModuleValidator

from synth.dp.accounting import DPPlan
from synth.errors import ConfigError


@contextmanager
def _quiet_hooks():
    """Opacus's hooks make torch warn on every backward pass when the inputs need no
    gradient (ours never do): expected, and noise in a user's log."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        yield


class UnitSampler:
    """Poisson sampling of people, then one record of each: yields record indices per step."""

    def __init__(self, units: np.ndarray | None, n_rows: int, sample_rate: float, seed: int):
        units = np.arange(n_rows) if units is None else np.asarray(units, dtype=np.int64)
        order = np.argsort(units, kind="stable")
        self.rows_by_unit = order  # records grouped by person
        counts = np.bincount(units)
        self.counts = counts[counts > 0]
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self.n_units = len(self.counts)
        self.generator = torch.Generator().manual_seed(seed)
        self.sampler = UniformWithReplacementSampler(
            num_samples=self.n_units,
            sample_rate=sample_rate,
            generator=self.generator,
            steps=2**62,
        )
        self._batches = iter(self.sampler)

    def draw(self) -> np.ndarray:
        """The record indices of the next step's batch (possibly empty)."""
        chosen = np.asarray(next(self._batches), dtype=np.int64)
        u = torch.rand(len(chosen), generator=self.generator, dtype=torch.float64).numpy()
        pick = self.starts[chosen] + np.minimum(
            (u * self.counts[chosen]).astype(np.int64), self.counts[chosen] - 1
        )
        return self.rows_by_unit[pick]


def check_module(model: torch.nn.Module) -> None:
    """Opacus must be able to compute per-example gradients of every layer (GroupNorm,
    Linear, Conv2d, Embedding: yes; BatchNorm, plain attention: no)."""
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        names = "; ".join(sorted({type(e).__name__ + ": " + str(e)[:80] for e in errors}))
        raise ConfigError(
            f"the model has layers DP-SGD cannot train ({names}): turn attention off "
            "(image_model.attention: false)"
        )


class DPTrainer:
    """Wraps a model and its optimizer for DP-SGD under `plan`.

    A Poisson batch larger than `plan.max_physical_batch_size` is processed in parts, as
    Opacus's `BatchMemoryManager` does: each part's per-example gradients are clipped and
    summed, and the noise is added once, after the last part.

    Two ways to clip, both Opacus's:
    - `per_example_loss` (the tabular denoiser): the loss returns one value per example,
      itself averaged over the noise draws (grouped rows). Ghost clipping (Li et al. 2022;
      `GradSampleModuleFastGradientClipping`) finds each example's gradient norm without
      materialising it, and a second backward pass sums the clipped gradients: about the
      cost of two plain steps.
    - otherwise (the UNet): per-example gradients are materialised (`GradSampleModule`),
      and the noise multiplicity is `plan.noise_multiplicity` backward passes whose
      per-example gradients are averaged before clipping.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        plan: DPPlan,
        units: np.ndarray | None,
        n_rows: int,
        seed: int,
        per_example_loss: bool = False,
    ):
        check_module(model)
        self.plan = plan
        self.ghost = per_example_loss
        device = next(model.parameters()).device
        noise = torch.Generator(device=device).manual_seed(seed + 1)
        expected = max(1, round(plan.expected_batch_size))
        if self.ghost:
            self.module = GradSampleModuleFastGradientClipping(
                model, max_grad_norm=plan.max_grad_norm, use_ghost_clipping=True
            )
        else:
            self.module = GradSampleModule(model, loss_reduction="mean")
        dp_optimizer = DPOptimizerFastGradientClipping if self.ghost else DPOptimizer
        self.optimizer = dp_optimizer(
            optimizer,
            noise_multiplier=plan.noise_multiplier,
            max_grad_norm=plan.max_grad_norm,
            expected_batch_size=expected,
            generator=noise,
        )
        self.sampler = UnitSampler(units, n_rows, plan.sample_rate, seed)
        self.params = [p for p in model.parameters() if p.requires_grad]

    def step(
        self, loss_of: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor], device
    ) -> torch.Tensor:
        """One DP-SGD step on the next Poisson batch; `loss_of(module, rows)` is the batch's
        per-example losses (ghost) or mean loss. Returns the mean loss."""
        chosen = self.sampler.draw()
        if len(chosen) == 0:  # an empty Poisson batch still takes its noise
            self.optimizer.zero_grad(set_to_none=True)
            self._empty_step()
            return torch.zeros((), device=device)
        parts = np.array_split(chosen, math.ceil(len(chosen) / self.plan.max_physical_batch_size))
        step = self._ghost_step if self.ghost else self._materialised_step
        total = torch.zeros((), device=device)
        with _quiet_hooks():
            for i, part in enumerate(parts):
                # Opacus's BatchMemoryManager protocol: each part is clipped and summed; the
                # noise and the update come once, with the last
                self.optimizer.zero_grad(set_to_none=True)
                self.optimizer.signal_skip_step(do_skip=i < len(parts) - 1)
                total = total + step(loss_of, torch.as_tensor(part, device=device)) * len(part)
        return total / len(chosen)

    def _empty_step(self) -> None:
        for p in self.params:
            if self.ghost:
                p.grad = torch.zeros_like(p)
            else:
                p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
        self.optimizer.step()

    def _ghost_step(self, loss_of, rows: torch.Tensor) -> torch.Tensor:
        losses = loss_of(self.module, rows)  # [examples]
        losses.mean().backward(retain_graph=True)  # hooks: per-example gradient norms
        self.optimizer.zero_grad(set_to_none=True)
        coefficients = self.module.get_clipping_coef()
        self.module.disable_hooks()
        try:  # the sum of the clipped per-example gradients
            (coefficients.detach() * losses).sum().backward()
        finally:
            self.module.enable_hooks()
        self.optimizer.step()
        return losses.detach().mean()

    def _materialised_step(self, loss_of, rows: torch.Tensor) -> torch.Tensor:
        total = [torch.zeros((len(rows), *p.shape), device=p.device) for p in self.params]
        losses = []
        for _ in range(self.plan.noise_multiplicity):
            loss = loss_of(self.module, rows)
            loss.backward()
            for acc, p in zip(total, self.params, strict=True):
                acc += p.grad_sample
                p.grad_sample = None
            losses.append(loss.detach())
        for acc, p in zip(total, self.params, strict=True):
            p.grad_sample = acc / self.plan.noise_multiplicity
        self.optimizer.step()
        return torch.stack(losses).mean()

    def close(self) -> None:
        """Remove Opacus's hooks: the model samples and saves as a plain module again."""
        self.module._close()
