"""The job's steps as plain functions: load, split, train, sample, evaluate, gate, export.

Steps hand each other paths and content hashes, never DataFrames, so real records stay out
of Prefect's results and caches: each step that needs real rows re-reads the source, checks
its hash, and selects rows with the saved split indices. The Prefect flow in `flows/` only
calls these in order; they run and test without Prefect.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from evaluation.report import write_report
from evaluation.table import evaluate_table
from synth.atomic import atomic_directory, atomic_write_text
from synth.config import JobSpec
from synth.data.io import check_table, load_table
from synth.data.schema import TableSchema, infer_schema
from synth.data.split import load_split, min_rows_for_split, save_split, split_indices
from synth.errors import GateFailedError, InputDataError
from synth.export.parquet import to_arrow_table, write_parquet_export
from synth.hashing import file_sha256
from synth.lineage import build_lineage
from synth.tabular.synthesizer import TabularDiffusionSynthesizer


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
    synthesizer.save(paths.model)
    return model_hash(paths.model)


def model_hash(model_dir: Path) -> str:
    return file_sha256(Path(model_dir) / "denoiser")


# ---- sample -----------------------------------------------------------------------------
def sample(spec: JobSpec, paths: JobPaths, n_train: int, progress: bool = True) -> int:
    """Generate the rows into private staging shards. Returns the row count."""
    synthesizer = TabularDiffusionSynthesizer.load(paths.model, device=spec.training.device)
    s = spec.sampling
    n = s.rows or n_train
    if s.conditions:
        n = sum(s.conditions.values())
    shards = synthesizer.sample_shards(
        n,
        s.conditions,
        shard_rows=s.shard_rows,
        num_inference_steps=s.num_inference_steps,
        scheduler=s.scheduler,
        guidance_scale=s.guidance_scale,
        id_strategy=spec.export.id_strategy,
        seed=spec.seed,
        progress=progress,
    )
    with atomic_directory(paths.staging) as tmp:
        for i, shard in enumerate(shards):
            pq.write_table(
                to_arrow_table(shard, synthesizer.schema), tmp / f"shard-{i:05d}.parquet"
            )
    return n


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
def evaluate(
    spec: JobSpec,
    paths: JobPaths,
    source: LoadedSource,
    split_path: Path,
    lineage: dict[str, Any],
    progress: bool = True,
) -> dict[str, Any]:
    """Run every check on the staged rows, write report.json/html, return the report dict."""
    train_df, holdout_df = real_frames(spec, source, split_path)
    schema = read_schema(source.schema_path)
    synthetic = _head(paths.staging, spec.evaluation.max_rows)
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
    write_report(
        evaluation,
        paths.out,
        train=train_df,
        synthetic=synthetic,
        schema=schema,
        extra={"lineage": lineage},
    )
    return json.loads(paths.report_json.read_text())


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
            "gate_override": spec.evaluation.override_gate,
            "gate_override_reason": spec.evaluation.override_reason,
        },
    )
