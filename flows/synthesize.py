"""One job as a Prefect flow: load, split, train, sample, evaluate, gate, export.

Tables and images tell the same story, so one flow serves both: `steps_for(spec)` picks the
plain functions of `synth.pipeline` (tables) or `synth.image_pipeline` (images), which share
their signatures. Tasks receive the job spec, paths and content hashes, and return paths,
hashes and metrics: never DataFrames or pixels, so no real record reaches a Prefect result,
cache, log line or artifact.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from prefect import Flow, flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed, State

from evaluation.gate import GateResult
from evaluation.report import summary_rows
from flows.runners import pin_torch_threads, task_runner_for
from synth import image_pipeline, pipeline
from synth.checkpoint import checkpoint_step
from synth.config import JobSpec
from synth.pipeline import JobPaths, ShardPlan

GATE_FAILED = "GateFailed"
# Reading files can fail for passing reasons (network filesystems); training and sampling
# resume from checkpoints, so a retry is cheap. Evaluation and export are deterministic.
TASK_OPTS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


def steps_for(spec: JobSpec) -> ModuleType:
    return image_pipeline if spec.source.modality == "image" else pipeline


@task(name="load", retries=2, retry_delay_seconds=5, **TASK_OPTS)
def load_task(spec: JobSpec, paths: JobPaths) -> Any:
    source = steps_for(spec).load(spec, paths)
    get_run_logger().info("loaded %s (sha256 %s)", source.summary, source.data_hash[:12])
    return source


@task(name="split", retries=2, retry_delay_seconds=5, **TASK_OPTS)
def split_task(spec: JobSpec, paths: JobPaths, source: Any) -> Path:
    return steps_for(spec).split(spec, paths, source)


@task(name="train", retries=1, retry_delay_seconds=5, **TASK_OPTS)
def train_task(
    spec: JobSpec, paths: JobPaths, source: Any, split_path: Path, progress: bool
) -> str:
    logger = get_run_logger()
    start = checkpoint_step(paths.model) if spec.training.resume else None
    if start:
        # A retry (or a re-run into the same directory) picks up where the last run stopped.
        logger.info("resuming training from the checkpoint at step %d", start)
    model_hash = steps_for(spec).train(spec, paths, source, split_path, progress)
    logger.info("trained %d steps; model sha256 %s", spec.training.steps, model_hash[:12])
    return model_hash


@task(name="sample", retries=1, retry_delay_seconds=5, **TASK_OPTS)
def sample_task(spec: JobSpec, paths: JobPaths, n_train: int, progress: bool) -> int:
    n = steps_for(spec).sample(spec, paths, n_train, progress)
    get_run_logger().info("sampled %d synthetic %s", n, _unit(spec))
    return n


@task(name="evaluate", **TASK_OPTS)
def evaluate_task(
    spec: JobSpec, paths: JobPaths, source: Any, split_path: Path, lineage: dict, progress: bool
) -> dict[str, Any]:
    report = steps_for(spec).evaluate(spec, paths, source, split_path, lineage, progress)
    publish_report(report)
    return report


@task(name="sample-shard", task_run_name="sample-shard-{plan.index}", retries=1, **TASK_OPTS)
def sample_shard_task(spec: JobSpec, paths: JobPaths, plan: ShardPlan) -> Path:
    """One shard of a table job, on whichever worker is free; returns its staged file."""
    threads = pin_torch_threads()
    path = pipeline.sample_shard(spec, paths, plan)
    where = f"on a Dask worker, {threads} torch thread(s)" if threads else "in the flow process"
    get_run_logger().info("shard %d: %d rows, %s", plan.index, plan.rows, where)
    return path


@task(name="finish-staging", **TASK_OPTS)
def finish_staging_task(paths: JobPaths, plans: list[ShardPlan], shard_files: list[Path]) -> int:
    n = pipeline.finish_staging(paths, plans)
    get_run_logger().info("sampled %d synthetic rows in %d shard(s)", n, len(shard_files))
    return n


@task(name="evaluate-part", task_run_name="evaluate-{part}", **TASK_OPTS)
def evaluate_part_task(
    spec: JobSpec, paths: JobPaths, source: Any, split_path: Path, part: str
) -> dict[str, Any] | None:
    """One metric group: re-reads the rows from their files, returns metric numbers only."""
    pin_torch_threads()
    return pipeline.evaluate_part(spec, paths, source, split_path, part)


@task(name="report", **TASK_OPTS)
def report_task(
    spec: JobSpec,
    paths: JobPaths,
    source: Any,
    split_path: Path,
    parts: dict[str, dict[str, Any] | None],
    lineage: dict,
) -> dict[str, Any]:
    report = pipeline.report_from_parts(spec, paths, source, split_path, parts, lineage)
    publish_report(report)
    return report


@task(name="gate", **TASK_OPTS)
def gate_task(report: dict[str, Any], paths: JobPaths) -> list[str]:
    logger = get_run_logger()
    for line in report["gate"]["failures"]:
        logger.warning("check failed: %s", line)
    if report["gate"]["overridden"]:
        logger.warning("gate overridden: %s", report["gate"]["override_reason"])
    return pipeline.gate(report, paths)


@task(name="export", **TASK_OPTS)
def export_task(spec: JobSpec, paths: JobPaths, source: Any, report: dict[str, Any]) -> list[Path]:
    files = steps_for(spec).export(spec, paths, source, report)
    get_run_logger().info("exported %d file(s) to %s", len(files), paths.export)
    return files


def _unit(spec: JobSpec) -> str:
    return "images" if spec.source.modality == "image" else "rows"


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


def sample_and_evaluate(
    spec: JobSpec,
    paths: JobPaths,
    source: Any,
    split_path: Path,
    lineage: dict[str, Any],
    progress: bool,
) -> tuple[int, dict[str, Any]]:
    """Sample and evaluate: (rows, report). Tables fan out (a task per shard, then a task per
    metric group) so a parallel task runner spreads them over its workers; images run as
    one task each."""
    n_train = pipeline.split_sizes(split_path)[0]
    if spec.source.modality != "table":
        n_rows = sample_task(spec, paths, n_train, progress)
        return n_rows, evaluate_task(spec, paths, source, split_path, lineage, progress)
    plans = pipeline.plan_shards(spec, n_train)
    pipeline.start_staging(paths)
    shards = sample_shard_task.map(unmapped(spec), unmapped(paths), plans)
    n_rows = finish_staging_task(paths, plans, shards)
    futures = {
        part: evaluate_part_task.submit(spec, paths, source, split_path, part)
        for part in pipeline.evaluation_parts()
    }
    parts = {part: future.result() for part, future in futures.items()}
    return n_rows, report_task(spec, paths, source, split_path, parts, lineage)


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
    with pipeline.exclusive(paths):
        return _run_steps(spec, paths, progress)


def _run_steps(spec: JobSpec, paths: JobPaths, progress: bool) -> dict[str, Any] | State:
    source = load_task(spec, paths)
    split_path = split_task(spec, paths, source)
    model_hash = train_task(spec, paths, source, split_path, progress)
    lineage = pipeline.lineage_for(spec, source, split_path, model_hash)
    n_rows, report = sample_and_evaluate(spec, paths, source, split_path, lineage, progress)
    failures = gate_task(report, paths)
    if failures:
        # A verdict, not a crash: fail the run with the numbers and no traceback.
        return Failed(name=GATE_FAILED, message=pipeline.gate_message(failures))
    files = export_task(spec, paths, source, report)
    return {
        "export": str(paths.export),
        "files": [str(f) for f in files],
        "report_json": str(paths.report_json),
        "report_html": str(paths.report_html),
        "rows": n_rows,
        "lineage": lineage,
        "gate": report["gate"],
        "metrics": report["metrics"],
    }
