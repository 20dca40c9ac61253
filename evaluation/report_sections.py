"""The table report's HTML sections, worst first: verdict, what to look at, per-column table,
model efficacy and lineage. Each is a function from typed results to an HTML string; column
names, counts and the aggregates of `evaluation.report_columns` only, never a row's value.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

import pandas as pd

from evaluation.fidelity import Efficacy, PairScore
from evaluation.gate import CLOSE_MARGIN, CheckResult, GateResult
from evaluation.report_columns import ColumnStats, RuleShare

DASH = "&ndash;"
CLOSE_TEXT = "close to the limit"

SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.tabIndex = 0;
    function sort() {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.sort, y = b.cells[col].dataset.sort;
        if (x === "" || y === "") { return (x === "") - (y === ""); }  // blanks last
        var nx = Number(x), ny = Number(y);
        var c = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
        return asc ? c : -c;
      });
      Array.prototype.forEach.call(heads, function (h) { h.setAttribute("aria-sort", "none"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      rows.forEach(function (r) { body.appendChild(r); });
    }
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sort(); } });
  });
});
"""
"""Click (or Enter on) a header of a `table.sortable` to sort by it; again to reverse."""

CSS = """
section.first{border-left:4px solid #dd8452;padding:2px 14px;margin:16px 0}
.verdict{border-left:4px solid #4c72b0;padding:2px 14px;margin:16px 0;max-width:60em}
.scroll{overflow-x:auto;max-width:100%} .scroll td.num{white-space:nowrap}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
.lineage td{word-break:break-word;max-width:60em}
details pre{max-height:30em;overflow:auto;background:#f8f8f8;padding:8px}
"""


def _num(value: float | None, fmt: str = ".4g") -> str:
    return DASH if value is None or not math.isfinite(value) else format(value, fmt)


