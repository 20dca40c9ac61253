"""The gate: thresholds in, named and numbered failures out."""

from __future__ import annotations

import math

import pytest

from evaluation.gate import apply_gate
from synth.config import Thresholds
from synth.errors import GateFailedError

GOOD: dict[str, float | None] = {
    "column_shapes": 0.95,
    "pair_trends": 0.90,
    "detection_auc": 0.55,
    "tstr_gap": 0.01,
    "exact_copy_excess": 0.0,
    "near_copy_excess": 0.0,
    "dcr_share": 0.50,
    "nndr_low_share": 0.05,
    "mia_auc": 0.51,
    "rare_values_emitted": 0,
    "holdout_only_values_emitted": 0,
    "unique_copy_excess_lcb": -0.01,
    "unique_near_copy_excess_lcb": -0.01,
    "domias_auc": 0.51,
    "domias_tpr_at_1pct_fpr": 0.01,
    "singling_out_risk": 0.0,
    "linkability_risk": 0.01,
    "inference_risk": 0.02,
    "rule_break_excess": 0.0,
}


def test_every_threshold_becomes_a_check() -> None:
    gate = apply_gate(GOOD, Thresholds())
    assert gate.passed and not gate.overridden and gate.failures() == []
    assert [c.name for c in gate.checks] == list(GOOD)
    kinds = {c.name: c.kind for c in gate.checks}
    assert kinds["detection_auc"] == "fidelity" and kinds["mia_auc"] == "privacy"
    bounds = {c.name: c.bound for c in gate.checks}
    assert bounds["column_shapes"] == "min" and bounds["dcr_share"] == "max"
    assert all(c.description for c in gate.checks)


def test_failing_checks_are_named_with_numbers() -> None:
    metrics = {**GOOD, "dcr_share": 0.712, "column_shapes": 0.80}
    gate = apply_gate(metrics, Thresholds())
    assert not gate.passed
    assert gate.failures() == [
        "column_shapes = 0.800 < min 0.850",
        "dcr_share = 0.712 > max 0.600",
    ]
    with pytest.raises(GateFailedError, match="dcr_share = 0.712"):
        gate.raise_if_failed()


def test_bounds_are_inclusive_and_thresholds_configurable() -> None:
    assert apply_gate({**GOOD, "dcr_share": 0.60}, Thresholds()).passed
    gate = apply_gate(GOOD, Thresholds(mia_auc_max=0.505))
    assert gate.failures() == ["mia_auc = 0.510 > max 0.505"]


def test_a_pass_within_ten_percent_of_its_threshold_is_close_to_the_limit() -> None:
    metrics = {
        **GOOD,
        "pair_trends": 0.93,  # >= 0.85: 0.085 of room
        "column_shapes": 0.94,
        "tstr_gap": 0.095,  # <= 0.10
        "mia_auc": 0.595,  # <= 0.60, ideal 0.5: 0.01 of room
        "domias_auc": 0.5,  # its ideal, 0.05 under its limit: never close
        "rare_values_emitted": 0,  # a zero tolerance has no margin
        "dcr_share": 0.61,  # failed: not "close"
    }
    gate = apply_gate(metrics, Thresholds(), dp=None)
    close = [c.name for c in gate.checks if c.close_to_limit]
    assert close == ["pair_trends", "tstr_gap", "mia_auc"]
    assert gate.to_dict()["close_to_limit"] == close


def test_none_is_not_applicable_nan_fails() -> None:
    gate = apply_gate({**GOOD, "tstr_gap": None}, Thresholds())
    assert gate.passed and gate.not_applicable == ["tstr_gap"]
    gate = apply_gate({**GOOD, "mia_auc": math.nan}, Thresholds())
    assert not gate.passed and gate.failures()[0].startswith("mia_auc = nan")


def test_missing_metric_is_an_error_not_a_skip() -> None:
    metrics = dict(GOOD)
    del metrics["mia_auc"]
    with pytest.raises(ValueError, match="mia_auc"):
        apply_gate(metrics, Thresholds())


def test_override_passes_but_keeps_the_record() -> None:
    metrics = {**GOOD, "exact_copy_excess": 0.2}
    gate = apply_gate(metrics, Thresholds(), override=True, override_reason="approved by DPO")
    assert gate.passed and gate.overridden
    assert gate.override_reason == "approved by DPO"
    assert gate.failures() == ["exact_copy_excess = 0.200 > max 0.010"]
    gate.raise_if_failed()  # does not raise


def test_a_failed_gate_names_the_knob_most_likely_to_help() -> None:
    from jobs.gate import gate_message

    assert apply_gate(GOOD, Thresholds()).remedies() == []
    label = apply_gate({**GOOD, "tstr_gap": 0.12}, Thresholds())
    assert label.remedies() == [label.remedies()[0]] and "guidance_scale" in label.remedies()[0]
    # fidelity comes first, and a privacy failure points the other way (fewer steps)
    both = apply_gate({**GOOD, "mia_auc": 0.7, "detection_auc": 0.95}, Thresholds())
    first, second = both.remedies()
    assert "raise training.steps" in first and "fewer steps" in second
    assert both.to_dict()["remedies"] == [first, second]
    report = {"gate": both.to_dict(), "extra": {"training": {"steps": 2500}}}
    message = gate_message(both.failures(), report)
    assert message.startswith("gate failed, export blocked: detection_auc = 0.950 > max 0.900")
    assert message.endswith("raise training.steps (this run trained 2,500 steps)")
    assert "\n" not in message
    shapes_and_trends = apply_gate({**GOOD, "column_shapes": 0.5, "pair_trends": 0.5}, Thresholds())
    assert len(shapes_and_trends.remedies()) == 1  # one knob, said once
