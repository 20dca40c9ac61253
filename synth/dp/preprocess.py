"""Private preprocessing: the categories, bounds, quantiles and precision a DP table model
needs, from a declared schema or from differentially private histograms.

Without DP, the encoder learns these from the training rows under rare-value protection;
that is not DP (one person can move a quantile or add a category). Under DP:
- a column the schema declares (`source.columns`: `categories`; or `min` and `max`) costs
  nothing: declared categories are the column's values, declared bounds get evenly spaced
  quantile knots;
- every other modelled column is estimated from one record per person (so each person
  counts once per column), by Gaussian histograms whose noise is set by zero-concentrated
  DP (Bun & Steinke 2016) over all the queries together:
  - categorical: a histogram over the values seen, kept only above a threshold that a
    single person's new value crosses with probability below delta (the stability-based
    sparse histogram, as in Google's DP libraries and Wilkins et al. 2024). So a value held
    by few people is never released: rare-value protection follows from the threshold;
  - numeric and datetime: a coarse histogram over fixed log-scale bins finds the range, a
    fine one within it gives the quantiles; a histogram over decimals (or time units)
    gives the rounding. The bins are fixed in advance, so no threshold is needed.
The result is a *public sketch*: a frame of as many rows as people, drawn from these noisy
marginals column by column. The encoder is fitted on it exactly as on real rows; whatever it
learns is post-processing of DP outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from synth.data.categories import MISSING, category_key, category_keys
from synth.data.parsing import epoch_ns, parse_numbers
from synth.data.precision import MAX_DECIMALS, TIME_UNITS
from synth.data.schema import ColumnSpec, TableSchema
from synth.errors import InputDataError

COARSE_EDGES = np.concatenate(
    [-(10.0 ** np.arange(19, -4, -0.5)), [0.0], 10.0 ** np.arange(-3, 19.5, 0.5)]
)
"""Fixed, data-independent bins for finding a numeric column's range (1e-3 .. 1e19, both
signs, half a decade each): enough for money, counts and epoch nanoseconds alike."""
FINE_BINS = 32
"""Bins of the histogram the quantiles come from: few, so that each holds many people next
to the noise. The knots need not be fine: the model learns the rest through DP-SGD, and
decoding inverts the same transform."""
RANGE_FLOOR_Z = 4.0
"""Coarse bins whose noisy count is below this many noise stds are empty: over the ~90 bins,
a bin nobody is in passes with probability about 3e-3, so the range is the data's."""
EDGE_FLOOR_Z = 3.0
"""The sketch's range ends at the first and last fine bins above this many noise stds."""
RANGE_TAIL = 0.005
"""Share of the noisy mass cut from each end when choosing the range from the coarse bins."""
PRECISION_SHARE = 0.02
"""A finer precision (decimals, time unit) is kept when more than this share of people need it."""


@dataclass
class PrivateSketch:
    """What the preprocessing released: the public sketch frame, and what it estimated."""

    frame: pd.DataFrame
    estimated: list[str]
    noise_std: float
    threshold: float


def gaussian_sigma(n_queries: int, epsilon: float, delta: float) -> float:
    """The Gaussian noise std for `n_queries` sensitivity-1 histograms that together satisfy
    (epsilon, delta)-DP: rho-zCDP with rho = n / (2 sigma^2), and rho -> (eps, delta) by
    eps = rho + 2 sqrt(rho ln(1/delta)) (Bun & Steinke 2016, Prop. 1.3)."""
    log_term = math.log(1.0 / delta)
    root_rho = -math.sqrt(log_term) + math.sqrt(log_term + epsilon)
    return math.sqrt(n_queries / (2.0 * root_rho**2))


def sparse_threshold(sigma: float, delta: float) -> float:
    """Count above which a noisy category is released: a value only one person holds
    (count 1) crosses it with probability `delta`."""
    return 1.0 + sigma * float(special.ndtri(1.0 - delta))


