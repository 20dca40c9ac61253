"""The image job as a Prefect flow: load, split, train, sample, evaluate, gate, export.

Tasks pass the spec, paths and hashes, never pixels, as the tabular flow does; the gate
verdict and the report artifacts are shared with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.states import Failed, State

from flows.tabular import GATE_FAILED, TASK_OPTS, _publish_report
from synth import image_pipeline as steps
from synth.config import JobSpec
from synth.image_pipeline import LoadedImages
from synth.pipeline import JobPaths


@task(name="load-images", retries=2, retry_delay_seconds=5, **TASK_OPTS)
def load_task(spec: JobSpec, paths: JobPaths) -> LoadedImages:
    loaded = steps.load(spec, paths)
    get_run_logger().info(
        "loaded %d images, %d classes (sha256 %s)",
        loaded.n_images,
        len(loaded.class_names),
        loaded.data_hash[:12],
    )
    return loaded


@task(name="split", retries=2, retry_delay_seconds=5, **TASK_OPTS)
def split_task(spec: JobSpec, paths: JobPaths, loaded: LoadedImages) -> Path:
    return steps.split(spec, paths, loaded)


@task(name="train", retries=1, retry_delay_seconds=5, **TASK_OPTS)
def train_task(
    spec: JobSpec, paths: JobPaths, loaded: LoadedImages, split_path: Path, progress: bool
) -> str:
    model_hash = steps.train(spec, paths, loaded, split_path, progress)
    get_run_logger().info("trained %d steps; model sha256 %s", spec.training.steps, model_hash[:12])
    return model_hash


@task(name="sample", retries=1, retry_delay_seconds=5, **TASK_OPTS)
def sample_task(spec: JobSpec, paths: JobPaths, n_train: int, progress: bool) -> int:
    n = steps.sample(spec, paths, n_train, progress)
    get_run_logger().info("sampled %d synthetic images", n)
    return n


@task(name="evaluate", **TASK_OPTS)
def evaluate_task(
    spec: JobSpec,
    paths: JobPaths,
    loaded: LoadedImages,
    split_path: Path,
    lineage: dict,
    progress: bool,
) -> dict[str, Any]:
    report = steps.evaluate(spec, paths, loaded, split_path, lineage, progress)
    _publish_report(report)
    return report


@task(name="gate", **TASK_OPTS)
def gate_task(report: dict[str, Any], paths: JobPaths) -> list[str]:
    logger = get_run_logger()
    for line in report["gate"]["failures"]:
        logger.warning("check failed: %s", line)
    return steps.gate(report, paths)


@task(name="export", **TASK_OPTS)
def export_task(
    spec: JobSpec, paths: JobPaths, loaded: LoadedImages, report: dict[str, Any]
) -> list[Path]:
    files = steps.export(spec, paths, loaded, report)
    get_run_logger().info(
        "exported %d file(s) (%s) to %s",
        len(files),
        steps.export_format(spec, loaded),
        paths.export,
    )
    return files


@flow(name="synthesize-images", log_prints=False)
def synthesize_images(spec: JobSpec, progress: bool = True) -> dict[str, Any] | State:
    """Make a gated synthetic copy of a protected image set; export DICOM or Parquet."""
    paths = JobPaths(Path(spec.export.out))
    loaded = load_task(spec, paths)
    split_path = split_task(spec, paths, loaded)
    model_hash = train_task(spec, paths, loaded, split_path, progress)
    sample_task(spec, paths, steps.split_sizes(split_path)[0], progress)
    lineage = steps.lineage_for(spec, loaded, split_path, model_hash)
    report = evaluate_task(spec, paths, loaded, split_path, lineage, progress)
    failures = gate_task(report, paths)
    if failures:
        return Failed(name=GATE_FAILED, message=steps.gate_message(failures))
    files = export_task(spec, paths, loaded, report)
    return {
        "export": str(paths.export),
        "files": [str(f) for f in files],
        "report_json": str(paths.report_json),
        "report_html": str(paths.report_html),
        "gate": report["gate"],
        "metrics": report["metrics"],
    }
