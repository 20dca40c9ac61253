"""Chaos: the orchestration server or the worker dies in the middle of a real `synth run`.

- the Prefect server SIGKILLed during training, or during sampling and evaluation: the command
  fails cleanly (exit 3, one error line, no traceback) or finishes (exit 0), and never leaves
  a partial export; a second run into the same output directory then publishes a whole one;
- the worker SIGKILLed during training: the retry resumes from the checkpoint that was made for
  this job's data and settings, and the finished model's checkpoint still names them.

Each killed server is a private `prefect server start` in its own process group (the session's
shared server, from `prefect_server.py`, is never killed); the second runs use the shared one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect_server import api_get, free_port

from synth.export.folder import export_intact
from synth_cli.main import EXIT_INTERNAL, EXIT_OK

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

TINY = [
    "--rows", "600", "--set", "training.batch_size=256",
    "--set", "model.hidden_dims=[64, 64]",
    "--set", "evaluation.thresholds.detection_auc_max=1.0",
    "--set", "evaluation.thresholds.tstr_gap_max=1.0",
    "--set", "evaluation.thresholds.pair_trends_min=0.5",
    "--set", "evaluation.thresholds.column_shapes_min=0.5",
]  # fmt: skip
SERVER_START_S = 180
RUN_TIMEOUT_S = 420


@dataclass
class Server:
    """A private `prefect server start`, the leader of its own process group."""

    proc: subprocess.Popen[bytes]
    api: str
    home: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "PREFECT_API_URL": self.api, "PREFECT_HOME": str(self.home)}

    def kill(self) -> None:
        """SIGKILL the server and every process it started, at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[[], Server]]:
    """Start private Prefect servers on demand; every one is killed after the test."""
    started: list[Server] = []

    def start() -> Server:
        home = tmp_path / f"prefect-home-{len(started)}"
        home.mkdir()
        port = free_port()
        env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
        }
        env.pop("PREFECT_API_URL", None)
        command = [sys.executable, "-m", "prefect", "server", "start"]
        proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        server = Server(proc, f"http://127.0.0.1:{port}/api", home)
        started.append(server)
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                api_get(f"{server.api}/health")
                return server
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the private prefect server did not start")
                time.sleep(1)

    yield start
    for server in started:
        server.kill()


def _synth(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "synth_cli", *args, "--no-progress"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    """The command's output once it exits; a hang past `RUN_TIMEOUT_S` fails the test."""
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"synth run still running {RUN_TIMEOUT_S} s later:\n{output[-3000:]}")
    return output


