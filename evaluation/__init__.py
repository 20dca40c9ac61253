"""Fidelity and privacy checks a synthetic table must pass before export.

Callers go through one entry, `evaluation.suite` (`evaluate`, then `write_report`), for tables
and images alike; everything else is a small, pure building block with its own tests.
"""

from evaluation.gate import CheckResult, GateResult, apply_gate
from evaluation.report import summary_rows, write_report
from evaluation.table import TableEvaluation, evaluate_table

__all__ = [
    "CheckResult",
    "GateResult",
    "TableEvaluation",
    "apply_gate",
    "evaluate_table",
    "summary_rows",
    "write_report",
]
