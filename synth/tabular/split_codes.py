"""Frequency-ranked two-level codes: a column of many levels as two columns of few.

Multinomial diffusion works in a padded [rows, features, K_max] layout, and the denoiser reads
and writes one logit per level: a column of L levels costs O(L) in every layer's width and in
K_max for every feature. A column of more than `SPLIT_ABOVE` levels is therefore diffused as
two categorical sub-columns, bucket = rank // B and within = rank % B with B = ceil(sqrt(L)),
where rank orders the levels by training frequency: each sub-column has about sqrt(L) classes
(10,000 levels -> 100 + 100), and the denoiser, which sees both, models their joint exactly.
Frequency ranking puts the common levels in the first buckets, so the bucket alone carries most
of the popularity signal and a wrong `within` lands on a level of similar frequency. A pair
beyond the last level (the last bucket can be partial) decodes to the last level, the nearest
valid rank.

Chosen over learned embeddings with nearest-level decoding (which need a decoder search over L
and an embedding table whose rows are one level's training rows) and over hierarchical
grouping by meaning (which needs a hierarchy the data does not carry).
"""

from __future__ import annotations

import math

import numpy as np

SPLIT_ABOVE = 128  # at most this many levels: one code, as before


def split_base(n_levels: int) -> int:
    """B for a column of `n_levels` levels, or 0 when it keeps one code."""
    return math.isqrt(n_levels - 1) + 1 if n_levels > SPLIT_ABOVE else 0


def split_classes(n_levels: int, base: int) -> tuple[int, int]:
    """(buckets, within) class counts of a split column."""
    return -(-n_levels // base), base


def split(ranks: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranks -> (bucket, within) codes."""
    return ranks // base, ranks % base


def join(bucket: np.ndarray, within: np.ndarray, base: int, n_levels: int) -> np.ndarray:
    """(bucket, within) -> ranks; a pair past the last level is the last level."""
    ranks = np.asarray(bucket, dtype=np.int64) * base + np.asarray(within, dtype=np.int64)
    return np.minimum(ranks, n_levels - 1)


def frequency_order(codes: np.ndarray, n_levels: int) -> np.ndarray:
    """Level indices from the most to the least held in `codes` (ties: the earlier level)."""
    counts = np.bincount(codes, minlength=n_levels)
    return np.argsort(-counts, kind="stable")
