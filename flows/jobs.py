"""The flow that deployments and requests run: one job under an output root.

It wraps `synthesize` with what a shared, scheduled service needs: a run directory keyed by
the flow run's id, a manifest that `synth runs` lists, and a content-hash cache, so a
scheduled run whose source and spec have not changed since the last good export says so and
skips retraining.
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Failed, State

from flows.synthesize import GATE_FAILED, RETRY_OPTS, flow_for, job_run_name
from jobs.guard import guarded, run_step
from jobs.runs import CacheEntry, OutputRoot, RunManifest, cache_key, now
from synth.config import JobSpec

CACHE_ARTIFACT = "synth-cache"


@task(name="fingerprint", retries=2, retry_delay_seconds=5, **RETRY_OPTS)
@guarded("fingerprint step")
def fingerprint_task(spec: JobSpec) -> str:
    """Hash the source's bytes with the job's content: the cache key."""
    return cache_key(spec)


def _verdict(gate: dict[str, Any]) -> str:
    if gate.get("overridden"):
        return "overridden"
    return "passed" if gate.get("passed") else "failed"


def _report_cache_hit(hit: CacheEntry, key: str) -> str:
    message = (
        f"source and spec unchanged since run {hit.run_id} (cache key {key[:12]}): "
        f"skipping retraining; its export is current: {hit.export}"
    )
    get_run_logger().info(message)
    create_markdown_artifact(
        key=CACHE_ARTIFACT,
        markdown="\n".join(
            [
                "# Cache hit: no retraining",
                "",
                "The source data and the job spec hash to the same key as a run whose export",
                "passed the gate, and that export is intact, so this run reuses it.",
                "",
                "| | |",
                "|---|---|",
                f"| cache key | `{key}` |",
                f"| reused run | `{hit.run_id}` |",
                f"| export | `{hit.export}` |",
                f"| rows | {hit.rows} |",
                f"| gate | {hit.gate} |",
            ]
        ),
        description="Why this run did not retrain",
    )
    return message


@flow(name="synth-job", flow_run_name=job_run_name, log_prints=False)
def synth_job(
    spec: JobSpec, output_root: str = "out/runs", force: bool = False, progress: bool = False
) -> dict[str, Any] | State:
    """Run one job into `output_root/runs/<run id>`, or reuse the last good export of the
    same source and spec (`force` retrains anyway)."""
    return run_in_root(spec, output_root, force, progress)


def run_in_root(
    spec: JobSpec, output_root: str, force: bool, progress: bool
) -> dict[str, Any] | State:
    """The body of a job flow run (`synth-job`, `synth-request`): the run directory keyed by
    the current flow run's id, its manifest, and the cache."""
    root = OutputRoot(output_root)
    run_id = str(flow_run.id or uuid.uuid4())
    manifest = RunManifest(
        run_id=run_id,
        name=flow_run.name or run_id,
        job=spec.name,
        modality=spec.source.modality,
        status="running",
        started_at=now(),
    )
    with root.hold(run_id):
        return run_step("synth-job flow", _run, spec, root, manifest, force, progress)


def _run(
    spec: JobSpec, root: OutputRoot, manifest: RunManifest, force: bool, progress: bool
) -> dict[str, Any] | State:
    run_id = manifest.run_id
    root.write(manifest)
    key = fingerprint_task(spec)
    manifest.cache_key = key
    hit = None if force else root.lookup(key)
    if hit is not None:
        manifest.message = _report_cache_hit(hit, key)
        manifest.status, manifest.finished_at = "cached", now()
        manifest.export, manifest.rows, manifest.gate = hit.export, hit.rows, hit.gate
        manifest.reused_from, manifest.lineage = hit.run_id, hit.lineage
        root.write(manifest)
        return {"export": hit.export, "cached": True, "reused_from": hit.run_id, "run_id": run_id}

    out = root.run_dir(run_id).resolve()
    job = spec.model_copy(update={"export": spec.export.model_copy(update={"out": out})})
    state = flow_for(job)(job, progress=progress, return_state=True)
    manifest.finished_at = now()
    if state.is_completed():
        result = state.result()
        manifest.status, manifest.gate = "completed", _verdict(result["gate"])
        manifest.export, manifest.rows = result["export"], result.get("rows")
        manifest.lineage = result.get("lineage")
        root.record(
            CacheEntry(
                key=key,
                run_id=run_id,
                export=result["export"],
                rows=manifest.rows,
                gate=manifest.gate,
                recorded_at=now(),
                lineage=manifest.lineage or {},
            )
        )
        root.write(manifest)
        return {**result, "cached": False, "run_id": run_id}
    gate_failed = state.name == GATE_FAILED
    manifest.status = "gate_failed" if gate_failed else "failed"
    manifest.gate = "failed" if gate_failed else None
    manifest.message = state.message
    root.write(manifest)
    return Failed(name=state.name, message=state.message)
