"""The table report's interactive plots: Plotly figures built from aggregates only.

Why Plotly and not Vega-Lite through Altair: the `plotly` wheel carries plotly.js itself, so one
dependency writes a page that works offline (the script is inlined once per page, about 4.8 MB);
hover values, zoom and pan come with every figure, and heatmaps are native. Altair would need
Vega, Vega-Lite and vega-embed inlined too (`vl-convert`, a second, binary dependency).

No figure is given a row: every trace holds shares of binned or pooled rows, or association
matrices, computed here. Histograms span the train 0.5-99.5% range, kept within the protected
bounds (the `k`-th smallest and largest values) and widened to round bin edges, so no edge is
one person's value; categories held by fewer than `max(k, MIN_CATEGORY_COUNT)` training rows are
pooled into "(rare)". Numbers are written as JSON lists (Plotly's base64 arrays would hide
them from the tests that search the page for planted values).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from evaluation.encoding import category_keys, numeric_values
from evaluation.fidelity import PairTrends
from synth.data.rare import protected_bounds
from synth.data.schema import ColumnSpec

MAX_BARS = 20
MIN_CATEGORY_COUNT = 5
HIST_BINS = 30
REAL_COLOR, SYN_COLOR = "#4c72b0", "#dd8452"
RARE, MISSING_LABEL = "(rare)", "(missing)"
SIDES = (("real", REAL_COLOR), ("synthetic", SYN_COLOR))
"""Real first, then synthetic, in the same colours, in every figure."""
CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
}
DIGITS = 6
DAY_NS = 86_400e9


def plotly_script() -> str:
    """plotly.js, inlined once per page: the report needs no network."""
    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def figure_html(fig: go.Figure, div_id: str) -> str:
    """One figure as a `<div>` and the script that draws it (plotly.js comes from the page)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG)


def _layout(fig: go.Figure, height: int, **axes: Any) -> go.Figure:
    """The legend in a row above the plot (never over the data), and margins that grow to fit
    every label. Titles are the page's headings, not the figure's: the tool bar would hide
    them."""
    fig.update_layout(
        template="none",
        legend={"orientation": "h", "x": 0.0, "y": 1.0, "yanchor": "bottom"},
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        height=height,
        font={"size": 11},
        hoverlabel={"namelength": -1},
        **axes,
    )
    fig.update_xaxes(automargin=True, showgrid=False, showline=True, linecolor="#999")
    fig.update_yaxes(automargin=True, gridcolor="#eee", zeroline=False)
    return fig


def _rounded(values: np.ndarray | list[float]) -> list[float | None]:
    return [None if not math.isfinite(v) else float(f"{v:.{DIGITS}g}") for v in values]


# --------------------------------------------------------------------------- columns


def nice_step(span: float, bins: int = HIST_BINS) -> float:
    """A round bin width (1, 2 or 5 times a power of ten) giving about `bins` bins."""
    raw = span / bins if span > 0 else 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def histogram_edges(real: np.ndarray, bound: tuple[float, float]) -> np.ndarray:
    """Round bin edges over the train 0.5-99.5% range, within the protected bounds."""
    lo, hi = np.percentile(real, [0.5, 99.5])
    lo, hi = max(lo, bound[0]), min(hi, bound[1])
    step = nice_step(hi - lo)
    start = math.floor(lo / step) * step
    n = max(1, math.ceil((hi - start) / step))
    return start + step * np.arange(n + 1)


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return counts / max(values.size, 1)


def _edge_text(v: float, kind: str) -> str:
    if kind != "datetime":
        return f"{v:.6g}"
    stamp = pd.Timestamp(int(round(v)))
    return stamp.strftime("%Y-%m-%d" if stamp == stamp.normalize() else "%Y-%m-%d %H:%M")


