"""The fail-fast `check` step: every limit a later step would hit fails before training, with
one error line, and (through the CLI's preflight) nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobs.paths import JobPaths
from jobs.preflight import preflight
from jobs.registry import MODALITIES
from synth.config import build_spec
from synth.errors import InputDataError
from synth.export.dicom import check_dicom_export
from synth.images.demo import write_digits_dicom
from synth.images.io import ImageSourceInfo
from synth_cli.main import EXIT_BAD_INPUT, app

LOW_SPLIT = ["--set", "split.min_train_rows=2", "--set", "split.min_holdout_rows=2"]


@pytest.fixture(scope="module")
def forty_digits(tmp_path_factory) -> Path:
    """40 DICOM files, 4 per digit: a small real image set."""
    base = tmp_path_factory.mktemp("digits")
    full = write_digits_dicom(base / "all", resolution=8)
    small = base / "forty"
    for digit in sorted(p for p in Path(full).iterdir() if p.is_dir()):
        (small / digit.name).mkdir(parents=True)
        for f in sorted(digit.glob("*.dcm"))[:4]:
            shutil.copy(f, small / digit.name / f.name)
    return small


def _run(*args: str):
    return CliRunner().invoke(app, ["run", *args, "--no-progress"])


def _one_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_too_few_train_images_fail_before_training(forty_digits, tmp_path):
    out = tmp_path / "out"
    result = _run(
        "--data", str(forty_digits), "--modality", "image", "--out", str(out),
        *LOW_SPLIT, "--set", "split.holdout_fraction=0.8",
    )  # fmt: skip
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "train has 8 images; need at least 10 to evaluate" in _one_line(result)
    assert not out.exists()  # nothing written: no schema, split, model or staging


def test_too_few_synthetic_images_fail_before_training(forty_digits, tmp_path):
    out = tmp_path / "out"
    result = _run(
        "--data", str(forty_digits), "--modality", "image", "--rows", "8", "--out", str(out),
        *LOW_SPLIT,
    )  # fmt: skip
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "synthetic has 8 images; need at least 10 to evaluate" in _one_line(result)
    assert not out.exists()


def test_a_missing_feature_checkpoint_fails_before_training(forty_digits, tmp_path):
    out = tmp_path / "out"
    result = _run(
        "--data", str(forty_digits), "--modality", "image", "--out", str(out), *LOW_SPLIT,
        "--set", f"evaluation.feature_checkpoint={tmp_path / 'inception.pt'}",
    )  # fmt: skip
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "feature checkpoint" in _one_line(result) and "is not a local file" in result.output
    assert not out.exists()


def test_image_conditions_name_classes(forty_digits, tmp_path):
    spec = build_spec(
        {"source": {"path": str(forty_digits), "modality": "image", "images": {"resolution": 8}}},
        {
            "split.min_train_rows": 2,
            "split.min_holdout_rows": 2,
            "sampling.conditions": {"3": 10, "eleven": 5},
            "export.out": str(tmp_path / "out"),
        },
    )
    with pytest.raises(InputDataError, match="condition label 'eleven' is not a class") as err:
        preflight(spec)
    assert "'3'" not in str(err.value)  # the classes are data: counted, never listed
    # 40 digits: every class has fewer than k = 5 training images, so none may be asked for
    protected = spec.model_copy(
        update={"sampling": spec.sampling.model_copy(update={"conditions": {"3": 10}})}
    )
    with pytest.raises(InputDataError, match="protected class: fewer than 5 training images"):
        preflight(protected)
    unconditional = spec.model_copy(
        update={"image_model": spec.image_model.model_copy(update={"conditional": False})}
    )
    with pytest.raises(InputDataError, match="conditions need labelled training images"):
        preflight(unconditional)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sampling.rows": 2}, "synthetic has 2 rows; the detection check needs at least 3"),
        (
            {"sampling.conditions": {"Yes": 5, "Maybe": 5}},
            "'Maybe' is not a class of the target \\(2 classes\\)",
        ),
        (
            {"sampling.conditions": {"Yes": 5}, "model.conditional": False},
            "conditions need a categorical target that the model was conditioned on",
        ),
        ({"sampling.conditions": {"Yes": 0}}, "ask for no rows"),
    ],
)
def test_table_limits_fail_in_the_check_step(churn_csv, tmp_path, overrides, message):
    """Run as the flow does (load, split, then check), and as the CLI does (preflight)."""
    spec = build_spec(
        {"source": {"path": str(churn_csv), "target": "churn"}},
        {**overrides, "export.out": str(tmp_path / "job")},
    )
    steps = MODALITIES["table"]
    paths = JobPaths(tmp_path / "job")
    source = steps.load(spec, paths)
    split_path = steps.split(spec, paths, source)
    with pytest.raises(Exception, match=message):
        steps.check(spec, paths, source, split_path)
    assert not paths.model.exists()  # the check comes before any training

    with pytest.raises(Exception, match=message):
        preflight(spec.model_copy(update={"export": spec.export.model_copy(
            update={"out": tmp_path / "fresh"})}))  # fmt: skip
    assert not (tmp_path / "fresh").exists()


def test_table_cli_refuses_too_few_rows_before_a_server_starts(churn_csv, tmp_path):
    out = tmp_path / "out"
    result = _run("--data", str(churn_csv), "--target", "churn", "--rows", "2", "--out", str(out))
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "synthetic has 2 rows; the detection check needs at least 3" in _one_line(result)
    assert not out.exists()


def test_dicom_export_settings_are_checked_up_front():
    source = ImageSourceInfo("dicom", 8, False, "MONOCHROME2", None, (0.0, 255.0), 10, 0)
    check_dicom_export(source, 1, ["0", "1"])  # fine
    with pytest.raises(InputDataError, match="needs 1 channel"):
        check_dicom_export(source, 3, ["0", "1"])
    with pytest.raises(InputDataError, match="longer than"):
        check_dicom_export(source, 1, ["x" * 20_000])
    bad = ImageSourceInfo("dicom", 12, False, "MONOCHROME2", None, (0.0, 255.0), 10, 0)
    with pytest.raises(InputDataError, match="cannot be written back as DICOM"):
        check_dicom_export(bad, 1, None)


def test_table_conditions_cannot_ask_for_a_protected_class(tmp_path):
    """Wine with a target class held by 3 rows (k = 5): asking for it fails before training,
    as an unknown label does; the common classes may be asked for."""
    import numpy as np
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame
    wine["grade"] = np.array(["a", "b", "c"])[wine.pop("target")]
    wine.loc[[0, 1, 2, 60, 61], "grade"] = "z"  # 5 rows in all: about 3 land in training
    csv = tmp_path / "wine.csv"
    wine.to_csv(csv, index=False)

    def spec(conditions):
        return build_spec(
            {"source": {"path": str(csv), "target": "grade"}},
            {"sampling.conditions": conditions, "export.out": str(tmp_path / "out")},
        )

    with pytest.raises(InputDataError, match="protected class: fewer than 5 training rows"):
        preflight(spec({"a": 10, "z": 2}))
    with pytest.raises(InputDataError, match="'w' is not a class"):
        preflight(spec({"w": 20}))
    preflight(spec({"a": 10, "c": 2}))
    assert not (tmp_path / "out").exists()
