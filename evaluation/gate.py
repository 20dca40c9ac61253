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

FIDELITY = ("column_shapes", "pair_trends", "detection_auc", "tstr_gap")

DESCRIPTIONS: dict[str, str] = {
    "column_shapes": "Mean per-column similarity (KS / TV complement); 1 = same marginals.",
    "pair_trends": "Mean pairwise similarity (correlation / contingency); 1 = same pair trends.",
    "detection_auc": "ROC AUC of a classifier telling real from synthetic rows; 0.5 = cannot.",
    "tstr_gap": "Train-on-real minus train-on-synthetic score on the real holdout.",
    "exact_copy_excess": "Synthetic rows that copy a train row exactly, minus the holdout rate.",
    "near_copy_excess": "Synthetic rows closer to train than 99% of holdout rows, minus holdout.",
    "dcr_share": "Share of synthetic rows closer to train than to equal-size holdout; 0.5 ideal.",
    "nndr_low_share": "Share of synthetic rows with a holdout-5%-low NNDR (ideal 0.05).",
    "mia_auc": "Distance membership-inference attack ROC AUC (train vs holdout); 0.5 ideal.",
}


class CheckResult(BaseModel):
    name: str
    value: float | None
    threshold: float
    bound: Literal["min", "max"]
    passed: bool
    kind: Literal["fidelity", "privacy"]
    description: str
    applicable: bool = True

    def line(self) -> str:
        """`dcr_share = 0.712 > max 0.600`; the comparison shown is the true one."""
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
            "not_applicable": self.not_applicable,
            "checks": [c.model_dump() for c in self.checks],
        }

    def raise_if_failed(self) -> None:
        """Raise `GateFailedError` with the failures unless the gate passed (or was overridden)."""
        if not self.passed:
            raise GateFailedError("gate failed: " + "; ".join(self.failures()))


def apply_gate(
    metrics: dict[str, float | None],
    thresholds: BaseModel,
    override: bool = False,
    override_reason: str | None = None,
) -> GateResult:
    """Check every threshold. A metric missing from `metrics` is an error (pass None to mark it
    not applicable) so a renamed metric cannot silently skip a privacy check."""
    checks: list[CheckResult] = []
    for field, threshold in thresholds.model_dump().items():
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
    all_passed = all(c.passed for c in checks)
    return GateResult(
        checks=checks,
        passed=all_passed or override,
        overridden=override,
        override_reason=override_reason if override else None,
    )
