"""The `Modality` contract: the steps of one job, the same for tables and images.

load -> split -> check -> train -> plan shards -> sample a shard (each) -> evaluate (parts,
then the report) -> gate -> export. A flow calls these and never asks which modality it runs.
Steps hand each other paths and content hashes, never records, so real data stays out of
Prefect's results and caches: each step that needs real records re-reads the source, checks
its hash, and selects them with the saved split indices.

`JobSteps` holds what both modalities share (shards, staging, the evaluation entry, the
fail-fast checks); `jobs.table` and `jobs.image` add what differs.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from evaluation import suite
from evaluation.suite import Inputs, Parts
from jobs.lineage import split_sizes
from jobs.paths import JobPaths
from jobs.shards import (
    ShardPlan,
    finish_staging,
    plan_shards,
    sample_rows,
    start_staging,
)
from synth.atomic import atomic_write_bytes
from synth.checkpoint import STATE_FILE, training_settings
from synth.config import JobSpec
from synth.data.split import load_split, min_rows_for_split
from synth.device import pick_device
from synth.dp.accounting import PrivacyBudgetError, dp_state
from synth.errors import ConfigError, InputDataError
from synth.hashing import file_sha256, json_sha256
from synth.progress import progress_bar
from synth.synthesizer import Shard, Synthesizer
from synth.training import is_main_process, wait_for_everyone


def model_hash(model_dir: Path, weights: str) -> str:
    """The trained model's hash: its weights folder and what `synthesizer.json` learned (the
    encoder, schema and settings), together. The weights alone cannot tell two models apart
    whose encoders differ (a shifted column quantile-maps to the same codes, and trains the
    same weights). The run's own record (final loss, steps run) is left out: a resume with no
    step left to run makes the same model."""
    state = json.loads((model_dir / STATE_FILE).read_text())
    learned = {k: v for k, v in state.items() if k not in RUN_RECORD}
    parts = (file_sha256(model_dir / weights), json_sha256(learned))
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


RUN_RECORD = ("final_loss", "steps_trained")


def export_metadata(report: dict[str, Any]) -> dict[str, Any]:
    """What every export carries: the lineage, the report, and the DP figures the model was
    trained under (`dp`: null without DP), at the top level where a reader finds them."""
    extra = report["extra"]
    return {"lineage": extra["lineage"], "report": report, "dp": extra.get("dp")}


def refuse_protected(counts: Any, k: int, unit: str) -> None:
    """Refuse label counts that ask for a protected class: `counts` holds the training count
    of each requested record's class; a class of fewer than `k` is never sampled."""
    if (np.asarray(counts) < k).any():
        raise InputDataError(
            f"a condition names a protected class: fewer than {k} training {unit} hold it "
            "(privacy.rare_category_min_rows), so it is never sampled"
        )


@dataclass(frozen=True)
class LoadedSource:
    """What `load` learned about the protected source: its hash, size, and where the private
    description (schema, or image source info) was written."""

    data_hash: str
    n_records: int
    summary: str
    info_path: Path


@runtime_checkable
class Modality(Protocol):
    """One modality's job steps. Each is a plain function of the spec, the job's paths and
    what earlier steps returned; none needs Prefect."""

    name: str
    unit: str

    def read(self, spec: JobSpec) -> Any:
        """Read and check the source, writing nothing: bad input fails here, fast."""

    def load(self, spec: JobSpec, paths: JobPaths) -> LoadedSource: ...

    def split(self, spec: JobSpec, paths: JobPaths, source: LoadedSource) -> Path: ...

    def check(self, spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path) -> None:
        """Every size and setting that would fail later, checked before training."""

    def train(
        self,
        spec: JobSpec,
        paths: JobPaths,
        source: LoadedSource,
        split_path: Path,
        progress: bool = True,
    ) -> str: ...

    def training_fingerprint(
        self, spec: JobSpec, source: LoadedSource, split_path: Path
    ) -> str: ...

    def plan_shards(self, spec: JobSpec, n_train: int) -> list[ShardPlan]: ...

    def start_staging(self, paths: JobPaths) -> Path: ...

    def sample_shard(self, spec: JobSpec, paths: JobPaths, plan: ShardPlan) -> Path: ...

    def finish_staging(self, paths: JobPaths, plans: list[ShardPlan]) -> int: ...

    def evaluation_groups(self) -> list[list[str]]: ...

    def evaluate_parts(
        self,
        spec: JobSpec,
        paths: JobPaths,
        source: LoadedSource,
        split_path: Path,
        names: list[str],
    ) -> Parts: ...

    def report(
        self,
        spec: JobSpec,
        paths: JobPaths,
        source: LoadedSource,
        split_path: Path,
        parts: Parts,
        lineage: dict[str, Any],
    ) -> dict[str, Any]: ...

    def export(
        self, spec: JobSpec, paths: JobPaths, source: LoadedSource, report: dict[str, Any]
    ) -> list[Path]: ...


# One shard at a time per process: a process's torch already uses all its threads (or its
# GPU), so shards side by side in a thread pool would only oversubscribe it. Parallelism
# comes from worker processes (Dask), each drawing its own shards.
SHARD_LOCK = threading.Lock()


