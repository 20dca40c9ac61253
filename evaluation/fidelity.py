"""Fidelity: does the synthetic table look and behave like the real one?

Pure functions from DataFrames to small typed results. Column shapes and pair trends follow the
SDMetrics definitions (KSComplement, TVComplement, CorrelationSimilarity, ContingencySimilarity)
so scores are comparable with published numbers, but are written out here so the gate does not
depend on SDMetrics' internals; the tests cross-check them.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from evaluation.encoding import DistanceEncoder, category_keys, numeric_values
from evaluation.threads import limit_threads
from synth.data.schema import TableSchema

# SDMetrics rounds to this many decimals before KS so float noise is not a difference.
KS_DECIMALS = 14
CONTINGENCY_BINS = 10
DETECTION_FOLDS = 3
"""Cross-validation folds of the detection classifier: each set needs at least this many rows."""


class ColumnShapes(BaseModel):
    """Mean per-column similarity (1 = same marginal distribution)."""

    score: float
    per_column: dict[str, float]
    metric: dict[str, Literal["KSComplement", "TVComplement"]]


class PairScore(BaseModel):
    column_1: str
    column_2: str
    metric: Literal["CorrelationSimilarity", "ContingencySimilarity"]
    score: float


class PairTrends(BaseModel):
    """Mean pairwise similarity, plus association matrices for the report's heatmap.

    Matrix entries are Pearson rho for numeric-numeric pairs and Cramer's V (of the same binned
    contingency table the score uses) for pairs involving a categorical: no one-hot expansion.
    """

    score: float
    pairs: list[PairScore]
    columns: list[str]
    real_matrix: list[list[float]]
    synthetic_matrix: list[list[float]]


class Detection(BaseModel):
    """Classifier two-sample test: can a model tell real rows from synthetic ones? 0.5 = no."""

    auc: float
    n_per_class: int


class Efficacy(BaseModel):
    """Train-synthetic-test-real vs train-real-test-real, both scored on the real holdout."""

    task: Literal["classification", "regression"]
    metric: Literal["roc_auc", "r2"]
    tstr: float
    trtr: float
    gap: float


# --------------------------------------------------------------------------- column shapes


def ks_complement(real: pd.Series, synthetic: pd.Series, kind: str = "numeric") -> float:
    """1 - two-sample KS statistic on the non-null values (NaN if either side has none)."""
    r = numeric_values(real, kind)
    s = numeric_values(synthetic, kind)
    r = np.sort(np.round(r[~np.isnan(r)], KS_DECIMALS))
    s = np.sort(np.round(s[~np.isnan(s)], KS_DECIMALS))
    if r.size == 0 or s.size == 0:
        return math.nan
    grid = np.concatenate([r, s])
    cdf_r = np.searchsorted(r, grid, side="right") / r.size
    cdf_s = np.searchsorted(s, grid, side="right") / s.size
    return float(1.0 - np.max(np.abs(cdf_r - cdf_s)))


def tv_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """1 - total variation distance between category frequencies, nulls dropped (as SDMetrics:
    missingness differences are left to the detection check)."""
    r = category_keys(real).dropna()
    s = category_keys(synthetic).dropna()
    if r.empty or s.empty:
        return math.nan
    p = r.value_counts(normalize=True)
    q = s.value_counts(normalize=True)
    idx = p.index.union(q.index)
    tvd = 0.5 * np.abs(p.reindex(idx, fill_value=0.0) - q.reindex(idx, fill_value=0.0)).sum()
    return float(1.0 - tvd)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def column_shapes(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema) -> ColumnShapes:
    """KSComplement for numeric/datetime columns, TVComplement for categoricals, averaged."""
    per: dict[str, float] = {}
    metric: dict[str, Literal["KSComplement", "TVComplement"]] = {}
    for spec in schema.modelled:
        if spec.kind == "categorical":
            per[spec.name] = tv_complement(real[spec.name], synthetic[spec.name])
            metric[spec.name] = "TVComplement"
        else:
            per[spec.name] = ks_complement(real[spec.name], synthetic[spec.name], spec.kind)
            metric[spec.name] = "KSComplement"
    return ColumnShapes(score=_nanmean(list(per.values())), per_column=per, metric=metric)


# --------------------------------------------------------------------------- pair trends


def _quantile_codes(
    real: np.ndarray, synthetic: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Bin both sides by the real data's quantiles; NaN gets its own (last) code."""
    present = real[~np.isnan(real)]
    if present.size:
        inner = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
    else:
        inner = np.array([])
    n_codes = inner.size + 2

    def codes(v: np.ndarray) -> np.ndarray:
        c = np.digitize(v, inner)
        c[np.isnan(v)] = n_codes - 1
        return c

    return codes(real), codes(synthetic), n_codes


