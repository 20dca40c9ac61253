"""Success rates and risks of a privacy attack, with Anonymeter's confidence intervals.

Written to give the same numbers as `anonymeter.stats.confidence` (Giomi et al., PoPETs 2023),
so figures from our attacks and theirs can be compared one to one:

* a success rate is the Wilson-score centre `(k + z²/2) / (n + z²)` with the Wilson error
  `z / (n + z²) * sqrt(k (n - k) / n + z²/4)` (robust when k is 0 or n, or n is small);
* the risk is the residual success `(main - control) / (1 - control)`, its error propagated from
  both rates to first order, and the value and interval are clipped to [0, 1];
* an attack that does no better than random guessing (baseline >= main) gives no evidence either
  way, and a control attack that always succeeds leaves no room to measure: both are "not valid".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Rate:
    """A Wilson-score estimate of a success rate and its symmetric error."""

    value: float
    error: float


def probit(confidence: float) -> float:
    """The two-sided normal quantile for `confidence` (1.96 for 0.95)."""
    return float(norm.ppf(0.5 * (1.0 + confidence)))


def success_rate(n_total: int, n_success: float, confidence: float = CONFIDENCE) -> Rate:
    """Wilson score: the centre and error of k successes out of n Bernoulli trials."""
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must lie in [0, 1], got {confidence}")
    if n_total <= 0:
        raise ValueError("a success rate needs at least one attack")
    z = probit(confidence)
    z2 = z * z
    variance = n_success * (n_total - n_success) / n_total
    denominator = n_total + z2
    value = (n_success + 0.5 * z2) / denominator
    error = (z / denominator) * math.sqrt(max(variance, 0.0) + 0.25 * z2)
    return Rate(value, error)


def residual_rate(main: Rate, control: Rate) -> Rate:
    """How much more the attack wins on training rows than on unseen rows, as a share of what
    it could still win: `(main - control) / (1 - control)`, error propagated to first order."""
    value = (main.value - control.value) / (1.0 - control.value)
    d_main = 1.0 / abs(1.0 - control.value)
    d_control = (main.value - 1.0) / (1.0 - control.value) ** 2
    error = math.sqrt((main.error * d_main) ** 2 + (control.error * d_control) ** 2)
    return Rate(value, error)


def bounded(rate: Rate) -> tuple[float, tuple[float, float]]:
    """The value and its interval `value ± error`, each clipped to [0, 1]."""

    def clip(x: float) -> float:
        return min(max(x, 0.0), 1.0)

    return clip(rate.value), (clip(rate.value - rate.error), clip(rate.value + rate.error))


@dataclass(frozen=True)
class AttackCounts:
    """Successes of the three attacks and how many each made (control may be fractional after
    the singling-out size correction)."""

    n_main: int
    main: float
    n_control: int
    control: float
    n_baseline: int
    baseline: float

    def rates(self, confidence: float = CONFIDENCE) -> tuple[Rate, Rate, Rate]:
        """Main, control and baseline success rates."""
        return (
            success_rate(self.n_main, self.main, confidence),
            success_rate(self.n_control, self.control, confidence),
            success_rate(self.n_baseline, self.baseline, confidence),
        )

    def risk(self, confidence: float = CONFIDENCE) -> Rate:
        """The unclipped residual risk (clip it with `bounded`)."""
        main, control, _ = self.rates(confidence)
        return residual_rate(main, control)

    def validity(self, confidence: float = CONFIDENCE) -> str | None:
        """None if the risk can be trusted, else why not (fixed text: never a data value)."""
        main, control, baseline = self.rates(confidence)
        if baseline.value >= main.value:
            return "the attack is no better than random guessing: the risk cannot be trusted"
        if control.value >= 1.0:
            return "the control attack always succeeds: no residual risk can be measured"
        return None
