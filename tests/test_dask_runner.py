"""Scale-out: independent sampling shards and metric groups, the runtime spec, and the proof
that the flow on a 2-worker Dask LocalCluster makes exactly what the default runner makes."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from prefect_dask import DaskTaskRunner

from flows.runners import local_cluster, task_runner_for
from jobs.paths import JobPaths, claim_output
from jobs.registry import MODALITIES
from synth.config import build_spec
from synth.errors import ConfigError, SynthError

table_steps = MODALITIES["table"]

TRAIN_STEPS = 60


def _spec(csv: Path, out: Path, **overrides):
    base = {
        "name": "dask-test",
        "source": {"path": str(csv), "target": "churn"},
        "model": {"hidden_dims": [64, 64]},
        "training": {"steps": TRAIN_STEPS, "batch_size": 256, "device": "cpu"},
        "sampling": {"rows": 2500, "shard_rows": 1000},
        "evaluation": {
            # A 60-step model: fidelity bars are relaxed, the privacy bars keep their defaults.
            "thresholds": {
                "detection_auc_max": 1.0,
                "tstr_gap_max": 1.0,
                "pair_trends_min": 0.0,
                "column_shapes_min": 0.0,
            }
        },
        "export": {"out": str(out), "rows_per_file": 1000},
    }
    return build_spec(base, overrides)


# ---- the runtime section ------------------------------------------------------------------
def test_runtime_does_not_change_the_spec_hash(tmp_path):
    plain = build_spec({"source": {"path": "t.csv"}})
    dask = build_spec(
        {"source": {"path": "t.csv"}},
        {"runtime.task_runner": "dask", "runtime.dask_workers": 2},
    )
    remote = build_spec({"source": {"path": "t.csv"}}, {"runtime.dask_address": "tcp://s:8786"})
    assert plain.spec_hash() == dask.spec_hash() == remote.spec_hash()
    assert build_spec({"source": {"path": "t.csv"}, "seed": 1}).spec_hash() != plain.spec_hash()
    with pytest.raises(ConfigError, match="unknown key 'runtime.workers'"):
        build_spec({"source": {"path": "t.csv"}, "runtime": {"workers": 2}})
    with pytest.raises(ConfigError, match="runtime.task_runner"):
        build_spec({"source": {"path": "t.csv"}}, {"runtime.task_runner": "ray"})


def test_task_runner_for_builds_the_dask_runner_the_spec_asks_for():
    assert task_runner_for(build_spec({"source": {"path": "t.csv"}})) is None
    local = task_runner_for(
        build_spec(
            {"source": {"path": "t.csv"}},
            {"runtime.task_runner": "dask", "runtime.dask_threads_per_worker": 2},
        )
    )
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_class is local_cluster
    assert local.cluster_kwargs["threads_per_worker"] == 2
    assert local.cluster_kwargs["processes"] is True
    assert 1 <= local.cluster_kwargs["n_workers"] <= 2
    remote = task_runner_for(
        build_spec(
            {"source": {"path": "t.csv"}},
            {"runtime.task_runner": "dask", "runtime.dask_address": "tcp://scheduler:8786"},
        )
    )
    assert isinstance(remote, DaskTaskRunner)
    assert remote.address == "tcp://scheduler:8786" and not remote.cluster_kwargs


# ---- shard plans --------------------------------------------------------------------------
def test_plan_shards_covers_the_rows_with_distinct_seeds(tmp_path):
    spec = build_spec({"source": {"path": "t.csv"}}, {"sampling.shard_rows": 400, "seed": 7})
    plans = table_steps.plan_shards(spec, n_train=1000)
    assert [(p.index, p.start, p.rows) for p in plans] == [
        (0, 0, 400),
        (1, 400, 400),
        (2, 800, 200),
    ]
    assert len({p.seed for p in plans}) == 3 and all(p.conditions is None for p in plans)
    assert table_steps.plan_shards(spec, 1000) == plans  # deterministic
    other_seed = build_spec({"source": {"path": "t.csv"}}, {"sampling.shard_rows": 400})
    assert {p.seed for p in table_steps.plan_shards(other_seed, 1000)}.isdisjoint(
        {p.seed for p in plans}
    )


def test_plan_shards_deals_condition_counts_exactly(tmp_path):
    spec = build_spec(
        {"source": {"path": "t.csv"}},
        {"sampling.shard_rows": 300, "sampling.conditions": {"Yes": 250, "No": 700}},
    )
    plans = table_steps.plan_shards(spec, n_train=5)
    assert [p.rows for p in plans] == [300, 300, 300, 50]
    for p in plans:
        assert sum(p.conditions.values()) == p.rows
    assert sum(p.conditions.get("Yes", 0) for p in plans) == 250
    assert sum(p.conditions.get("No", 0) for p in plans) == 700
    with pytest.raises(ConfigError, match="no rows"):
        table_steps.plan_shards(
            build_spec({"source": {"path": "t.csv"}}, {"sampling.conditions": {"Yes": 0}}), 5
        )


# ---- shards on a real (tiny) model ------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(churn_csv, tmp_path_factory, torch_single_thread):
    """A 60-step model on the churn table, trained through the plain pipeline functions."""
    out = tmp_path_factory.mktemp("trained")
    spec = _spec(churn_csv, out, **{"sampling.conditions": {"Yes": 700, "No": 1300}})
    paths = JobPaths(out)
    source = table_steps.load(spec, paths)
    split_path = table_steps.split(spec, paths, source)
    table_steps.train(spec, paths, source, split_path, progress=False)
    return spec, paths


def test_shards_are_independent_of_order_and_ids_unique(trained):
    spec, paths = trained
    plans = table_steps.plan_shards(spec, n_train=10)
    assert len(plans) == 2
    forward = table_steps.sample(spec, paths, n_train=10, progress=False)
    assert forward == 2000
    first = {p.file_name: (paths.staging / p.file_name).read_bytes() for p in plans}

    table_steps.start_staging(paths)
    for plan in reversed(plans):  # another order, as on workers that finish in any order
        table_steps.sample_shard(spec, paths, plan)
    assert table_steps.finish_staging(paths, plans) == 2000
    again = {p.file_name: (paths.staging / p.file_name).read_bytes() for p in plans}
    assert again == first  # byte-identical shard files

    glob = str(paths.staging / "shard-*.parquet")
    con = duckdb.connect()
    n, distinct = con.sql(
        f"select count(*), count(distinct rownames) from read_parquet('{glob}')"
    ).fetchall()[0]
    assert n == distinct == 2000  # regenerated IDs are unique across shards
    by_label = con.sql(f"select churn, count(*) from read_parquet('{glob}') group by 1")
    counts = dict(by_label.fetchall())
    assert counts == {"Yes": 700, "No": 1300}  # exact totals over the shards


def test_finish_staging_refuses_a_missing_shard(trained):
    spec, paths = trained
    plans = table_steps.plan_shards(spec, n_train=10)
    table_steps.start_staging(paths)
    table_steps.sample_shard(spec, paths, plans[0])
    with pytest.raises(SynthError, match="missing \\['shard-00001.parquet'\\]"):
        table_steps.finish_staging(paths, plans)
    assert not paths.staging.exists()  # nothing half-staged is published


# ---- the proof: default runner vs a Dask LocalCluster -------------------------------------------
def _logs(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def fetch() -> list[str]:
        async with get_client() as client:
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
        return [log.message for log in logs]

    return asyncio.run(fetch())


def _export_table(out: Path):
    files = sorted((out / "synthetic").glob("part-*.parquet"))
    return pq.read_table(files).replace_schema_metadata(None), files


@pytest.mark.slow
def test_dask_runner_makes_the_same_rows_and_report_as_the_default(churn_csv, tmp_path):
    from prefect.testing.utilities import prefect_test_harness

    from flows.synthesize import flow_for

    a, b = tmp_path / "default", tmp_path / "dask"
    default_spec = _spec(churn_csv, a)
    dask_spec = _spec(
        churn_csv,
        b,
        **{"runtime.task_runner": "dask", "runtime.dask_workers": 2},
    )
    with prefect_test_harness(server_startup_timeout=120):
        state_a = flow_for(default_spec)(default_spec, progress=False, return_state=True)
        assert state_a.is_completed(), state_a.message
        # Reuse the trained model: a finished checkpoint resumes with no steps left to run.
        claim_output(b)  # synth's own folder, as a run into it would make it
        shutil.copytree(a / "model", b / "model")
        state_b = flow_for(dask_spec)(dask_spec, progress=False, return_state=True)
        assert state_b.is_completed(), state_b.message
        logs_a = _logs(state_a.state_details.flow_run_id)
        logs_b = _logs(state_b.state_details.flow_run_id)

    result_a, result_b = state_a.result(), state_b.result()
    assert result_a["lineage"]["model_hash"] == result_b["lineage"]["model_hash"]

    table_a, files_a = _export_table(a)
    table_b, files_b = _export_table(b)
    assert len(files_a) == len(files_b) == 3  # 2,500 rows at 1,000 rows per file
    assert table_a.num_rows == 2500
    assert table_a.schema == table_b.schema
    assert table_a.equals(table_b)  # every value, in order
    # An independent reader agrees: no row of one export is missing from the other.
    con = duckdb.connect()
    glob_a, glob_b = (str(d / "synthetic" / "part-*.parquet") for d in (a, b))
    for x, y in ((glob_a, glob_b), (glob_b, glob_a)):
        left = con.sql(
            f"select count(*) from (select * from read_parquet('{x}') "
            f"except all select * from read_parquet('{y}'))"
        ).fetchall()[0][0]
        assert left == 0

    report_a = json.loads((a / "report.json").read_text())
    report_b = json.loads((b / "report.json").read_text())
    assert report_a["metrics"] == report_b["metrics"]
    assert {k: v for k, v in report_a.items() if k != "extra"} == {
        k: v for k, v in report_b.items() if k != "extra"
    }
    assert report_a["metrics"]["n_synthetic_total"] == 2500

    # The fan-out really ran: 3 shard tasks each, on Dask workers with one torch thread.
    shard_a = [m for m in logs_a if m.startswith("shard ")]
    shard_b = [m for m in logs_b if m.startswith("shard ")]
    assert len(shard_a) == 3 and all("in the flow process" in m for m in shard_a)
    assert len(shard_b) == 3 and all("on a Dask worker, 1 torch thread" in m for m in shard_b)
