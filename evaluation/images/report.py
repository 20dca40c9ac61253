"""The image evaluation report: `report.json` for machines, a self-contained `report.html`.

The HTML embeds everything (CSS, PNGs as base64) so it can travel as one file. It shows
synthetic images only, never real ones: a sample grid (each thumbnail over its class label, when
the synthetic images have labels), and the synthetic images closest to the train set. A
synthetic image that is a near duplicate of a train image (pixel distance below the
near-duplicate threshold, recomputed here against `train`) IS in effect that train image, so it
is withheld and replaced by a placeholder that gives its distance. Real data enters only as
aggregates (distance histogram, per-class counts of at least 5, FID's real baseline). A
thumbnail of a class with fewer than 5 train images is labelled "rare class", not by name.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
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
GRID_COLUMNS = 8
THUMB_PX = 64
CELL_PX = 96
"""Each thumbnail sits in a CELL_PX-wide cell of a GRID_COLUMNS-column grid, its caption
(class label, index, distance) under it on lines of their own."""
RARE_CLASS = "rare class"


# --------------------------------------------------------------------------- images


def png_bytes(image: np.ndarray) -> bytes:
    """One [C, H, W] image in [0, 1] as PNG bytes (8-bit grey or RGB, deterministic)."""
    arr = np.clip(np.round(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    pil = Image.fromarray(arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0)))
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def _caption(label: str | None, text: str) -> str:
    name = "" if label is None else f'<span class="label">{html.escape(label)}</span>'
    return f"<figcaption>{name}<span>{html.escape(text)}</span></figcaption>"


def _thumb(image: np.ndarray, label: str | None, text: str) -> str:
    data = base64.b64encode(png_bytes(image)).decode("ascii")
    alt = "synthetic" if label is None else f"synthetic, {label}"
    return (
        f'<figure class="thumb"><img src="data:image/png;base64,{data}" width="{THUMB_PX}" '
        f'height="{THUMB_PX}" alt="{html.escape(alt, quote=True)}">{_caption(label, text)}'
        "</figure>"
    )


def _withheld(label: str | None, text: str) -> str:
    return (
        '<figure class="thumb"><div class="withheld"><span>withheld:<br>near duplicate</span></div>'
        f"{_caption(label, text)}</figure>"
    )


def class_labels(
    evaluation: ImageEvaluation,
    labels: np.ndarray | None,
    class_names: list[str] | None,
) -> list[str] | None:
    """Each synthetic image's class name, as the evaluation named the classes (a label is an
    index into `class_names`, or, without them, the name is the label value); a class with
    fewer than MIN_CLASS_COUNT train images is called RARE_CLASS. None without labels."""
    if labels is None or evaluation.class_counts is None:
        return None
    counts = evaluation.class_counts

    def name(value: int) -> str:
        if class_names is not None:
            text = class_names[value] if 0 <= value < len(class_names) else str(value)
        else:
            text = str(value)
        n_train = counts.get(text, {}).get("train", 0)
        return RARE_CLASS if 0 < n_train < MIN_CLASS_COUNT else text

    return [name(int(v)) for v in np.asarray(labels).reshape(-1)]


def _tiles(
    synthetic: np.ndarray,
    indices: list[int],
    train: np.ndarray,
    threshold: float,
    labels: list[str] | None,
) -> tuple[str, int]:
    """Thumbnails of synthetic[indices] in a regular grid, each over its caption (class label,
    index, distance); near duplicates of a train image are withheld. Returns the HTML and how
    many were withheld."""
    if not indices:
        return "<p>none</p>", 0
    chosen = np.asarray(synthetic[indices], dtype=np.float32)
    dist, _ = nn_distances(flatten(chosen), flatten(train))
    parts, withheld = [], 0
    for i, d in zip(indices, dist, strict=True):
        label = None if labels is None else labels[i]
        text = f"#{i} d={d:.3f}"
        if d < threshold or d <= 1e-12:
            parts.append(_withheld(label, text))
            withheld += 1
        else:
            parts.append(_thumb(synthetic[i], label, text))
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
    + f""".tiles{{display:grid;grid-template-columns:repeat({GRID_COLUMNS},{CELL_PX}px);
grid-auto-rows:{THUMB_PX + 44}px;gap:8px}}
figure.thumb{{margin:0;display:flex;flex-direction:column;align-items:center;overflow:hidden}}
figure.thumb img,.withheld{{width:{THUMB_PX}px;height:{THUMB_PX}px;flex:none;
box-sizing:border-box}}
figure.thumb img{{image-rendering:pixelated;border:1px solid #eee;background:#000}}
figcaption{{font-size:.7em;color:#666;width:100%;text-align:center;margin-top:3px}}
figcaption span{{display:block;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}}
figcaption .label{{color:#222;font-weight:600;font-size:1.15em}}
.withheld{{background:#f4f4f4;color:#a31515;font-size:.7em;display:flex;align-items:center;
justify-content:center;text-align:center;border:1px dashed #a31515}}
.muted{{color:#666;font-size:.85em}}
.verdict{{border-left:4px solid #4c72b0;padding:2px 14px;margin:16px 0;max-width:60em}}
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


def _fid_number(value: float | int | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def fid_html(metrics: dict[str, float | int | None]) -> str:
    """FID next to its real baseline: "FID 12.3 (real holdout vs real train: 4.56)"."""
    return (
        f'<p id="fid"><strong>FID {_fid_number(metrics.get("fid"))}</strong> (real holdout vs '
        f"real train: {_fid_number(metrics.get('fid_real_baseline'))})</p>"
        '<p class="muted">FID has no fixed scale: it depends on the feature space and the set '
        "sizes. The baseline is the FID between two real image sets in the same feature space "
        "(the holdout against the train images the feature network was fitted on); a synthetic "
        "set as close to the holdout as real images are scores near it.</p>"
    )


def render_html(
    evaluation: ImageEvaluation,
    train: np.ndarray,
    synthetic: np.ndarray,
    extra: dict[str, Any] | None = None,
    labels: list[str] | None = None,
) -> str:
    """The report as one self-contained HTML string (synthetic images only). `labels`: each
    synthetic image's class label (see `class_labels`), shown under its thumbnail."""
    threshold = evaluation.privacy.pixel.near_duplicate_threshold
    rng = np.random.default_rng(evaluation.seed)
    n_grid = min(N_GRID, len(synthetic))
    grid_idx = np.sort(rng.choice(len(synthetic), n_grid, replace=False)).tolist()
    grid, grid_withheld = _tiles(synthetic, grid_idx, train, threshold, labels)
    closest_idx = [i for i in evaluation.privacy.closest_synthetic if i < len(synthetic)]
    closest, closest_withheld = _tiles(synthetic, closest_idx, train, threshold, labels)
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
    label_note = ", each over its class label" if labels is not None else ", unlabelled"
    closest_note = (
        f"{closest_withheld} withheld as near duplicates (d below {threshold:.4f})."
        if closest_withheld
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Synthetic image evaluation</title>
<style>{_CSS}</style></head><body>
<h1>Synthetic image evaluation</h1>
<section id="verdict" class="verdict">
{gate_banner(evaluation.gate)}
<p class="muted">train {m["n_train"]}, holdout {m["n_holdout"]}, synthetic {m["n_synthetic"]}
images evaluated (of {m.get("n_synthetic_total", m["n_synthetic"])}), {c}&times;{h}&times;{w},
seed {evaluation.seed}</p>
{gate_failures(evaluation.gate)}
{fid_html(m)}
</section>
<h2>Checks</h2>{checks_table(evaluation.gate)}
<p class="muted">Feature space: a small CNN fitted on the real train images as
{html.escape(fs.mode)} ({fs.dim}-d, {fs.train_seconds:.1f} s); FID and precision/recall use the
real holdout as reference. Membership inference: {attack}. Privacy distances are RMS pixel
distances (gated); embedding distances are listed under all figures.</p>
<h2>All figures</h2>{metrics_table(evaluation.metrics)}
<section id="samples"><h2>Synthetic samples</h2>
<p class="muted">{n_grid} random synthetic images{label_note}{grid_note}. d = RMS pixel
distance to the nearest train image.</p>
{grid}</section>
<h2>Per-class counts</h2>{_class_table(evaluation)}
<h2>Distance to the nearest train image</h2>
{img_tag(_histogram_plot(evaluation), "NN distance histogram")}
<p class="muted">Synthetic images should sit no closer to the training images than fresh
holdout images do; a synthetic spike near zero means copied or nearly copied images.</p>
<section id="closest"><h2>Synthetic images closest to the train set</h2>
<p class="muted">Synthetic images only; the train images they are close to are never shown.
{closest_note}</p>
{closest}</section>
{extras}
</body></html>
"""


def write_image_report(
    evaluation: ImageEvaluation,
    out_dir: Path | str,
    *,
    train: np.ndarray,
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray | None = None,
    class_names: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write `report.json` (evaluation.to_dict() plus `extra` under "extra") and `report.html`,
    each atomically (temp file + os.replace). `synthetic` is the array that was evaluated (the
    report's indices refer to it); `train` is used only to withhold synthetic near duplicates of
    train images, and is never drawn. `synthetic_labels` and `class_names`, as given to the
    evaluation, label the thumbnails. Returns (json_path, html_path)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = evaluation.to_dict()
    payload["extra"] = json_safe(json.loads(json.dumps(extra or {}, default=str)))
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    labels = class_labels(evaluation, synthetic_labels, class_names)
    if labels is not None and len(labels) != len(synthetic):
        raise ValueError(f"{len(labels)} synthetic labels for {len(synthetic)} images")
    page = render_html(evaluation, np.asarray(train), np.asarray(synthetic), extra, labels)
    atomic_write_text(json_path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    atomic_write_text(html_path, page)
    return json_path, html_path
