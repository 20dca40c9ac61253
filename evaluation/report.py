"""The evaluation report: `report.json` for machines, a self-contained `report.html` for people.

The table report reads worst first: the gate's verdict, the privacy verdict in words, then what
to look at (failed checks, checks close to their limit, the worst columns and column pairs, the
rows breaking each logical rule, missing values that moved), then every check, a sortable
per-column table, and the plots. The plots are interactive Plotly figures (hover values, zoom)
with plotly.js inlined once, so the page is one file that works offline: see
`evaluation.report_plots` for why Plotly. The image report shares the gate's pieces here and
keeps its PNG plots.

Real data enters only as aggregates: binned and pooled shares, association matrices, and the
privacy-safe column figures of `evaluation.report_columns` (bounds are the `k`-th extremes, never
a record's; categories held by fewer than `k` training rows are pooled into "(rare)").
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from evaluation.gate import CLOSE_MARGIN, CheckResult, GateResult
from evaluation.report_columns import (
    ColumnStats,
    column_stats,
    missing_shifts,
    rule_shares,
    worst_columns,
    worst_pairs,
)
from evaluation.report_plots import (
    REAL_COLOR,
    SYN_COLOR,
    association_figure,
    column_figure,
    distance_figure,
    figure_html,
    plotly_script,
)
from evaluation.report_sections import (
    CLOSE_TEXT,
    CSS,
    SORT_SCRIPT,
    close_html,
    column_table_html,
    efficacy_html,
    lineage_html,
    missing_html,
    rule_breaks_html,
    verdict_html,
    worst_columns_html,
    worst_pairs_html,
)
from evaluation.table import TableEvaluation, json_safe
from synth.atomic import atomic_write_text
from synth.data.schema import ColumnSpec, TableSchema

MAX_PLOTTED_COLUMNS = 30


# --------------------------------------------------------------------------- summary rows


def check_status(check: CheckResult) -> str:
    if not check.applicable:
        return "n/a"
    return "pass" if check.passed else "FAIL"


def summary_rows(gate: GateResult) -> list[dict[str, Any]]:
    """One row per gate check, for a CLI table or a Prefect table artifact. `close`: passed,
    but within `CLOSE_MARGIN` (10%) of the threshold."""
    return [
        {
            "check": c.name,
            "kind": c.kind,
            "value": None if c.value is None else round(c.value, 4),
            "threshold": f"{'>=' if c.bound == 'min' else '<='} {c.threshold:.3f}",
            "status": check_status(c),
            "close": c.close_to_limit,
        }
        for c in gate.checks
    ]


# --------------------------------------------------------------------------- files


def write_report(
    evaluation: TableEvaluation,
    out_dir: Path,
    *,
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write `report.json` (evaluation.to_dict() plus `extra` under "extra") and `report.html`.

    Returns (json_path, html_path). `extra` is for lineage (spec hash, data fingerprints...);
    non-JSON values in it are written with str().
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = evaluation.to_dict()
    payload["extra"] = json_safe(json.loads(json.dumps(extra or {}, default=str)))
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    atomic_write_text(json_path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    atomic_write_text(html_path, render_html(evaluation, train, synthetic, schema, extra))
    return json_path, html_path


# --------------------------------------------------------------------------- plots


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def img_tag(fig: Figure, alt: str) -> str:
    """The figure as an inline PNG `<img>`: the report is one self-contained file."""
    return f'<img src="data:image/png;base64,{_png(fig)}" alt="{html.escape(alt)}">'


def distance_histogram_plot(
    h: Any, *, threshold: float, threshold_label: str, xlabel: str, ylabel: str
) -> Figure:
    """Holdout-to-train vs synthetic-to-train nearest distances (`h`: edges, holdout and
    synthetic counts), each normalised, with the near-copy threshold marked."""
    edges = np.array(h.edges)
    widths = np.diff(edges)
    fig = Figure(figsize=(5.5, 3.0), dpi=80)
    ax = fig.add_subplot()
    for counts, color, label in (
        (h.holdout, REAL_COLOR, "holdout -> train"),
        (h.synthetic, SYN_COLOR, "synthetic -> train"),
    ):
        c = np.array(counts, dtype=float)
        ax.bar(edges[:-1], c / max(c.sum(), 1.0), widths, align="edge", alpha=0.55,
               color=color, label=label)  # fmt: skip
    ax.axvline(threshold, color="k", ls="--", lw=1, label=threshold_label)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return fig


# --------------------------------------------------------------------------- html

BASE_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em} td,th{padding:4px 10px;border:1px solid #ddd}
th{background:#f4f4f4;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{background:#e3f4e3;color:#1b6e1b;font-weight:600}
.fail{background:#fbe3e3;color:#a31515;font-weight:600}
.na{background:#eee;color:#666}
.close{background:#fff3cd;color:#7a5200;font-weight:600}
.banner{padding:10px 14px;border-radius:6px;font-weight:600;display:inline-block}
"""
"""Shared by the table and image reports."""
_CSS = (
    BASE_CSS
    + CSS
    + """.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:8px}
.grid>div{border:1px solid #eee;min-width:0} .grid h3{font-size:.95em;margin:6px 8px}
.muted{color:#666;font-size:.85em}
"""
)


