"""Sampling in shards: a plan of independent slices, staged one file each, published together.

A shard's seed comes from the job seed and its index alone, so a shard is the same whichever
worker draws it, in whatever order; shards join into the same synthetic set on one machine or
many. Staged shards are private (under `.work/`) until the gate passes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.paths import JobPaths
from synth.config import JobSpec
from synth.device import pick_device
from synth.errors import ConfigError, SynthError


@dataclass(frozen=True)
class ShardPlan:
    """One independent slice of the synthetic set: records `start`..`start + rows - 1`.

    `conditions` are its share of the requested label counts (None: labels follow the
    training frequencies); `suffix` is the staged file's format.
    """

    index: int
    start: int
    rows: int
    seed: int
    conditions: dict[str, int] | None = None
    suffix: str = "parquet"

    @property
    def file_name(self) -> str:
        return f"shard-{self.index:05d}.{self.suffix}"


def shard_seed(seed: int, index: int) -> int:
    """A 63-bit seed for shard `index` of a job seeded `seed` (any int, negative too)."""
    digest = hashlib.sha256(f"synth-shard:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sample_rows(spec: JobSpec, n_train: int) -> int:
    """Records to generate: the conditions' total, else `sampling.rows`, else as many as train."""
    s = spec.sampling
    if s.conditions:
        if any(count < 0 for count in s.conditions.values()):
            raise ConfigError("sampling.conditions: counts cannot be negative")
        n = sum(s.conditions.values())
        if n < 1:
            raise ConfigError("sampling.conditions ask for no rows: give at least one a count")
        return n
    return s.rows or n_train


def plan_shards(
    spec: JobSpec, n_train: int, *, cpu_rows: int, cuda_rows: int, suffix: str
) -> list[ShardPlan]:
    """Cut the records to generate into shards of `sampling.shard_rows` (default: `cpu_rows`
    or `cuda_rows` by device).

    With `sampling.conditions`, the requested labels are shuffled (seeded) and dealt out over
    the shards, so each shard asks for exact counts and the totals are exactly as requested.
    """
    s = spec.sampling
    n = sample_rows(spec, n_train)
    shard_rows = s.shard_rows
    if shard_rows is None:  # small passes stay in CPU caches; a GPU wants big batches
        on_cuda = pick_device(spec.training.device).type == "cuda"
        shard_rows = cuda_rows if on_cuda else cpu_rows
    starts = list(range(0, n, shard_rows))
    dealt: list[dict[str, int] | None] = [None] * len(starts)
    if s.conditions:
        labels = list(s.conditions)
        codes = np.repeat(np.arange(len(labels)), [s.conditions[k] for k in labels])
        np.random.default_rng(shard_seed(spec.seed, -1)).shuffle(codes)
        for i, start in enumerate(starts):
            counts = np.bincount(codes[start : start + shard_rows], minlength=len(labels))
            dealt[i] = {labels[k]: int(c) for k, c in enumerate(counts) if c > 0}
    return [
        ShardPlan(i, start, min(shard_rows, n - start), shard_seed(spec.seed, i), dealt[i], suffix)
        for i, start in enumerate(starts)
    ]


def start_staging(paths: JobPaths) -> Path:
    """An empty directory for this run's shards (a previous run's are dropped)."""
    for stale in (paths.staging, paths.staging_partial):
        shutil.rmtree(stale, ignore_errors=True)
    paths.staging_partial.mkdir(parents=True)
    return paths.staging_partial


def finish_staging(paths: JobPaths, plans: list[ShardPlan], count: Callable[[Path], int]) -> int:
    """Check that every planned shard is there with its record count (`count` reads one staged
    file's), and nothing else, then publish the shards as `staging` in one rename."""
    partial = paths.staging_partial
    found = {f.name for f in partial.glob("shard-*")} if partial.is_dir() else set()
    planned = {p.file_name for p in plans}
    if found != planned:
        missing, extra = sorted(planned - found), sorted(found - planned)
        raise SynthError(
            f"staged shards do not match the plan (missing {missing[:3]}, unexpected "
            f"{extra[:3]}): run the job again"
        )
    for plan in plans:
        rows = count(partial / plan.file_name)
        if rows != plan.rows:
            raise SynthError(f"{plan.file_name} holds {rows} rows, not {plan.rows}: run again")
    shutil.rmtree(paths.staging, ignore_errors=True)
    os.rename(partial, paths.staging)
    return sum(p.rows for p in plans)


def staged_files(staging: Path) -> list[Path]:
    """The staged shard files, in shard order."""
    return sorted(Path(staging).glob("shard-*"))
