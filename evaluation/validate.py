"""`validate_export`: is a published export intact, and does it carry a passing gate?

A CI job (or a data consumer) runs this on an export it did not make: the manifest must list
exactly the files on disk, every file must match its recorded SHA-256 and size, every file
must have the recorded schema (Parquet) or pixel layout (DICOM), and the report the export
carries must say the gate passed (or was overridden, with a reason). Given the real train and
holdout data, the checks are also run again on the exported rows and gated with the
thresholds the report recorded (`evaluation.validate_recompute`).

The export folder, its manifest and checksums are `synth.export.folder`'s; each format's own
checks live with its writer (`synth.export.parquet`, `.image_parquet`, `.dicom`), found through
`synth.export.formats`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from evaluation.validate_recompute import recompute
from synth.dp.accounting import DPPlan, training_epsilon
from synth.errors import InputDataError
from synth.export.check import Check, name_list
from synth.export.folder import Format, check_checksums, check_manifest, open_export
from synth.export.formats import export_format


class ValidationResult(BaseModel):
    """Every check run on one export. The export is valid when all of them passed."""

    path: str
    format: Format
    checks: list[Check]
    overridden: bool = False
    override_reason: str | None = None
    dp: dict[str, Any] | None = None
    """The DP figures the export carries (None: no formal guarantee)."""

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def dp_line(self) -> str:
        """The formal guarantee in one line: the DP figures, or that there is none."""
        if self.dp is None:
            return "null (no formal guarantee: trained without differential privacy)"
        try:
            return dp_summary(DPPlan.model_validate(self.dp))
        except ValueError:
            return "unreadable DP figures"

    def check(self, name: str) -> Check:
        """The check called `name` (KeyError if it was not run)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def summary(self, max_reasons: int = 3) -> str:
        """`validate: PASSED`, with the override when there was one, or `validate: FAILED (...)`."""
        if self.passed:
            if self.overridden:
                return f"validate: PASSED (gate OVERRIDDEN: {self.override_reason})"
            return "validate: PASSED"
        failed = self.failures()
        reasons = [f"{c.name}: {_clip(c.reason)}" for c in failed[:max_reasons]]
        more = len(failed) - max_reasons
        return f"validate: FAILED ({'; '.join(reasons)}{f'; {more} more' if more > 0 else ''})"