def _sort_value(value: float | str | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return html.escape(str(value), quote=True)


def _cell(text: str, sort: float | str | None, css: str = "num") -> str:
    return f'<td class="{css}" data-sort="{_sort_value(sort)}">{text}</td>'


def _table(head: list[str], rows: list[str], css: str = "") -> str:
    ths = "".join(f"<th>{h}</th>" for h in head)
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def check_link(check: CheckResult) -> str:
    """The check's name, linking to its row (and its one-line meaning) in the checks table."""
    title = html.escape(check.description, quote=True)
    return f'<a href="#check-{check.name}" title="{title}"><code>{check.name}</code></a>'


# --------------------------------------------------------------------------- verdict


def verdict_html(gate: GateResult, metrics: dict[str, Any], k: int, extra: dict[str, Any]) -> str:
    """The privacy verdict in plain words: what was checked, what passed, what the checks
    cannot prove."""
    privacy = [c for c in gate.checks if c.kind == "privacy" and c.applicable]
    failed = [c for c in privacy if not c.passed]
    close = [c for c in privacy if c.close_to_limit]
    checked = (
        f"{len(privacy)} privacy checks compared the {metrics['n_synthetic']} synthetic rows "
        f"evaluated with the {metrics['n_train']} real training rows, with "
        f"{metrics['n_holdout']} real holdout rows the model never saw as the yardstick: exact "
        "and near copies, distances to the closest record, membership attacks, Anonymeter's "
        f"singling-out, linkability and inference attacks, and values held by fewer than "
        f"k = {k} training rows."
    )
    if failed:
        passed = (
            f"{len(privacy) - len(failed)} passed; {len(failed)} failed: "
            + ", ".join(check_link(c) for c in failed) + "."
        )  # fmt: skip
    else:
        passed = f"All {len(privacy)} passed."
    if close:
        passed += f" {CLOSE_TEXT.capitalize()}: " + ", ".join(check_link(c) for c in close) + "."
    cannot = (
        "Passing is evidence, not proof: a leak smaller than a check's statistical margin "
        "(about 1% of rows on a 1,500-row holdout), or a pattern that reveals someone without "
        "a rare value or a copied row, passes every check. Only differential privacy bounds "
        f"that{_dp_clause(extra)}."
    )
    meanings = "".join(
        f"<li>{check_link(c)}: {html.escape(c.description)}</li>" for c in privacy
    )  # fmt: skip
    return (
        f'<section id="verdict" class="verdict"><h2>Privacy verdict</h2>'
        f"<p>{checked} {passed}</p><p>{cannot}</p>"
        f"<details><summary>What each privacy check means</summary><ul>{meanings}</ul>"
        "</details></section>"
    )


def _dp_clause(extra: dict[str, Any]) -> str:
    if "dp" not in extra:
        return ""
    dp = extra["dp"]
    if dp is None:
        return ", and this model was trained without it"
    return f"; this model was trained with it (epsilon {float(dp['epsilon']):.3g})"


# --------------------------------------------------------------------------- worst first


def close_html(gate: GateResult) -> str:
    close = [c for c in gate.checks if c.close_to_limit]
    if not close:
        return ""
    items = "".join(
        f'<li>{check_link(c)}: <span class="close">{CLOSE_TEXT}</span> ({html.escape(c.line())})'
        "</li>"
        for c in close
    )
    return (
        f"<h3>Checks {CLOSE_TEXT}</h3><p>Passed, but within {CLOSE_MARGIN:.0%} of the "
        f"threshold:</p><ul>{items}</ul>"
    )


def worst_columns_html(stats: list[ColumnStats], anchors: dict[str, str]) -> str:
    rows = [
        f"<tr><td>{_column_link(c.name, anchors)}</td><td>{c.metric}</td>"
        + _cell(_num(c.score, ".3f"), c.score) + "</tr>"
        for c in stats
    ]  # fmt: skip
    return "<h3>Worst columns</h3>" + _table(["column", "metric", "score (1 = same)"], rows)


def _column_link(name: str, anchors: dict[str, str]) -> str:
    text = f"<code>{html.escape(name)}</code>"
    return f'<a href="#{anchors[name]}">{text}</a>' if name in anchors else text


def worst_pairs_html(pairs: list[PairScore]) -> str:
    if not pairs:
        return ""
    rows = [
        f"<tr><td><code>{html.escape(p.column_1)}</code> &times; "
        f"<code>{html.escape(p.column_2)}</code></td><td>{p.metric}</td>"
        + _cell(_num(p.score, ".3f"), p.score) + "</tr>"
        for p in pairs
    ]  # fmt: skip
    return "<h3>Worst column pairs</h3>" + _table(["pair", "metric", "score (1 = same)"], rows)


def rule_breaks_html(
    shares: list[RuleShare], rule_breaks: float, holdout_rule_breaks: float, n_synthetic: int,
    min_support: int,
) -> str:  # fmt: skip
    """Every discovered rule, most broken first, by its columns (never its values)."""
    if not shares:
        return ""
    n_broken = round(rule_breaks * n_synthetic)
    head = (
        f"<h3>Rule breaks</h3><p>{n_broken} of {n_synthetic} synthetic rows "
        f"({rule_breaks:.1%}) break a rule that every real training row keeps (holdout rows: "
        f"{holdout_rule_breaks:.1%}). {len(shares)} rule(s), each with a premise held by at "
        f"least {min_support} training rows:</p>"
    )
    broken = [r for r in shares if r.synthetic_breaks or r.holdout_breaks]
    kept = [r for r in shares if not (r.synthetic_breaks or r.holdout_breaks)]
    body = _rules_table(broken) if broken else "<p>No row breaks a rule.</p>"
    if kept:
        body += (
            f"<details><summary>{len(kept)} rule(s) no synthetic or holdout row breaks"
            f"</summary>{_rules_table(kept)}</details>"
        )
    return head + body


def _rules_table(shares: list[RuleShare]) -> str:
    rows = [
        f"<tr><td><code>{html.escape(r.rule)}</code></td><td>{r.kind}</td>"
        + _cell(f"{r.synthetic_breaks} ({_num(r.synthetic_share, '.1%')})", r.synthetic_share)
        + _cell(f"{r.holdout_breaks} ({_num(r.holdout_share, '.1%')})", r.holdout_share)
        + "</tr>"
        for r in shares
    ]  # fmt: skip
    head = ["rule (columns)", "kind", "synthetic rows breaking", "holdout rows breaking"]
    return _table(head, rows, "rules")


def missing_html(moved: list[ColumnStats]) -> str:
    if not moved:
        return ""
    rows = [
        f"<tr><td><code>{html.escape(c.name)}</code></td>"
        + _cell(f"{c.real.missing:.2%} ({c.real.n_missing})", c.real.missing)
        + _cell(f"{c.synthetic.missing:.2%} ({c.synthetic.n_missing})", c.synthetic.missing)
        + "</tr>"
        for c in moved
    ]  # fmt: skip
    return "<h3>Missing values that moved</h3>" + _table(
        ["column", "missing: real (rows)", "missing: synthetic (rows)"], rows
    )


# --------------------------------------------------------------------------- per column


def _value_text(value: float | None, kind: str, spread: bool = False) -> str:
    """A number, or a date (a spread of dates in days)."""
    if value is None or not math.isfinite(value):
        return DASH
    if kind != "datetime":
        return f"{value:.4g}"
    if spread:
        return f"{value / 86_400e9:.4g} days"
    stamp = pd.Timestamp(int(value))
    return stamp.strftime("%Y-%m-%d" if stamp == stamp.normalize() else "%Y-%m-%d %H:%M")


def _pair_cells(c: ColumnStats, field: str, spread: bool = False) -> str:
    cells = []
    for side in (c.real, c.synthetic):
        value = getattr(side, field)
        cells.append(_cell(_value_text(value, c.kind, spread), value))
    return "".join(cells)


def _missing_cells(c: ColumnStats) -> str:
    return "".join(_cell(_num(s.missing, ".2%"), s.missing) for s in (c.real, c.synthetic))


def _distinct_cells(c: ColumnStats) -> str:
    return "".join(_cell(str(s.distinct), s.distinct) for s in (c.real, c.synthetic))


COLUMN_HEAD = [
    "column", "kind", "shape score", "mean real", "mean synthetic", "std real",
    "std synthetic", "min real", "min synthetic", "max real", "max synthetic",
    "missing real", "missing synthetic", "distinct real", "distinct synthetic",
]  # fmt: skip


def column_table_html(stats: list[ColumnStats], k: int, anchors: dict[str, str]) -> str:
    """Every modelled column, real against synthetic, sortable by any header."""
    rows = [
        f'<tr><td data-sort="{_sort_value(c.name)}">{_column_link(c.name, anchors)}</td>'
        + _cell(c.kind, c.kind, "")
        + _cell(_num(c.score, ".3f"), c.score)
        + _pair_cells(c, "mean") + _pair_cells(c, "std", spread=True)
        + _pair_cells(c, "low") + _pair_cells(c, "high")
        + _missing_cells(c) + _distinct_cells(c) + "</tr>"
        for c in stats
    ]  # fmt: skip
    note = (
        f'<p class="muted">Min and max are the {k}-th smallest and largest values (the '
        "protected bounds the model uses; a declared bound wins), never one record's extreme; "
        "mean and std are of the values clamped to them. Categorical columns show missing "
        "shares and distinct counts only. Click a header to sort.</p>"
    )
    return (
        '<section id="columns"><h2>Per column: real against synthetic</h2>'
        + note + f'<div class="scroll">{_table(COLUMN_HEAD, rows, "sortable")}</div></section>'
    )  # fmt: skip


# --------------------------------------------------------------------------- efficacy


def efficacy_html(efficacy: Efficacy | None) -> str:
    """TSTR and TRTR, said in words, with their numbers."""
    head = "<h2>Machine-learning efficacy: TSTR and TRTR</h2>"
    if efficacy is None:
        return head + "<p>No target column: not measured.</p>"
    metric = "ROC AUC" if efficacy.metric == "roc_auc" else "R\u00b2"
    figures = (
        ("TRTR: train on real, test on real", efficacy.trtr),
        ("TSTR: train on synthetic, test on real", efficacy.tstr),
        ("gap: TRTR &minus; TSTR (<code>tstr_gap</code>)", efficacy.gap),
    )
    rows = [f"<tr><td>{label}</td>{_cell(_num(v, '.4f'), v)}</tr>" for label, v in figures]
    return (
        head
        + (
            f"<p>Can the synthetic rows stand in for the real ones to predict the target? "
            f"<b>TSTR</b> trains a model on the synthetic rows and scores it ({metric}) on the "
            "real holdout rows; <b>TRTR</b> trains the same model on as many real training rows "
            "and scores it on the same holdout. The gap is what the synthetic rows lost about the "
            "target: 0 is ideal, and below 0 the synthetic rows did better.</p>"
        )
        + _table(["", metric], rows)
    )


# --------------------------------------------------------------------------- lineage


def _flat(value: Any, prefix: str, depth: int) -> list[tuple[str, str]]:
    if isinstance(value, dict) and value and depth > 0:
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out += _flat(v, f"{prefix}.{k}" if prefix else str(k), depth - 1)
        return out
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return [(prefix, ", ".join(str(v) for v in value) or "\u2013")]
    if isinstance(value, dict | list):
        return [(prefix, json.dumps(value, default=str))]
    return [(prefix, "\u2013" if value is None else str(value))]


def lineage_html(extra: dict[str, Any]) -> str:
    """The lineage as a table of fields (nested ones dotted), the raw JSON folded away."""
    rows = [
        f"<tr><td><code>{html.escape(key)}</code></td><td>{html.escape(text)}</td></tr>"
        for key, text in _flat(extra, "", depth=3)
    ]
    raw = html.escape(json.dumps(extra, indent=2, default=str))
    return (
        '<h2 id="lineage">Lineage</h2>' + _table(["field", "value"], rows, "lineage")
        + f"<details><summary>Raw JSON</summary><pre>{raw}</pre></details>"
    )  # fmt: skip
