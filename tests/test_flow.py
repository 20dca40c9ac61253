"""The whole tabular flow under a real (ephemeral) Prefect server, on the real churn table."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from flows.synthesize import GATE_FAILED, synthesize
from synth.config import build_spec
from synth.export.folder import export_intact
from synth.export.parquet import read_export_metadata
from synth.hashing import file_sha256, json_sha256

pytestmark = pytest.mark.slow

# Values that occur in the real table; none may reach a log line or an artifact.
REAL_VALUES = ["29.85", "1889.5", "108.15", "56.95", "53.85"]


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _spec(csv: Path, out: Path, **overrides):
    base = {
        "name": "flow-test",
        "source": {"path": str(csv), "target": "churn"},
        "model": {"hidden_dims": [128, 128]},
        "training": {"steps": 250, "batch_size": 512},
        "export": {"out": str(out), "rows_per_file": 3000},
    }
    return build_spec(base, overrides)


def _flow_text(flow_run_id) -> str:
    """Every log line and artifact the run left on the Prefect server, as one string."""

    async def fetch() -> str:
        from prefect.client.schemas.filters import (
            ArtifactFilter,
            ArtifactFilterFlowRunId,
            LogFilter,
            LogFilterFlowRunId,
        )

        async with get_client() as client:
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            arts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        return "\n".join([log.message for log in logs] + [str(a.data) for a in arts]), len(arts)

    return asyncio.run(fetch())


def _most_at_once(flow_run_id, prefix: str) -> tuple[int, int]:
    """(task runs named `prefix`... in the flow run, the most that ran at the same time)."""

    async def fetch():
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )

    runs = [r for r in asyncio.run(fetch()) if r.name.startswith(prefix)]
    spans = [(r.start_time, r.end_time) for r in runs]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = most = 0
    for _, step in events:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return len(runs), most


def test_flow_trains_gates_and_exports_typed_parquet(harness, churn_csv, tmp_path):
    # Fidelity bars are relaxed for a 250-step model; the privacy bars keep their defaults.
    spec = _spec(
        churn_csv,
        tmp_path / "out",
        **{
            "evaluation.thresholds.detection_auc_max": 1.0,
            "evaluation.thresholds.tstr_gap_max": 1.0,
            "evaluation.thresholds.pair_trends_min": 0.5,
            "runtime.evaluation_tasks": 2,
        },
    )
    state = synthesize(spec, progress=False, return_state=True)
    assert state.is_completed(), state.message
    # the metric tasks ran two at a time: each holds its own copy of the tables
    n_parts, most = _most_at_once(state.state_details.flow_run_id, "evaluate-")
    assert n_parts == 11 and most == 2
    result = state.result()

    export = Path(result["export"])
    files = sorted(export.glob("part-*.parquet"))
    assert len(files) == 2  # 4,930 rows at 3,000 rows per file
    glob = str(export / "*.parquet")
    con = duckdb.connect()
    assert con.sql(f"select count(*) from read_parquet('{glob}')").fetchall()[0][0] == 4930
    types = dict(
        con.sql(f"describe select * from read_parquet('{glob}')").fetchall()[i][:2]
        for i in range(21)
    )
    assert types["churn"] == "VARCHAR"
    assert types["female"] == "BIGINT"  # an int-coded flag stays an integer
    assert types["tenure"] == "BIGINT"
    assert types["monthly_charges"] == "DOUBLE"
    assert types["rownames"] == "BIGINT"  # the ID column is regenerated, not modelled
    labels = {
        r[0] for r in con.sql(f"select distinct churn from read_parquet('{glob}')").fetchall()
    }
    assert labels == {"Yes", "No"}

    meta = read_export_metadata(files[0])
    lineage = meta["lineage"]
    assert lineage["spec_hash"] == spec.spec_hash()
    assert lineage["data_hash"] == file_sha256(churn_csv)
    model = tmp_path / "out" / "model"  # the weights and what the encoder learned, together
    saved = json.loads((model / "synthesizer.json").read_text())
    learned = {k: v for k, v in saved.items() if k not in ("final_loss", "steps_trained")}
    parts = (file_sha256(model / "denoiser"), json_sha256(learned))
    assert lineage["model_hash"] == hashlib.sha256(":".join(parts).encode()).hexdigest()
    assert lineage["seed"] == 0 and "torch" in lineage["packages"]
    assert meta["report"]["gate"]["passed"] is True
    kv = con.sql(f"select value from parquet_kv_metadata('{files[1]}') where key = 'synth'")
    assert json.loads(kv.fetchall()[0][0])["lineage"]["spec_hash"] == spec.spec_hash()

    # The report travels inside the export (published in the same rename); the top-level
    # report.json/html are links to it. A Parquet reader of the folder skips the `_` files.
    assert (tmp_path / "out" / "report.html").resolve() == export / "_report.html"
    assert (tmp_path / "out" / "report.json").resolve() == export / "_report.json"
    assert pq.read_table(export).num_rows == 4930
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report == meta["report"]
    assert export_intact(export)
    assert not (tmp_path / "out" / ".work" / "report").exists()
    assert {c["name"] for c in report["gate"]["checks"]} >= {"dcr_share", "mia_auc", "tstr_gap"}
    assert not (tmp_path / "out" / ".work" / "synthetic").exists()  # staging is cleaned up

    text, n_artifacts = _flow_text(state.state_details.flow_run_id)
    assert n_artifacts >= 2 and "dcr_share" in text
    # every gated check reaches the Prefect artifacts, the issue-9 privacy checks included
    for check in report["gate"]["checks"]:
        assert f"| {check['name']} |" in text, check["name"]
    for name in ("rare_values_emitted", "unique_copy_excess_lcb", "domias_tpr_at_1pct_fpr",
                 "singling_out_risk", "linkability_risk", "inference_risk"):  # fmt: skip
        assert name in text
    assert report["extra"]["protection"]["rare_category_min_rows"] == 5
    assert report["extra"]["training"] == {"steps": 250, "scaled_to_data": False}
    leaked = [v for v in REAL_VALUES if v in text]
    assert not leaked, f"real values reached Prefect logs/artifacts: {leaked}"


def test_failed_gate_keeps_its_report_apart_from_the_earlier_export(harness, churn_csv, tmp_path):
    out = tmp_path / "out"
    relaxed = {
        "evaluation.thresholds.detection_auc_max": 1.0,
        "evaluation.thresholds.tstr_gap_max": 1.0,
        "evaluation.thresholds.pair_trends_min": 0.5,
    }
    assert synthesize(_spec(churn_csv, out, **relaxed), progress=False, return_state=True)
    export = out / "synthetic"
    before = {p.name: file_sha256(p) for p in export.iterdir()}

    failing = _spec(churn_csv, out, **relaxed, **{"evaluation.thresholds.dcr_share_max": 0.0})
    state = synthesize(failing, progress=False, return_state=True)
    assert state.is_failed() and state.name == GATE_FAILED
    assert "dcr_share" in state.message and "> max 0.000" in state.message
    assert not (out / ".work" / "synthetic").exists()  # the staged rows are destroyed
    # The earlier export, and the report that describes it, are untouched...
    assert {p.name: file_sha256(p) for p in export.iterdir()} == before
    assert export_intact(export)
    assert json.loads((out / "report.json").read_text())["gate"]["passed"] is True
    # ...and the failed run's report sits apart, named as such.
    failed = json.loads((out / "failed-run" / "report.json").read_text())
    assert failed["gate"]["passed"] is False
    assert (out / "failed-run" / "report.html").is_file()
    assert not (out / ".work" / "report").exists()


def test_gate_override_exports_and_is_recorded(harness, churn_csv, tmp_path):
    spec = _spec(
        churn_csv,
        tmp_path / "out",
        **{
            "evaluation.thresholds.dcr_share_max": 0.0,
            "evaluation.override_gate": True,
            "evaluation.override_reason": "test of the override",
        },
    )
    state = synthesize(spec, progress=False, return_state=True)
    assert state.is_completed(), state.message
    meta = read_export_metadata(tmp_path / "out" / "synthetic")
    assert meta["report"]["gate"]["overridden"] is True
    assert meta["report"]["gate"]["override_reason"] == "test of the override"
    assert meta["lineage"]["gate_override"] is True
    assert any("dcr_share" in f for f in meta["report"]["gate"]["failures"])


def test_cli_run_prints_the_summary_and_exits_zero(harness, churn_csv, tmp_path):
    from typer.testing import CliRunner

    from synth_cli.main import app

    out = tmp_path / "cli-out"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--data",
            str(churn_csv),
            "--target",
            "churn",
            "--rows",
            "1500",
            "--out",
            str(out),
            "--train-steps",
            "150",
            "--seed",
            "3",
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
    )
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output and "dcr_share" in result.output
    assert str(out / "synthetic") in " ".join(result.output.split())
    meta = read_export_metadata(out / "synthetic")
    assert meta["report"]["metrics"]["n_synthetic"] == 1500
    assert meta["lineage"]["seed"] == 3
