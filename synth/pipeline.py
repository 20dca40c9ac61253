"""The job's steps as plain functions: load, split, train, sample, evaluate, gate, export.

Steps hand each other paths and content hashes, never DataFrames, so real records stay out
of Prefect's results and caches: each step that needs real rows re-reads the source, checks
its hash, and selects rows with the saved split indices. The Prefect flow in `flows/` only
calls these in order; they run and test without Prefect.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from evaluation.report import write_report
from evaluation.table import (
    EVALUATION_PARTS,
    TableEvaluation,
    combine_parts,
    evaluate_table,
    prepare_frames,
)
from evaluation.table import evaluate_part as evaluate_table_part
from synth.atomic import atomic_write_bytes, atomic_write_text, recover_directory
from synth.config import JobSpec
from synth.data.io import check_table, load_table
from synth.data.schema import TableSchema, infer_schema
from synth.data.split import load_split, min_rows_for_split, save_split, split_indices
from synth.device import pick_device
from synth.errors import ConfigError, GateFailedError, InputDataError, JobBusyError, SynthError
from synth.export.parquet import to_arrow_table, write_parquet_export
from synth.hashing import file_sha256
from synth.lineage import build_lineage
from synth.tabular.synthesizer import (
    CPU_SHARD_ROWS,
    CUDA_SHARD_ROWS,
    TabularDiffusionSynthesizer,
)
from synth.training import is_main_process, wait_for_everyone


@dataclass(frozen=True)
class JobPaths:
    """Where one job writes. `model/` and `.work/` stay private; `synthetic/` is the export."""

    out: Path

    @property
    def work(self) -> Path:
        return self.out / ".work"

    @property
    def schema(self) -> Path:
        return self.work / "schema.json"

    @property
    def split(self) -> Path:
        return self.work / "split.json"

    @property
    def staging(self) -> Path:
        return self.work / "synthetic"

    @property
    def staging_partial(self) -> Path:
        """Shards land here one by one; `finish_staging` renames it to `staging` when all are."""
        return self.work / "synthetic.partial"

    @property
    def model(self) -> Path:
        return self.out / "model"

    @property
    def export(self) -> Path:
        return self.out / "synthetic"

    @property
    def report_json(self) -> Path:
        return self.out / "report.json"

    @property
    def report_html(self) -> Path:
        return self.out / "report.html"


@contextmanager
def exclusive(paths: JobPaths) -> Iterator[None]:
    """Hold the job's output directory for one run; a second run fails fast, naming it.

    While held, whatever a killed run left half-done is tidied: an export swap interrupted
    between its renames gets its previous complete copy back, and stale temp dirs go.
    """
    paths.out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(paths.out / ".lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise JobBusyError(
            f"another run is using {str(paths.out)!r}: wait for it to finish, or write to "
            "another output directory"
        ) from None
    try:
        for published in (paths.export, paths.staging):
            recover_directory(published, remove_temp=True)
        yield
    finally:
        lock.release()


@dataclass(frozen=True)
class LoadedSource:
    data_hash: str
    n_rows: int
    n_columns: int
    schema_path: Path

    @property
    def summary(self) -> str:
        return f"{self.n_rows} rows x {self.n_columns} columns"


# ---- load -------------------------------------------------------------------------------
def _min_rows(spec: JobSpec) -> int:
    s = spec.split
    return min_rows_for_split(s.holdout_fraction, s.min_train_rows, s.min_holdout_rows)


def read_source(spec: JobSpec) -> tuple[pd.DataFrame, TableSchema]:
    """Read and check the protected table, and describe it. Raises one-line InputDataErrors."""
    df = load_table(spec.source.path, spec.source.format)
    check_table(df, spec.source.target, _min_rows(spec))
    schema = infer_schema(df, spec.source.target, spec.source.columns)
    if not schema.modelled:
        raise InputDataError(
            "no column can be modelled (all are IDs or constants): override a column's kind "
            "under source.columns"
        )
    return df, schema


def load(spec: JobSpec, paths: JobPaths) -> LoadedSource:
    """Validate the source, write its schema, and fingerprint it."""
    df, schema = read_source(spec)
    paths.work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.schema, schema.model_dump_json(indent=1))
    return LoadedSource(file_sha256(spec.source.path), len(df), df.shape[1], paths.schema)


def _read_real(spec: JobSpec, data_hash: str) -> pd.DataFrame:
    current = file_sha256(spec.source.path)
    if current != data_hash:
        raise InputDataError(
            f"{spec.source.path} changed while the job ran (hash {current[:12]} != "
            f"{data_hash[:12]}): run the job again"
        )
    return load_table(spec.source.path, spec.source.format)


def read_schema(schema_path: Path) -> TableSchema:
    return TableSchema.model_validate_json(Path(schema_path).read_text())


# ---- split ------------------------------------------------------------------------------
def split(spec: JobSpec, paths: JobPaths, source: LoadedSource) -> Path:
    """A seeded holdout, stratified on a categorical target. Saves indices only."""
    schema = read_schema(source.schema_path)
    stratify = None
    if schema.target and schema.target_kind == "categorical":
        df = _read_real(spec, source.data_hash)
        stratify = df[schema.target].astype(str).to_numpy()
    train_idx, holdout_idx = split_indices(
        source.n_rows,
        spec.split.holdout_fraction,
        spec.seed,
        stratify=stratify,
        min_train_rows=spec.split.min_train_rows,
        min_holdout_rows=spec.split.min_holdout_rows,
    )
    return save_split(paths.split, train_idx, holdout_idx, source.data_hash)


def split_sizes(split_path: Path) -> tuple[int, int]:
    payload = json.loads(Path(split_path).read_text())
    return len(payload["train"]), len(payload["holdout"])


def real_frames(
    spec: JobSpec, source: LoadedSource, split_path: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = _read_real(spec, source.data_hash)
    train_idx, holdout_idx = load_split(split_path, source.data_hash)
    return df.iloc[train_idx].reset_index(drop=True), df.iloc[holdout_idx].reset_index(drop=True)


# ---- train ------------------------------------------------------------------------------
def train(
    spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path, progress: bool = True
) -> str:
    """Fit the synthesizer (resuming from `model/` if a checkpoint is there). Returns its hash."""
    train_df, _ = real_frames(spec, source, split_path)
    synthesizer = TabularDiffusionSynthesizer(
        read_schema(source.schema_path),
        spec.model,
        spec.training,
        seed=spec.seed,
        device=spec.training.device,
    )
    synthesizer.fit(train_df, checkpoint_dir=paths.model, progress=progress)
    if is_main_process():  # under `accelerate launch`, one process writes the model
        synthesizer.save(paths.model)
    wait_for_everyone()
    return model_hash(paths.model)


def model_hash(model_dir: Path) -> str:
    return file_sha256(Path(model_dir) / "denoiser")


# ---- sample -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardPlan:
    """One independent slice of the synthetic table: rows `start`..`start + rows - 1`.

    Its `seed` comes from the job seed and its index alone, so a shard is the same whichever
    worker draws it, in whatever order; `conditions` are its share of the requested label
    counts (None: labels follow the training frequencies).
    """

    index: int
    start: int
    rows: int
    seed: int
    conditions: dict[str, int] | None = None

    @property
    def file_name(self) -> str:
        return f"shard-{self.index:05d}.parquet"


def shard_seed(seed: int, index: int) -> int:
    """A 63-bit seed for shard `index` of a job seeded `seed` (any int, negative too)."""
    digest = hashlib.sha256(f"synth-shard:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sample_rows(spec: JobSpec, n_train: int) -> int:
    """Rows to generate: the conditions' total, else `sampling.rows`, else as many as train."""
    s = spec.sampling
    if s.conditions:
        if any(count < 0 for count in s.conditions.values()):
            raise ConfigError("sampling.conditions: counts cannot be negative")
        n = sum(s.conditions.values())
        if n < 1:
            raise ConfigError("sampling.conditions ask for no rows: give at least one a count")
        return n
    return s.rows or n_train


