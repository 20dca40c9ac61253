"""`synth validate`: an intact export with a passing gate validates; a flipped byte, a changed
schema, a failed or unexplained gate, a missing or extra file, and rows the recorded report
misdescribes each fail with the check and the file or metric named.

Reports are made by the real evaluators on real data (the Telco churn table, scikit-learn's
digits): fresh holdout-like rows pass the gate, copies of training rows fail it."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pytest
import yaml
from evaluation_fixtures import ChurnSplit, split_churn
from junitparser import JUnitXml
from PIL import Image
from typer.testing import CliRunner

from evaluation.gate import DP_FIELDS, apply_gate
from evaluation.junit import SUITE, write_junit
from evaluation.table import evaluate_table
from evaluation.validate import ValidationResult, validate_export
from synth.config import ImageThresholds, Thresholds
from synth.data.rare import group_rare_values
from synth.data.schema import ColumnOverride, infer_schema
from synth.data.split import save_split
from synth.errors import InputDataError
from synth.export.folder import FORMATS, MANIFEST_NAME
from synth.export.formats import EXPORT_FORMATS
from synth.export.parquet import write_parquet_export
from synth.hashing import file_sha256
from synth.lineage import Lineage
from synth_cli.main import EXIT_BAD_INPUT, EXIT_GATE_FAILED, app, write_demo_split

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
CHURN_ROWS = 1500
PER_FILE = 500  # three part files


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def split() -> ChurnSplit:
    """Churn, its fresh rows as a model under the default rare-value protection would emit
    them (the raw rows hold rare values and extremes, which the rare-value check fails)."""
    churn = split_churn()
    fresh = group_rare_values(churn.fresh, churn.train, churn.schema, 5, "_RARE_")
    return ChurnSplit(churn.train, churn.holdout, fresh, churn.schema)


def _lineage(modality: str = "table") -> dict[str, Any]:
    return Lineage.create(
        spec_hash="a" * 64,
        data_hash="b" * 64,
        model_hash="c" * 64,
        seed=0,
        job="validate-test",
        modality=modality,
    ).to_dict()


def _report(evaluation: Any, modality: str = "table") -> dict[str, Any]:
    """What the pipeline stores: the evaluation's JSON plus the lineage under extra."""
    return {**evaluation.to_dict(), "extra": {"lineage": _lineage(modality)}}


@pytest.fixture(scope="module")
def passing_report(split: ChurnSplit) -> dict[str, Any]:
    """The real gate on rows the generator never saw: it passes."""
    ev = evaluate_table(
        split.train, split.holdout, split.fresh, split.schema, Thresholds(), progress=False
    )
    assert ev.gate.passed and not ev.gate.overridden
    return _report(ev)


@pytest.fixture(scope="module")
def train_copies(split: ChurnSplit) -> pd.DataFrame:
    return split.train.iloc[:CHURN_ROWS].reset_index(drop=True)


@pytest.fixture(scope="module")
def failing_report(split: ChurnSplit, train_copies: pd.DataFrame) -> dict[str, Any]:
    """The real gate on copies of training rows: it fails on the privacy checks."""
    ev = evaluate_table(
        split.train, split.holdout, train_copies, split.schema, Thresholds(), progress=False
    )
    assert not ev.gate.passed
    return _report(ev)


def _export(out: Path, split: ChurnSplit, rows: pd.DataFrame, report: dict[str, Any]) -> Path:
    write_parquet_export(
        [rows],
        out,
        split.schema,
        {"lineage": report["extra"]["lineage"], "report": report},
        rows_per_file=PER_FILE,
    )
    return out


@pytest.fixture(scope="module")
def good_export(tmp_path_factory, split, passing_report) -> Path:
    return _export(
        tmp_path_factory.mktemp("good") / "synthetic", split, split.fresh, passing_report
    )


@pytest.fixture
def good_copy(good_export: Path, tmp_path: Path) -> Path:
    """A private copy of the intact export, to tamper with."""
    return Path(shutil.copytree(good_export, tmp_path / "synthetic"))


@pytest.fixture(scope="module")
def real_csvs(tmp_path_factory, split: ChurnSplit) -> tuple[Path, Path]:
    """Train and holdout as CSV files, as a CI job would receive them."""
    d = tmp_path_factory.mktemp("real")
    split.train.to_csv(d / "train.csv", index=False)
    split.holdout.to_csv(d / "holdout.csv", index=False)
    return d / "train.csv", d / "holdout.csv"


