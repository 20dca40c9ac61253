"""One job as a Prefect flow: load, split, train, sample, evaluate, gate, export.

Tables and images tell the same story, so one flow serves both: `steps_for(spec)` picks the
plain functions of `synth.pipeline` (tables) or `synth.image_pipeline` (images), which share
their signatures. Tasks receive the job spec, paths and content hashes, and return paths,
hashes and metrics: never DataFrames or pixels, so no real record reaches a Prefect result,
cache, log line or artifact.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from evaluation.gate import GateResult
from evaluation.report import summary_rows
from synth import image_pipeline, pipeline
from synth.config import JobSpec
from synth.pipeline import JobPaths

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
    model_hash = steps_for(spec).train(spec, paths, source, split_path, progress)
    get_run_logger().info("trained %d steps; model sha256 %s", spec.training.steps, model_hash[:12])
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


@flow(name="synthesize", log_prints=False)
def synthesize(spec: JobSpec, progress: bool = True) -> dict[str, Any] | State:
    """Make a gated synthetic copy of a protected table or image set, and export it."""
    paths = JobPaths(Path(spec.export.out))
    source = load_task(spec, paths)
    split_path = split_task(spec, paths, source)
    model_hash = train_task(spec, paths, source, split_path, progress)
    sample_task(spec, paths, pipeline.split_sizes(split_path)[0], progress)
    lineage = pipeline.lineage_for(spec, source, split_path, model_hash)
    report = evaluate_task(spec, paths, source, split_path, lineage, progress)
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
        "gate": report["gate"],
        "metrics": report["metrics"],
    }
