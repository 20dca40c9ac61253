"""The gate step: a failed verdict destroys the staged records, so nothing can export them,
and its report is kept apart from any earlier export, as a failed run's."""

from __future__ import annotations

import shutil
from typing import Any

from evaluation.gate import STEPS_KNOB
from jobs.paths import JobPaths
from jobs.reports import keep_failed_report


def gate(report: dict[str, Any], paths: JobPaths) -> list[str]:
    """The failing checks; on failure the staged records are destroyed and the report moves
    to `out/failed-run/`.

    An overridden gate passes (the override is recorded in the report and the lineage).
    """
    g = report["gate"]
    if g["passed"]:
        return []
    shutil.rmtree(paths.staging, ignore_errors=True)
    keep_failed_report(paths)
    return list(g["failures"]) or ["gate failed"]


def gate_message(failures: list[str], report: dict[str, Any] | None = None) -> str:
    """One line: the failing checks, then the knob most likely to help (`Gate.remedies`)."""
    message = "gate failed, export blocked: " + "; ".join(failures)
    remedies = (report or {}).get("gate", {}).get("remedies") or []
    if not remedies:
        return message
    hint = remedies[0]
    steps = (report or {}).get("extra", {}).get("training", {}).get("steps")
    if steps and STEPS_KNOB in hint:
        hint += f" (this run trained {steps:,} steps)"
    return f"{message}. Most likely to help: {hint}"