def _manifest(export: Path) -> dict[str, Any]:
    return json.loads((export / MANIFEST_NAME).read_text())


def _set_manifest(export: Path, manifest: dict[str, Any]) -> None:
    (export / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


def _rehash(export: Path, name: str) -> None:
    """Record a changed file's checksum, so that only the deeper checks can catch it."""
    manifest = _manifest(export)
    for entry in manifest["files"]:
        if entry["path"] == name:
            entry["sha256"] = file_sha256(export / name)
            entry["bytes"] = (export / name).stat().st_size
    _set_manifest(export, manifest)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _only_failure(result: ValidationResult) -> str:
    failed = [c.name for c in result.failures()]
    assert len(failed) == 1, [(c.name, c.reason) for c in result.failures()]
    return failed[0]


# --------------------------------------------------------------------------- integrity


def test_intact_export_passes(good_export: Path):
    result = validate_export(good_export)
    assert result.passed, result.failures()
    assert result.format == "parquet"
    assert [c.name for c in result.checks] == ["manifest", "checksums", "schema", "gate", "dp"]
    assert result.check("dp").reason == "no DP figures (an export from before DP)"
    assert "3 parquet file(s)" in result.check("manifest").reason
    n_checks = len(Thresholds.model_fields) - len(DP_FIELDS)  # DP checks only when asked
    assert f"{n_checks} checks within thresholds" in result.check("gate").reason
    assert result.summary() == "validate: PASSED"
    assert not result.overridden


def test_one_part_file_is_checked_against_the_sibling_manifest(good_copy: Path):
    part = good_copy / "part-00001.parquet"
    assert validate_export(part).passed
    _flip_byte(good_copy / "part-00002.parquet")  # another file: not this one's business
    assert validate_export(part).passed
    _flip_byte(part)
    result = validate_export(part)
    assert not result.check("checksums").passed
    assert "part-00001.parquet" in result.check("checksums").reason


def test_flipped_byte_fails_checksums_naming_the_file(good_copy: Path):
    _flip_byte(good_copy / "part-00001.parquet")
    result = validate_export(good_copy)
    check = result.check("checksums")
    assert not check.passed
    assert "part-00001.parquet" in check.reason and "sha256" in check.reason
    assert "part-00000.parquet" not in check.reason
    assert result.check("manifest").passed
    assert result.summary().startswith("validate: FAILED (checksums: ")


def test_changed_schema_fails_schema_naming_the_column(good_copy: Path):
    name = "part-00001.parquet"
    table = pq.read_table(good_copy / name)
    i = table.schema.get_field_index("tenure")
    changed = table.set_column(i, "tenure", table.column("tenure").cast(pa.string()))
    pq.write_table(changed.replace_schema_metadata(table.schema.metadata), good_copy / name)
    _rehash(good_copy, name)  # a careful forger: the checksum matches the new bytes

    result = validate_export(good_copy)
    assert _only_failure(result) == "schema"
    reason = result.check("schema").reason
    assert name in reason and "'tenure'" in reason
    assert "string" in reason and "int64" in reason
    assert "part-00000.parquet" not in reason


def test_missing_and_extra_files_fail_manifest_naming_them(good_copy: Path):
    (good_copy / "part-00002.parquet").unlink()
    (good_copy / "notes.txt").write_text("added after export")
    result = validate_export(good_copy)
    reason = result.check("manifest").reason
    assert not result.check("manifest").passed
    assert "missing part-00002.parquet" in reason
    assert "notes.txt" in reason
    assert result.check("checksums").passed  # the files still present are intact


def test_missing_or_garbled_manifest_fails(good_copy: Path):
    (good_copy / MANIFEST_NAME).write_text("{not json")
    result = validate_export(good_copy)
    assert not result.check("manifest").passed
    assert "does not parse" in result.check("manifest").reason
    assert not result.check("checksums").passed
    (good_copy / MANIFEST_NAME).unlink()
    result = validate_export(good_copy)
    assert f"no {MANIFEST_NAME}" in result.check("manifest").reason
    assert result.check("schema").passed  # all files still agree with each other
    assert result.check("gate").passed


def test_bad_input_raises_one_line_error(tmp_path: Path):
    with pytest.raises(InputDataError, match="does not exist"):
        validate_export(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="not a synth export"):
        validate_export(tmp_path / "empty")
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputDataError, match="not a Parquet file"):
        validate_export(tmp_path / "data.csv")


# --------------------------------------------------------------------------- the stored gate


