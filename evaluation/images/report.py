"""The image evaluation report: `report.json` for machines, a self-contained `report.html`.

The HTML embeds everything (CSS, PNGs as base64) so it can travel as one file. It shows
synthetic images only, never real ones: a sample grid, and the synthetic images closest to the
train set. A synthetic image that is a near duplicate of a train image (pixel distance below
the near-duplicate threshold, recomputed here against `train`) IS in effect that train image,
so it is withheld and replaced by a placeholder that gives its distance. Real data enters only
as aggregates (distance histogram, per-class counts of at least 5).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from evaluation.images.evaluate import MIN_CLASS_COUNT, ImageEvaluation
from evaluation.images.privacy import flatten, nn_distances
from evaluation.report import (
    BASE_CSS,
    checks_table,
    distance_histogram_plot,
    extra_html,
    gate_banner,
    gate_failures,
    img_tag,
    metrics_table,
)
from evaluation.table import json_safe
from synth.atomic import atomic_write_text

N_GRID = 48
THUMB_PX = 64


# --------------------------------------------------------------------------- images


def png_bytes(image: np.ndarray) -> bytes:
    """One [C, H, W] image in [0, 1] as PNG bytes (8-bit grey or RGB, deterministic)."""
    arr = np.clip(np.round(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    pil = Image.fromarray(arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0)))
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def _thumb(image: np.ndarray, caption: str) -> str:
    data = base64.b64encode(png_bytes(image)).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{THUMB_PX}" '
        f'height="{THUMB_PX}" alt="synthetic"><figcaption>{html.escape(caption)}</figcaption>'
        "</figure>"
    )


def _withheld(caption: str) -> str:
    return (
        f'<figure><div class="withheld" style="width:{THUMB_PX}px;height:{THUMB_PX}px">withheld'
        f"</div><figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _tiles(
    synthetic: np.ndarray, indices: list[int], train: np.ndarray, threshold: float
) -> tuple[str, int]:
    """Thumbnails of synthetic[indices]; near duplicates of a train image are withheld.
    Returns the HTML and how many were withheld."""
    if not indices:
        return "<p>none</p>", 0
    chosen = np.asarray(synthetic[indices], dtype=np.float32)
    dist, _ = nn_distances(flatten(chosen), flatten(train))
    parts, withheld = [], 0
    for i, d in zip(indices, dist, strict=True):
        caption = f"#{i} d={d:.3f}"
        if d < threshold or d <= 1e-12:
            parts.append(_withheld(caption + " (near duplicate)"))
            withheld += 1
        else:
            parts.append(_thumb(synthetic[i], caption))
    return f'<div class="tiles">{"".join(parts)}</div>', withheld


# --------------------------------------------------------------------------- plots


def _histogram_plot(evaluation: ImageEvaluation) -> Figure:
    return distance_histogram_plot(
        evaluation.privacy.histogram,
        threshold=evaluation.privacy.pixel.near_duplicate_threshold,
        threshold_label="near-duplicate threshold",
        xlabel="RMS pixel distance to the nearest train image",
        ylabel="share of images",
    )


# --------------------------------------------------------------------------- html

_CSS = (
    BASE_CSS
    + """.tiles{display:flex;flex-wrap:wrap;gap:6px}
