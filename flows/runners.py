"""Which Prefect task runner a job's tasks run on: the default thread pool, or Dask.

`runtime.task_runner: dask` fans the sampling shards and the evaluation checks out as
separate tasks on a Dask cluster: a LocalCluster of worker processes started for the run, or
an existing cluster at `runtime.dask_address`. How a job runs does not change what it makes:
shards are seeded by their index and the checks by the job seed, so both runners write the
same rows and the same report.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from synth.config import JobSpec

if TYPE_CHECKING:
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner


def local_workers(spec: JobSpec) -> int:
    """LocalCluster worker processes: `runtime.dask_workers`, else min(2, CPU cores)."""
    return spec.runtime.dask_workers or min(2, os.cpu_count() or 1)


def task_runner_for(spec: JobSpec) -> DaskTaskRunner | None:
    """A DaskTaskRunner when `runtime.task_runner` is `dask`, else None (the flow's default).

    Without `runtime.dask_address`, a LocalCluster of worker *processes* (torch and the
    boosted-tree checks hold the GIL in places) with `dask_threads_per_worker` threads each.
    """
    runtime = spec.runtime
    if runtime.task_runner != "dask":
        return None
    from prefect_dask import DaskTaskRunner

    if runtime.dask_address:
        return DaskTaskRunner(address=runtime.dask_address)
    return DaskTaskRunner(
        cluster_class=local_cluster,
        cluster_kwargs={
            "n_workers": local_workers(spec),
            "threads_per_worker": runtime.dask_threads_per_worker,
            "processes": True,
            "dashboard_address": None,  # no fixed port to clash with another run's
        },
    )


def prefect_api_url() -> str | None:
    """This process's Prefect API: the configured one, or (ephemeral mode) the temporary
    server this process runs, started here if it is not up yet; None if there is neither."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        return str(settings.api.url)
    if not settings.server.ephemeral.enabled:
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # one per process: the one Prefect's client uses too
    server.start()
    return server.api_url


def local_cluster(**kwargs: Any) -> LocalCluster:
    """A `distributed.LocalCluster` whose workers report to this process's Prefect API.

    In ephemeral mode (no PREFECT_API_URL) each worker process would otherwise start a
    temporary server of its own, 10-25 s each, all writing to one SQLite file.
    """
    from distributed import LocalCluster

    env = dict(kwargs.pop("env", None) or {})
    url = prefect_api_url()
    if url:
        env.setdefault("PREFECT_API_URL", url)
    return LocalCluster(env=env, **kwargs)


def pin_torch_threads() -> int | None:
    """Inside a Dask worker, give torch as many intra-op threads as the worker has task
    threads, so N single-threaded workers do not run N x cores threads. Returns the count
    set, or None outside a worker (the default runner keeps torch's own setting)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    import torch

    n = max(1, int(worker.state.nthreads))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
