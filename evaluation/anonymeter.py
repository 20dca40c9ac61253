"""Anonymeter-style privacy risks: singling out, linkability and attribute inference.

After Giomi et al., "A Unified Framework for Quantifying Privacy Risk in Synthetic Data"
(PoPETs 2023), reimplemented because the `anonymeter` package pins numpy<1.27. Each risk runs
three attacks that use only the synthetic table:

* the **main** attack targets training rows (what the model saw);
* the **control** attack targets holdout rows (real people the model never saw), so it measures
  what the synthetic data reveals about anyone from the population, which is the point of it;
* the **baseline** guesses at random; an attack no better than it proves nothing ("not valid").

The risk is the residual `(main - control) / (1 - control)`: what the attack learns about the
training rows beyond what it learns about anybody. Rates and intervals follow Anonymeter's
Wilson scores exactly (`evaluation.anonymeter_stats`).

What each attack catches, and what it cannot:

* **Singling out** (`singling_out`: multivariate predicates on `n_cols` columns built from
  synthetic rows, `>=`/`<=` towards the nearer tail for numbers, `==` for categories;
  `singling_out_univariate`: extremes, one-off values, a lone missing value). It catches
  synthetic rows whose combination of values isolates exactly one training record: copied
  outliers and rare combinations. It cannot see a leak that isolates nobody (a copied common
  row), and queries that single out in the synthetic table are few on coarse tables (churn's
  mostly binary columns: under 200 of 1,000 within the query budget), so the multivariate risk
  there is weak; the rate is counted over `n_attacks` either way, as Anonymeter does.
  One difference from Anonymeter: when train and control differ in size, it rescales the
  control successes by a curve fitted to control subsamples, which is fragile (measured on
  churn: a factor of 0.50 where the truth was 0.96, and fresh rows showed a risk; a control set
  under 1,000 rows leaves it one point to fit). Here both attacks face populations of the
  same size instead: the larger set is averaged over `SUBSAMPLES` random subsets of the size
  of the smaller. Unbiased when nothing leaks; a leak is diluted by the size ratio.
* **Linkability**: the attacker holds two disjoint column sets of a person (two datasets) and
  joins them through the nearest synthetic row of each half; a link succeeds when both halves
  pick the same synthetic row. It catches copies and near copies of whole records. It cannot see
  a leak of a few columns only, and with many exactly tied neighbours it measures the tie-break.
* **Attribute inference**: the attacker knows every column but a secret and guesses the secret
  from the nearest synthetic row (categories must match, numbers within 5% relative, datetimes
  within 5% of the range). It catches records whose secret travels with their other values. It
  cannot tell an individual leak from a strong population-level correlation, which is what the
  control attack subtracts; a model that learned a real correlation is not penalised.

With no `secret`, every modelled column is the secret in turn (all others known) and `inference`
pools them: the mean number of right guesses per target, over the columns, for each of the
three attacks, then one risk, with the interval of `n_attacks` targets (conservative: the pooled
guesses of one target are correlated, so they are not counted as more attacks). `by_column`
holds each column's own risk. Why not the worst column: the maximum of ~20 noisy estimates is
biased upwards, and most of all for near-constant columns, where `1 - control` is tiny and
multiplies the noise; on fresh churn rows the worst column's interval excluded 0 (n = 500).
A copied record gives away every column at once, so the mean rises with it.

Nearest neighbours use Anonymeter's Gower-like distance: per column, `|a - b| / range` for numbers
and datetimes (range over all three tables, so each term is at most 1) and 0/1 for categories.
Two deliberate differences: a missing value is 0 from another missing value and 1 from any value
(Anonymeter adds 1 for two missing values and NaN for one), and exact ties go to one seeded random
order of the synthetic rows (Anonymeter's order is arbitrary). Every attack is seeded and bounded
(`n_attacks` targets or queries, `max_query_attempts`), so ~5,000-row tables take seconds.

Results hold column names and rates only, never a data value; so do the messages.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from evaluation.anonymeter_stats import CONFIDENCE, AttackCounts, bounded
from evaluation.encoding import category_keys, numeric_values
from synth.data.schema import TableSchema
from synth.errors import InputDataError

N_ATTACKS = 1000
N_COLS = 3  # columns per multivariate singling-out query (Anonymeter's default)
INFERENCE_TOLERANCE = 0.05  # a numeric guess within 5% counts as right (Anonymeter's default)
QUERY_ATTEMPTS_PER_ATTACK = 50  # multivariate candidate queries tried per query wanted
_QUERY_BATCH = 500
_MATCH_CELLS = 8_000_000
"""Rows x queries matched at a time: a full training table (270k flights) takes fewer queries
a batch, so memory stays near 100 MB whatever the table's size."""


