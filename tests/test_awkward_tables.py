"""Awkward tables (issue 10): each real table, changed to show one case, either runs or ends
`synth run` with exit 2 and one line naming the column (never a value), before any training,
with nothing written (the CLI's preflight runs load, split and check in a scratch folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_wine
from typer.testing import CliRunner

from synth_cli.main import EXIT_BAD_INPUT, app


def _wine() -> pd.DataFrame:
    wine = load_wine(as_frame=True).frame
    wine["grade"] = np.array(["a", "b", "c"])[wine.pop("target")]
    return wine


def _refused(data: Path, out: Path, *args: str) -> str:
    """Run `synth run`; assert exit 2, one output line and no `out`; return the line."""
    result = CliRunner().invoke(
        app, ["run", "--data", str(data), "--out", str(out), "--no-progress", *args]
    )
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing written
    return lines[0]


def test_inf_in_a_numeric_column_is_named_at_load(tmp_path):
    wine = _wine()
    wine.loc[41, "alcohol"] = np.inf
    csv = tmp_path / "wine.csv"
    wine.to_csv(csv, index=False)  # written as "inf"
    line = _refused(csv, tmp_path / "out", "--target", "grade")
    assert "column 'alcohol', row 42" in line and "finite number" in line
    assert "inf," not in line.split("(not inf")[0]  # the value itself is not quoted


def test_a_list_or_struct_column_in_parquet_is_named(tmp_path):
    cancer = load_breast_cancer(as_frame=True).frame
    cancer["readings"] = [[float(v), 1.0] for v in cancer["mean radius"]]
    cancer["visit"] = [{"site": "a", "n": i} for i in range(len(cancer))]
    parquet = tmp_path / "cancer.parquet"
    cancer.to_parquet(parquet)
    line = _refused(parquet, tmp_path / "out", "--target", "target")
    assert "column 'readings'" in line and "lists or structs" in line
    cancer.drop(columns="readings").to_parquet(parquet)
    line = _refused(parquet, tmp_path / "out", "--target", "target")
    assert "column 'visit'" in line and "lists or structs" in line
