"""Awkward tables (issue 10): each real table, changed to show one case, either runs or ends
`synth run` with exit 2 and one line naming the column (never a value), before any training,
with nothing written (the CLI's preflight runs load, split and check in a scratch folder)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_wine
from typer.testing import CliRunner

from jobs.preflight import preflight
from jobs.table import TableSteps
from synth.config import build_spec
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
    # The command itself, as a user runs it: no warning from numpy joins the one line.
    proc = subprocess.run(
        [sys.executable, "-m", "synth_cli", "run", "--data", str(csv), "--target", "grade",
         "--out", str(tmp_path / "out"), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert [x for x in (proc.stdout + proc.stderr).splitlines() if x.strip()] == [line]
    assert not (tmp_path / "out").exists()


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


def test_a_single_class_target_is_named(tmp_path):
    wine = _wine()
    wine["grade"] = "a"
    csv = tmp_path / "wine.csv"
    wine.to_csv(csv, index=False)
    line = _refused(csv, tmp_path / "out", "--target", "grade")
    assert "target 'grade' has one class; a conditional model needs at least two" in line


def test_a_column_mixing_numbers_and_text_is_named_not_made_an_id(tmp_path, churn):
    table = churn.copy()
    table["monthly_charges"] = table["monthly_charges"].astype(object)
    table.loc[[120, 3000], "monthly_charges"] = "unknown"  # a code among numbers
    csv = tmp_path / "churn.csv"
    table.to_csv(csv, index=False)
    line = _refused(csv, tmp_path / "out", "--target", "churn")
    assert "column 'monthly_charges', row 121" in line
    assert "mixing numbers and text" in line and "unknown" not in line
    # The fixes the message names work: a kind override, or blanking the text cells.
    spec = build_spec(
        {"source": {"path": str(csv), "target": "churn"}},
        {"export.out": str(tmp_path / "out2"), "source.columns": {
            "monthly_charges": {"kind": "id"}}},
    )  # fmt: skip
    preflight(spec)
    table.loc[[120, 3000], "monthly_charges"] = None
    table.to_csv(csv, index=False)
    schema = TableSteps().read(build_spec({"source": {"path": str(csv), "target": "churn"}}))[1]
    assert schema.column("monthly_charges").kind == "numeric"


def test_a_target_with_500_classes_is_categorical(tmp_path, churn):
    table = churn.drop(columns="churn")
    table["segment"] = [f"s{i % 500:03d}" for i in range(len(table))]
    csv = tmp_path / "churn.csv"
    table.to_csv(csv, index=False)
    spec = build_spec(
        {"source": {"path": str(csv), "target": "segment"}},
        {"export.out": str(tmp_path / "out")},
    )
    schema = TableSteps().read(spec)[1]
    assert schema.target_kind == "categorical"
    preflight(spec)  # load, split and check pass
    assert not (tmp_path / "out").exists()


def test_a_target_past_the_class_limit_states_the_limit(tmp_path, churn):
    table = churn.drop(columns="churn")
    table["segment"] = [f"s{i % 3000:04d}" for i in range(len(table))]
    csv = tmp_path / "churn.csv"
    table.to_csv(csv, index=False)
    line = _refused(csv, tmp_path / "out", "--target", "segment")
    assert "target 'segment' has 3000 classes; at most 500 are supported" in line


def test_integers_beyond_2_to_the_53_are_refused_not_rounded(tmp_path):
    wine = _wine()
    wine["account"] = 2**53 + np.arange(len(wine)) % 40  # 2**53 + 1 has no float64
    csv = tmp_path / "wine.csv"
    wine.to_csv(csv, index=False)
    assert pd.read_csv(csv)["account"].dtype == np.int64
    line = _refused(csv, tmp_path / "out", "--target", "grade")
    assert "column 'account' holds integers beyond 2**53" in line
    assert str(2**53) not in line


def test_big_integers_with_missing_values_are_refused_too(tmp_path):
    """Read with a missing value, the column is float64: its digits are gone, so it is refused
    the same way rather than modelled as if exact."""
    wine = _wine()
    wine["account"] = (2**53 + np.arange(len(wine)) % 40).astype(object)
    wine.loc[5, "account"] = None
    csv = tmp_path / "wine.csv"
    wine.to_csv(csv, index=False)
    assert pd.read_csv(csv)["account"].dtype == np.float64
    line = _refused(csv, tmp_path / "out", "--target", "grade")
    assert "column 'account' holds integers beyond 2**53" in line
    parquet = tmp_path / "wine.parquet"  # read back as Int64: exact, and refused as well
    wine.astype({"account": "Int64"}).to_parquet(parquet)
    line = _refused(parquet, tmp_path / "out", "--target", "grade")
    assert "column 'account' holds integers beyond 2**53" in line
