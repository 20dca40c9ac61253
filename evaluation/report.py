"""The evaluation report: `report.json` for machines, a self-contained `report.html` for people.

The HTML embeds its plots as base64 PNGs and its CSS inline, so it can be attached to a ticket
or a Prefect artifact as one file. Plots show aggregates only: histograms with bins clipped to
the train 0.5-99.5% range (extremes are not drawn) and bar charts where categories seen fewer
than `MIN_CATEGORY_COUNT` times in train are pooled into "(rare)".
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

from evaluation.encoding import category_keys, numeric_values
from evaluation.gate import CheckResult, GateResult
from evaluation.table import TableEvaluation, json_safe
from synth.atomic import atomic_write_text
from synth.data.schema import ColumnSpec, TableSchema

MAX_PLOTTED_COLUMNS = 30
MAX_BARS = 20
MIN_CATEGORY_COUNT = 5
HIST_BINS = 30
REAL_COLOR, SYN_COLOR = "#4c72b0", "#dd8452"


# --------------------------------------------------------------------------- summary rows


def check_status(check: CheckResult) -> str:
    if not check.applicable:
        return "n/a"
    return "pass" if check.passed else "FAIL"


def summary_rows(gate: GateResult) -> list[dict[str, Any]]:
    """One row per gate check, for a CLI table or a Prefect table artifact."""
    return [
        {
            "check": c.name,
            "kind": c.kind,
            "value": None if c.value is None else round(c.value, 4),
            "threshold": f"{'>=' if c.bound == 'min' else '<='} {c.threshold:.3f}",
            "status": check_status(c),
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


def _numeric_plot(spec: ColumnSpec, real: pd.Series, syn: pd.Series) -> Figure:
    r = numeric_values(real, spec.kind)
    s = numeric_values(syn, spec.kind)
    r, s = r[~np.isnan(r)], s[~np.isnan(s)]
    fig = Figure(figsize=(4.2, 2.6), dpi=80)
    ax = fig.add_subplot()
    if r.size:
        lo, hi = np.percentile(r, [0.5, 99.5])
        hi = hi if hi > lo else lo + 1.0
        edges = np.linspace(lo, hi, HIST_BINS + 1)
        for values, color, label in ((r, REAL_COLOR, "real"), (s, SYN_COLOR, "synthetic")):
            if values.size:
                ax.hist(
                    np.clip(values, lo, hi), bins=edges, density=True, alpha=0.55,
                    color=color, label=label,
                )  # fmt: skip
        if spec.kind == "datetime":
            ticks = ax.get_xticks()
            ax.set_xticks(ticks)
            ax.set_xticklabels(
                [pd.Timestamp(int(t)).strftime("%Y-%m") for t in ticks], rotation=30, fontsize=7
            )
    ax.set_title(spec.name, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return fig


def _categorical_plot(spec: ColumnSpec, real: pd.Series, syn: pd.Series) -> Figure:
    r = category_keys(real).fillna("(missing)")
    s = category_keys(syn).fillna("(missing)")
    counts = r.value_counts()
    keep = [c for c in counts.index if counts[c] >= MIN_CATEGORY_COUNT][:MAX_BARS]

    def pooled(v: pd.Series) -> pd.Series:
        label = np.where(v.isin(keep), v, "(rare)")
        return pd.Series(label).value_counts(normalize=True)

    pr, ps = pooled(r), pooled(s)
    labels = keep + (["(rare)"] if "(rare)" in pr.index or "(rare)" in ps.index else [])
    x = np.arange(len(labels))
    fig = Figure(figsize=(4.2, 2.6), dpi=80)
    ax = fig.add_subplot()
    ax.bar(x - 0.2, pr.reindex(labels, fill_value=0), 0.4, color=REAL_COLOR, label="real")
    ax.bar(x + 0.2, ps.reindex(labels, fill_value=0), 0.4, color=SYN_COLOR, label="synthetic")
    ax.set_xticks(x)
    ax.set_xticklabels([str(v)[:18] for v in labels], rotation=35, ha="right", fontsize=7)
    ax.set_title(spec.name, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7)
    return fig


def _heatmap(evaluation: TableEvaluation, columns: list[str]) -> Figure | None:
    pt = evaluation.pair_trends
    idx = [pt.columns.index(c) for c in columns if c in pt.columns]
    if len(idx) < 2:
        return None
    diff = (
        np.array(pt.real_matrix)[np.ix_(idx, idx)] - np.array(pt.synthetic_matrix)[np.ix_(idx, idx)]
    )
    names = [pt.columns[i] for i in idx]
    size = min(3.0 + 0.28 * len(idx), 11.0)
    fig = Figure(figsize=(size, size * 0.85), dpi=80)
    ax = fig.add_subplot()
    im = ax.imshow(np.nan_to_num(diff), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)))
    ax.set_yticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_yticklabels(names, fontsize=7)
    ax.set_title("association: real - synthetic (Pearson / Cramer's V)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def _dcr_plot(evaluation: TableEvaluation) -> Figure:
    return distance_histogram_plot(
        evaluation.privacy.dcr_histogram,
        threshold=evaluation.privacy.near_copy_threshold,
        threshold_label="near-copy threshold",
        xlabel="distance to closest train record",
        ylabel="share of rows",
    )


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
.banner{padding:10px 14px;border-radius:6px;font-weight:600;display:inline-block}
"""
"""Shared by the table and image reports."""
_CSS = (
    BASE_CSS
    + """.grid{display:flex;flex-wrap:wrap;gap:8px} .grid img{border:1px solid #eee}
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
        value = "&ndash;" if c.value is None else f"{c.value:.4f}"
        bound = "&ge;" if c.bound == "min" else "&le;"
        rows.append(
            f"<tr><td><code>{html.escape(c.name)}</code></td><td>{c.kind}</td>"
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
    lineage = html.escape(json.dumps(extra, indent=2, default=str))
    return (
        dp_html(extra)
        + protection_html(extra.get("protection"))
        + f"<h2>Lineage</h2><pre>{lineage}</pre>"
    )


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


def rules_html(evaluation: TableEvaluation) -> str:
    """The logical rules found in the real training rows, by columns, with the synthetic and
    holdout rows breaking each: names and counts, never a value."""
    r = evaluation.rules
    head = (
        f"<h2>Logical rules</h2><p>{r.n_rules} rule(s) every real training row keeps, each "
        f"with a premise held by at least {r.min_support} training rows. Rows breaking one: "
        f"synthetic {r.rule_breaks:.2%}, holdout {r.holdout_rule_breaks:.2%}.</p>"
    )
    if not r.groups:
        return head
    rows = "".join(
        f"<tr><td><code>{html.escape(g.rule)}</code></td><td>{g.kind}</td>"
        f'<td class="num">{g.rules}</td><td class="num">{g.synthetic_breaks}</td>'
        f'<td class="num">{g.holdout_breaks}</td></tr>'
        for g in r.groups
    )
    return (
        head + "<table><tr><th>rule (columns)</th><th>kind</th><th>value pairs</th>"
        f"<th>synthetic rows breaking</th><th>holdout rows breaking</th></tr>{rows}</table>"
    )


def render_html(
    evaluation: TableEvaluation,
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    extra: dict[str, Any] | None = None,
) -> str:
    """The report as one self-contained HTML string."""

    specs = _plotted_columns(evaluation, schema)
    plots = []
    for spec in specs:
        make = _categorical_plot if spec.kind == "categorical" else _numeric_plot
        fig = make(spec, train[spec.name], synthetic[spec.name])
        score = evaluation.shapes.per_column.get(spec.name, float("nan"))
        metric = evaluation.shapes.metric.get(spec.name, "")
        fig.axes[0].set_title(f"{spec.name}  ({metric} {score:.3f})", fontsize=9)
        plots.append(img_tag(fig, spec.name))
    omitted = len(schema.modelled) - len(specs)
    heat = _heatmap(evaluation, [c.name for c in specs])
    m = evaluation.metrics
    extras = extra_html(extra)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Synthetic data evaluation</title>
<style>{_CSS}</style></head><body>
<h1>Synthetic data evaluation</h1>
{gate_banner(evaluation.gate)}
<p class="muted">train {m["n_train"]} rows, holdout {m["n_holdout"]} rows,
synthetic {m["n_synthetic"]} rows evaluated (of {m.get("n_synthetic_total", m["n_synthetic"])}),
seed {evaluation.seed}</p>
{gate_failures(evaluation.gate)}
<h2>Checks</h2>{checks_table(evaluation.gate)}
<h2>All figures</h2>{metrics_table(evaluation.metrics)}
<h2>Column distributions (real train vs synthetic)</h2>
<p class="muted">Aggregates only; histogram ranges clipped to the train 0.5&ndash;99.5%
percentiles, categories seen fewer than {MIN_CATEGORY_COUNT} times pooled as "(rare)".
{f"{omitted} best-matching columns not plotted." if omitted else ""}</p>
<div class="grid">{"".join(plots)}</div>
<h2>Pair trends</h2>
{img_tag(heat, "association difference") if heat is not None else "<p>fewer than two columns</p>"}
{rules_html(evaluation)}
<h2>Distance to closest record</h2>
{img_tag(_dcr_plot(evaluation), "DCR histogram")}
<p class="muted">Synthetic rows should sit no closer to the training data than fresh holdout
rows do; a synthetic spike near zero means copied or nearly copied records.</p>
{extras}
</body></html>
"""