def plan_shards(spec: JobSpec, n_train: int) -> list[ShardPlan]:
    """Cut the rows to generate into shards of `sampling.shard_rows` (default by device).

    With `sampling.conditions`, the requested labels are shuffled (seeded) and dealt out over
    the shards, so each shard asks for exact counts and the totals are exactly as requested.
    """
    s = spec.sampling
    n = sample_rows(spec, n_train)
    shard_rows = s.shard_rows
    if shard_rows is None:  # small passes stay in CPU caches; a GPU wants big batches
        on_cuda = pick_device(spec.training.device).type == "cuda"
        shard_rows = CUDA_SHARD_ROWS if on_cuda else CPU_SHARD_ROWS
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
        ShardPlan(i, start, min(shard_rows, n - start), shard_seed(spec.seed, i), dealt[i])
        for i, start in enumerate(starts)
    ]


# One shard at a time per process: a process's torch already uses all its threads (or its
# GPU), so shards side by side in a thread pool would only oversubscribe it. Parallelism
# comes from worker processes (Dask), each drawing its own shards.
_SHARD_LOCK = threading.Lock()


def start_staging(paths: JobPaths) -> Path:
    """An empty directory for this run's shards (a previous run's rows are dropped)."""
    for stale in (paths.staging, paths.staging_partial):
        shutil.rmtree(stale, ignore_errors=True)
    paths.staging_partial.mkdir(parents=True)
    return paths.staging_partial