def test_failed_gate_report_fails_gate(tmp_path, split, failing_report):
    export = _export(tmp_path / "synthetic", split, split.fresh, failing_report)
    result = validate_export(export)
    assert _only_failure(result) == "gate"
    reason = result.check("gate").reason
    assert reason.startswith("gate failed: ")
    for line in failing_report["gate"]["failures"]:
        assert line in reason


def test_overridden_gate_passes_and_shows_the_reason(tmp_path, split, failing_report):
    why = "accepted by the data protection officer, ticket DPO-42"
    gate = apply_gate(failing_report["metrics"], Thresholds(), override=True, override_reason=why)
    report = {**failing_report, "gate": gate.to_dict()}
    export = _export(tmp_path / "synthetic", split, split.fresh, report)
    result = validate_export(export)
    assert result.passed
    assert result.overridden and result.override_reason == why
    assert result.check("gate").reason.startswith(f"OVERRIDDEN: {why}; failing: ")
    assert result.summary() == f"validate: PASSED (gate OVERRIDDEN: {why})"

    r = runner.invoke(app, ["validate", str(export)])
    assert r.exit_code == 0, r.output
    assert "OVERRIDDEN" in r.output and "DPO-42" in " ".join(r.output.split())


def test_override_without_a_reason_fails(tmp_path, split, failing_report):
    gate = apply_gate(failing_report["metrics"], Thresholds(), override=True)
    export = _export(
        tmp_path / "synthetic", split, split.fresh, {**failing_report, "gate": gate.to_dict()}
    )
    result = validate_export(export)
    assert not result.check("gate").passed
    assert "without a recorded reason" in result.check("gate").reason


def test_a_verdict_edited_to_passed_contradicts_its_numbers(tmp_path, split, failing_report):
    gate = {**failing_report["gate"], "passed": True, "failures": []}
    export = _export(tmp_path / "synthetic", split, split.fresh, {**failing_report, "gate": gate})
    result = validate_export(export)
    assert not result.check("gate").passed
    assert "the report says passed but" in result.check("gate").reason


def test_files_with_different_reports_fail_gate(good_copy, passing_report, failing_report):
    name = "part-00002.parquet"
    table = pq.read_table(good_copy / name)
    meta = {**table.schema.metadata}
    meta[b"synth"] = json.dumps({"lineage": {}, "report": failing_report}).encode()
    pq.write_table(table.replace_schema_metadata(meta), good_copy / name)
    _rehash(good_copy, name)
    result = validate_export(good_copy)
    assert _only_failure(result) == "gate"
    assert f"{name} carry a different report" in result.check("gate").reason


# --------------------------------------------------------------------------- recompute


def test_recompute_passes_for_fresh_rows(good_export, real_csvs):
    train, holdout = real_csvs
    result = validate_export(good_export, real=train, holdout=holdout, target="churn")
    assert result.passed, result.failures()
    names = [c.name for c in result.checks if c.name.startswith("recompute.")]
    assert names == [f"recompute.{c['name']}" for c in result_checks(good_export)]
    assert "recompute.dcr_share" in names and "recompute.tstr_gap" in names
    assert "<=" in result.check("recompute.dcr_share").reason


def result_checks(export: Path) -> list[dict[str, Any]]:
    meta = json.loads(pq.read_schema(export / "part-00000.parquet").metadata[b"synth"])
    return meta["report"]["gate"]["checks"]


def test_recompute_catches_train_copies_behind_a_passing_report(
    tmp_path, split, train_copies, passing_report, real_csvs
):
    export = _export(tmp_path / "synthetic", split, train_copies, passing_report)
    assert validate_export(export).passed  # the forged report alone looks fine
    train, holdout = real_csvs
    result = validate_export(export, real=train, holdout=holdout, target="churn")
    failed = {c.name: c.reason for c in result.failures()}
    assert "recompute.exact_copy_excess" in failed and "recompute.dcr_share" in failed
    assert failed["recompute.dcr_share"].startswith("dcr_share = ")
    assert "> max 0.600" in failed["recompute.dcr_share"]
    assert result.check("gate").passed
    assert "recompute.dcr_share: dcr_share = " in result.summary()