def _wait_for(proc: subprocess.Popen[str], ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"synth run ended before {what}:\n{proc.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, f"no {what} after {RUN_TIMEOUT_S} s"
        time.sleep(0.1)


def _training_step(out: Path) -> int:
    try:
        state = json.loads((out / "model" / "training_state" / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return -1
    return int(state["step"])


def _training_fingerprint(out: Path) -> str:
    return json.loads((out / "model" / "training_state" / "state.json").read_text())["fingerprint"]


def _no_partial_export(out: Path) -> None:
    """`synthetic/` is absent or whole (its manifest names exactly its files: the data and the
    report published with them), and no export is left half-written beside it."""
    export = out / "synthetic"
    if export.exists():
        assert export_intact(export)
        manifest = json.loads((export / "_manifest.json").read_text())
        listed = {f["path"] for f in manifest["files"] + manifest.get("attachments", [])}
        assert listed == {p.name for p in export.iterdir()} - {"_manifest.json"}
    leftovers = [p.name for p in out.iterdir() if p.name.startswith((".tmp-synthetic", ".old-"))]
    assert leftovers == []


def _clean_failure(returncode: int, output: str) -> None:
    """Finished, or failed as an infrastructure failure: one error line (and no error from
    Prefect's log: its per-event connection errors are held back), no traceback."""
    assert returncode in (EXIT_OK, EXIT_INTERNAL), output
    assert "Traceback" not in output, output
    lines = output.splitlines()
    errors = [line for line in lines if line.startswith("error:") or "| ERROR" in line]
    assert len(errors) == (1 if returncode else 0), output
    assert "Error logging to API" not in output, output


def _training_reached(out: Path, step: int) -> Callable[[], bool]:
    return lambda: _training_step(out) >= step


def _evaluating(out: Path) -> Callable[[], bool]:
    """Every shard is sampled and staged: the evaluation has begun (or is about to)."""
    return lambda: (out / ".work" / "synthetic").is_dir()


def _cli_args(churn_csv: Path, out: Path) -> list[str]:
    args = ["run", "--data", str(churn_csv), "--target", "churn", "--out", str(out)]
    return [*args, "--train-steps", "400", "--set", "training.checkpoint_every=50", *TINY]


@pytest.mark.parametrize(
    ("moment", "ready"),
    [("training", lambda out: _training_reached(out, 100)), ("evaluation", _evaluating)],
)
def test_server_killed_mid_run_fails_cleanly_and_leaves_no_partial_export(
    start_server, prefect_server, churn_csv, tmp_path, moment, ready
):
    out = tmp_path / "out"
    args = _cli_args(churn_csv, out)
    server = start_server()
    # A 15 s grace (the default is 30 s) keeps the test short; Prefect alone took minutes
    # (a minute of retries per call, then seconds on each unsent event at exit).
    run = _synth(args, {**server.env(), "SYNTH_SERVER_LOST_AFTER_SECONDS": "15"})
    _wait_for(run, ready(out), moment)
    server.kill()
    killed = time.monotonic()
    output = _finish(run)
    took = time.monotonic() - killed
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    print(f"server killed during {moment}: exit {run.returncode} {took:.0f} s later; {errors}")
    assert took < 90, output
    _clean_failure(run.returncode, output)
    if run.returncode:
        assert "stopped answering for 15 s" in output, output
    _no_partial_export(out)
    print("left in out/:", sorted(p.name for p in out.iterdir()))

    # Against a live server, the same command into the same folder publishes a whole export.
    api, home = prefect_server
    again = _synth(args, {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(home)})
    output = _finish(again)
    assert again.returncode == EXIT_OK, output
    assert "Traceback" not in output, output
    _no_partial_export(out)
    assert export_intact(out / "synthetic")


def test_killed_worker_resumes_the_checkpoint_made_for_this_data(
    prefect_server, churn_csv, tmp_path
):
    """The retry resumes, and the checkpoint it resumed (and the one it finishes with) was
    made for this job's data and settings: the fingerprint the job steps compute for it."""
    from jobs.paths import JobPaths
    from jobs.registry import modality_for
    from synth.config import load_spec, parse_set_option

    out = tmp_path / "out"
    args = _cli_args(churn_csv, out)
    api, home = prefect_server
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(home)}
    first = _synth(args, env)
    _wait_for(first, _training_reached(out, 100), "a checkpoint at step 100")
    os.killpg(first.pid, signal.SIGKILL)  # the worker dies mid-training
    first.wait()
    killed_at = _training_step(out)
    before = _training_fingerprint(out)
    assert 100 <= killed_at < 400 and before

    second = _synth(args, env)
    output = _finish(second)
    assert second.returncode == EXIT_OK, output
    resumed = [line for line in output.splitlines() if "resuming training" in line]
    assert resumed, output
    assert int(resumed[0].rsplit("step", 1)[1].split()[0]) >= killed_at
    assert _training_step(out) == 400
    assert _training_fingerprint(out) == before
    assert export_intact(out / "synthetic")

    # ... and it is this job's fingerprint: its data, its split, its settings.
    overrides = {"source.path": str(churn_csv), "source.target": "churn", "export.out": str(out)}
    overrides |= {"sampling.rows": 600, "training.steps": 400}
    overrides |= dict(parse_set_option(args[i + 1]) for i, a in enumerate(args) if a == "--set")
    spec = load_spec(None, overrides)
    steps = modality_for(spec)
    source = steps.load(spec, JobPaths(tmp_path / "scratch"))  # out/ itself is not touched
    assert steps.training_fingerprint(spec, source, JobPaths(out).split) == before


# ---- the watchdog's rule, without a process to kill ---------------------------------------
def _watch_until_done(
    answers: list[bool | None],
    running: list[bool] | None = None,
    quiet: list[bool] | None = None,
    lost_after: float = 0.0,
) -> bool:
    """Run `watch` over scripted polls; True when it gave up on the server."""
    from flows.server import watch

    gave_up: list[bool] = []
    polls = iter(running if running is not None else [True] * len(answers))
    replies = iter(answers)
    try:
        watch(
            "http://127.0.0.1:9/api",
            lost_after=lost_after,
            give_up=lambda: gave_up.append(True),
            running=polls.__next__,
            answers=lambda _url: next(replies),
            poll=0.0,
            quiet=(quiet if quiet is not None else []).append,
        )
    except StopIteration:  # the script ran out: it never gave up
        return False
    return gave_up == [True]


def test_watchdog_gives_up_only_on_a_server_that_answered_then_went_silent():
    assert _watch_until_done([True, True, False])
    assert not _watch_until_done([False, False, False])  # never reached: not ours to judge
    assert not _watch_until_done([True, None, None])  # TLS, proxy, DNS: not a dead server
    assert not _watch_until_done([True], running=[True, False, False, False])  # no job running


def test_server_answers_tells_a_dead_port_from_a_live_server(prefect_server):
    from flows.server import server_answers

    api, _ = prefect_server
    assert server_answers(api) is True
    assert server_answers(f"http://127.0.0.1:{free_port()}/api") is False


def test_watchdog_holds_prefects_noise_back_only_while_the_server_is_silent():
    quiet: list[bool] = []
    assert not _watch_until_done([True, False, False, True], quiet=quiet, lost_after=60.0)
    assert quiet == [True, False]  # a restart within the grace: the noise comes back on


def test_the_watch_ends_with_its_job(monkeypatch):
    """A watch belongs to one job: once the job's block ends, a server that stops later (the
    temporary one, stopped at exit; another test's) is never judged, so never ends the
    process. Before, a watch lived as long as the process and ended a test session."""
    import threading

    from flows.server import watch, watched_prefect_api

    stop = threading.Event()
    stop.set()
    gave_up: list[bool] = []
    watch("http://127.0.0.1:9/api", lost_after=0.0, give_up=lambda: gave_up.append(True),
          running=lambda: True, answers=lambda _url: False, poll=0.0, stop=stop)  # fmt: skip
    assert gave_up == []

    import flows.server

    dead = f"http://127.0.0.1:{free_port()}/api"  # a configured server (PREFECT_API_URL)
    monkeypatch.setattr(flows.server, "_api", lambda attempts: (dead, False))
    before = set(threading.enumerate())
    with watched_prefect_api() as url:
        assert url is None  # a configured server: nothing started here
        (dog,) = [t for t in set(threading.enumerate()) - before if t.name.endswith("watchdog")]
    dog.join(timeout=10)
    assert not dog.is_alive()
