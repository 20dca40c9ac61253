"""The table job's steps: a protected table in, a gated synthetic Parquet export out."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from evaluation.suite import TableInputs
from jobs.modality import JobSteps, LoadedSource, export_metadata, refuse_protected
from jobs.paths import JobPaths
from jobs.reports import link_published_report, report_attachments
from jobs.shards import staged_files
from synth.atomic import atomic_write_text
from synth.checkpoint import read_state
from synth.config import JobSpec
from synth.data.categories import MISSING, category_keys
from synth.data.io import check_table, load_table
from synth.data.parsing import check_values
from synth.data.rules import check_rule
from synth.data.schema import TableSchema, infer_schema
from synth.data.split import load_split, save_split, split_records
from synth.data.units import table_units, unit_column, with_unit_as_id
from synth.errors import InputDataError
from synth.export.parquet import to_arrow_table, write_parquet_export
from synth.hashing import file_sha256
from synth.labels import draw_labels
from synth.synthesizer import Shard
from synth.tabular.encoders import TableEncoder
from synth.tabular.synthesizer import (
    CPU_SHARD_ROWS,
    CUDA_SHARD_ROWS,
    KIND,
    TabularDiffusionSynthesizer,
)


def read_schema(schema_path: Path) -> TableSchema:
    return TableSchema.model_validate_json(Path(schema_path).read_text())


def _head(staging: Path, n: int) -> pd.DataFrame:
    """The first `n` staged rows. Rows are i.i.d. draws, so the head is a fair sample."""
    frames, have = [], 0
    for f in staged_files(staging):
        frames.append(pq.read_table(f).to_pandas().iloc[: n - have])
        have += len(frames[-1])
        if have >= n:
            break
    return pd.concat(frames, ignore_index=True)


class TableSteps(JobSteps):
    name = "table"
    unit = "rows"
    shard_suffix = "parquet"
    cpu_shard_rows = CPU_SHARD_ROWS
    cuda_shard_rows = CUDA_SHARD_ROWS

    # ---- load ---------------------------------------------------------------------------
    def read(self, spec: JobSpec) -> tuple[pd.DataFrame, TableSchema]:
        """Read and check the protected table, and describe it. Raises one-line errors."""
        df = load_table(spec.source.path, spec.source.format)
        check_table(df, spec.source.target, self.min_records(spec))
        # Kinds and types from the whole table; the values the model may emit (categories,
        # bounds, quantiles) are learned from the training split only, when it trains.
        unit = unit_column(spec.privacy.unit, list(df.columns))
        table_units(df, unit)  # every row names its person
        columns = with_unit_as_id(spec.source.columns, unit)
        schema = infer_schema(df, spec.source.target, columns).structure(columns)
        check_values(df, [(c.name, c.kind) for c in schema.modelled])  # names the file's row
        if not schema.modelled:
            raise InputDataError(
                "no column can be modelled (all are IDs or constants): override a column's "
                "kind under source.columns"
            )
        return df, schema

    def load(self, spec: JobSpec, paths: JobPaths) -> LoadedSource:
        """Validate the source, write its schema, and fingerprint it."""
        df, schema = self.read(spec)
        paths.make_private(paths.work)
        atomic_write_text(paths.schema, schema.model_dump_json(indent=1))
        summary = f"{len(df)} rows x {df.shape[1]} columns"
        return LoadedSource(file_sha256(spec.source.path), len(df), summary, paths.schema)

    def _read_real(self, spec: JobSpec, data_hash: str) -> pd.DataFrame:
        current = file_sha256(spec.source.path)
        if current != data_hash:
            raise InputDataError(
                f"{spec.source.path} changed while the job ran (hash {current[:12]} != "
                f"{data_hash[:12]}): run the job again"
            )
        return load_table(spec.source.path, spec.source.format)

    # ---- split --------------------------------------------------------------------------
    def split(self, spec: JobSpec, paths: JobPaths, source: LoadedSource) -> Path:
        """A seeded holdout, stratified on a categorical target, and by person when
        `privacy.unit` names a column: each person's rows fall on one side. Saves indices."""
        schema = read_schema(source.info_path)
        stratify = units = None
        unit = unit_column(spec.privacy.unit, schema.names)
        if unit or (schema.target and schema.target_kind == "categorical"):
            df = self._read_real(spec, source.data_hash)
            units = table_units(df, unit)
            if schema.target and schema.target_kind == "categorical":
                stratify = df[schema.target].astype(str).to_numpy()
        s = spec.split
        train_idx, holdout_idx = split_records(
            source.n_records,
            s.holdout_fraction,
            spec.seed,
            units=units,
            stratify=stratify,
            min_train_rows=s.min_train_rows,
            min_holdout_rows=s.min_holdout_rows,
            unit_name=f"person ({unit!r})",
        )
        return save_split(paths.split, train_idx, holdout_idx, source.data_hash)

    def real_frames(
        self, spec: JobSpec, source: LoadedSource, split_path: Path
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(train, holdout) rows, re-read from the source and selected by the saved split."""
        df = self._read_real(spec, source.data_hash)
        train_idx, holdout_idx = load_split(split_path, source.data_hash)
        train = df.iloc[train_idx].reset_index(drop=True)
        return train, df.iloc[holdout_idx].reset_index(drop=True)

    # ---- check --------------------------------------------------------------------------
    def check_settings(
        self, spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path
    ) -> None:
        """The training split is large enough for rare-value protection, and requested label
        counts name classes the model will know: classes of its training rows held by at least
        `k` of them (rarer ones are protected, never sampled). The rules the config adds name
        modelled columns and values the model may emit."""
        schema = read_schema(source.info_path)
        train = self.training_data(spec, source, split_path)
        encoder = TableEncoder(
            schema,
            spec.model.conditional,
            spec.seed,
            min_rows=spec.privacy.rare_category_min_rows,
            rare_label=spec.privacy.rare_category_label,
        ).fit(train)
        for rule in spec.rules.add:
            check_rule(rule, train, schema, spec.privacy.rare_category_min_rows)
        conditions = spec.sampling.conditions
        if not conditions:
            return
        if not encoder.conditional:
            raise InputDataError(
                "conditions need a categorical target that the model was conditioned on"
            )
        keys = category_keys(train[schema.target]).fillna(MISSING)
        held = keys.value_counts()
        classes = list(held.index)
        rng = np.random.default_rng(spec.seed)
        codes = draw_labels(sum(conditions.values()), conditions, classes, [1] * len(classes), rng)
        refuse_protected(held.to_numpy()[codes], spec.privacy.rare_category_min_rows, "rows")

    # ---- train and sample ---------------------------------------------------------------
    model_file = "denoiser"

    def _extra(self, spec: JobSpec, paths: JobPaths, lineage: dict[str, Any]) -> dict[str, Any]:
        """Besides lineage and protection: what reading the table changed, per column (dates
        with UTC offsets normalised to UTC), so the report says it as the export does."""
        extra = super()._extra(spec, paths, lineage)
        schema = read_schema(paths.schema)
        notes = [f"column {c.name!r}: {c.note}" for c in schema.columns if c.note]
        return {**extra, "notes": notes} if notes else extra

    def new_synthesizer(self, spec: JobSpec, source: LoadedSource) -> TabularDiffusionSynthesizer:
        schema = read_schema(source.info_path)
        device = spec.training.device
        return TabularDiffusionSynthesizer(
            schema, spec.model, spec.training, seed=spec.seed, device=device,
            privacy=spec.privacy, rules=spec.rules,
        )  # fmt: skip

    def load_synthesizer(self, spec: JobSpec, paths: JobPaths) -> TabularDiffusionSynthesizer:
        return TabularDiffusionSynthesizer.load(paths.model, device=spec.training.device)

    def training_data(self, spec: JobSpec, source: LoadedSource, split_path: Path) -> pd.DataFrame:
        return self.real_frames(spec, source, split_path)[0]

    def sample_options(self, spec: JobSpec) -> dict[str, Any]:
        return {"id_strategy": spec.export.id_strategy}

    def shard_bytes(self, shard: Shard, synthesizer: TabularDiffusionSynthesizer) -> bytes:
        """The shard's rows as Parquet, typed like the source."""
        buffer = pa.BufferOutputStream()
        pq.write_table(to_arrow_table(shard.data, synthesizer.schema), buffer)
        return buffer.getvalue().to_pybytes()

    def staged_count(self, path: Path) -> int:
        return pq.read_metadata(path).num_rows

    # ---- evaluate -----------------------------------------------------------------------
    def evaluation_inputs(
        self, spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path
    ) -> TableInputs:
        train_df, holdout_df = self.real_frames(spec, source, split_path)
        synthetic = _head(paths.staging, spec.evaluation.max_rows)
        schema = read_schema(source.info_path)
        dp = read_state(paths.model, KIND).get("dp")  # the model's DP figures, not its weights
        return TableInputs(
            train_df, holdout_df, synthetic, schema, privacy=spec.privacy, rules=spec.rules, dp=dp
        )

    # ---- export -------------------------------------------------------------------------
    def export(
        self, spec: JobSpec, paths: JobPaths, source: LoadedSource, report: dict[str, Any]
    ) -> list[Path]:
        """Publish the staged rows as Parquet carrying lineage and report; then drop staging."""
        schema = read_schema(source.info_path)
        if spec.export.id_strategy == "drop":
            schema = TableSchema(
                columns=[c for c in schema.columns if c.kind != "id"], target=schema.target
            )
        metadata = export_metadata(report)
        shards = (pq.read_table(f).to_pandas() for f in staged_files(paths.staging))
        files = write_parquet_export(
            shards, paths.export, schema, metadata, rows_per_file=spec.export.rows_per_file,
            attachments=report_attachments(paths),
        )  # fmt: skip
        link_published_report(paths)
        shutil.rmtree(paths.staging, ignore_errors=True)
        return files