def test_recompute_uses_the_recorded_thresholds(tmp_path, split, passing_report, real_csvs):
    why = "stricter shape threshold tried, shortfall accepted"
    strict = apply_gate(
        passing_report["metrics"], Thresholds(column_shapes_min=0.999), override=True,
        override_reason=why,
    )  # fmt: skip
    assert strict.failures() and strict.failures()[0].startswith("column_shapes")
    export = _export(
        tmp_path / "synthetic", split, split.fresh, {**passing_report, "gate": strict.to_dict()}
    )
    train, holdout = real_csvs
    result = validate_export(export, real=train, holdout=holdout, target="churn")
    assert result.passed and result.override_reason == why
    recomputed = result.check("recompute.column_shapes")
    assert "< min 0.999" in recomputed.reason  # the recorded threshold, not the default 0.85
    assert recomputed.reason.endswith("(OVERRIDDEN, recorded)")
    assert "<= max 0.600" in result.check("recompute.dcr_share").reason


def test_recompute_measures_with_the_jobs_column_overrides_and_max_rows(tmp_path, split, real_csvs):
    """The lineage carries the job's `source.columns` and `evaluation.max_rows`, so the
    recomputed numbers are the report's own, not those of a re-inferred schema on 10,000 rows."""
    schema = infer_schema(split.train, "churn", {"tenure": ColumnOverride(kind="id")})
    assert schema.column("tenure").kind == "id" != split.schema.column("tenure").kind
    ev = evaluate_table(
        split.train, split.holdout, split.fresh, schema, Thresholds(), max_rows=400,
        progress=False,
    )  # fmt: skip
    job_lines = [c.line() for c in ev.gate.checks]
    lineage = Lineage.create(
        spec_hash="a" * 64, data_hash="b" * 64, model_hash="c" * 64, seed=0,
        modality="table", columns={"tenure": {"kind": "id"}}, evaluation_max_rows=400,
    ).to_dict()  # fmt: skip
    report = {**ev.to_dict(), "extra": {"lineage": lineage}}
    export = tmp_path / "synthetic"
    write_parquet_export([split.fresh], export, schema, {"lineage": lineage, "report": report})
    train, holdout = real_csvs

    result = validate_export(export, real=train, holdout=holdout, target="churn")
    assert result.passed, result.failures()
    assert [c.reason for c in result.checks if c.name.startswith("recompute.")] == job_lines

    default = evaluate_table(  # what ignoring the lineage would measure: other numbers
        split.train, split.holdout, split.fresh, split.schema, Thresholds(), progress=False
    )
    assert [c.line() for c in default.gate.checks] != job_lines


def test_every_format_open_export_accepts_has_one_handler():
    assert tuple(EXPORT_FORMATS) == FORMATS
    assert {f.name for f in EXPORT_FORMATS.values()} == set(FORMATS)
    assert [f.read_images is None for f in EXPORT_FORMATS.values()] == [True, False, False]


def test_recompute_needs_a_target_when_the_report_used_one(good_export, real_csvs):
    train, holdout = real_csvs
    with pytest.raises(InputDataError, match="--target"):
        validate_export(good_export, real=train, holdout=holdout)
    with pytest.raises(InputDataError, match="go together"):
        validate_export(good_export, real=train)


# --------------------------------------------------------------------------- DICOM


@pytest.fixture(scope="module")
def digits(torch_single_thread) -> dict[str, Any]:
    """Disjoint digits parts: train / holdout as class folders of PNGs, plus fresh and copies,
    and the real image gate's reports on fresh (passes) and on train copies (fails)."""
    from sklearn.datasets import load_digits

    from evaluation.images.evaluate import evaluate_images

    d = load_digits()
    pixels = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    x = (pixels / 255.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(x))
    parts = {"train": idx[:700], "holdout": idx[700:1000], "fresh": idx[1000:1300]}
    names = [str(k) for k in range(10)]
    ev = evaluate_images(
        x[parts["train"]], y[parts["train"]], x[parts["holdout"]], y[parts["holdout"]],
        x[parts["fresh"]], y[parts["fresh"]], ImageThresholds(), class_names=names,
        progress=False,
    )  # fmt: skip
    assert ev.gate.passed
    return {"x": x, "y": y, "pixels": pixels, "parts": parts, "names": names, "report": ev}


def _png_folder(root: Path, pixels: np.ndarray, labels: np.ndarray) -> Path:
    for i, (img, label) in enumerate(zip(pixels, labels, strict=True)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / str(label) / f"{i:04d}.png")
    return root


def _dicom_export(out: Path, digits: dict[str, Any], part: str) -> Path:
    from synth.export.dicom import ImageSource, write_dicom_export

    ids = digits["parts"][part][:120]
    report = _report(digits["report"], "image")
    write_dicom_export(
        digits["x"][ids],
        out,
        source=ImageSource("png", 8, False, "MONOCHROME2", None, (0.0, 255.0)),
        labels=digits["y"][ids],
        class_names=digits["names"],
        metadata={"lineage": report["extra"]["lineage"], "report": report},
    )
    return out