def gate_banner(gate: GateResult) -> str:
    """The verdict as a coloured banner (shared by the table and image reports)."""
    if gate.overridden and not all(c.passed for c in gate.checks):
        reason = html.escape(gate.override_reason or "no reason")
        colour, text = "#fff3cd", f"GATE OVERRIDDEN: {reason}"
    elif gate.passed:
        colour, text = "#e3f4e3", "GATE PASSED"
    else:
        colour, text = "#fbe3e3", "GATE FAILED"
    return f'<p class="banner" style="background:{colour}">{text}</p>'


def gate_failures(gate: GateResult) -> str:
    """The failed checks as a list, or nothing (shared by the table and image reports)."""
    items = "".join(f"<li><code>{html.escape(f)}</code></li>" for f in gate.failures())
    if not items:
        return ""
    remedies = "".join(f"<li>{html.escape(r)}</li>" for r in gate.remedies())
    hint = f"<p>Most likely to help, first:</p><ol>{remedies}</ol>" if remedies else ""
    return f"<ul>{items}</ul>{hint}"


def checks_table(gate: GateResult) -> str:
    """The checks as an HTML table (shared by the table and image reports)."""
    rows = []
    for c in gate.checks:
        status = check_status(c)
        css = {"pass": "pass", "FAIL": "fail"}.get(status, "na")
        if c.close_to_limit:
            css, status = "close", f"pass, {CLOSE_TEXT}"
        value = "&ndash;" if c.value is None else f"{c.value:.4f}"
        bound = "&ge;" if c.bound == "min" else "&le;"
        rows.append(
            f'<tr id="check-{c.name}"><td><code>{html.escape(c.name)}</code></td><td>{c.kind}</td>'
            f'<td class="num">{value}</td><td class="num">{bound} {c.threshold:.3f}</td>'
            f'<td class="{css}">{status}</td><td>{html.escape(c.description)}</td></tr>'
        )
    head = (
        "<tr><th>check</th><th>kind</th><th>value</th><th>threshold</th><th>status</th>"
        "<th>meaning</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def metrics_table(metrics: dict[str, Any]) -> str:
    """Every figure as an HTML table (shared by the table and image reports)."""
    rows = []
    for k, v in metrics.items():
        text = "&ndash;" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))
        rows.append(f'<tr><td><code>{html.escape(k)}</code></td><td class="num">{text}</td></tr>')
    return f"<table><tr><th>metric</th><th>value</th></tr>{''.join(rows)}</table>"


def _plotted_columns(evaluation: TableEvaluation, schema: TableSchema) -> list[ColumnSpec]:
    """All modelled columns, or the MAX_PLOTTED_COLUMNS with the worst shape scores."""
    specs = schema.modelled
    if len(specs) <= MAX_PLOTTED_COLUMNS:
        return specs
    score = evaluation.shapes.per_column
    worst = sorted(specs, key=lambda c: np.nan_to_num(score.get(c.name, 1.0), nan=-1.0))
    chosen = {c.name for c in worst[:MAX_PLOTTED_COLUMNS]}
    return [c for c in specs if c.name in chosen]


