"""The report files: complete, self-contained, atomic, and free of row values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from evaluation_fixtures import ChurnSplit, planted_copies, split_churn

from evaluation.gate import DP_FIELDS
from evaluation.report import summary_rows, write_report
from evaluation.table import TableEvaluation, evaluate_table
from synth.config import Thresholds


@pytest.fixture(scope="module")
def churn() -> ChurnSplit:
    return split_churn()


@pytest.fixture(scope="module")
def evaluation(churn: ChurnSplit) -> TableEvaluation:
    syn = planted_copies(churn, share=0.3)  # a failing gate exercises more of the report
    return evaluate_table(
        churn.train, churn.holdout, syn, churn.schema, Thresholds(), progress=False
    )


@pytest.fixture(scope="module")
def written(
    tmp_path_factory: pytest.TempPathFactory, churn: ChurnSplit, evaluation: TableEvaluation
) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("report") / "nested"
    return write_report(
        evaluation, out, train=churn.train, synthetic=churn.fresh, schema=churn.schema,
        extra={"spec_hash": "abc123", "source": Path("data/churn.csv")},
    )  # fmt: skip


def test_report_json(written: tuple[Path, Path], evaluation: TableEvaluation) -> None:
    json_path, _ = written
    report = json.loads(json_path.read_text())
    names = {c["name"] for c in report["gate"]["checks"]}
    fields = [f for f in Thresholds().model_dump() if f not in DP_FIELDS]  # DP: when asked
    assert names == {field.rsplit("_", 1)[0] for field in fields}
    assert report["gate"]["passed"] is False
    assert report["gate"]["failures"] == evaluation.gate.failures()
    assert report["extra"] == {"spec_hash": "abc123", "source": "data/churn.csv"}
    assert report["metrics"]["n_train"] == 3000
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["report.html", "report.json"]


def test_report_json_holds_no_row_values(written: tuple[Path, Path], churn: ChurnSplit) -> None:
    text = written[0].read_text()
    values = set(churn.train["monthly_charges"].astype(str)) | set(
        churn.train["total_charges"].dropna().astype(str)
    )
    leaked = sorted(v for v in values if v in text)
    assert leaked == []


def test_report_html(written: tuple[Path, Path], evaluation: TableEvaluation) -> None:
    page = written[1].read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert page.count('<img src="data:image/png;base64,') == 20 + 2  # columns, heatmap, DCR
    for check in evaluation.gate.checks:
        assert f"<code>{check.name}</code>" in page
    assert "GATE FAILED" in page and "exact_copy_excess = 0.29" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    assert len(page) < 3_000_000


def test_summary_rows(evaluation: TableEvaluation) -> None:
    rows = summary_rows(evaluation.gate)
    assert [r["check"] for r in rows] == [c.name for c in evaluation.gate.checks]
    by_name = {r["check"]: r for r in rows}
    assert by_name["exact_copy_excess"]["status"] == "FAIL"
    assert by_name["column_shapes"]["status"] == "pass"
    assert by_name["dcr_share"]["threshold"] == "<= 0.600"
    assert set(rows[0]) == {"check", "kind", "value", "threshold", "status"}


def test_protection_section_counts_without_naming() -> None:
    from evaluation.report import protection_html

    page = protection_html(
        {"rare_category_min_rows": 5, "rare_category_label": "_RARE_",
         "grouped_values": {"city": 3, "note": 1}, "clipped_bounds": 2}
    )  # fmt: skip
    assert "k = 5" in page and "<td>city</td><td>3</td>" in page and "_RARE_" in page
    assert "collision chance" not in page
    ids = protection_html({"rare_category_min_rows": 5, "id_collision_chance": {"tailnum": 3e-4}})
    assert "<td>tailnum</td><td>3.00e-04</td>" in ids
    assert "No value" in protection_html({"rare_category_min_rows": 5, "grouped_values": {}})
    assert "Off" in protection_html({"rare_category_min_rows": 1, "grouped_values": {}})
    images = protection_html({"rare_category_min_rows": 5, "protected_classes": 2})
    assert "2 class(es) with fewer than 5 training images" in images
    assert protection_html(None) == ""