def test_dicom_export_intact_passes_and_tampered_fails(tmp_path, digits):
    export = _dicom_export(tmp_path / "dicom", digits, "fresh")
    result = validate_export(export)
    assert result.passed, result.failures()
    assert result.format == "dicom"
    assert "120 DICOM file(s)" in result.check("schema").reason
    assert "(8x8)" in result.check("schema").reason

    _flip_byte(export / "syn-00003.dcm")
    result = validate_export(export)
    assert "syn-00003.dcm" in result.check("checksums").reason
    assert not result.check("checksums").passed


def test_dicom_with_another_sop_class_fails_schema(tmp_path, digits):
    export = _dicom_export(tmp_path / "dicom", digits, "fresh")
    ds = pydicom.dcmread(export / "syn-00007.dcm")
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    ds.save_as(export / "syn-00007.dcm")
    _rehash(export, "syn-00007.dcm")
    result = validate_export(export)
    assert _only_failure(result) == "schema"
    assert "syn-00007.dcm: SOPClassUID" in result.check("schema").reason


def test_image_recompute_passes_fresh_dicom_and_catches_png_parquet_train_copies(tmp_path, digits):
    from synth.export.image_parquet import write_image_parquet_export

    train_ids, holdout_ids = digits["parts"]["train"], digits["parts"]["holdout"]
    real = _png_folder(tmp_path / "train", digits["pixels"][train_ids], digits["y"][train_ids])
    held = _png_folder(
        tmp_path / "holdout", digits["pixels"][holdout_ids], digits["y"][holdout_ids]
    )

    fresh = _dicom_export(tmp_path / "fresh", digits, "fresh")
    result = validate_export(fresh, real=real, holdout=held)
    assert result.passed, result.failures()
    assert result.check("recompute.cas_ratio").reason.startswith("cas_ratio = ")

    ids = train_ids[:120]  # copies of training images, behind the fresh set's passing report
    report = _report(digits["report"], "image")
    copies = tmp_path / "copies"
    write_image_parquet_export(
        digits["x"][ids],
        copies,
        labels=digits["y"][ids],
        class_names=digits["names"],
        metadata={"lineage": report["extra"]["lineage"], "report": report},
        rows_per_file=50,
    )
    assert validate_export(copies).passed  # intact, and the report says passed
    result = validate_export(copies, real=real, holdout=held)
    assert result.format == "image-parquet"
    failed = {c.name: c.reason for c in result.failures()}
    assert "recompute.near_duplicate_share" in failed
    assert failed["recompute.nn_distance_ratio"].startswith("nn_distance_ratio = 0.000 < min")
    assert result.check("recompute.fid").passed  # copies look real: only privacy catches them


# --------------------------------------------------------------------------- JUnit and CLI


def test_junit_has_one_case_per_check_and_the_failures(good_copy: Path, tmp_path: Path):
    _flip_byte(good_copy / "part-00000.parquet")
    result = validate_export(good_copy)
    path = write_junit(result, tmp_path / "ci" / "validate.xml")

    xml = JUnitXml.fromfile(str(path))
    suites = list(xml) if xml._tag == "testsuites" else [xml]
    assert [s.name for s in suites] == [SUITE]
    cases = list(suites[0])
    assert [c.name for c in cases] == [c.name for c in result.checks]
    failed = {c.name: c.result[0].message for c in cases if not c.is_passed}
    assert failed == {c.name: c.reason for c in result.failures()}
    assert "part-00000.parquet" in failed["checksums"]

    root = ET.parse(path).getroot()  # an independent reader
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert int(suite.get("tests")) == len(result.checks) == 5
    assert int(suite.get("failures")) == len(result.failures())


