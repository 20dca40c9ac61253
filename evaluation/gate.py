"""The export gate: compare each metric with its threshold and say, in numbers, what failed.

Check names come from `Thresholds` field names: `<metric>_min` is a lower bound on `<metric>`,
`<metric>_max` an upper bound. A metric given as None does not apply (e.g. `tstr_gap` without
a target) and is skipped; a NaN metric could not be computed and fails (the gate fails closed).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel

from synth.errors import GateFailedError

FIDELITY = ("column_shapes", "pair_trends", "detection_auc", "tstr_gap", "rule_break_excess")

DESCRIPTIONS: dict[str, str] = {
    "column_shapes": (
        "Mean per-column similarity (KS / TV complement), 1 = same marginals: catches columns "
        "drawn from the wrong distribution, not broken relations between columns."
    ),
    "pair_trends": (
        "Mean pairwise similarity (correlation / contingency), 1 = same trends: catches lost "
        "pairwise relations, not ones among three or more columns."
    ),
    "detection_auc": (
        "ROC AUC of a classifier telling real from synthetic rows, 0.5 = cannot: catches any "
        "pattern the classifier can learn, not flaws too rare to learn from."
    ),
    "tstr_gap": (
        "Train-on-real minus train-on-synthetic score on the real holdout: catches a target "
        "relation the synthetic rows lost, not flaws that do not affect that target."
    ),
    "exact_copy_excess": (
        "Synthetic rows that copy a training row exactly, minus the holdout's rate: catches "
        "wholesale copying, not a few copies drowned in a table's natural duplicates."
    ),
    "near_copy_excess": (
        "Synthetic rows closer to train than 99% of holdout rows are, minus the holdout's "
        "share: catches jittered copies, not leaks hidden in the distance metric's blind spots."
    ),
    "dcr_share": (
        "Share of synthetic rows closer to train than to an equal-size holdout, 0.5 ideal: "
        "catches overall drift towards the training rows, not a few copied records (weak "
        "evidence alone: 'The DCR Delusion', ESORICS 2025)."
    ),
    "nndr_low_share": (
        "Share of synthetic rows whose nearest/second-nearest distance ratio is below the "
        "holdout's 5th percentile, ~0.05 ideal: catches rows hugging one record, not outliers."
    ),
    "mia_auc": (
        "Distance-to-synthetic membership attack ROC AUC (train vs holdout), 0.5 ideal: "
        "catches broad memorisation, not the few members a stronger attack would expose."
    ),
    "rare_values_emitted": (
        "Synthetic cells holding a value fewer than k training rows hold (or a number beyond the "
        "k-th extremes): catches rare values leaking, not a common value in a rare combination."
    ),
    "holdout_only_values_emitted": (
        "Synthetic cells holding a categorical value only holdout rows hold: catches values "
        "learned outside the training split, not ones in holdout rows left out of the sample."
    ),
    "unique_copy_excess_lcb": (
        "Exact copies of training rows no other real row shares, beyond the holdout's rate "
        "(a lower confidence bound): catches singled-out people, not copies of shared rows."
    ),
    "unique_near_copy_excess_lcb": (
        "Near copies of training rows no other real row shares, beyond the holdout's rate "
        "(a lower confidence bound): catches jittered copies, not copies moved farther than "
        "the holdout's 1st-percentile distance."
    ),
    "domias_auc": (
        "Density-ratio (DOMIAS) membership attack ROC AUC, 0.5 ideal: catches extra synthetic "
        "mass on training rows, not leaks too few to shift a kernel density."
    ),
    "domias_tpr_at_1pct_fpr": (
        "The density-ratio attack's true-positive rate at 1% false positives, ~0.01 ideal: "
        "catches a few confidently exposed members; n/a under 300 holdout rows."
    ),
    "singling_out_risk": (
        "Anonymeter singling-out risk: share of training records isolated by a query built "
        "from synthetic rows, beyond the holdout's; catches copied outliers, not common rows."
    ),
    "linkability_risk": (
        "Anonymeter linkability risk: records whose two column halves link through one "
        "synthetic row, beyond the holdout's; catches whole-record copies, not partial leaks."
    ),
    "inference_risk": (
        "Anonymeter attribute-inference risk, pooled over columns: secrets guessed from the "
        "nearest synthetic row beyond the holdout's rate; cannot tell leaks from correlations."
    ),
    "dp": (
        "Trained with differential privacy (1) or not (0), as privacy.require_dp asks: a "
        "formal bound per person, where the checks here are only evidence."
    ),
    "epsilon": (
        "The run's epsilon (preprocessing plus training) against the cap epsilon_max; a model "
        "trained without DP has no bound at all and fails any cap."
    ),
    "rule_break_excess": (
        "Share of synthetic rows breaking a logical rule every real training row keeps (a value "
        "fixing another's, a <= b), minus the holdout's: catches impossible rows, not rules "
        "with too little support to be found."
    ),
}


CLOSE_MARGIN = 0.10
"""A passing check within this share of its threshold is marked close to the limit."""
IDEAL_HALF = ("detection_auc", "mia_auc", "domias_auc", "dcr_share")
"""Checks whose ideal is 0.5, not 0: their margin is measured from 0.5 (see `close_to_limit`)."""

STEPS_KNOB = "training.steps"
MEMORISED = (
    f"the model memorised training rows: train fewer steps ({STEPS_KNOB}), or protect more "
    "rows (privacy.rare_category_min_rows)"
)
UNDER_TRAINED = f"the model is under-trained: raise {STEPS_KNOB}"
REMEDIES: dict[str, str] = {
    "tstr_gap": (
        "the label does not follow the features closely enough: raise sampling.guidance_scale "
        f"(e.g. 2.0; no retraining), then {STEPS_KNOB}"
    ),
    "column_shapes": UNDER_TRAINED,
    "pair_trends": UNDER_TRAINED,
    "detection_auc": UNDER_TRAINED,
    "rule_break_excess": (
        "synthetic rows break a rule of the real ones: list the rules with `synth schema`, and "
        "drop a rule that is wrong (rules.drop) or add a missing one (rules.add)"
    ),
    "rare_values_emitted": "rare values escaped the model's protection: report this as a bug",
    "holdout_only_values_emitted": "holdout values reached the model: report this as a bug",
    "dp": "train with differential privacy: set privacy.dp.epsilon (README: Differential privacy)",
    "epsilon": "train with a smaller budget: lower privacy.dp.epsilon to the cap or below",
}
"""The knob most likely to fix each failing check, by what the check measures (a privacy check
not named here points at memorisation)."""


class CheckResult(BaseModel):
    name: str
    value: float | None
    threshold: float
    bound: Literal["min", "max"]
    passed: bool
    kind: Literal["fidelity", "privacy"]
    description: str
    applicable: bool = True

    @property
    def close_to_limit(self) -> bool:
        """Passed, but within `CLOSE_MARGIN` of the threshold, relative to it: 0.93 against a
        minimum of 0.85, 0.055 against a maximum of 0.06. A check whose ideal is 0.5 (an AUC,
        the DCR share) measures it from 0.5, so the ideal itself is never close: 0.59 against
        a maximum of 0.60. A zero threshold, and the yes/no `dp` check, have no margin."""
        if not (self.applicable and self.passed) or self.value is None:
            return False
        if self.name == "dp" or self.threshold == 0:
            return False
        ideal = 0.5 if self.name in IDEAL_HALF else 0.0
        return abs(self.value - self.threshold) <= CLOSE_MARGIN * abs(self.threshold - ideal)

    def line(self) -> str:
        """`dcr_share = 0.712 > max 0.600`; the comparison shown is the true one."""
        if self.value is None and self.applicable:  # the cap on epsilon, without DP
            return f"{self.name} unbounded (no DP) > {self.bound} {self.threshold:.3f}"
        if self.value is None:
            return f"{self.name}: not applicable"
        if math.isnan(self.value):
            return f"{self.name} = nan (could not be computed; {self.bound} {self.threshold:.3f})"
        if self.bound == "max":
            op = ">" if self.value > self.threshold else "<="
        else:
            op = "<" if self.value < self.threshold else ">="
        return f"{self.name} = {self.value:.3f} {op} {self.bound} {self.threshold:.3f}"


class GateResult(BaseModel):
    checks: list[CheckResult]
    passed: bool
    overridden: bool = False
    override_reason: str | None = None

    def failures(self) -> list[str]:
        """One line per failing applicable check, with its number (also when overridden)."""
        return [c.line() for c in self.checks if c.applicable and not c.passed]

    def remedies(self) -> list[str]:
        """The knobs most likely to help, one line each, fidelity first; none on a pass."""
        failing = [c for c in self.checks if c.applicable and not c.passed]
        failing.sort(key=lambda c: c.kind != "fidelity")
        lines = [REMEDIES.get(c.name, MEMORISED) for c in failing]
        return list(dict.fromkeys(lines))

    @property
    def not_applicable(self) -> list[str]:
        return [c.name for c in self.checks if not c.applicable]

    def to_dict(self) -> dict[str, Any]:
        """The verdict as reports and exports carry it."""
        return {
            "passed": self.passed,
            "overridden": self.overridden,
            "override_reason": self.override_reason,
            "failures": self.failures(),
            "remedies": self.remedies(),
            "not_applicable": self.not_applicable,
            "close_to_limit": [c.name for c in self.checks if c.close_to_limit],
            "checks": [c.model_dump() for c in self.checks],
        }

    def raise_if_failed(self) -> None:
        """Raise `GateFailedError` with the failures unless the gate passed (or was overridden)."""
        if not self.passed:
            raise GateFailedError("gate failed: " + "; ".join(self.failures()))


DP_FIELDS = ("require_dp", "epsilon_max")


def dp_checks(dp: dict[str, Any] | None, thresholds: BaseModel) -> list[CheckResult]:
    """The formal guarantee the thresholds ask for, against the DP figures the model was
    trained under (None: no DP)."""
    checks = []
    if getattr(thresholds, "require_dp", False):
        checks.append(
            CheckResult(
                name="dp",
                value=float(dp is not None),
                threshold=1.0,
                bound="min",
                passed=dp is not None,
                kind="privacy",
                description=DESCRIPTIONS["dp"],
            )  # fmt: skip
        )
    cap = getattr(thresholds, "epsilon_max", None)
    if cap is not None:
        epsilon = None if dp is None else float(dp["epsilon"])
        checks.append(
            CheckResult(
                name="epsilon",
                value=epsilon,
                threshold=float(cap),
                bound="max",
                passed=epsilon is not None and epsilon <= cap,
                kind="privacy",
                description=DESCRIPTIONS["epsilon"],
            )  # fmt: skip
        )
    return checks


def apply_gate(
    metrics: dict[str, float | None],
    thresholds: BaseModel,
    override: bool = False,
    override_reason: str | None = None,
    dp: dict[str, Any] | None = None,
) -> GateResult:
    """Check every threshold. A metric missing from `metrics` is an error (pass None to mark it
    not applicable) so a renamed metric cannot silently skip a privacy check. `dp`: the DP
    figures the model was trained under (a `DPPlan` as JSON; None without DP), for
    `require_dp` and `epsilon_max`."""
    checks: list[CheckResult] = []
    for field, threshold in thresholds.model_dump().items():
        if field in DP_FIELDS:
            continue
        name, _, bound = field.rpartition("_")
        if bound not in ("min", "max"):
            raise ValueError(f"threshold {field!r} must end in _min or _max")
        if name not in metrics:
            raise ValueError(f"metric {name!r} (for threshold {field!r}) is missing; pass None")
        raw = metrics[name]
        value = None if raw is None else float(raw)
        if value is None:
            passed = True
        elif math.isnan(value):
            passed = False
        else:
            passed = value >= threshold if bound == "min" else value <= threshold
        checks.append(
            CheckResult(
                name=name,
                value=value,
                threshold=float(threshold),
                bound=bound,  # type: ignore[arg-type]
                passed=passed,
                kind="fidelity" if name in FIDELITY else "privacy",
                description=DESCRIPTIONS.get(name, ""),
                applicable=value is not None,
            )
        )
    checks += dp_checks(dp, thresholds)
    all_passed = all(c.passed for c in checks)
    return GateResult(
        checks=checks,
        passed=all_passed or override,
        overridden=override,
        override_reason=override_reason if override else None,
    )
