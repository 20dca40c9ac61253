"""The (epsilon, delta) of a DP run: how it is split, and the noise DP-SGD needs for it.

A run spends its budget twice, and the two add up (basic composition):
- preprocessing, when the schema does not declare the categories, bounds and quantiles
  (`synth.dp.preprocess`): `preprocessing_fraction` of epsilon and of delta;
- training, DP-SGD with Poisson sampling of people (Opacus): the rest. The noise multiplier
  is the smallest that Opacus's accountant (PRV by default, RDP as an option) finds keeps
  the training's steps at its sampling rate within its share.
The number of people is treated as public, as Opacus's sampling rate (batch / n) does.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier
from pydantic import BaseModel, ConfigDict, Field

from synth.config import DPSpec
from synth.errors import ConfigError

MAX_NOISE_MULTIPLIER = 50.0
"""Above this, each step's noise drowns any gradient a batch can carry: refuse the budget."""


class PrivacyBudgetError(ConfigError):
    """The DP budget cannot cover the training asked for (exit code 2, before training)."""


class DPPlan(BaseModel):
    """What a DP run spends and how: the figures every report and export carries."""

    model_config = ConfigDict(extra="forbid")

    epsilon: float
    """The whole run's: preprocessing plus training."""
    delta: float
    unit: str
    """`row`, or the column / DICOM attribute that names a person."""
    n_units: int
    accountant: str
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    expected_batch_size: float
    steps: int
    noise_multiplicity: int
    epsilon_preprocessing: float
    delta_preprocessing: float
    epsilon_training: float
    """What the accountant reports for the training's noise, rate and steps (<= its share)."""
    delta_training: float
    preprocessing: str
    """`declared` (the schema gave every value: nothing spent) or `estimated` (DP mechanisms)."""
    estimated: list[str] = []
    """The columns (or `classes`) whose values were estimated privately."""
    max_physical_batch_size: int = Field(256, exclude=True)
    """A memory setting of the training, not a privacy figure: not reported."""


@contextmanager
def _quiet_accountant() -> Iterator[None]:
    """Opacus's accountants warn while they search (an order at the edge of RDP's range,
    overflow in PRV's tails): figures it handles, and noise in a user's log."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.filterwarnings("ignore", module=r"opacus\.accountants")
        yield


def resolve_delta(spec: DPSpec, n_units: int) -> float:
    """`auto`: 1 / (10 n), rounded down to one significant digit; an explicit delta must be
    below 1 / n, or one person's whole record could be released with probability delta."""
    if spec.delta == "auto":
        raw = 1.0 / (10 * max(n_units, 1))
        scale = 10 ** math.floor(math.log10(raw))
        return math.floor(raw / scale) * scale
    if spec.delta >= 1.0 / max(n_units, 1):
        raise PrivacyBudgetError(
            f"privacy.dp.delta={spec.delta} is not below 1/n = {1.0 / n_units:.2g} for "
            f"{n_units} people: lower it, or use delta: auto"
        )
    return float(spec.delta)


def training_epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str
) -> float:
    """The epsilon Opacus's accountant gives `steps` steps of the sampled Gaussian mechanism."""
    acc = create_accountant(mechanism=accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    with _quiet_accountant():
        return float(acc.get_epsilon(delta=delta))


def plan_training(
    spec: DPSpec,
    *,
    n_units: int,
    steps: int,
    batch_size: int,
    unit: str,
    estimated: list[str],
) -> DPPlan:
    """The noise multiplier and figures for `steps` steps of about `batch_size` people out of
    `n_units`; refuses, naming the fixes, a budget that cannot cover them."""
    delta = resolve_delta(spec, n_units)
    if estimated and spec.preprocessing_fraction == 0:
        raise PrivacyBudgetError(
            f"privacy.dp.preprocessing_fraction is 0, but {len(estimated)} columns have values "
            "the schema does not declare: declare them under source.columns (categories, "
            "min and max), or give preprocessing a share of epsilon"
        )
    fraction = spec.preprocessing_fraction if estimated else 0.0
    eps_pre, delta_pre = spec.epsilon * fraction, delta * fraction
    eps_train, delta_train = spec.epsilon - eps_pre, delta - delta_pre
    sample_rate = min(1.0, batch_size / n_units)
    fixes = (
        "raise privacy.dp.epsilon, lower training.steps, or lower training.batch_size "
        f"(now {steps} steps, sampling rate {sample_rate:.3g})"
    )
    try:
        with _quiet_accountant():
            sigma = get_noise_multiplier(
                target_epsilon=eps_train,
                target_delta=delta_train,
                sample_rate=sample_rate,
                steps=steps,
                accountant=spec.accountant,
            )
    except ValueError:
        sigma = math.inf
    if sigma > MAX_NOISE_MULTIPLIER:
        raise PrivacyBudgetError(
            f"epsilon {spec.epsilon} (training's share {eps_train:.3g}) cannot cover the "
            f"training: it would need a noise multiplier above {MAX_NOISE_MULTIPLIER:g}; {fixes}"
        )
    spent = training_epsilon(sigma, sample_rate, steps, delta_train, spec.accountant)
    return DPPlan(
        epsilon=eps_pre + spent,
        delta=delta,
        unit=unit,
        n_units=n_units,
        accountant=spec.accountant,
        noise_multiplier=sigma,
        max_grad_norm=spec.max_grad_norm,
        sample_rate=sample_rate,
        expected_batch_size=sample_rate * n_units,
        steps=steps,
        noise_multiplicity=spec.noise_multiplicity,
        epsilon_preprocessing=eps_pre,
        delta_preprocessing=delta_pre,
        epsilon_training=spent,
        delta_training=delta_train,
        preprocessing="estimated" if estimated else "declared",
        estimated=estimated,
        max_physical_batch_size=spec.max_physical_batch_size,
    )


def dp_state(plan: DPPlan | None) -> dict | None:
    """The plan as a model folder's state.json keeps it (None: trained without DP)."""
    return None if plan is None else plan.model_dump(mode="json")


def dp_from_state(state: dict | None) -> DPPlan | None:
    return None if state is None else DPPlan.model_validate(state)