class JobSteps:
    """The steps both modalities share. Subclasses supply `read`, `load`, `split`, `export`
    and the hooks below."""

    name: ClassVar[str]
    unit: ClassVar[str]
    shard_suffix: ClassVar[str]
    cpu_shard_rows: ClassVar[int]
    cuda_shard_rows: ClassVar[int]

    # ---- hooks --------------------------------------------------------------------------
    model_file: ClassVar[str]
    """The weights folder under `model/` whose hash names the trained model."""

    def new_synthesizer(self, spec: JobSpec, source: LoadedSource) -> Synthesizer:
        """An unfitted synthesizer configured by the spec."""
        raise NotImplementedError

    def load_synthesizer(self, spec: JobSpec, paths: JobPaths) -> Synthesizer:
        """The trained synthesizer in `paths.model`."""
        raise NotImplementedError

    def training_data(self, spec: JobSpec, source: LoadedSource, split_path: Path) -> Any:
        """The real training records, as the synthesizer's `fit` takes them."""
        raise NotImplementedError

    def sample_options(self, spec: JobSpec) -> dict[str, Any]:
        """Extra arguments of the synthesizer's `sample_shard`."""
        return {}

    def shard_bytes(self, shard: Shard, synthesizer: Synthesizer) -> bytes:
        """One drawn shard as the bytes of its staged file."""
        raise NotImplementedError

    def staged_count(self, path: Path) -> int:
        """Records in one staged shard file."""
        raise NotImplementedError

    def evaluation_inputs(
        self, spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path
    ) -> Inputs:
        """Real train and holdout, the staged synthetic head, for the evaluation entry."""
        raise NotImplementedError

    def check_settings(
        self, spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path
    ) -> None:
        """Modality-specific settings that would fail after training."""

    # ---- check --------------------------------------------------------------------------
    def check(self, spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path) -> None:
        """Every limit a later step would hit, checked now, before any training: the device,
        the records asked for, the label counts, and the sizes evaluation needs."""
        pick_device(spec.training.device)
        n_train, n_holdout = split_sizes(split_path)
        n_synthetic = sample_rows(spec, n_train)
        suite.check_sizes(
            self.name,
            n_train=n_train,
            n_holdout=n_holdout,
            n_synthetic=min(n_synthetic, spec.evaluation.max_rows),
        )
        self.check_settings(spec, paths, source, split_path)
        self.check_dp(spec, source, split_path)

    def check_dp(self, spec: JobSpec, source: LoadedSource, split_path: Path) -> None:
        """The DP budget covers the training, and the gate's require_dp and epsilon_max can
        be met: refused now, with the numbers, rather than after training."""
        thresholds = getattr(spec.evaluation, suite.suite_for(self.name).thresholds_field)
        if spec.privacy.dp is None:
            if thresholds.require_dp or thresholds.epsilon_max is not None:
                raise ConfigError(
                    "the gate requires differential privacy (require_dp or epsilon_max) and "
                    "this job trains without it: set privacy.dp.epsilon"
                )
            return
        train = self.training_data(spec, source, split_path)
        plan = self.new_synthesizer(spec, source).plan_dp(train)
        cap = thresholds.epsilon_max
        if cap is not None and plan.epsilon > cap:
            raise PrivacyBudgetError(
                f"privacy.dp.epsilon={spec.privacy.dp.epsilon} spends epsilon "
                f"{plan.epsilon:.3f}, above the gate's epsilon_max {cap}: lower it"
            )

    def min_records(self, spec: JobSpec) -> int:
        s = spec.split
        return min_rows_for_split(s.holdout_fraction, s.min_train_rows, s.min_holdout_rows)

    # ---- train --------------------------------------------------------------------------
    def train(
        self,
        spec: JobSpec,
        paths: JobPaths,
        source: LoadedSource,
        split_path: Path,
        progress: bool = True,
    ) -> str:
        """Fit the synthesizer (resuming from `model/` only if its checkpoint was made for this
        `training_fingerprint`). Returns the model's hash."""
        synthesizer = self.new_synthesizer(spec, source)
        train = self.training_data(spec, source, split_path)
        if is_main_process():
            paths.make_private(paths.model)
        fingerprint = self.training_fingerprint(spec, source, split_path)
        synthesizer.fit(
            train, checkpoint_dir=paths.model, progress=progress, fingerprint=fingerprint
        )
        if is_main_process():  # under `accelerate launch`, one process writes the model
            synthesizer.save(paths.model)
        wait_for_everyone()
        return model_hash(paths.model, self.model_file)

    def training_fingerprint(self, spec: JobSpec, source: LoadedSource, split_path: Path) -> str:
        """What `model/`'s checkpoint must have been made for to be resumed: the source's
        content hash, the split's training indices, and every spec field that shapes training
        (the source settings, the model, training but for where, how often it saves and how
        long, privacy, the seed). The same in every process of `accelerate launch`."""
        train_idx, _ = load_split(split_path, source.data_hash)
        model = spec.model if self.name == "table" else spec.image_model
        return json_sha256(
            {
                "modality": self.name,
                "data": source.data_hash,
                "train_indices": hashlib.sha256(
                    np.ascontiguousarray(train_idx, dtype=np.int64).tobytes()
                ).hexdigest(),
                "source": spec.source.model_dump(mode="json", exclude={"path"}),
                "model": model.model_dump(mode="json"),
                "training": training_settings(spec.training),
                "privacy": spec.privacy.model_dump(mode="json"),
                "seed": spec.seed,
            }
        )

    # ---- sample -------------------------------------------------------------------------
    def plan_shards(self, spec: JobSpec, n_train: int) -> list[ShardPlan]:
        return plan_shards(
            spec,
            n_train,
            cpu_rows=self.cpu_shard_rows,
            cuda_rows=self.cuda_shard_rows,
            suffix=self.shard_suffix,
        )

    def start_staging(self, paths: JobPaths) -> Path:
        return start_staging(paths)

    def sample_shard(self, spec: JobSpec, paths: JobPaths, plan: ShardPlan) -> Path:
        """Draw one shard with the trained model and stage it under a temp name, then rename
        it into place: a retried or killed task never leaves half a file."""
        synthesizer = self.load_synthesizer(spec, paths)
        s = spec.sampling
        with SHARD_LOCK:
            shard = synthesizer.sample_shard(
                plan.rows,
                plan.conditions,
                seed=plan.seed,
                offset=plan.start,
                num_inference_steps=s.num_inference_steps,
                scheduler=s.scheduler,
                guidance_scale=s.guidance_scale,
                **self.sample_options(spec),
            )
        data = self.shard_bytes(shard, synthesizer)
        return atomic_write_bytes(paths.staging_partial / plan.file_name, data)

    def finish_staging(self, paths: JobPaths, plans: list[ShardPlan]) -> int:
        return finish_staging(paths, plans, self.staged_count)

    def sample(self, spec: JobSpec, paths: JobPaths, n_train: int, progress: bool = True) -> int:
        """Every shard, one after another, into private staging. Returns the record count. The
        flow runs the same `sample_shard`s in parallel: the records are the same."""
        plans = self.plan_shards(spec, n_train)
        self.start_staging(paths)
        bar = progress_bar(
            plans, desc="sample", unit="shard", disable=not progress or len(plans) < 2
        )
        for plan in bar:
            self.sample_shard(spec, paths, plan)
        return self.finish_staging(paths, plans)

    # ---- evaluate -----------------------------------------------------------------------
    def evaluation_groups(self) -> list[list[str]]:
        """Metric parts that can run apart, grouped: a task each."""
        return [list(group) for group in suite.suite_for(self.name).groups]

    def evaluate_parts(
        self,
        spec: JobSpec,
        paths: JobPaths,
        source: LoadedSource,
        split_path: Path,
        names: list[str],
    ) -> Parts:
        """Some metric parts on the staged records. They re-read the real and staged records
        themselves, so a task on any worker gets paths in and hands metric numbers back."""
        inputs = self.evaluation_inputs(spec, paths, source, split_path)
        return suite.evaluate_parts(
            inputs, names, seed=spec.seed, max_rows=spec.evaluation.max_rows
        )

    def report(
        self,
        spec: JobSpec,
        paths: JobPaths,
        source: LoadedSource,
        split_path: Path,
        parts: Parts,
        lineage: dict[str, Any],
    ) -> dict[str, Any]:
        """Apply the gate to the parts' numbers and stage report.json/html (see `jobs.reports`:
        they are published with the export, or kept apart if the gate fails)."""
        inputs = self.evaluation_inputs(spec, paths, source, split_path)
        evaluation = suite.combine(inputs, parts, spec.evaluation, seed=spec.seed)
        return self._write_report(evaluation, inputs, spec, paths, lineage)

    def _write_report(
        self, evaluation: Any, inputs: Inputs, spec: JobSpec, paths: JobPaths, lineage: dict
    ) -> dict[str, Any]:
        extra = self._extra(spec, paths, lineage)
        return suite.write_report(evaluation, inputs, paths.report_staging, extra)

    def _extra(self, spec: JobSpec, paths: JobPaths, lineage: dict[str, Any]) -> dict[str, Any]:
        """What the report carries besides the checks: the lineage, and what rare-value
        protection grouped or withheld (counts per column, never a value)."""
        synthesizer = self.load_synthesizer(spec, paths)
        scaled = spec.training.steps is None
        training = {"steps": synthesizer.steps_trained_, "scaled_to_data": scaled}
        return {
            "lineage": lineage,
            "protection": synthesizer.protection(),
            "training": training,
            "dp": dp_state(synthesizer.dp_),
        }

    def evaluate(
        self,
        spec: JobSpec,
        paths: JobPaths,
        source: LoadedSource,
        split_path: Path,
        lineage: dict[str, Any],
        progress: bool = True,
    ) -> dict[str, Any]:
        """Every check on the staged records in this process, then the report."""
        inputs = self.evaluation_inputs(spec, paths, source, split_path)
        evaluation = suite.evaluate(inputs, spec.evaluation, seed=spec.seed, progress=progress)
        return self._write_report(evaluation, inputs, spec, paths, lineage)