DP_FIGURES = (
    ("epsilon", "epsilon (whole run)"),
    ("epsilon_preprocessing", "epsilon spent on preprocessing"),
    ("epsilon_training", "epsilon spent on training"),
    ("delta", "delta"),
    ("unit", "privacy unit"),
    ("n_units", "people"),
    ("accountant", "accountant"),
    ("noise_multiplier", "noise multiplier"),
    ("max_grad_norm", "clipping norm"),
    ("sample_rate", "sampling rate"),
    ("steps", "steps"),
    ("noise_multiplicity", "noise draws per example"),
    ("preprocessing", "preprocessing"),
)


def dp_html(extra: dict[str, Any]) -> str:
    """The formal guarantee: the DP figures, or a plain statement that there is none."""
    if "dp" not in extra:
        return ""
    dp = extra["dp"]
    if dp is None:
        return (
            "<h2>Differential privacy</h2><p>None: trained without differential privacy "
            "(<code>dp: null</code>). The checks above are evidence, not a guarantee.</p>"
        )
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{html.escape(_figure(dp.get(key)))}</td></tr>"
        for key, label in DP_FIGURES
    )
    estimated = ", ".join(dp.get("estimated") or []) or "nothing (the schema declared it all)"
    return (
        "<h2>Differential privacy</h2><table>" + rows + "</table>"
        f"<p>Estimated privately: {html.escape(estimated)}.</p>"
    )