def one_per_person(n_rows: int, units: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """One record index per person, chosen at random: each person counts once per column."""
    if units is None:
        return np.arange(n_rows)
    order = rng.permutation(n_rows)
    _, first = np.unique(np.asarray(units)[order], return_index=True)
    return np.sort(order[first])


def _declared(spec: ColumnSpec) -> bool:
    if spec.kind == "categorical":
        return spec.categories is not None
    return spec.min is not None and spec.max is not None and spec.kind == "numeric"


def estimated_columns(schema: TableSchema) -> list[str]:
    """The modelled columns whose values DP preprocessing must estimate: those not declared,
    and a categorical target, whose class frequencies the model samples labels from."""
    target = schema.target
    return [c.name for c in schema.modelled if not _declared(c) or c.name == target]


def private_sketch(
    train: pd.DataFrame,
    schema: TableSchema,
    units: np.ndarray | None,
    epsilon: float,
    delta: float,
    seed: int,
) -> PrivateSketch:
    """The public sketch of `train` at (epsilon, delta) (see the module docstring)."""
    rng = np.random.default_rng(seed)
    rows = train.iloc[one_per_person(len(train), units, rng)].reset_index(drop=True)
    n = len(rows)
    modelled = schema.modelled
    estimated = estimated_columns(schema)
    categorical = [c for c in modelled if c.kind == "categorical" and c.name in estimated]
    numeric = [c for c in modelled if c.kind != "categorical" and c.name in estimated]
    thresholded = [c for c in categorical if c.categories is None]
    # queries: one per categorical; coarse + fine + precision per numeric
    n_queries = len(categorical) + 3 * len(numeric)
    sigma = threshold = 0.0
    if n_queries:
        if epsilon <= 0:
            raise InputDataError("DP preprocessing needs a share of epsilon above 0")
        sigma = gaussian_sigma(n_queries, epsilon, delta / 2)
        threshold = sparse_threshold(sigma, delta / 2 / max(1, len(thresholded)))
    noise = np.random.default_rng(rng.integers(2**63))
    out: dict[str, object] = {}
    for spec in schema.columns:
        if spec.kind == "categorical":
            counted = spec.name in estimated
            out[spec.name] = _categorical(
                spec, rows[spec.name], sigma, threshold, n, noise, counted
            )
        elif spec.kind in ("numeric", "datetime"):
            out[spec.name] = _numeric(spec, rows[spec.name], sigma, n, noise)
        else:  # ids and constants: nothing of theirs is modelled
            out[spec.name] = _placeholder(spec, n)
    frame = pd.DataFrame(out, columns=list(train.columns))
    return PrivateSketch(frame, estimated, sigma, threshold)


def _allocate(weights: np.ndarray, n: int) -> np.ndarray:
    """Whole counts summing to `n`, proportional to non-negative `weights` (largest
    remainder); every positive weight gets at least one."""
    w = np.clip(np.asarray(weights, dtype=float), 0, None)
    if w.sum() <= 0:
        w = np.ones_like(w)
    raw = w / w.sum() * n
    counts = np.floor(raw).astype(int)
    counts[(w > 0) & (counts == 0)] = 1
    short = n - counts.sum()
    if short > 0:
        counts[np.argsort(raw - np.floor(raw))[::-1][:short]] += 1
    return counts


def _categorical(
    spec: ColumnSpec,
    values: pd.Series,
    sigma: float,
    threshold: float,
    n: int,
    rng,
    counted: bool = True,
) -> pd.Series:
    """The sketch column of a categorical: its declared values (as often as a noisy count
    says when `counted`, evenly otherwise), or the noisy histogram's values above the
    threshold, in proportion to their noisy counts."""
    if spec.categories is not None:
        levels = list(spec.categories)
        weights = np.ones(len(levels))
        if counted:  # the declared values' counts, noised; no threshold: the values are public
            held = category_keys(values).value_counts()
            true = np.array([held.get(category_key(v), 0) for v in levels], dtype=float)
            weights = np.clip(true + rng.normal(0.0, sigma, len(levels)), 0.0, None)
        counts = _allocate(weights, n)
    else:
        keys = category_keys(values).fillna(MISSING)
        held = keys.value_counts()
        noisy = held.to_numpy(dtype=float) + rng.normal(0.0, sigma, len(held))
        keep = noisy > threshold
        if not keep.any():
            raise InputDataError(
                f"column {spec.name!r}: no value is held by enough people to pass the DP "
                "threshold: declare its categories under source.columns, raise "
                "privacy.dp.epsilon, or drop the column"
            )
        # one original value per kept key (the first row holding it)
        first = {k: v for k, v in zip(keys[::-1], values[::-1], strict=True)}
        levels = [None if k == MISSING else first[k] for k in held.index[keep]]
        counts = _allocate(noisy[keep], n)
    drawn = np.repeat(np.arange(len(levels)), counts)
    data = pd.Series([levels[i] for i in drawn], dtype=object)
    if any(v is None for v in levels):
        return data
    try:
        return data.astype(values.dtype)
    except (TypeError, ValueError):
        return data


def _numbers(spec: ColumnSpec, values: pd.Series) -> np.ndarray:
    if spec.kind == "datetime":
        return epoch_ns(values, spec.name).to_numpy(dtype=float)
    return parse_numbers(values, spec.name).to_numpy(dtype=float, na_value=np.nan)


def _noisy_hist(x: np.ndarray, edges: np.ndarray, sigma: float, rng) -> np.ndarray:
    """Gaussian-noised counts over fixed `edges` (values beyond them count in the end bins)."""
    counts, _ = np.histogram(np.clip(x, edges[0], edges[-1]), bins=edges)
    return counts + rng.normal(0.0, sigma, len(counts))


def _trimmed(
    noisy: np.ndarray,
    edges: np.ndarray,
    sigma: float,
    core_z: float = EDGE_FLOOR_Z,
    grow_z: float = 0.5,
):
    """Post-processing: the bins from the first to the last above `EDGE_FLOOR_Z` noise stds
    (the core), grown outwards over the neighbours above `grow_z` noise stds (a thin tail
    of real mass), with negative counts set to 0; (weights, edges). An empty bin's noise would
    otherwise stretch the sketch over the whole range."""
    strong = np.flatnonzero(noisy > core_z * sigma)
    if len(strong) == 0:
        return np.clip(noisy, 0.0, None), edges
    first, last = strong[0], strong[-1]
    while first > 0 and noisy[first - 1] > grow_z * sigma:
        first -= 1
    while last < len(noisy) - 1 and noisy[last + 1] > grow_z * sigma:
        last += 1
    return np.clip(noisy[first : last + 1], 0.0, None), edges[first : last + 2]


def _quantile_points(cdf_weights: np.ndarray, edges: np.ndarray, n: int) -> np.ndarray:
    """`n` values at evenly spaced probabilities between the `RANGE_TAIL` and `1 - RANGE_TAIL`
    quantiles of the histogram's piecewise-linear CDF: the sketch's extremes are quantiles
    many people share, never one person's value."""
    cdf = np.concatenate([[0.0], np.cumsum(cdf_weights)])
    if cdf[-1] <= 0:
        cdf = np.linspace(0.0, 1.0, len(edges))
    cdf = cdf / cdf[-1]
    probs = RANGE_TAIL + (1.0 - 2.0 * RANGE_TAIL) * (np.arange(n) + 0.5) / n
    return np.interp(probs, cdf, edges)


def _numeric(spec: ColumnSpec, values: pd.Series, sigma: float, n: int, rng) -> pd.Series:
    """The sketch column of a number or datetime: values spread as its (noisy) quantiles,
    missing as often as (noisily) in the data, rounded to its (noisy) precision."""
    x = _numbers(spec, values)
    present = x[~np.isnan(x)]
    if spec.min is not None and spec.max is not None and spec.kind == "numeric":
        lo, hi = float(spec.min), float(spec.max)
        points = np.linspace(lo, hi, n)
        if spec.decimals is not None:
            points = np.round(points, spec.decimals)
        n_missing = 0
    else:
        lo, hi = _range(_noisy_hist(present, COARSE_EDGES, sigma, rng), sigma, spec)
        edges = _fine_edges(lo, hi, spec.integer)
        fine, edges = _trimmed(_noisy_hist(present, edges, sigma, rng), edges, sigma)
        missing = float(np.isnan(x).sum()) + rng.normal(0.0, sigma)
        missing = missing if missing > RANGE_FLOOR_Z * sigma else 0.0
        total = fine.sum() + missing
        n_missing = int(round(n * missing / total)) if total > 0 else 0
        points = _quantile_points(fine, edges, n - n_missing)
        points = _round(points, spec, present, sigma, rng)
    if spec.integer:
        points = np.round(points)
    column = np.concatenate([points, np.full(n_missing, np.nan)])
    if spec.kind == "datetime":
        return pd.Series(pd.to_datetime(column, unit="ns", utc=spec.timezone == "UTC"))
    return pd.Series(column)


def _fine_edges(lo: float, hi: float, integer: bool) -> np.ndarray:
    """The fine bins over [lo, hi]: whole numbers wide, from half-way between two, for an
    integer column of a short range (its quantiles then land on its values); geometric
    over a range of decades (money, counts); even otherwise."""
    if integer and hi - lo <= 16 * FINE_BINS:
        width = max(1, math.ceil((hi - lo + 1) / FINE_BINS))
        return np.arange(math.floor(lo) - 0.5, math.ceil(hi) + width, width)
    wide = lo > 0 and hi / lo >= 100
    return (np.geomspace if wide else np.linspace)(lo, hi, FINE_BINS + 1)


def _range(coarse: np.ndarray, sigma: float, spec: ColumnSpec) -> tuple[float, float]:
    """The range of the coarse bins with real mass (`_trimmed`, its core above
    `RANGE_FLOOR_Z` noise stds: over ~90 bins, an empty one passes with probability ~3e-3);
    a declared bound wins."""
    if not (coarse > RANGE_FLOOR_Z * sigma).any():
        raise InputDataError(
            f"column {spec.name!r}: too few people to estimate its range privately: declare "
            "min and max under source.columns, or raise privacy.dp.epsilon"
        )
    _, edges = _trimmed(coarse, COARSE_EDGES, sigma, RANGE_FLOOR_Z, grow_z=1.0)
    lo = float(edges[0]) if spec.min is None else float(spec.min)
    hi = float(edges[-1]) if spec.max is None else float(spec.max)
    return lo, max(hi, lo + 1e-9)


def _needed_precision(spec: ColumnSpec, present: np.ndarray) -> np.ndarray:
    """Per value, the index of the coarsest precision it is written at: decimals 0..6 (7:
    finer), or the time unit (day, hour, minute, second; 4: finer)."""
    if spec.kind == "datetime":
        steps = list(TIME_UNITS.values())
        need = np.full(len(present), len(steps))
        for i, ns in reversed(list(enumerate(steps))):
            need[np.abs(present - np.round(present / ns) * ns) <= 10_000] = i
        return need
    need = np.full(len(present), MAX_DECIMALS + 1)
    for d in range(MAX_DECIMALS, -1, -1):
        scaled = present * 10.0**d
        on_grid = np.abs(scaled - np.round(scaled)) <= 1e-9 * np.maximum(1.0, np.abs(scaled))
        need[on_grid] = d
    return need


def _round(points: np.ndarray, spec: ColumnSpec, present: np.ndarray, sigma: float, rng):
    """Round the sketch to the coarsest precision all but `PRECISION_SHARE` of the people
    (counted noisily) are written at; a declared `decimals` wins."""
    if spec.kind == "numeric" and spec.decimals is not None:
        return np.round(points, spec.decimals)
    if spec.integer:
        return points
    need = _needed_precision(spec, present)
    levels = len(TIME_UNITS) + 1 if spec.kind == "datetime" else MAX_DECIMALS + 2
    hist = np.bincount(need, minlength=levels) + rng.normal(0, sigma, levels)
    hist = np.where(hist > EDGE_FLOOR_Z * sigma, hist, 0.0)  # a precision few people need
    finer = hist[::-1].cumsum()[::-1]  # finer[i]: people needing precision i or finer
    total = max(hist.sum(), 1.0)
    choice = next(
        (i for i in range(levels - 1) if finer[i + 1] / total <= PRECISION_SHARE), levels - 1
    )
    if choice == levels - 1:
        return points  # finer than any grid: left continuous
    if spec.kind == "datetime":
        ns = list(TIME_UNITS.values())[choice]
        return np.round(points / ns) * ns
    return np.round(points, choice)


def _placeholder(spec: ColumnSpec, n: int) -> pd.Series:
    """Not modelled: a column of the right length and no real value."""
    if spec.kind == "constant":
        return pd.Series([spec.constant_value] * n)
    return pd.Series([f"syn-{i + 1:09d}" for i in range(n)], dtype=object)


def private_class_counts(
    labels: np.ndarray,
    units: np.ndarray | None,
    n_classes: int,
    epsilon: float,
    delta: float,
    seed: int,
    declared: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy image counts per class from one image per person, and which classes pass the
    sparse threshold (the others are protected: trained as the null class, never sampled).
    Class names may come from the data (a DICOM attribute), so they are thresholded too,
    unless `declared` public (source.images.classes): then every class is kept, and all of
    delta goes to the counts."""
    rng = np.random.default_rng(seed)
    one = np.asarray(labels)[one_per_person(len(labels), units, rng)]
    sigma = gaussian_sigma(1, epsilon, delta if declared else delta / 2)
    noisy = np.bincount(one, minlength=n_classes) + rng.normal(0.0, sigma, n_classes)
    if declared:
        kept = np.ones(n_classes, dtype=bool)
    else:
        kept = noisy > sparse_threshold(sigma, delta / 2)
    return np.clip(np.round(noisy), 0, None).astype(np.int64), kept