def _category_codes(real: pd.Series, synthetic: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
    r = category_keys(real).fillna("\x00missing")
    s = category_keys(synthetic).fillna("\x00missing")
    levels = pd.Index(pd.concat([r, s]).unique())
    return levels.get_indexer(r), levels.get_indexer(s), len(levels)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0))


def _joint(a: np.ndarray, b: np.ndarray, kb: int, ka: int) -> np.ndarray:
    return np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb) / max(a.size, 1)


def _cramers_v(joint: np.ndarray) -> float:
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    pa, pb, joint = pa[pa > 0], pb[pb > 0], joint[pa > 0][:, pb > 0]
    k = min(pa.size, pb.size)
    if k < 2:
        return math.nan
    expected = np.outer(pa, pb)
    phi2 = float(np.sum((joint - expected) ** 2 / expected))
    return float(math.sqrt(min(phi2 / (k - 1), 1.0)))


def pair_trends(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    bins: int = CONTINGENCY_BINS,
) -> PairTrends:
    """CorrelationSimilarity (Pearson) for numeric pairs, ContingencySimilarity otherwise.

    Numerics paired with a categorical are binned into `bins` quantile bins of the real data.
    A pair whose real correlation is undefined (constant column) is skipped; a synthetic column
    that is constant where the real one is not counts as correlation 0.
    """
    specs = schema.modelled
    names = [c.name for c in specs]
    values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    codes: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    for spec in specs:
        if spec.kind == "categorical":
            codes[spec.name] = _category_codes(real[spec.name], synthetic[spec.name])
        else:
            r = numeric_values(real[spec.name], spec.kind)
            s = numeric_values(synthetic[spec.name], spec.kind)
            values[spec.name] = (r, s)
            codes[spec.name] = _quantile_codes(r, s, bins)

    k = len(names)
    real_m = np.eye(k)
    syn_m = np.eye(k)
    pairs: list[PairScore] = []
    for (i, a), (j, b) in combinations(enumerate(names), 2):
        if a in values and b in values:
            rho_r = _pearson(values[a][0], values[b][0])
            rho_s = _pearson(values[a][1], values[b][1])
            score = math.nan if math.isnan(rho_r) else 1 - abs(rho_r - _nan0(rho_s)) / 2
            metric = "CorrelationSimilarity"
            assoc_r, assoc_s = rho_r, rho_s
        else:
            (ar, as_, ka), (br, bs, kb) = codes[a], codes[b]
            jr, js = _joint(ar, br, kb, ka), _joint(as_, bs, kb, ka)
            score = float(1 - 0.5 * np.abs(jr - js).sum())
            metric = "ContingencySimilarity"
            assoc_r, assoc_s = _cramers_v(jr), _cramers_v(js)
        real_m[i, j] = real_m[j, i] = assoc_r
        syn_m[i, j] = syn_m[j, i] = assoc_s
        pairs.append(PairScore(column_1=a, column_2=b, metric=metric, score=score))
    return PairTrends(
        score=_nanmean([p.score for p in pairs]),
        pairs=pairs,
        columns=names,
        real_matrix=real_m.tolist(),
        synthetic_matrix=syn_m.tolist(),
    )


def _nan0(x: float) -> float:
    return 0.0 if math.isnan(x) else x


# --------------------------------------------------------------------------- detection