def _figure(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def extra_html(extra: dict[str, Any] | None) -> str:
    """What a report shows besides the checks: DP, protection, and the lineage."""
    if not extra:
        return ""
    return dp_html(extra) + protection_html(extra.get("protection")) + lineage_html(extra)


def protection_html(protection: dict[str, Any] | None) -> str:
    """What rare-value protection withheld, in counts: grouped values per column, or
    protected image classes. Never a value."""
    if not protection:
        return ""
    k = protection.get("rare_category_min_rows")
    if k == 1:
        return "<h2>Rare-value protection</h2><p>Off (<code>k = 1</code>), as configured.</p>"
    lines = [
        "<h2>Rare-value protection</h2>",
        f"<p>k = {k}: a value held by fewer than {k} training records is never emitted; "
        "numbers stay within the k-th smallest and largest training values.</p>",
    ]
    grouped = protection.get("grouped_values")
    if grouped:
        rows = "".join(
            f"<tr><td>{html.escape(str(name))}</td><td>{int(n)}</td></tr>"
            for name, n in grouped.items()
        )
        label = html.escape(str(protection.get("rare_category_label", "")))
        lines.append(
            f"<p>Values grouped into <code>{label}</code> (text) or a missing value "
            "(numbers), per column:</p>"
            f"<table><tr><th>column</th><th>values grouped</th></tr>{rows}</table>"
        )
    elif "grouped_values" in protection:
        lines.append("<p>No value was rare enough to group.</p>")
    ids = protection.get("id_collision_chance")
    if ids:
        rows = "".join(
            f"<tr><td>{html.escape(str(name))}</td><td>{float(p):.2e}</td></tr>"
            for name, p in ids.items()
        )
        lines.append(
            "<p>Regenerated IDs keep the source's format; the chance that one equals a "
            "training ID:</p>"
            f"<table><tr><th>column</th><th>collision chance</th></tr>{rows}</table>"
        )
    if protection.get("protected_classes") is not None:
        n = int(protection["protected_classes"])
        lines.append(f"<p>{n} class(es) with fewer than {k} training images: never sampled.</p>")
    return "".join(lines)


def worst_first_html(
    evaluation: TableEvaluation, stats: list[ColumnStats], anchors: dict[str, str]
) -> str:
    """What to look at first: failed checks, checks close to their limit, the worst columns
    and pairs, the rows breaking each rule, and missing values that moved."""
    m, r = evaluation.metrics, evaluation.rules
    failures = gate_failures(evaluation.gate)
    parts = [
        f"<h3>Failed checks</h3>{failures}" if failures else "",
        close_html(evaluation.gate),
        worst_columns_html(worst_columns(stats), anchors),
        worst_pairs_html(worst_pairs(evaluation.pair_trends)),
        rule_breaks_html(
            rule_shares(r, int(m["n_synthetic"] or 0), int(m["n_holdout"] or 0)),
            r.rule_breaks, r.holdout_rule_breaks, int(m["n_synthetic"] or 0), r.min_support,
        ),
        missing_html(missing_shifts(stats)),
    ]  # fmt: skip
    return (
        '<section id="worst-first" class="first"><h2>Worst first</h2>'
        f'<p class="muted">A check within {CLOSE_MARGIN:.0%} of its threshold is marked '
        f"{CLOSE_TEXT}.</p>{''.join(parts)}</section>"
    )


def distributions_html(
    evaluation: TableEvaluation,
    specs: list[ColumnSpec],
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    anchors: dict[str, str],
    k: int,
) -> str:
    """One interactive plot per column, real against synthetic."""
    plots = []
    for spec in specs:
        score = evaluation.shapes.per_column.get(spec.name, float("nan"))
        metric = evaluation.shapes.metric.get(spec.name, "")
        fig = column_figure(spec, train[spec.name], synthetic[spec.name], k)
        body = (
            figure_html(fig, anchors[spec.name] + "-plot")
            if fig is not None
            else f"<p>Fewer than {k} training values: not drawn.</p>"
        )
        plots.append(
            f'<div id="{anchors[spec.name]}"><h3><code>{html.escape(spec.name)}</code> '
            f'<span class="muted">{metric} {score:.3f}</span></h3>{body}</div>'
        )
    omitted = len(evaluation.kinds) - len(specs)
    return (
        "<h2>Column distributions (real train against synthetic)</h2>"
        '<p class="muted">Shares of each side\'s rows. Histograms span the train 0.5&ndash;99.5% '
        f"range within the protected bounds; categories held by fewer than {k} training rows "
        'are pooled as "(rare)". Hover for values; drag to zoom, double-click to reset.'
        f"{f' {omitted} best-matching columns not plotted.' if omitted else ''}</p>"
        f'<div class="grid">{"".join(plots)}</div>'
    )


def associations_html(evaluation: TableEvaluation, specs: list[ColumnSpec]) -> str:
    fig = association_figure(evaluation.pair_trends, [c.name for c in specs])
    body = "<p>Fewer than two columns.</p>" if fig is None else figure_html(fig, "associations")
    return (
        '<h2 id="correlations">Correlations</h2><p class="muted">Pearson rho between two '
        "numbers, Cramer's V (0 to 1) where a category is involved; the third panel is real "
        "minus synthetic, so 0 (white) is a trend kept.</p>" + body
    )


def render_html(
    evaluation: TableEvaluation,
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    extra: dict[str, Any] | None = None,
) -> str:
    """The report as one self-contained HTML string, worst first."""
    k = evaluation.rare_values.k
    specs = _plotted_columns(evaluation, schema)
    anchors = {spec.name: f"column-{i}" for i, spec in enumerate(specs)}
    stats = column_stats(train, synthetic, schema, evaluation.shapes, k)
    m = evaluation.metrics
    privacy = evaluation.privacy
    dcr = distance_figure(privacy.dcr_histogram, privacy.near_copy_threshold)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Synthetic data evaluation</title>
<style>{_CSS}</style>{plotly_script()}</head><body>
<h1>Synthetic data evaluation</h1>
{gate_banner(evaluation.gate)}
<p class="muted">train {m["n_train"]} rows, holdout {m["n_holdout"]} rows,
synthetic {m["n_synthetic"]} rows evaluated (of {m.get("n_synthetic_total", m["n_synthetic"])}),
seed {evaluation.seed}</p>
{verdict_html(evaluation.gate, m, k, extra or {})}
{worst_first_html(evaluation, stats, anchors)}
<h2>Checks</h2>{checks_table(evaluation.gate)}
{column_table_html(stats, k, anchors)}
{distributions_html(evaluation, specs, train, synthetic, anchors, k)}
{associations_html(evaluation, specs)}
{efficacy_html(evaluation.efficacy)}
<h2>Distance to closest record</h2>
{figure_html(dcr, "dcr")}
<p class="muted">Synthetic rows should sit no closer to the training data than fresh holdout
rows do; a synthetic spike near zero means copied or nearly copied records.</p>
<h2>All figures</h2>{metrics_table(evaluation.metrics)}
{extra_html(extra)}
<script>{SORT_SCRIPT}</script>
</body></html>
"""