figure{margin:0;text-align:center} figcaption{font-size:.7em;color:#666}
.tiles img{image-rendering:pixelated;border:1px solid #eee;background:#000}
.withheld{background:#f4f4f4;color:#a31515;font-size:.7em;display:flex;align-items:center;
justify-content:center;border:1px dashed #a31515}
.muted{color:#666;font-size:.85em}
"""
)


def _class_table(evaluation: ImageEvaluation) -> str:
    counts = evaluation.to_dict()["class_counts"]
    if not counts:
        return "<p>no labels</p>"
    parts = ("train", "holdout", "synthetic")
    head = "<tr><th>class</th>" + "".join(f"<th>{p}</th>" for p in parts) + "</tr>"
    rows = []
    for name, c in counts.items():
        cells = []
        for p in parts:
            v = c.get(p, "&ndash;")
            cells.append(f'<td class="num">{f"&lt;{MIN_CLASS_COUNT}" if v is None else v}</td>')
        rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def render_html(
    evaluation: ImageEvaluation,
    train: np.ndarray,
    synthetic: np.ndarray,
    extra: dict[str, Any] | None = None,
) -> str:
    """The report as one self-contained HTML string (synthetic images only)."""
    threshold = evaluation.privacy.pixel.near_duplicate_threshold
    rng = np.random.default_rng(evaluation.seed)
    n_grid = min(N_GRID, len(synthetic))
    grid_idx = np.sort(rng.choice(len(synthetic), n_grid, replace=False)).tolist()
    grid, grid_withheld = _tiles(synthetic, grid_idx, train, threshold)
    closest_idx = [i for i in evaluation.privacy.closest_synthetic if i < len(synthetic)]
    closest, closest_withheld = _tiles(synthetic, closest_idx, train, threshold)
    m = evaluation.metrics
    fs = evaluation.feature_space
    attack = (
        "loss-based (the diffusion model's per-image loss)"
        if evaluation.mia_attack == "loss"
        else "distance-based (distance to the nearest synthetic image; no loss function given)"
    )
    extras = extra_html(extra)
    c, h, w = evaluation.image_shape
    grid_note = f"; {grid_withheld} withheld as near duplicates of train images" * (
        grid_withheld > 0
    )
    closest_note = (
        f"{closest_withheld} withheld as near duplicates (d below {threshold:.4f})."
        if closest_withheld
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Synthetic image evaluation</title>
<style>{_CSS}</style></head><body>
<h1>Synthetic image evaluation</h1>
{gate_banner(evaluation.gate)}
<p class="muted">train {m["n_train"]}, holdout {m["n_holdout"]}, synthetic {m["n_synthetic"]}
images evaluated (of {m.get("n_synthetic_total", m["n_synthetic"])}), {c}&times;{h}&times;{w},
seed {evaluation.seed}</p>
{gate_failures(evaluation.gate)}
<h2>Checks</h2>{checks_table(evaluation.gate)}
<p class="muted">Feature space: a small CNN fitted on the real train images as
{html.escape(fs.mode)} ({fs.dim}-d, {fs.train_seconds:.1f} s); FID and precision/recall use the
real holdout as reference. Membership inference: {attack}. Privacy distances are RMS pixel
distances (gated); embedding distances are listed under all figures.</p>
<h2>All figures</h2>{metrics_table(evaluation.metrics)}
<h2>Synthetic samples</h2>
<p class="muted">{n_grid} random synthetic images{grid_note}. d = RMS pixel distance to the
nearest train image.</p>
{grid}
<h2>Per-class counts</h2>{_class_table(evaluation)}
<h2>Distance to the nearest train image</h2>
{img_tag(_histogram_plot(evaluation), "NN distance histogram")}
<p class="muted">Synthetic images should sit no closer to the training images than fresh
holdout images do; a synthetic spike near zero means copied or nearly copied images.</p>
<h2>Synthetic images closest to the train set</h2>
<p class="muted">Synthetic images only; the train images they are close to are never shown.
{closest_note}</p>
{closest}
{extras}
</body></html>
"""


def write_image_report(
    evaluation: ImageEvaluation,
    out_dir: Path | str,
    *,
    train: np.ndarray,
    synthetic: np.ndarray,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write `report.json` (evaluation.to_dict() plus `extra` under "extra") and `report.html`,
    each atomically (temp file + os.replace). `synthetic` is the array that was evaluated (the
    report's indices refer to it); `train` is used only to withhold synthetic near duplicates of
    train images, and is never drawn. Returns (json_path, html_path)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = evaluation.to_dict()
    payload["extra"] = json_safe(json.loads(json.dumps(extra or {}, default=str)))
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    page = render_html(evaluation, np.asarray(train), np.asarray(synthetic), extra)
    atomic_write_text(json_path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    atomic_write_text(html_path, page)
    return json_path, html_path