def sample_shard(spec: JobSpec, paths: JobPaths, plan: ShardPlan) -> Path:
    """Draw one shard with the model in `paths.model` and write it under a temp name, then
    rename it into `staging_partial`: a retried or killed task never leaves half a file."""
    synthesizer = TabularDiffusionSynthesizer.load(paths.model, device=spec.training.device)
    s = spec.sampling
    with _SHARD_LOCK:
        shard = synthesizer.sample_shard(
            plan.rows,
            plan.conditions,
            seed=plan.seed,
            offset=plan.start,
            num_inference_steps=s.num_inference_steps,
            scheduler=s.scheduler,
            guidance_scale=s.guidance_scale,
            id_strategy=spec.export.id_strategy,
        )
    buffer = pa.BufferOutputStream()
    pq.write_table(to_arrow_table(shard, synthesizer.schema), buffer)
    data = buffer.getvalue().to_pybytes()
    return atomic_write_bytes(paths.staging_partial / plan.file_name, data)


def finish_staging(paths: JobPaths, plans: list[ShardPlan]) -> int:
    """Check that every planned shard is there with its row count (and nothing else), then
    publish the shards as `staging` in one rename. Returns the row count."""
    partial = paths.staging_partial
    found = {f.name for f in partial.glob("shard-*.parquet")} if partial.is_dir() else set()
    planned = {p.file_name for p in plans}
    if found != planned:
        missing, extra = sorted(planned - found), sorted(found - planned)
        raise SynthError(
            f"staged shards do not match the plan (missing {missing[:3]}, unexpected "
            f"{extra[:3]}): run the job again"
        )
    for plan in plans:
        rows = pq.read_metadata(partial / plan.file_name).num_rows
        if rows != plan.rows:
            raise SynthError(f"{plan.file_name} holds {rows} rows, not {plan.rows}: run again")
    shutil.rmtree(paths.staging, ignore_errors=True)
    os.rename(partial, paths.staging)
    return sum(p.rows for p in plans)


def sample(spec: JobSpec, paths: JobPaths, n_train: int, progress: bool = True) -> int:
    """Generate the rows into private staging shards, one after another. Returns the row
    count. The flow runs the same `sample_shard`s in parallel: the rows are the same."""
    plans = plan_shards(spec, n_train)
    start_staging(paths)
    for plan in tqdm(plans, desc="sample", unit="shard", disable=not progress or len(plans) < 2):
        sample_shard(spec, paths, plan)
    return finish_staging(paths, plans)


def staged_shards(staging: Path) -> Iterator[pd.DataFrame]:
    for f in sorted(Path(staging).glob("shard-*.parquet")):
        yield pq.read_table(f).to_pandas()


def _head(staging: Path, n: int) -> pd.DataFrame:
    """The first `n` staged rows. Rows are i.i.d. draws, so the head is a fair sample."""
    frames, have = [], 0
    for shard in staged_shards(staging):
        frames.append(shard.iloc[: n - have])
        have += len(frames[-1])
        if have >= n:
            break
    return pd.concat(frames, ignore_index=True)


# ---- evaluate and gate ------------------------------------------------------------------
def _evaluation_inputs(
    spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, TableSchema]:
    """(train, holdout, synthetic head, schema), re-read from the files the job wrote."""
    train_df, holdout_df = real_frames(spec, source, split_path)
    synthetic = _head(paths.staging, spec.evaluation.max_rows)
    return train_df, holdout_df, synthetic, read_schema(source.schema_path)


def _write_evaluation(
    evaluation: TableEvaluation,
    paths: JobPaths,
    train_df: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    lineage: dict[str, Any],
) -> dict[str, Any]:
    write_report(
        evaluation,
        paths.out,
        train=train_df,
        synthetic=synthetic,
        schema=schema,
        extra={"lineage": lineage},
    )
    return json.loads(paths.report_json.read_text())


def evaluation_parts() -> list[str]:
    """The metric groups that can run apart (one task each), by name."""
    return list(EVALUATION_PARTS)