def _clip(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# --------------------------------------------------------------------------- the gate


def _expected_pass(check: dict[str, Any]) -> bool | None:
    """Whether a recorded check should have passed, from its own value and threshold.
    None when the record cannot say. NaN is written as null with applicable = true."""
    value, threshold, bound = check.get("value"), check.get("threshold"), check.get("bound")
    if value is None:
        return not check.get("applicable", True)
    if not isinstance(value, int | float) or not isinstance(threshold, int | float):
        return None
    if math.isnan(value):
        return False
    if bound == "min":
        return value >= threshold
    if bound == "max":
        return value <= threshold
    return None


def check_gate(meta: dict[str, Any] | None, why: str | None) -> tuple[Check, str | None]:
    """The stored verdict: passed, or overridden with a reason (returned second)."""
    report = (meta or {}).get("report")
    gate = report.get("gate") if isinstance(report, dict) else None
    if meta is None or not isinstance(gate, dict) or not isinstance(gate.get("passed"), bool):
        return Check(
            name="gate", passed=False, reason=why or "the export carries no gate verdict"
        ), None
    checks = [c for c in gate.get("checks") or [] if isinstance(c, dict)]
    contradicted = [
        str(c.get("name"))
        for c in checks
        if _expected_pass(c) is not None and _expected_pass(c) != c.get("passed")
    ]
    if contradicted:
        return Check(
            name="gate",
            passed=False,
            reason="the report's verdict contradicts its own numbers for "
            + name_list(contradicted),
        ), None
    failing = [
        str(c.get("name")) for c in checks if c.get("applicable", True) and not c.get("passed")
    ]
    lines = [str(f) for f in gate.get("failures") or []] or failing
    if gate.get("overridden"):
        reason = gate.get("override_reason")
        if not isinstance(reason, str) or not reason.strip():
            return Check(
                name="gate", passed=False, reason="gate overridden without a recorded reason"
            ), None
        shown = f"; failing: {'; '.join(lines)}" if lines else ""
        return Check(name="gate", passed=True, reason=f"OVERRIDDEN: {reason}{shown}"), reason
    if not gate["passed"]:
        return Check(
            name="gate",
            passed=False,
            reason="gate failed: " + ("; ".join(lines) or "no reason recorded"),
        ), None
    if failing:
        return Check(
            name="gate",
            passed=False,
            reason=f"the report says passed but {name_list(failing)} failed, without an override",
        ), None
    n_na = sum(1 for c in checks if not c.get("applicable", True))
    return Check(
        name="gate",
        passed=True,
        reason=f"gate passed: {len(checks) - n_na} checks within thresholds"
        + (f", {n_na} not applicable" if n_na else ""),
    ), None


# --------------------------------------------------------------------------- all together


def check_dp(meta: dict[str, Any] | None) -> Check:
    """The export's DP figures agree with themselves and with its report: the training's
    epsilon is what Opacus's accountant gives its noise, sampling rate and steps, and the
    whole epsilon is the sum of preprocessing and training."""
    meta = meta or {}
    if "dp" not in meta:
        return Check(name="dp", passed=True, reason="no DP figures (an export from before DP)")
    dp = meta["dp"]
    report_dp = ((meta.get("report") or {}).get("extra") or {}).get("dp")
    if dp != report_dp:
        return Check(name="dp", passed=False, reason="the DP figures differ from the report's")
    if dp is None:
        return Check(name="dp", passed=True, reason="dp: null (trained without DP)")
    try:
        plan = DPPlan.model_validate(dp)
    except ValueError:
        return Check(name="dp", passed=False, reason="the DP figures are incomplete")
    recomputed = training_epsilon(
        plan.noise_multiplier, plan.sample_rate, plan.steps, plan.delta_training, plan.accountant
    )
    if not math.isclose(recomputed, plan.epsilon_training, rel_tol=1e-3, abs_tol=1e-6):
        return Check(
            name="dp",
            passed=False,
            reason=f"the training epsilon {plan.epsilon_training:.4f} is not what the "
            f"{plan.accountant} accountant gives its settings ({recomputed:.4f})",
        )
    total = plan.epsilon_preprocessing + plan.epsilon_training
    if not math.isclose(total, plan.epsilon, rel_tol=1e-9, abs_tol=1e-9):
        return Check(name="dp", passed=False, reason="epsilon is not preprocessing + training")
    return Check(name="dp", passed=True, reason=dp_summary(plan))


def dp_summary(plan: DPPlan) -> str:
    """One line of the DP figures, as reports and `synth validate` show them."""
    return (
        f"epsilon {plan.epsilon:.3f} (preprocessing {plan.epsilon_preprocessing:.3f}, "
        f"training {plan.epsilon_training:.3f}), delta {plan.delta:.2g}, unit {plan.unit}, "
        f"{plan.accountant} accountant, noise multiplier {plan.noise_multiplier:.3f}, "
        f"clipping norm {plan.max_grad_norm:g}, sampling rate {plan.sample_rate:.4f}, "
        f"{plan.steps} steps"
    )


def validate_export(
    path: str | os.PathLike[str],
    *,
    real: str | os.PathLike[str] | None = None,
    holdout: str | os.PathLike[str] | None = None,
    target: str | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> ValidationResult:
    """Check the export at `path` (an export folder, or one Parquet part file of one).

    Checks `manifest`, `checksums`, `schema` and `gate` always; with `real` and `holdout` (the
    train and holdout data: a table, or image folders) also `recompute.<metric>` for every
    gate metric, measured again on the exported rows with the report's thresholds. `seed`
    defaults to the one the report recorded. Raises `InputDataError` when `path` is not an
    export or the real data cannot be used.
    """
    if (real is None) != (holdout is None):
        raise InputDataError("real and holdout go together: give both, or neither")
    export = open_export(path)
    handler = export_format(export)
    checks = [check_manifest(export), check_checksums(export), handler.check_schema(export)]
    meta, why = handler.stored_metadata(export)
    gate_check, override_reason = check_gate(meta, why)
    checks.append(gate_check)
    checks.append(check_dp(meta))
    if real is not None and holdout is not None:
        checks += recompute(
            export,
            meta or {},
            Path(real),
            Path(holdout),
            target=target,
            seed=seed,
            progress=progress,
        )
    return ValidationResult(
        path=str(path),
        format=export.format,
        checks=checks,
        overridden=override_reason is not None,
        override_reason=override_reason,
        dp=(meta or {}).get("dp"),
    )
