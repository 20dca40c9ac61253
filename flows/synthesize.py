"""One job as a Prefect flow: load, split, check, train, sample, evaluate, gate, export.

Tables and images tell the same story, so one flow serves both: `modality_for(spec)` gives the
job steps (`jobs.modality.Modality`) and the flow calls them, never asking which modality it
runs. Sampling fans out a task per shard and evaluation a task per group of metric parts, so a
parallel task runner spreads them over its workers. Tasks receive the job spec, paths and
content hashes, and return paths, hashes and metrics: never DataFrames or pixels, so no real
record reaches a Prefect result, cache, log line or artifact.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import Flow, flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.states import Failed, State

from evaluation.gate import GateResult
from evaluation.report import summary_rows
from flows.runners import pin_torch_threads, task_runner_for
from jobs.gate import gate, gate_message
from jobs.guard import guarded, retry_unless_bad_input, run_step
from jobs.lineage import lineage_for, split_sizes
from jobs.modality import LoadedSource
from jobs.paths import JobPaths, exclusive
from jobs.registry import modality_for
from jobs.shards import ShardPlan
from synth.checkpoint import discard_training_state, resume_check
from synth.config import JobSpec

GATE_FAILED = "GateFailed"
# Reading files can fail for passing reasons (network filesystems); training and sampling
# resume from checkpoints, so a retry is cheap. Evaluation and export are deterministic.
TASK_OPTS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
# Bad input fails the same way again: no retry for a SynthError. Every task body is
# `guarded`, so an unexpected error reaches Prefect's logs and states as its type alone.
RETRY_OPTS: dict[str, Any] = {**TASK_OPTS, "retry_condition_fn": retry_unless_bad_input}


@task(name="load", retries=2, retry_delay_seconds=5, **RETRY_OPTS)
@guarded("load step")
def load_task(spec: JobSpec, paths: JobPaths) -> LoadedSource:
    source = modality_for(spec).load(spec, paths)
    get_run_logger().info("loaded %s (sha256 %s)", source.summary, source.data_hash[:12])
    return source


@task(name="split", retries=2, retry_delay_seconds=5, **RETRY_OPTS)
@guarded("split step")
def split_task(spec: JobSpec, paths: JobPaths, source: LoadedSource) -> Path:
    return modality_for(spec).split(spec, paths, source)


@task(name="check", **TASK_OPTS)
@guarded("check step")
def check_task(spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path) -> None:
    """Every size and setting a later step needs, before any training."""
    modality_for(spec).check(spec, paths, source, split_path)


@task(name="train", retries=1, retry_delay_seconds=5, **RETRY_OPTS)
@guarded("train step")
def train_task(
    spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path, progress: bool
) -> str:
    logger = get_run_logger()
    steps = modality_for(spec)
    if spec.training.resume:
        fingerprint = steps.training_fingerprint(spec, source, split_path)
        start, stale = resume_check(paths.model, fingerprint)
        if start:
            # A retry (or a re-run into the same directory) picks up where the last run stopped.
            logger.info("resuming training from the checkpoint at step %d", start)
        elif stale:  # made for other data or settings: never mixed into this model
            logger.warning(stale)
            discard_training_state(paths.model)  # so the library need not say it again
    model_hash = steps.train(spec, paths, source, split_path, progress)
    logger.info("trained; model sha256 %s", model_hash[:12])
    return model_hash


@task(name="sample-shard", task_run_name="sample-shard-{plan.index}", retries=1, **RETRY_OPTS)
@guarded("sample step")
def sample_shard_task(spec: JobSpec, paths: JobPaths, plan: ShardPlan) -> Path:
    """One shard, on whichever worker is free; returns its staged file."""
    threads = pin_torch_threads()
    path = modality_for(spec).sample_shard(spec, paths, plan)
    where = f"on a Dask worker, {threads} torch thread(s)" if threads else "in the flow process"
    get_run_logger().info("shard %d: %d %s, %s", plan.index, plan.rows, _unit(spec), where)
    return path


@task(name="finish-staging", **TASK_OPTS)
@guarded("sample step")
def finish_staging_task(
    spec: JobSpec, paths: JobPaths, plans: list[ShardPlan], shard_files: list[Path]
) -> int:
    n = modality_for(spec).finish_staging(paths, plans)
    get_run_logger().info(
        "sampled %d synthetic %s in %d shard(s)", n, _unit(spec), len(shard_files)
    )
    return n


@task(name="evaluate-part", task_run_name="evaluate-{names[0]}", **TASK_OPTS)
@guarded("evaluate step")
def evaluate_parts_task(
    spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path, names: list[str]
) -> dict[str, dict[str, Any] | None]:
    """A group of metric parts: re-reads the records from their files, returns numbers only."""
    pin_torch_threads()
    return modality_for(spec).evaluate_parts(spec, paths, source, split_path, names)


@task(name="report", **TASK_OPTS)
@guarded("report step")
def report_task(
    spec: JobSpec,
    paths: JobPaths,
    source: LoadedSource,
    split_path: Path,
    parts: dict[str, dict[str, Any] | None],
    lineage: dict,
) -> dict[str, Any]:
    report = modality_for(spec).report(spec, paths, source, split_path, parts, lineage)
    publish_report(report)
    return report


@task(name="gate", **TASK_OPTS)
@guarded("gate step")
def gate_task(report: dict[str, Any], paths: JobPaths) -> list[str]:
    logger = get_run_logger()
    for line in report["gate"]["failures"]:
        logger.warning("check failed: %s", line)
    if report["gate"]["overridden"]:
        logger.warning("gate overridden: %s", report["gate"]["override_reason"])
    return gate(report, paths)


@task(name="export", **TASK_OPTS)
@guarded("export step")
def export_task(
    spec: JobSpec, paths: JobPaths, source: LoadedSource, report: dict[str, Any]
) -> list[Path]:
    files = modality_for(spec).export(spec, paths, source, report)
    get_run_logger().info("exported %d file(s) to %s", len(files), paths.export)
    return files


def _unit(spec: JobSpec) -> str:
    return modality_for(spec).unit


def publish_report(report: dict[str, Any]) -> None:
    """Metrics only: the artifacts show the checks, never a data value."""
    rows = summary_rows(GateResult.model_validate(report["gate"]))
    create_table_artifact(key="synth-checks", table=rows, description="Privacy and fidelity checks")
    verdict = "PASSED" if report["gate"]["passed"] else "FAILED"
    if report["gate"]["overridden"]:
        verdict += f" (overridden: {report['gate']['override_reason']})"
    lines = [
        f"# Synthetic data gate: {verdict}",
        "",
        "| check | value | threshold | status |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['check']} | {r['value']} | {r['threshold']} | {r['status']} |" for r in rows]
    create_markdown_artifact(
        key="synth-report", markdown="\n".join(lines), description="Gate verdict"
    )


def sample(spec: JobSpec, paths: JobPaths, n_train: int) -> int:
    """A task per shard, then publish them together: the synthetic count."""
    steps = modality_for(spec)
    plans = steps.plan_shards(spec, n_train)
    steps.start_staging(paths)
    shards = sample_shard_task.map(unmapped(spec), unmapped(paths), plans)
    return finish_staging_task(spec, paths, plans, shards)


def evaluate(
    spec: JobSpec,
    paths: JobPaths,
    source: LoadedSource,
    split_path: Path,
    lineage: dict[str, Any],
) -> dict[str, Any]:
    """A task per group of metric parts, at most `evaluation_concurrency` at once, then the
    report: the report dict."""
    limit = evaluation_concurrency(spec)
    parts: dict[str, Any] = {}
    running: list[PrefectFuture] = []
    for names in modality_for(spec).evaluation_groups():
        if limit is not None and len(running) >= limit:
            done = next(as_completed(running))
            running.remove(done)
            parts.update(done.result())
        running.append(evaluate_parts_task.submit(spec, paths, source, split_path, names))
    for future in running:
        parts.update(future.result())
    return report_task(spec, paths, source, split_path, parts, lineage)


def evaluation_concurrency(spec: JobSpec) -> int | None:
    """Metric tasks at once: `runtime.evaluation_tasks`, or the CPU cores on the default
    runner (more adds memory, not speed); None (all at once) on Dask, whose workers bound it."""
    if spec.runtime.task_runner == "dask":
        return None
    return spec.runtime.evaluation_tasks or max(1, os.cpu_count() or 1)


def flow_for(spec: JobSpec) -> Flow:
    """`synthesize`, on the task runner `spec.runtime` asks for (see `task_runner_for`)."""
    runner = task_runner_for(spec)
    return synthesize if runner is None else synthesize.with_options(task_runner=runner)


def job_run_name() -> str:
    """`<job name>-<UTC time>`: readable in the UI and in `synth runs`."""
    spec = flow_run.parameters.get("spec")
    job = spec.get("name") if isinstance(spec, dict) else getattr(spec, "name", "synth-job")
    return f"{job}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


@flow(name="synthesize", flow_run_name=job_run_name, log_prints=False)
def synthesize(spec: JobSpec, progress: bool = True) -> dict[str, Any] | State:
    """Make a gated synthetic copy of a protected table or image set, and export it."""
    paths = JobPaths(Path(spec.export.out))
    # One run at a time per output directory: a second run of the same job fails fast
    # instead of mixing its checkpoints and staged rows with the first one's.
    with exclusive(paths):
        return run_step("synthesize flow", _run_steps, spec, paths, progress)


def _run_steps(spec: JobSpec, paths: JobPaths, progress: bool) -> dict[str, Any] | State:
    source = load_task(spec, paths)
    split_path = split_task(spec, paths, source)
    check_task(spec, paths, source, split_path)
    model_hash = train_task(spec, paths, source, split_path, progress)
    lineage = lineage_for(spec, source.data_hash, split_path, model_hash)
    n_records = sample(spec, paths, split_sizes(split_path)[0])
    report = evaluate(spec, paths, source, split_path, lineage)
    failures = gate_task(report, paths)
    if failures:
        # A verdict, not a crash: fail the run with the numbers and no traceback.
        return Failed(name=GATE_FAILED, message=gate_message(failures, report))
    files = export_task(spec, paths, source, report)
    return {
        "export": str(paths.export),
        "files": [str(f) for f in files],
        "report_json": str(paths.report_json),
        "report_html": str(paths.report_html),
        "rows": n_records,
        "lineage": lineage,
        "gate": report["gate"],
        "metrics": report["metrics"],
    }