def evaluate_part(
    spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path, part: str
) -> dict[str, Any] | None:
    """One metric group on the staged rows. It reads the real and staged rows itself, so a
    task on any worker gets paths in and hands metric numbers back, never rows."""
    train_df, holdout_df, synthetic, schema = _evaluation_inputs(spec, paths, source, split_path)
    return evaluate_table_part(
        part,
        train_df,
        holdout_df,
        synthetic,
        schema,
        seed=spec.seed,
        max_rows=spec.evaluation.max_rows,
    )


def report_from_parts(
    spec: JobSpec,
    paths: JobPaths,
    source: LoadedSource,
    split_path: Path,
    parts: dict[str, dict[str, Any] | None],
    lineage: dict[str, Any],
) -> dict[str, Any]:
    """Apply the gate to the parts' numbers and write report.json/html, as `evaluate` does."""
    train_df, holdout_df, synthetic, schema = _evaluation_inputs(spec, paths, source, split_path)
    ev = spec.evaluation
    frames = prepare_frames(
        train_df, holdout_df, synthetic, schema, seed=spec.seed, max_rows=ev.max_rows
    )
    evaluation = combine_parts(
        parts,
        frames.sizes,
        schema,
        ev.thresholds,
        seed=spec.seed,
        override=ev.override_gate,
        override_reason=ev.override_reason,
    )
    return _write_evaluation(evaluation, paths, train_df, synthetic, schema, lineage)


def evaluate(
    spec: JobSpec,
    paths: JobPaths,
    source: LoadedSource,
    split_path: Path,
    lineage: dict[str, Any],
    progress: bool = True,
) -> dict[str, Any]:
    """Run every check on the staged rows, write report.json/html, return the report dict."""
    train_df, holdout_df, synthetic, schema = _evaluation_inputs(spec, paths, source, split_path)
    ev = spec.evaluation
    evaluation = evaluate_table(
        train_df,
        holdout_df,
        synthetic,
        schema,
        ev.thresholds,
        seed=spec.seed,
        max_rows=ev.max_rows,
        progress=progress,
        override=ev.override_gate,
        override_reason=ev.override_reason,
    )
    return _write_evaluation(evaluation, paths, train_df, synthetic, schema, lineage)


def gate(report: dict[str, Any], paths: JobPaths) -> list[str]:
    """The failing checks; on failure the staged rows are destroyed so nothing can export them.

    An overridden gate passes (the override is recorded in the report and the lineage).
    """
    g = report["gate"]
    if g["passed"]:
        return []
    shutil.rmtree(paths.staging, ignore_errors=True)
    return list(g["failures"]) or ["gate failed"]


def enforce_gate(report: dict[str, Any], paths: JobPaths) -> None:
    """`gate`, raising GateFailedError: for callers without an orchestrator."""
    failures = gate(report, paths)
    if failures:
        raise GateFailedError(gate_message(failures))


def gate_message(failures: list[str]) -> str:
    return "gate failed, export blocked: " + "; ".join(failures)


# ---- export -----------------------------------------------------------------------------
def export(
    spec: JobSpec, paths: JobPaths, source: LoadedSource, report: dict[str, Any]
) -> list[Path]:
    """Publish the staged rows as Parquet carrying lineage and report; then drop staging."""
    schema = read_schema(source.schema_path)
    if spec.export.id_strategy == "drop":
        schema = TableSchema(
            columns=[c for c in schema.columns if c.kind != "id"], target=schema.target
        )
    metadata = {"lineage": report["extra"]["lineage"], "report": report}
    files = write_parquet_export(
        staged_shards(paths.staging),
        paths.export,
        schema,
        metadata,
        rows_per_file=spec.export.rows_per_file,
    )
    shutil.rmtree(paths.staging, ignore_errors=True)
    return files


def lineage_for(spec: JobSpec, source: Any, split_path: Path, model_hash_: str) -> dict[str, Any]:
    """The export's lineage, for either modality (`source` carries the data hash)."""
    n_train, n_holdout = split_sizes(split_path)
    return build_lineage(
        spec_hash=spec.spec_hash(),
        data_hash=source.data_hash,
        model_hash=model_hash_,
        seed=spec.seed,
        split={
            "holdout_fraction": spec.split.holdout_fraction,
            "n_train": n_train,
            "n_holdout": n_holdout,
        },
        extra={
            "job": spec.name,
            "modality": spec.source.modality,
            "target": spec.source.target,
            "gate_override": spec.evaluation.override_gate,
            "gate_override_reason": spec.evaluation.override_reason,
            # What `synth validate --real` needs to measure the export as the job did.
            "columns": {
                name: o.model_dump(mode="json", exclude_none=True)
                for name, o in spec.source.columns.items()
            },
            "evaluation_max_rows": spec.evaluation.max_rows,
        },
    )
