"""The image job end to end: digits as DICOM files -> flow -> valid, identifier-free DICOM."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from prefect.testing.utilities import prefect_test_harness
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from flows.synthesize import synthesize
from synth.config import build_spec
from synth.export.dicom import validate_with_dciodvfy
from synth.images.demo import write_digits_dicom
from synth_cli.main import EXIT_GATE_FAILED, app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_image_flow_exports_valid_dicom_without_source_identifiers(harness, tmp_path):
    source = write_digits_dicom(tmp_path / "digits", resolution=8)
    out = tmp_path / "out"
    spec = build_spec(
        {
            "name": "image-flow-test",
            "source": {"path": str(source), "modality": "image", "images": {"resolution": 8}},
            "image_model": {"block_out_channels": [16, 32]},
            "training": {"steps": 120},
            "sampling": {"rows": 60, "num_inference_steps": 10},
            "evaluation": {
                "image_thresholds": {
                    "fid_max": 1e6,
                    "precision_min": 0.0,
                    "recall_min": 0.0,
                    "cas_ratio_min": 0.0,
                }
            },
            "export": {"out": str(out)},
        }
    )
    state = synthesize(spec, progress=False, return_state=True)
    assert state.is_completed(), state.message
    files = sorted((out / "synthetic").glob("*.dcm"))
    assert len(files) == 60
    assert (out / "report.json").is_file() and (out / "report.html").is_file()

    errors = {f.name: validate_with_dciodvfy(f) for f in files[:15]}
    assert not any(errors.values()), errors
    dump = subprocess.run(["dcmdump", str(files[0])], capture_output=True, text=True)
    assert dump.returncode == 0 and "SYN" in dump.stdout

    ds = pydicom.dcmread(files[0])
    assert ds.ConversionType == "SYN" and ds.PatientIdentityRemoved == "YES"
    assert ds.BitsStored == 8 and ds.PhotometricInterpretation == "MONOCHROME2"
    assert ds.ImageComments.startswith("label=")

    # No identifier from any source file may appear in any output byte.
    src = [pydicom.dcmread(p) for p in sorted(Path(source).rglob("*.dcm"))[:50]]
    markers = {str(src[0].PatientName), str(src[0].PatientID)}
    for d in src:
        markers |= {d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID}
    for f in [*files, out / "synthetic" / "_manifest.json"]:
        data = f.read_bytes()
        leaked = [m for m in markers if m.encode() in data]
        assert not leaked, (f.name, leaked)


def _png_folder(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / str(label) / f"{i}.png")
    return folder


def test_evaluate_image_sets_passes_fresh_and_fails_planted_copies(tmp_path):
    d = load_digits()
    images, labels = d.images / 16.0, d.target
    order = np.random.default_rng(0).permutation(len(images))
    train, holdout, fresh = order[:900], order[900:1350], order[1350:]
    real = _png_folder(tmp_path / "train", images[train], labels[train])
    hold = _png_folder(tmp_path / "holdout", images[holdout], labels[holdout])
    good = _png_folder(tmp_path / "fresh", images[fresh], labels[fresh])
    planted = np.concatenate([fresh[:300], train[:150]])
    leaky = _png_folder(tmp_path / "leaky", images[planted], labels[planted])
    runner = CliRunner()
    base = [
        "evaluate",
        "--modality",
        "image",
        "--resolution",
        "8",
        "--real",
        str(real),
        "--holdout",
        str(hold),
        "--no-progress",
    ]
    ok = runner.invoke(app, [*base, "--synthetic", str(good), "--out", str(tmp_path / "r1")])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, [*base, "--synthetic", str(leaky), "--out", str(tmp_path / "r2")])
    assert bad.exit_code == EXIT_GATE_FAILED, bad.output
    assert "near_duplicate_share" in " ".join(bad.output.split())


def test_cli_image_job_from_png_folder_exports_png_parquet(harness, tmp_path):
    import duckdb

    from synth.export.parquet import read_export_metadata
    from synth.images.demo import write_digits_png

    source = write_digits_png(tmp_path / "png", resolution=8)
    out = tmp_path / "out"
    loose = [
        f"evaluation.image_thresholds.{k}"
        for k in ("precision_min=0", "recall_min=0", "cas_ratio_min=0", "fid_max=1000000")
    ]
    args = [
        "run",
        "--data",
        str(source),
        "--modality",
        "image",
        "--rows",
        "40",
        "--out",
        str(out),
        "--train-steps",
        "40",
        "--no-progress",
        "--set",
        "image_model.block_out_channels=[16, 32]",
        "--set",
        "source.images.resolution=8",
    ]
    for item in loose:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    glob = str(out / "synthetic" / "*.parquet")
    rows = duckdb.sql(f"select label, image from read_parquet('{glob}')").fetchall()
    assert len(rows) == 40
    assert {r[0] for r in rows} <= {str(i) for i in range(10)}
    png = rows[0][1]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.asarray(Image.open(io.BytesIO(png))).shape == (8, 8)
    meta = read_export_metadata(out / "synthetic")
    assert meta["report"]["gate"]["passed"] is True and meta["lineage"]["modality"] == "image"
