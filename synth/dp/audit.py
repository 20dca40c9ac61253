"""A privacy audit in one training run (Steinke, Nasr & Jagielski, "Privacy Auditing with
One (1) Training Run", NeurIPS 2023).

`m` canaries are each put in the training set with probability 1/2, independently. After
training, an attack scores every canary (here: a low denoising loss means "member"), guesses
"in" for the `k_in` best-scored and "out" for the `k_out` worst, and abstains on the rest.
If training is (epsilon, delta)-DP, the number of right guesses is dominated by a binomial
whose success rate is e^eps / (1 + e^eps), plus a delta term (their Theorem 5.2). The
largest epsilon that the observed count rejects at confidence `1 - beta` is an empirical
lower bound on the true epsilon: a claimed epsilon below it means the claim, or the code
behind it, is wrong.

The bound is loose by design (one run, a simple attack): a DP model should audit far below
its claim, and a model that memorises should audit above 0.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats

GUESS_SHARES = (0.01, 0.02, 0.05, 0.1, 0.2)
"""Shares of the canaries guessed "in" (and as many "out"); the best is kept, with a
Bonferroni correction for having tried them all."""


class AuditResult(BaseModel):
    """The audit's figures; no canary or record, only counts."""

    model_config = ConfigDict(extra="forbid")

    epsilon_lower_bound: float
    claimed_epsilon: float | None
    """None: trained without DP (no claim: any bound is consistent with it)."""
    delta: float
    confidence: float
    canaries: int
    included: int
    guesses: int
    correct: int

    @property
    def consistent(self) -> bool:
        """The bound never exceeds the claim; if it does, the DP code has a bug."""
        return self.claimed_epsilon is None or self.epsilon_lower_bound <= self.claimed_epsilon


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[at least `v` of `r` guesses right] among `m` canaries, if training were
    (epsilon, delta)-DP (Steinke et al. 2023, Theorem 5.2 and their reference code)."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of epsilon-DP randomised response
    beta = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    alpha = 0.0
    total = 0.0  # P[v > Binomial(r, q) >= v - i]
    for i in range(1, v + 1):
        total += float(stats.binom.pmf(v - i, r, q))
        alpha = max(alpha, total / i)
    return min(beta + alpha * delta * 2 * m, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, beta: float) -> float:
    """The largest epsilon whose p-value for `v` right of `r` guesses is below `beta`."""
    if p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < beta:
        lo, hi = hi, hi * 2
    for _ in range(40):
        mid = (lo + hi) / 2
        if p_value(m, r, v, mid, delta) < beta:
            lo = mid
        else:
            hi = mid
    return lo


def audit(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    delta: float,
    claimed_epsilon: float | None,
    confidence: float = 0.95,
) -> AuditResult:
    """The audit of one run: `scores` (higher: more likely a member) and the truth
    `included`, one per canary."""
    scores = np.asarray(scores, dtype=float)
    included = np.asarray(included, dtype=bool)
    m = len(scores)
    order = np.argsort(-scores, kind="stable")
    beta = (1.0 - confidence) / len(GUESS_SHARES)
    best = (0.0, 0, 0)
    for share in GUESS_SHARES:
        k = max(1, int(share * m))
        guessed_in, guessed_out = order[:k], order[m - k :]
        v = int(included[guessed_in].sum() + (~included[guessed_out]).sum())
        bound = epsilon_lower_bound(m, 2 * k, v, delta, beta)
        if bound > best[0] or best[1] == 0:
            best = (bound, 2 * k, v)
    return AuditResult(
        epsilon_lower_bound=best[0],
        claimed_epsilon=claimed_epsilon,
        delta=delta,
        confidence=confidence,
        canaries=m,
        included=int(included.sum()),
        guesses=best[1],
        correct=best[2],
    )
