"""Rows as points of the shared distance space, and exact nearest-neighbour search over them.

A categorical column with L levels is, in the one-hot geometry of `DistanceEncoder`, L
equidistant points: any two different levels are distance 1 apart. That needs L - 1 dimensions
as a vector, so a column such as `tailnum` (4,000 planes) would make the whole train table a
rows x 4,000 matrix (9 GB at 270k rows). `Points` keeps such a column as one integer code per
row instead and adds 1 to the squared distance where two codes differ: the same distances,
exactly, in memory linear in the rows. The search is brute force in query chunks sized to
`CHUNK_CELLS`, so memory stays flat in the reference size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CHUNK_CELLS = 8_000_000
"""Query-by-reference distances computed at a time (64 MB of float64)."""


@dataclass(frozen=True)
class Points:
    """`dense` (n, d) float64 coordinates; `codes` (n, w) integer codes of wide categoricals,
    each mismatch adding 1 to the squared distance."""

    dense: np.ndarray
    codes: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray | Points) -> Points:
        """Plain vectors as points with no codes."""
        if isinstance(x, Points):
            return x
        x = np.asarray(x, dtype=np.float64)
        return cls(x, np.zeros((x.shape[0], 0), dtype=np.int32))

    def __len__(self) -> int:
        return self.dense.shape[0]

    def take(self, rows: np.ndarray | slice) -> Points:
        return Points(self.dense[rows], self.codes[rows])

    @staticmethod
    def stack(*parts: Points) -> Points:
        return Points(np.vstack([p.dense for p in parts]), np.vstack([p.codes for p in parts]))


def squared_distances(a: Points, b: Points, b_norms: np.ndarray | None = None) -> np.ndarray:
    """(len(a), len(b)) squared distances by the dot-product identity: fast, ~1e-12 noise.
    `b_norms`: `b`'s squared dense norms, when the caller has them already."""
    if b_norms is None:
        b_norms = (b.dense**2).sum(axis=1)
    d = a.dense @ b.dense.T
    d *= -2.0
    d += (a.dense**2).sum(axis=1)[:, None]
    d += b_norms[None, :]
    np.maximum(d, 0.0, out=d)
    for j in range(a.codes.shape[1]):
        d += a.codes[:, j, None] != b.codes[None, :, j]
    return d


def exact_distances(a: Points, b: Points) -> np.ndarray:
    """Row-by-row distances of paired points (an exact copy is exactly 0)."""
    d = ((a.dense - b.dense) ** 2).sum(axis=1)
    d += (a.codes != b.codes).sum(axis=1)
    return np.sqrt(d)


def nearest(
    reference: np.ndarray | Points, query: np.ndarray | Points, k: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances), each (len(query), k): each query row's `k` nearest reference rows,
    nearest first. Candidates come from the dot-product identity; their distances are then
    recomputed directly, so a copy is exactly 0 and ties resolve to the lower reference index."""
    ref, qry = Points.of(reference), Points.of(query)
    k = min(k, len(ref))
    idx = np.zeros((len(qry), k), dtype=np.int64)
    dist = np.zeros((len(qry), k))
    if k == 0 or len(qry) == 0:
        return idx, dist
    # a few spare candidates, so rounding noise cannot push a true neighbour out
    pool = min(len(ref), k + 4)
    step = max(1, CHUNK_CELLS // len(ref))
    ref_norms = (ref.dense**2).sum(axis=1)
    for start in range(0, len(qry), step):
        chunk = qry.take(slice(start, start + step))
        d2 = squared_distances(chunk, ref, ref_norms)
        if pool < len(ref):
            # torch's top-k: several times numpy's argpartition on rows of 100k+ distances
            found = torch.topk(torch.from_numpy(d2), pool, dim=1, largest=False, sorted=False)
            cand = found.indices.numpy()
        else:
            cand = np.broadcast_to(np.arange(len(ref)), d2.shape)
        rows = np.repeat(np.arange(len(chunk)), cand.shape[1])
        exact = exact_distances(chunk.take(rows), ref.take(cand.ravel())).reshape(cand.shape)
        order = np.lexsort((cand, exact), axis=1)[:, :k]
        idx[start : start + len(chunk)] = np.take_along_axis(cand, order, axis=1)
        dist[start : start + len(chunk)] = np.take_along_axis(exact, order, axis=1)
    return idx, dist