def test_cli_exit_codes(good_copy: Path, tmp_path: Path):
    junit = tmp_path / "validate.xml"
    r = runner.invoke(app, ["validate", str(good_copy), "--junit", str(junit)])
    assert r.exit_code == 0, r.output
    assert "validate: PASSED" in r.output and "checksums" in r.output
    assert len(list(JUnitXml.fromfile(str(junit)))) >= 1

    _flip_byte(good_copy / "part-00001.parquet")
    r = runner.invoke(app, ["validate", str(good_copy), "--junit", str(junit)])
    assert r.exit_code == EXIT_GATE_FAILED, r.output
    text = " ".join(r.output.split())
    assert "validate: FAILED (checksums: " in text and "part-00001.parquet" in text
    # the flipped byte may also leave the file unreadable (schema, gate): checksums name it
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = list(suite.iter("testcase"))
    failed = {case.get("name") for case in cases if case.find("failure") is not None}
    assert "checksums" in failed and int(suite.get("failures")) == len(failed)

    r = runner.invoke(app, ["validate", str(tmp_path / "nope"), "--junit", str(junit)])
    assert r.exit_code == EXIT_BAD_INPUT and "does not exist" in " ".join(r.output.split())
    suite = ET.parse(junit).getroot()  # bad input still leaves a report naming the reason
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("1", "1", "0")
    assert "does not exist" in suite.find("testcase/error").get("message")
    r = runner.invoke(app, ["validate", str(good_copy), "--real", str(junit)])
    assert r.exit_code == EXIT_BAD_INPUT and "--holdout" in r.output


def test_cli_recompute_fails_naming_the_metric(tmp_path, split, train_copies, passing_report,
                                               real_csvs):  # fmt: skip
    export = _export(tmp_path / "synthetic", split, train_copies, passing_report)
    train, holdout = real_csvs
    args = ["validate", str(export), "--real", str(train), "--holdout", str(holdout)]
    r = runner.invoke(app, [*args, "--target", "churn"])
    assert r.exit_code == EXIT_GATE_FAILED, r.output
    assert "recompute.dcr_share" in r.output
    r = runner.invoke(app, args)  # the report measured TSTR: the target must be named
    assert r.exit_code == EXIT_BAD_INPUT and "--target" in r.output


# --------------------------------------------------------------------------- demo split, CI


def test_write_demo_split_writes_the_stored_split(tmp_path: Path, split: ChurnSplit):
    data = tmp_path / "demo-data" / "wa_churn.csv"
    data.parent.mkdir()
    split.fresh.iloc[:200].to_csv(data, index=False)
    train_idx, holdout_idx = (
        np.arange(0, 200, 3),
        np.setdiff1d(np.arange(200), np.arange(0, 200, 3)),
    )
    out = tmp_path / "demo"
    save_split(out / ".work" / "split.json", train_idx, holdout_idx, file_sha256(data))

    train_csv, holdout_csv = write_demo_split(out, data)
    assert (train_csv.name, holdout_csv.name) == ("train.csv", "holdout.csv")
    assert train_csv.parent == data.parent
    whole = pd.read_csv(data)
    pd.testing.assert_frame_equal(
        pd.read_csv(train_csv), whole.iloc[train_idx].reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(holdout_csv), whole.iloc[holdout_idx].reset_index(drop=True)
    )
    data.write_text(data.read_text() + data.read_text().splitlines()[1] + "\n")
    with pytest.raises(InputDataError, match="different data"):
        write_demo_split(out, data)


@pytest.mark.parametrize(
    "name", ["github-actions-validate-export.yml", "gitlab-ci-validate-export.yml"]
)
def test_example_ci_workflows_are_valid_yaml_calling_validate(name: str):
    text = (ROOT / "configs" / "ci" / name).read_text()
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict) and doc
    if name.startswith("github"):
        steps = doc["jobs"]["validate"]["steps"]
        assert any("actions/checkout" in str(s.get("uses")) for s in steps)
        assert any("publish-unit-test-result" in str(s.get("uses")) for s in steps)
        commands = [line for s in steps for line in str(s.get("run", "")).splitlines()]
    else:
        job = next(v for v in doc.values() if isinstance(v, dict) and "script" in v)
        assert job["artifacts"]["reports"]["junit"] == "validate.xml"
        commands = job["script"]
    assert any("torch==2.13.0" in c for c in commands)
    validate = [c for c in commands if c.startswith("synth validate ")]
    assert validate and all("--junit validate.xml" in c for c in validate)


def test_ci_script_validates_the_demo_export():
    text = (ROOT / ".ci" / "run").read_text()
    assert "--write-split" in text
    assert "synth validate" in text and "--junit" in text and "--holdout" in text


def test_write_split_is_for_the_table_demo_only(tmp_path: Path):
    out = tmp_path / "demo-images"
    r = runner.invoke(
        app, ["demo", "--modality", "image", "--write-split", "--out", str(out), "--no-progress"]
    )
    assert r.exit_code == EXIT_BAD_INPUT and "table demo only" in r.output
    assert not tmp_path.joinpath("demo-data").exists() and not out.exists()