def _batch(n_rows: int) -> int:
    return max(1, min(_QUERY_BATCH, _MATCH_CELLS // max(n_rows, 1)))


_CELLS_PER_CHUNK = 2_000_000  # float64 cells in one block of neighbour distances (16 MB)
SUBSAMPLES = 10  # subsets of the larger real set, to single out in populations of equal size
_MISSING = -10.0  # a missing value in the distance space: at least 1 from any value, 0 from itself

# Query operators.
EQ, NE, GT, LT, GE, LE, ISNULL, NOTNULL = range(8)


class AttackRisk(BaseModel):
    """One attack's risk, its confidence interval and the three success rates behind it.

    Rates are Wilson-score centres, as Anonymeter reports them. `valid` is False when the attack
    does no better than random guessing (or the control attack always wins); `note` says why.
    """

    risk: float
    ci: tuple[float, float]
    main_rate: float
    control_rate: float
    baseline_rate: float
    n_attacks: int
    n_control_attacks: int
    n_baseline_attacks: int
    valid: bool
    note: str | None = None


class SinglingOutRisk(AttackRisk):
    mode: Literal["univariate", "multivariate"]
    n_cols: int
    n_queries: int  # queries that singled out in the synthetic table (at most n_attacks)


class LinkabilityRisk(AttackRisk):
    columns_a: list[str]
    columns_b: list[str]


class ColumnRisk(AttackRisk):
    column: str


class InferenceRisk(AttackRisk):
    secret: str | None  # None: the mean over every modelled column as the secret (`by_column`)
    by_column: list[ColumnRisk]


class AnonymeterRisks(BaseModel):
    """The three Anonymeter risks of one synthetic table (column names and rates only)."""

    singling_out: SinglingOutRisk
    singling_out_univariate: SinglingOutRisk
    linkability: LinkabilityRisk
    inference: InferenceRisk
    seed: int
    confidence: float


def _risk_fields(counts: AttackCounts, confidence: float) -> dict[str, object]:
    main, control, baseline = counts.rates(confidence)
    value, ci = bounded(counts.risk(confidence))
    note = counts.validity(confidence)
    return {
        "risk": value,
        "ci": ci,
        "main_rate": main.value,
        "control_rate": control.value,
        "baseline_rate": baseline.value,
        "n_attacks": counts.n_main,
        "n_control_attacks": counts.n_control,
        "n_baseline_attacks": counts.n_baseline,
        "valid": note is None,
        "note": note,
    }


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class _Encoded:
    """The modelled columns of the three tables as float matrices in one coding.

    Numbers and datetimes stay in their units (datetimes as ns); categories become integer codes
    shared by the three tables; missing is NaN. `low`/`span` map ordered columns onto [0, 1].
    """

    names: list[str]
    ordered: np.ndarray
    train: np.ndarray
    control: np.ndarray
    synthetic: np.ndarray
    low: np.ndarray
    span: np.ndarray

    def scaled(self, x: np.ndarray) -> np.ndarray:
        """The distance space: ordered columns in [0, 1], codes as they are, missing -> sentinel."""
        out = np.where(self.ordered, (x - self.low) / self.span, x)
        return np.where(np.isnan(out), _MISSING, out)


def _encode(
    train: pd.DataFrame, control: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema
) -> _Encoded:
    specs = schema.modelled
    names = [s.name for s in specs]
    for label, frame in (("training", train), ("control", control), ("synthetic", synthetic)):
        absent = [n for n in names if n not in frame.columns]
        if absent:
            raise InputDataError(f"the {label} table lacks modelled columns: {absent}")
        if len(frame) == 0:
            raise InputDataError(f"the {label} table has no rows")
    if len(names) < 2:
        raise InputDataError("Anonymeter-style risks need at least two modelled columns")
    sizes = [len(train), len(control), len(synthetic)]
    cols, ordered = [], []
    for spec in specs:
        joined = pd.concat(
            [train[spec.name], control[spec.name], synthetic[spec.name]], ignore_index=True
        )
        if spec.kind == "categorical":
            codes, _ = pd.factorize(category_keys(joined), use_na_sentinel=True)
            values = np.where(codes < 0, np.nan, codes.astype(float))
            ordered.append(False)
        else:
            values = numeric_values(joined, spec.kind)
            ordered.append(True)
        cols.append(values)
    full = np.column_stack(cols)
    ordered_mask = np.array(ordered)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: span stays 1
        low = np.where(ordered_mask, np.nanmin(full, axis=0), 0.0)
        high = np.where(ordered_mask, np.nanmax(full, axis=0), 1.0)
    low = np.nan_to_num(low)
    span = np.nan_to_num(high - low)
    span[span <= 0] = 1.0
    a, b = sizes[0], sizes[0] + sizes[1]
    return _Encoded(names, ordered_mask, full[:a], full[a:b], full[b:], low, span)


def _unique_rows(x: np.ndarray) -> np.ndarray:
    """Distinct rows (missing equals missing), in first-seen order, as Anonymeter dedups."""
    return pd.DataFrame(x).drop_duplicates().to_numpy()


# --------------------------------------------------------------------------- singling out


@dataclass(frozen=True)
class _Queries:
    """Conjunctive predicates: query i holds `cols[i, j] ops[i, j] vals[i, j]` for every j."""

    cols: np.ndarray
    ops: np.ndarray
    vals: np.ndarray

    def __len__(self) -> int:
        return len(self.cols)

    def take(self, index: np.ndarray | list[int]) -> _Queries:
        return _Queries(self.cols[index], self.ops[index], self.vals[index])

    def key(self, i: int) -> tuple[tuple[int, int, float], ...]:
        return tuple(
            sorted(
                zip(self.cols[i].tolist(), self.ops[i].tolist(), self.vals[i].tolist(), strict=True)
            )
        )


_COMPARE: dict[int, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    EQ: np.equal,
    NE: lambda v, x: (v != x) & ~np.isnan(v),  # a missing value matches no comparison
    GT: np.greater,
    LT: np.less,
    GE: np.greater_equal,
    LE: np.less_equal,
    ISNULL: lambda v, x: np.isnan(v),
    NOTNULL: lambda v, x: ~np.isnan(v),
}


def _matches(x: np.ndarray, queries: _Queries) -> np.ndarray:
    """Boolean (rows, queries): which rows each query matches."""
    out = np.ones((len(x), len(queries)), dtype=bool)
    for j in range(queries.cols.shape[1]):
        values = x[:, queries.cols[:, j]]
        ops = queries.ops[:, j]
        hit = np.empty_like(out)
        for op in np.unique(ops):
            sel = ops == op
            hit[:, sel] = _COMPARE[int(op)](values[:, sel], queries.vals[sel, j])
        out &= hit
    return out


def _counts(x: np.ndarray, queries: _Queries) -> np.ndarray:
    """How many rows of `x` each query matches, in batches to bound memory."""
    step = _batch(len(x))
    parts = [
        _matches(x, queries.take(np.arange(i, min(i + step, len(queries))))).sum(axis=0)
        for i in range(0, len(queries), step)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=int)


def _keep_singling_out(
    syn: np.ndarray, batch: _Queries, seen: set[tuple[tuple[int, int, float], ...]], want: int
) -> list[int]:
    """Indices of new queries in `batch` that match exactly one synthetic row (up to `want`)."""
    kept: list[int] = []
    for i in np.flatnonzero(_counts(syn, batch) == 1):
        key = batch.key(int(i))
        if key not in seen:
            seen.add(key)
            kept.append(int(i))
            if len(kept) >= want:
                break
    return kept


def _concat(parts: list[_Queries], width: int) -> _Queries:
    if not parts:
        return _Queries(np.zeros((0, width), int), np.zeros((0, width), int), np.zeros((0, width)))
    return _Queries(
        np.concatenate([p.cols for p in parts]),
        np.concatenate([p.ops for p in parts]),
        np.concatenate([p.vals for p in parts]),
    )


def _univariate_queries(
    syn: np.ndarray, ordered: np.ndarray, n: int, rng: np.random.Generator
) -> _Queries:
    """Anonymeter's univariate attack: a lone missing value, each column's extremes and each
    value held by one synthetic row, kept if it singles out a synthetic row."""
    cand: list[tuple[int, int, float]] = []
    for j in range(syn.shape[1]):
        col = syn[:, j]
        missing = np.isnan(col)
        if missing.sum() == 1:
            cand.append((j, ISNULL, 0.0))
        present = col[~missing]
        if ordered[j] and present.size:
            cand += [(j, LE, float(present.min())), (j, GE, float(present.max()))]
        values, counts = np.unique(present, return_counts=True)
        cand += [(j, EQ, float(v)) for v in values[counts == 1]]
    if not cand:
        return _concat([], 1)
    order = rng.permutation(len(cand))
    arr = np.array([cand[i] for i in order], dtype=float)
    queries = _Queries(arr[:, :1].astype(int), arr[:, 1:2].astype(int), arr[:, 2:3])
    kept = _keep_singling_out(syn, queries, set(), n)
    return queries.take(kept)


def _multivariate_queries(
    syn: np.ndarray,
    ordered: np.ndarray,
    n: int,
    n_cols: int,
    max_attempts: int,
    rng: np.random.Generator,
) -> _Queries:
    """Anonymeter's multivariate attack: predicates on `n_cols` columns of a random synthetic row
    (numbers: `>=` above the median, `<=` below; categories: `==`), kept if they single it out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        medians = np.nanmedian(syn, axis=0)
    seen: set[tuple[tuple[int, int, float], ...]] = set()
    found: list[_Queries] = []
    n_found, attempts = 0, 0
    while n_found < n and attempts < max_attempts:
        size = min(_QUERY_BATCH * 2, max_attempts - attempts)
        attempts += size
        rows = rng.integers(0, len(syn), size)
        cols = np.sort(rng.random((size, syn.shape[1])).argsort(axis=1)[:, :n_cols], axis=1)
        vals = syn[rows[:, None], cols]
        ops = np.where(
            np.isnan(vals),
            ISNULL,
            np.where(ordered[cols], np.where(vals > medians[cols], GE, LE), EQ),
        )
        vals = np.where(np.isnan(vals), 0.0, vals)
        batch = _Queries(cols, ops, vals)
        kept = _keep_singling_out(syn, batch, seen, n - n_found)
        found.append(batch.take(kept))
        n_found += len(kept)
    return _concat(found, n_cols)


def _random_queries(
    syn: np.ndarray, ordered: np.ndarray, n: int, n_cols: int, rng: np.random.Generator
) -> _Queries:
    """The baseline: random columns, a random synthetic value each, a random operator."""
    uniques = [np.unique(syn[:, j]) for j in range(syn.shape[1])]  # NaN kept once
    cols = np.sort(rng.random((n, syn.shape[1])).argsort(axis=1)[:, :n_cols], axis=1)
    vals = np.empty(cols.shape)
    ops = np.empty(cols.shape, dtype=int)
    for i, j in np.ndindex(*cols.shape):
        c = cols[i, j]
        v = float(rng.choice(uniques[c]))
        op = int(rng.choice([EQ, NE, GT, LT, GE, LE] if ordered[c] else [EQ, NE]))
        if math.isnan(v):
            op, v = (ISNULL if op == EQ else NOTNULL), 0.0
        vals[i, j], ops[i, j] = v, op
    return _Queries(cols, ops, vals)


def _singled_out(rows: np.ndarray, queries: _Queries, size: int, rng: np.random.Generator) -> float:
    """How many queries match exactly one row of `rows`; on more rows than `size`, the mean over
    `SUBSAMPLES` random subsets of `size` rows, so main and control face equal populations."""
    if len(queries) == 0:
        return 0.0
    if size >= len(rows):
        return float((_counts(rows, queries) == 1).sum())
    subsets = [rng.choice(len(rows), size, replace=False) for _ in range(SUBSAMPLES)]
    total = 0
    step = _batch(len(rows))
    for i in range(0, len(queries), step):
        hits = _matches(rows, queries.take(np.arange(i, min(i + step, len(queries)))))
        total += sum(int((hits[subset].sum(axis=0) == 1).sum()) for subset in subsets)
    return total / SUBSAMPLES


def _singling_out(
    enc: _Encoded,
    mode: Literal["univariate", "multivariate"],
    n_attacks: int,
    n_cols: int,
    max_attempts: int,
    rng: np.random.Generator,
    confidence: float,
) -> SinglingOutRisk:
    syn, train, control = (_unique_rows(x) for x in (enc.synthetic, enc.train, enc.control))
    width = 1 if mode == "univariate" else min(n_cols, syn.shape[1])
    if mode == "univariate":
        queries = _univariate_queries(syn, enc.ordered, n_attacks, rng)
    else:
        queries = _multivariate_queries(syn, enc.ordered, n_attacks, width, max_attempts, rng)
    size = min(len(train), len(control))
    main = _singled_out(train, queries, size, rng)
    control_hits = _singled_out(control, queries, size, rng)
    random_queries = _random_queries(syn, enc.ordered, n_attacks, width, rng)
    baseline = _singled_out(train, random_queries, size, rng)
    counts = AttackCounts(n_attacks, main, n_attacks, control_hits, n_attacks, baseline)
    return SinglingOutRisk(
        **_risk_fields(counts, confidence), mode=mode, n_cols=width, n_queries=len(queries)
    )


# --------------------------------------------------------------------------- neighbours


def _nearest(targets: np.ndarray, syn: np.ndarray, groups: list[np.ndarray]) -> list[np.ndarray]:
    """For each group of columns (a boolean mask), the index of each target's nearest synthetic
    row over the columns *outside* the group (Gower-like L1, first index wins a tie).

    Distances are additive over columns, so one pass gives every leave-group-out neighbour."""
    n_syn, d = syn.shape
    chunk = max(1, _CELLS_PER_CHUNK // max(1, n_syn * d))
    out = [np.empty(len(targets), dtype=np.int64) for _ in groups]
    for start in range(0, len(targets), chunk):
        block = targets[start : start + chunk]
        per_column = np.minimum(np.abs(block[:, None, :] - syn[None, :, :]), 1.0)
        total = per_column.sum(axis=2)
        for g, mask in enumerate(groups):
            dist = total - per_column[:, :, mask].sum(axis=2) if mask.any() else total
            out[g][start : start + chunk] = dist.argmin(axis=1)
    return out


def _guess_right(
    guess: np.ndarray, secret: np.ndarray, ordered: bool, tolerance: float | None
) -> np.ndarray:
    """Anonymeter's success rule: categories equal, numbers within 5% of the guess (or within an
    absolute `tolerance`, for datetimes); a missing guess is right for a missing secret."""
    both_missing = np.isnan(guess) & np.isnan(secret)
    with np.errstate(invalid="ignore"):
        if not ordered:
            right = guess == secret
        elif tolerance is not None:
            right = np.abs(guess - secret) <= tolerance
        else:
            right = np.abs(guess - secret) <= INFERENCE_TOLERANCE * (np.abs(guess) + 1e-12)
    return both_missing | right


def linkability_columns(schema: TableSchema, seed: int = 0) -> tuple[list[str], list[str]]:
    """The attacker's two column sets: the modelled columns in a seeded random order, halved."""
    names = [s.name for s in schema.modelled]
    order = np.random.default_rng(seed).permutation(len(names))
    half = len(names) // 2
    return [names[i] for i in sorted(order[:half])], [names[i] for i in sorted(order[half:])]


def _neighbour_attacks(
    enc: _Encoded,
    schema: TableSchema,
    n_attacks: int,
    secret: str | None,
    link_columns: tuple[list[str], list[str]],
    rng: np.random.Generator,
    confidence: float,
) -> tuple[LinkabilityRisk, InferenceRisk]:
    """Linkability and inference share their targets and one pass of neighbour distances."""
    names = enc.names
    a_cols, b_cols = link_columns
    unknown = sorted(set(a_cols + b_cols) - set(names))
    if unknown or not a_cols or not b_cols or set(a_cols) & set(b_cols):
        raise InputDataError(
            "linkability needs two disjoint, non-empty sets of modelled columns; "
            f"unknown columns: {unknown}"
        )
    if secret is not None and secret not in names:
        raise InputDataError(f"the secret column {secret!r} is not a modelled column")
    secrets = [secret] if secret is not None else names
    in_a = np.isin(names, a_cols)
    in_b = np.isin(names, b_cols)
    # Linkability: neighbours over A are those "leaving out" everything but A.
    groups = [~in_a, ~in_b] + [np.array([n == s for n in names]) for s in secrets]

    order = rng.permutation(len(enc.synthetic))  # one seeded random order settles every tie
    syn_raw = enc.synthetic[order]
    syn = enc.scaled(syn_raw)
    n_main = min(n_attacks, len(enc.train))
    n_control = min(n_attacks, len(enc.control))
    main_raw = enc.train[rng.choice(len(enc.train), n_main, replace=False)]
    control_raw = enc.control[rng.choice(len(enc.control), n_control, replace=False)]
    main_nn = _nearest(enc.scaled(main_raw), syn, groups)
    control_nn = _nearest(enc.scaled(control_raw), syn, groups)

    n_syn = len(syn)
    link_baseline = int((rng.integers(0, n_syn, n_main) == rng.integers(0, n_syn, n_main)).sum())
    link = AttackCounts(
        n_main,
        int((main_nn[0] == main_nn[1]).sum()),
        n_control,
        int((control_nn[0] == control_nn[1]).sum()),
        n_main,
        link_baseline,
    )
    linkability = LinkabilityRisk(
        **_risk_fields(link, confidence), columns_a=list(a_cols), columns_b=list(b_cols)
    )

    by_column: list[ColumnRisk] = []
    all_counts: list[AttackCounts] = []
    random_rows = rng.integers(0, n_syn, n_main)
    for k, name in enumerate(secrets):
        j = names.index(name)
        # A datetime's relative error depends on the epoch, so it gets 5% of the range instead.
        tol = INFERENCE_TOLERANCE * enc.span[j] if schema.column(name).kind == "datetime" else None

        def right(guess_rows: np.ndarray, targets: np.ndarray, j: int = j, tol=tol) -> int:
            guesses = syn_raw[guess_rows, j]
            return int(_guess_right(guesses, targets[:, j], bool(enc.ordered[j]), tol).sum())

        counts = AttackCounts(
            n_main,
            right(main_nn[2 + k], main_raw),
            n_control,
            right(control_nn[2 + k], control_raw),
            n_main,
            right(random_rows, main_raw),
        )
        all_counts.append(counts)
        by_column.append(ColumnRisk(**_risk_fields(counts, confidence), column=name))

    if secret is not None:
        head = all_counts[0]
    else:  # the mean successes per target over every secret, as if one attack of n targets
        head = AttackCounts(
            n_main,
            float(np.mean([c.main for c in all_counts])),
            n_control,
            float(np.mean([c.control for c in all_counts])),
            n_main,
            float(np.mean([c.baseline for c in all_counts])),
        )
    inference = InferenceRisk(**_risk_fields(head, confidence), secret=secret, by_column=by_column)
    return linkability, inference


# --------------------------------------------------------------------------- entry point


def anonymeter_risks(
    train: pd.DataFrame,
    control: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    seed: int = 0,
    n_attacks: int = N_ATTACKS,
    secret: str | None = None,
    n_cols: int = N_COLS,
    link_columns: tuple[list[str], list[str]] | None = None,
    max_query_attempts: int | None = None,
    confidence: float = CONFIDENCE,
) -> AnonymeterRisks:
    """Singling-out, linkability and inference risks of `synthetic` for the people in `train`,
    measured against `control` (real rows the model never saw), on the schema's modelled columns.

    Deterministic for a given `seed`. `n_attacks` bounds the targets and queries of each attack;
    `max_query_attempts` (default 50 per attack) bounds the multivariate query search.
    """
    if n_attacks < 1:
        raise ValueError("n_attacks must be at least 1")
    enc = _encode(train, control, synthetic, schema)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
    attempts = max_query_attempts or QUERY_ATTEMPTS_PER_ATTACK * n_attacks
    multivariate = _singling_out(
        enc, "multivariate", n_attacks, n_cols, attempts, streams[0], confidence
    )
    univariate = _singling_out(enc, "univariate", n_attacks, 1, attempts, streams[1], confidence)
    linkability, inference = _neighbour_attacks(
        enc,
        schema,
        n_attacks,
        secret,
        link_columns or linkability_columns(schema, seed),
        streams[2],
        confidence,
    )
    return AnonymeterRisks(
        singling_out=multivariate,
        singling_out_univariate=univariate,
        linkability=linkability,
        inference=inference,
        seed=seed,
        confidence=confidence,
    )