def detection_auc(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    encoder: DistanceEncoder,
    *,
    seed: int = 0,
    folds: int = DETECTION_FOLDS,
) -> Detection:
    """C2ST: ROC AUC of a gradient-boosted classifier separating real from synthetic rows.

    Classes are balanced by subsampling the larger side, so 0.5 means indistinguishable and the
    number is comparable across table sizes. Mean AUC over stratified folds; seeded.
    An AUC well *below* 0.5 is a memorisation sign too: when synthetic rows are twins of real
    rows, a twin in the other fold's training data votes for the wrong class.
    """
    rng = np.random.default_rng(seed)
    n = min(len(real), len(synthetic))
    if n < folds:
        return Detection(auc=math.nan, n_per_class=n)
    r = real.iloc[rng.choice(len(real), n, replace=False)]
    s = synthetic.iloc[rng.choice(len(synthetic), n, replace=False)]
    x = np.vstack([encoder.transform(r), encoder.transform(s)])
    y = np.r_[np.zeros(n), np.ones(n)]
    aucs = []
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with limit_threads(2 * n):
        for fit_idx, test_idx in cv.split(x, y):
            model = HistGradientBoostingClassifier(random_state=seed).fit(x[fit_idx], y[fit_idx])
            aucs.append(roc_auc_score(y[test_idx], model.predict_proba(x[test_idx])[:, 1]))
    return Detection(auc=float(np.mean(aucs)), n_per_class=n)


# --------------------------------------------------------------------------- ML efficacy


def _macro_auc(y_true: np.ndarray, scores: dict[str, np.ndarray]) -> float:
    """Macro one-vs-rest ROC AUC over the classes present in `y_true` (binary: the plain AUC)."""
    classes = list(np.unique(y_true))
    if len(classes) < 2:
        return math.nan
    if len(classes) == 2:
        classes = classes[1:]  # binary: both one-vs-rest AUCs are equal
    n = y_true.size
    return float(np.mean([roc_auc_score(y_true == c, scores.get(c, np.zeros(n))) for c in classes]))


def _fit_scores(
    x: np.ndarray, y: np.ndarray, x_test: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """Per-class probabilities on `x_test`. A single training class gives constant scores,
    i.e. AUC 0.5: a model that saw one class has no ranking to offer."""
    n = x_test.shape[0]
    classes = np.unique(y)
    if classes.size < 2:
        return {str(c): np.ones(n) for c in classes}
    with limit_threads(max(x.shape[0], n)):
        model = HistGradientBoostingClassifier(random_state=seed).fit(x, y)
        proba = model.predict_proba(x_test)
    return {str(c): proba[:, i] for i, c in enumerate(model.classes_)}


def ml_efficacy(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    seed: int = 0,
) -> Efficacy | None:
    """TSTR vs TRTR on the real holdout; None when the schema has no target.

    Categorical target: ROC AUC (macro one-vs-rest when multiclass); if the synthetic target
    holds one class only, TSTR is 0.5 (a constant score). Numeric target: R^2. Rows with a
    missing target are dropped. gap = trtr - tstr (positive = synthetic is worse).
    """
    target = schema.target
    if target is None:
        return None
    features = [c.name for c in schema.modelled if c.name != target]
    encoder = DistanceEncoder.fit(train, schema, columns=features)
    kind = schema.column(target).kind

    def xy(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if kind == "categorical":
            y = category_keys(df[target])
            keep = y.notna().to_numpy()
            return encoder.transform(df[keep]), y[keep].to_numpy(dtype=str)
        y = numeric_values(df[target], kind)
        keep = ~np.isnan(y)
        return encoder.transform(df[keep]), y[keep]

    x_tr, y_tr = xy(train)
    x_ho, y_ho = xy(holdout)
    x_sy, y_sy = xy(synthetic)

    if kind == "categorical":
        trtr = _macro_auc(y_ho, _fit_scores(x_tr, y_tr, x_ho, seed))
        tstr = _macro_auc(y_ho, _fit_scores(x_sy, y_sy, x_ho, seed)) if y_sy.size else math.nan
        return Efficacy(
            task="classification", metric="roc_auc", tstr=tstr, trtr=trtr, gap=trtr - tstr
        )

    def r2(x: np.ndarray, y: np.ndarray) -> float:
        if y.size < 2 or y_ho.size < 2:
            return math.nan
        with limit_threads(max(y.size, y_ho.size)):
            model = HistGradientBoostingRegressor(random_state=seed).fit(x, y)
            return float(r2_score(y_ho, model.predict(x_ho)))

    trtr, tstr = r2(x_tr, y_tr), r2(x_sy, y_sy)
    return Efficacy(task="regression", metric="r2", tstr=tstr, trtr=trtr, gap=trtr - tstr)
