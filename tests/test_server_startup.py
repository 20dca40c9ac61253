"""The temporary Prefect server's start-up: a budget for slow machines, one retry, then one
line naming the setting and the exit code for infrastructure failures (3), never a traceback.

The CPU contention is made here: busy-looping processes on every core while `synth run`
starts its server. Each case runs the real command in a fresh interpreter with its own
PREFECT_HOME, as a user would.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synth_cli.main import EXIT_INTERNAL

pytestmark = pytest.mark.slow


def _spin(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


@pytest.fixture
def busy_cpus():
    """Two busy-looping processes per core for up to 3 minutes (stopped after the test)."""
    ctx = mp.get_context("spawn")
    stop_at = time.time() + 180
    procs = [ctx.Process(target=_spin, args=(stop_at,)) for _ in range(2 * os.cpu_count())]
    for p in procs:
        p.start()
    yield
    for p in procs:
        p.kill()
        p.join()


def _synth(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    environ.update(PREFECT_HOME=str(tmp_path / "prefect-home"), **env)
    code = "from synth_cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=environ, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def test_a_server_that_cannot_start_in_time_is_one_line_and_exit_3(busy_cpus, churn_csv, tmp_path):
    """A 1-second budget under load: both attempts time out, and the user gets the setting."""
    out = tmp_path / "out"
    args = ["run", "--data", str(churn_csv), "--target", "churn", "--train-steps", "2"]
    proc = _synth(
        [*args, "--out", str(out), "--no-progress"], tmp_path,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1",
    )  # fmt: skip
    assert proc.returncode == EXIT_INTERNAL, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in errors[0]
    assert "2 times" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (out / "model").exists()  # nothing trained


def test_the_default_budget_starts_the_server_under_load(busy_cpus, tmp_path):
    """With the CLI's default budget (90 s) the server comes up on a saturated machine."""
    code = (
        "import synth_cli.main; from flows.server import ensure_prefect_api; "
        "print(ensure_prefect_api())"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    environ["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    proc = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith("http://127.0.0.1:"), proc.stdout


def test_the_temporary_server_dies_with_a_killed_command(tmp_path):
    """SIGKILL a process that started the server as `synth run` does: no orphan uvicorn."""
    import psutil

    code = (
        "import time, synth_cli.main; from flows.server import ensure_prefect_api; "
        "from prefect.server.api.server import SubprocessASGIServer; ensure_prefect_api(); "
        "print(SubprocessASGIServer().server_process.pid, flush=True); time.sleep(600)"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    environ["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    parent = subprocess.Popen(
        [sys.executable, "-c", code], env=environ, stdout=subprocess.PIPE, text=True
    )
    server_pid = int(parent.stdout.readline())
    server = psutil.Process(server_pid)
    assert server.ppid() == parent.pid and "uvicorn" in " ".join(server.cmdline())
    parent.kill()
    parent.wait()
    deadline = time.time() + 30
    while time.time() < deadline and server.is_running() and server.status() != "zombie":
        time.sleep(0.2)
    assert not server.is_running() or server.status() == "zombie", "the server outlived us"


def test_a_busy_output_folder_is_refused_before_any_server_starts(churn_csv, tmp_path):
    """The job's lock is taken first: with another run holding `--out`, `synth run` stops in
    seconds with exit 2 and never starts a temporary Prefect server."""
    from filelock import FileLock

    from jobs.paths import MARKER, claim_output

    out = tmp_path / "out"
    claim_output(out)  # made by synth, as the other run's folder is
    args = ["run", "--data", str(churn_csv), "--target", "churn", "--train-steps", "2"]
    with FileLock(out / ".lock"):  # another run holds the folder
        proc = _synth([*args, "--out", str(out), "--no-progress"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "another run is using" in proc.stderr
    assert "Starting temporary server" not in proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [".lock", MARKER]