def numeric_figure(spec: ColumnSpec, real: pd.Series, syn: pd.Series, k: int):
    """Real and synthetic histograms of a number or date column, as shares of each side's
    present values; None when the column has fewer than `k` present training values."""
    bound = protected_bounds(real, spec, k)
    r = numeric_values(real, spec.kind)
    r = r[~np.isnan(r)]
    if bound is None or r.size == 0:
        return None
    s = numeric_values(syn, spec.kind)
    s = s[~np.isnan(s)]
    unit = DAY_NS if spec.kind == "datetime" else 1.0  # dates: bins of whole days
    edges = histogram_edges(r / unit, (bound[0] / unit, bound[1] / unit)) * unit
    width = float(edges[1] - edges[0])
    centres = (edges[:-1] + edges[1:]) / 2
    ranges = [
        f"{_edge_text(a, spec.kind)} to {_edge_text(b, spec.kind)}"
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    if spec.kind == "datetime":  # a date axis counts in milliseconds
        x: list[Any] = [pd.Timestamp(int(c)).isoformat() for c in centres]
        width /= 1e6
    else:
        x = _rounded(centres)
    fig = go.Figure()
    for (side, colour), values in zip(SIDES, (r, s), strict=True):
        fig.add_bar(
            x=x, y=_rounded(_shares(values, edges)), width=width, name=side,
            marker_color=colour, opacity=0.6, customdata=ranges,
            hovertemplate=f"{side}: %{{y:.2%}} of rows<br>%{{customdata}}<extra></extra>",
        )  # fmt: skip
    return _layout(
        fig, 300, barmode="overlay", yaxis={"tickformat": ".0%", "title": "share of rows"}
    )


def category_order(real: pd.Series, k: int) -> list[str]:
    """The categories drawn, in their one order: those held by at least
    `max(k, MIN_CATEGORY_COUNT)` training rows, most frequent first (then by name), at most
    `MAX_BARS`; everything else is "(rare)"."""
    counts = category_keys(real).value_counts()
    floor = max(k, MIN_CATEGORY_COUNT)
    common = sorted((key for key, n in counts.items() if n >= floor), key=lambda c: (-counts[c], c))
    return common[:MAX_BARS]


def _pooled_shares(values: pd.Series, keep: list[str]) -> pd.Series:
    keys = category_keys(values)
    labels = np.where(keys.isna(), MISSING_LABEL, np.where(keys.isin(keep), keys, RARE))
    return pd.Series(labels).value_counts(normalize=True)


def categorical_figure(spec: ColumnSpec, real: pd.Series, syn: pd.Series, k: int):
    """Real and synthetic category shares side by side, in the real rows' order."""
    keep = category_order(real, k)
    shares = [_pooled_shares(v, keep) for v in (real, syn)]
    extra = [label for label in (RARE, MISSING_LABEL) if any(label in p.index for p in shares)]
    labels = keep + extra
    fig = go.Figure()
    for (side, colour), share in zip(SIDES, shares, strict=True):
        hover = f"{side}: %{{y:.2%}} of rows<br>%{{x}}<extra></extra>"
        fig.add_bar(
            x=labels, y=_rounded(share.reindex(labels, fill_value=0.0).to_numpy()), name=side,
            marker_color=colour, hovertemplate=hover,
        )  # fmt: skip
    return _layout(
        fig, 320, barmode="group",
        xaxis={"type": "category", "categoryorder": "array", "categoryarray": labels,
               "tickangle": -35},
        yaxis={"tickformat": ".0%", "title": "share of rows"},
    )  # fmt: skip


def column_figure(spec: ColumnSpec, real: pd.Series, syn: pd.Series, k: int) -> go.Figure | None:
    make = categorical_figure if spec.kind == "categorical" else numeric_figure
    return make(spec, real, syn, k)


# --------------------------------------------------------------------------- associations


def association_figure(pairs: PairTrends, columns: list[str]) -> go.Figure | None:
    """Real and synthetic association matrices side by side, and their difference, on one
    colour scale (Pearson rho for two numbers, Cramer's V otherwise)."""
    idx = [pairs.columns.index(c) for c in columns if c in pairs.columns]
    if len(idx) < 2:
        return None
    names = [pairs.columns[i] for i in idx]
    real = np.array(pairs.real_matrix)[np.ix_(idx, idx)]
    syn = np.array(pairs.synthetic_matrix)[np.ix_(idx, idx)]
    panels = (("real", real), ("synthetic", syn), ("real \u2212 synthetic", real - syn))
    fig = make_subplots(
        rows=1, cols=3, subplot_titles=[t for t, _ in panels], shared_yaxes=True,
        horizontal_spacing=0.02,
    )  # fmt: skip
    for col, (label, matrix) in enumerate(panels, start=1):
        fig.add_heatmap(
            z=[_rounded(row) for row in matrix], x=names, y=names, coloraxis="coloraxis",
            hovertemplate=f"%{{y}} \u00d7 %{{x}}<br>{label}: %{{z:.3f}}<extra></extra>",
            row=1, col=col,
        )  # fmt: skip
    fig.update_xaxes(tickangle=-90, type="category")
    fig.update_yaxes(autorange="reversed", type="category")
    # the column names stand under three panels, turned: room for the longest, not cut off
    below = 20 + 7 * max(len(n) for n in names)
    _layout(fig, 360 + 16 * len(names) + below).update_layout(margin={"b": below})
    return fig.update_layout(
        coloraxis={"colorscale": "RdBu_r", "cmin": -1, "cmax": 1,
                   "colorbar": {"title": {"text": "association"}, "thickness": 12}},
    )  # fmt: skip


# --------------------------------------------------------------------------- distances


def distance_figure(h: Any, threshold: float) -> go.Figure:
    """Holdout-to-train and synthetic-to-train closest distances (`h`: edges, holdout and
    synthetic counts), each as shares, with the near-copy threshold marked."""
    edges = np.array(h.edges, dtype=float)
    centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig = go.Figure()
    for (label, colour), counts in zip(
        (("holdout \u2192 train", REAL_COLOR), ("synthetic \u2192 train", SYN_COLOR)),
        (h.holdout, h.synthetic),
        strict=True,
    ):
        c = np.array(counts, dtype=float)
        fig.add_bar(
            x=_rounded(centres), y=_rounded(c / max(c.sum(), 1.0)), width=_rounded(widths),
            name=label, marker_color=colour, opacity=0.6,
            hovertemplate=f"{label}: %{{y:.2%}} of rows at distance %{{x:.3g}}<extra></extra>",
        )  # fmt: skip
    fig.add_vline(x=float(threshold), line_dash="dash", line_color="black")
    fig.add_annotation(
        x=float(threshold), y=0.98, yref="paper", text=" near-copy threshold", showarrow=False,
        xanchor="left", yanchor="top", font={"size": 10},
    )  # fmt: skip
    return _layout(
        fig, 340, barmode="overlay",
        xaxis={"title": "distance to closest train record"},
        yaxis={"tickformat": ".0%", "title": "share of rows"},
    )  # fmt: skip
