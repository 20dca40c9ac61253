"""DP jobs end to end, through real Prefect: a table and a DICOM set with several images per
patient train under DP, export, and carry the same DP figures in report.json, the Parquet
metadata, the DICOM manifest and `synth validate`; budgets and gates that cannot be met stop
before training."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from evaluation.gate import apply_gate
from jobs.paths import JobPaths
from jobs.request import _check_stricter
from synth.config import ImageSourceSpec, ImageThresholds, Thresholds
from synth.data.split import load_split
from synth.errors import ConfigError
from synth.images.demo import write_digits_dicom
from synth.images.io import load_images
from synth_cli.main import EXIT_BAD_INPUT, app

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _run(*args: str):
    return runner.invoke(app, ["run", *args, "--no-progress"])


def test_a_dp_table_job_exports_and_every_record_states_the_same_figures(
    harness, churn_csv, tmp_path
):
    out = tmp_path / "dp-table"
    result = _run(
        "--data", str(churn_csv), "--target", "churn", "--rows", "1200", "--out", str(out),
        "--set", "privacy.dp.epsilon=3", "--set", "training.steps=40",
        "--set", "model.hidden_dims=[64, 64]",
        "--set", "evaluation.override_gate=true",
        "--set", "evaluation.override_reason=tiny DP budget in a test",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    dp = report["extra"]["dp"]
    assert dp["unit"] == "row" and dp["accountant"] == "prv" and dp["steps"] == 40
    assert dp["epsilon"] <= 3.0 + 1e-9 and dp["delta"] <= 1 / (10 * 4930)
    assert dp["epsilon"] == pytest.approx(dp["epsilon_preprocessing"] + dp["epsilon_training"])
    assert dp["preprocessing"] == "estimated" and "tenure" in dp["estimated"]
    page = (out / "report.html").read_text()
    assert "<h2>Differential privacy</h2>" in page and f"{dp['epsilon']:.4g}" in page
    # the Parquet files carry the same figures, read by pyarrow alone
    part = sorted((out / "synthetic").glob("*.parquet"))[0]
    meta = json.loads(pq.read_schema(part).metadata[b"synth"])
    assert meta["dp"] == dp
    validated = runner.invoke(app, ["validate", str(out / "synthetic")])
    assert validated.exit_code == 0, validated.output
    text = " ".join(validated.output.split())
    assert f"epsilon {dp['epsilon']:.3f}" in text and "prv accountant" in text
    # a tampered figure is caught
    tampered = {**meta, "dp": {**dp, "epsilon_training": dp["epsilon_training"] / 2}}
    from evaluation.validate import check_dp

    assert not check_dp(tampered).passed


def test_a_dp_dicom_job_splits_by_patient_and_states_its_figures(harness, tmp_path):
    """Four images per (made-up) patient: the split keeps each patient on one side, DP
    samples patients, and the DICOM manifest carries the figures, per patient."""
    source = write_digits_dicom(tmp_path / "digits", resolution=8, images_per_patient=4)
    out = tmp_path / "dp-images"
    result = _run(
        "--data", str(source), "--modality", "image", "--rows", "40", "--out", str(out),
        "--set", "source.images.resolution=8", "--set", "privacy.dp.epsilon=8",
        "--set", "image_model.block_out_channels=[16, 32]", "--set", "training.steps=20",
        "--set", "training.batch_size=128", "--set", "privacy.dp.noise_multiplicity=2",
        "--set", "evaluation.override_gate=true", "--set", "evaluation.override_reason=test",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "synthetic" / "_manifest.json").read_text())
    dp = json.loads((out / "report.json").read_text())["extra"]["dp"]
    assert json.dumps(dp, sort_keys=True) in json.dumps(manifest, sort_keys=True)
    assert dp["unit"] == "PatientID" and dp["n_units"] < 1797 * 0.75 / 3
    images = load_images(source, ImageSourceSpec(resolution=8), unit="auto")
    assert images.units.max() + 1 == 450  # 1,797 images of 450 patients
    from synth.images.io import image_set_hash

    train, holdout = load_split(JobPaths(out).split, image_set_hash(source))
    assert set(images.units[train]).isdisjoint(images.units[holdout])
    validated = runner.invoke(app, ["validate", str(out / "synthetic")])
    assert validated.exit_code == 0 and "PatientID" in " ".join(validated.output.split())


def test_a_budget_that_cannot_cover_the_training_fails_before_training(churn_csv, tmp_path):
    out = tmp_path / "too-small"
    result = _run(
        "--data", str(churn_csv), "--target", "churn", "--out", str(out),
        "--set", "privacy.dp.epsilon=0.001", "--set", "training.steps=20000",
    )  # fmt: skip
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "raise privacy.dp.epsilon" in " ".join(result.output.split())
    assert not (out / "model").exists()


def test_a_gate_that_requires_dp_refuses_a_job_without_it_before_training(churn_csv, tmp_path):
    out = tmp_path / "needs-dp"
    result = _run(
        "--data", str(churn_csv), "--out", str(out),
        "--set", "evaluation.thresholds.require_dp=true",
    )  # fmt: skip
    assert result.exit_code == EXIT_BAD_INPUT
    assert "set privacy.dp.epsilon" in " ".join(result.output.split())
    assert not (out / "model").exists()


@pytest.mark.parametrize("thresholds", [Thresholds, ImageThresholds])
def test_the_gate_fails_a_run_without_dp_or_above_the_cap_with_its_numbers(thresholds):
    strict = thresholds(require_dp=True, epsilon_max=2.0)
    metrics = {name.rpartition("_")[0]: None for name in strict.model_dump()}
    failed = apply_gate(metrics, strict, dp=None)
    assert not failed.passed
    assert failed.failures() == ["dp = 0.000 < min 1.000", "epsilon unbounded (no DP) > max 2.000"]
    over = apply_gate(metrics, strict, dp={"epsilon": 3.0})
    assert over.failures() == ["epsilon = 3.000 > max 2.000"]
    assert apply_gate(metrics, strict, dp={"epsilon": 1.5}).passed
    assert apply_gate(metrics, thresholds(), dp=None).passed  # neither asked: no DP check


def test_a_request_may_require_dp_and_lower_the_cap_but_never_loosen_them():
    _check_stricter({"require_dp": True, "epsilon_max": 5.0}, Thresholds())
    _check_stricter({"epsilon_max": 2.0}, Thresholds(epsilon_max=3.0))
    with pytest.raises(ConfigError, match="looser"):
        _check_stricter({"epsilon_max": 4.0}, Thresholds(epsilon_max=3.0))
    with pytest.raises(ConfigError, match="looser"):
        _check_stricter({"require_dp": False}, Thresholds(require_dp=True))


def test_a_split_by_person_column_names_rows_not_values(tmp_path):
    """A table whose unit column has a blank cell is refused, naming the column and row."""
    import pandas as pd

    table = pd.DataFrame({"who": ["p1", "p2", None] * 40, "x": np.arange(120) % 7})
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    result = _run("--data", str(path), "--out", str(tmp_path / "o"), "--set", "privacy.unit=who")
    assert result.exit_code == EXIT_BAD_INPUT
    line = " ".join(result.output.split())
    assert "column 'who', row 3" in line and "p1" not in line
