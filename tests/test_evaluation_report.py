"""The report files: complete, self-contained, atomic, and free of row values."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evaluation_fixtures import ChurnSplit, planted_copies, split_churn
from plotly.offline import get_plotlyjs

from evaluation.gate import DP_FIELDS
from evaluation.report import summary_rows, write_report
from evaluation.report_columns import side_stats
from evaluation.report_plots import categorical_figure, category_order
from evaluation.report_sections import lineage_html
from evaluation.table import TableEvaluation, evaluate_table
from synth.config import Thresholds
from synth.data.schema import ColumnSpec


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
    # interactive plots: the columns, the associations, the distances; plotly.js once
    assert page.count('class="plotly-graph-div"') == 20 + 2
    assert page.count('<script type="text/javascript">') == 1
    for check in evaluation.gate.checks:
        assert f"<code>{check.name}</code>" in page
        assert f'id="check-{check.name}"' in page  # what the verdict's links point at
    assert "GATE FAILED" in page and "exact_copy_excess = 0.29" in page
    assert page.index('id="verdict"') < page.index('id="worst-first"') < page.index("<h2>Checks")
    # self-contained: no link to fetch outside plotly.js (whose strings name plotly.com);
    # tests/test_report_browser.py checks that a browser fetches nothing
    ours = page.replace(get_plotlyjs(), "")
    assert re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", ours) is None
    assert "<link" not in ours and "http" not in ours
    assert len(page) < 6_000_000
    # worst first: the five worst columns and pairs, with their scores
    worst = page[page.index('id="worst-first"') : page.index("<h2>Checks")]
    for name, score in sorted(evaluation.per_column.items(), key=lambda kv: kv[1])[:5]:
        assert f"<code>{name}</code>" in worst and f">{score:.3f}<" in worst
    pairs = sorted(evaluation.pair_trends.pairs, key=lambda p: p.score)[:5]
    assert all(f">{p.score:.3f}<" in worst for p in pairs)
    # tstr and trtr explained; the lineage as a table with its JSON folded away
    assert "TSTR</b> trains a model on the synthetic rows" in page
    assert "<td><code>spec_hash</code></td><td>abc123</td>" in page
    assert "<details><summary>Raw JSON</summary>" in page


def test_summary_rows(evaluation: TableEvaluation) -> None:
    rows = summary_rows(evaluation.gate)
    assert [r["check"] for r in rows] == [c.name for c in evaluation.gate.checks]
    by_name = {r["check"]: r for r in rows}
    assert by_name["exact_copy_excess"]["status"] == "FAIL"
    assert by_name["column_shapes"]["status"] == "pass"
    assert by_name["dcr_share"]["threshold"] == "<= 0.600"
    assert set(rows[0]) == {"check", "kind", "value", "threshold", "status", "close"}
    assert [r["check"] for r in rows if r["close"]] == evaluation.gate.to_dict()["close_to_limit"]
    assert all(r["status"] == "pass" for r in rows if r["close"])


def test_column_figures_never_show_one_record(churn: ChurnSplit) -> None:
    """Min and max are the k-th extremes, mean and std of values clamped to them; a category
    held by fewer than k training rows is never drawn by name."""
    spec = churn.schema.column("monthly_charges")
    values = churn.train["monthly_charges"].copy()
    values.iloc[0] = 987_654.0  # one extreme record
    stats = side_stats(values, spec, k=5)
    ordered = np.sort(values.to_numpy())
    assert (stats.low, stats.high) == (ordered[4], ordered[-5])
    assert stats.mean == pytest.approx(np.clip(ordered, ordered[4], ordered[-5]).mean())
    assert stats.mean < 200 and stats.n_missing == 0
    city = pd.Series(["north"] * 10 + ["south"] * 6 + ["lonely"] * 4)
    assert category_order(city, k=5) == ["north", "south"]
    assert category_order(city, k=7) == ["north"]
    fig = categorical_figure(ColumnSpec(name="city", kind="categorical", dtype="object"),
                             city, city, k=5)  # fmt: skip
    assert list(fig.data[0].x) == ["north", "south", "(rare)"]


def test_lineage_is_a_table_with_the_json_folded() -> None:
    page = lineage_html({"lineage": {"seed": 0, "versions": {"synth": "0.1"}}, "dp": None})
    assert "<td><code>lineage.seed</code></td><td>0</td>" in page
    assert "<td><code>lineage.versions.synth</code></td><td>0.1</td>" in page
    assert page.index("</table>") < page.index("<details><summary>Raw JSON</summary><pre>")


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
