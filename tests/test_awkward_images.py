"""Awkward image sets (issue 10): real images, changed to show one case, either load as the
settings say or end `synth run` with exit 2 and one line naming the file or the setting (never
a value, never a patient identifier), before any training, with nothing written (the CLI's
preflight runs load, split and check in a scratch folder)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from jobs.image import ImageSteps
from jobs.paths import JobPaths
from jobs.preflight import preflight
from synth.config import ImageSourceSpec, build_spec
from synth.errors import ConfigError, InputDataError, SynthWarning
from synth.images.demo import write_digits_dicom
from synth.images.io import load_images
from synth_cli.main import EXIT_BAD_INPUT, app

LOW_SPLIT = ["--set", "split.min_train_rows=2", "--set", "split.min_holdout_rows=2"]


def _testfile(name: str) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a missing file warns about its download first
        path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not in this pydicom / pydicom-data install")
    return Path(path)


def _identifiers(name: str) -> list[str]:
    """The test file's own patient identifiers, which no message may quote."""
    ds = pydicom.dcmread(_testfile(name))
    values = [str(ds.get(k) or "") for k in ("PatientName", "PatientID", "AccessionNumber")]
    return [v for v in values if len(v.strip()) >= 3]


def _refused(data: Path, out: Path, *args: str) -> str:
    """Run `synth run` on an image folder; assert exit 2, one output line and no `out`."""
    result = CliRunner().invoke(
        app,
        ["run", "--data", str(data), "--modality", "image", "--out", str(out), "--no-progress"]
        + [*LOW_SPLIT, *args],
    )
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing written
    return lines[0]


@pytest.fixture(scope="module")
def digits_dicom(tmp_path_factory) -> Path:
    """40 real 8-bit unsigned DICOM files (sklearn digits, 4 per digit), 8x8."""
    base = tmp_path_factory.mktemp("digits")
    full = write_digits_dicom(base / "all", resolution=8)
    small = base / "forty"
    for digit in sorted(p for p in full.iterdir() if p.is_dir()):
        (small / digit.name).mkdir(parents=True)
        for f in sorted(digit.glob("*.dcm"))[:4]:
            shutil.copy(f, small / digit.name / f.name)
    return small


def _ct_folder(root: Path, n: int = 12) -> Path:
    """`n` copies of pydicom's CT_small.dcm (16-bit signed CT) in root/ct."""
    (root / "ct").mkdir(parents=True)
    for i in range(n):
        shutil.copy(_testfile("CT_small.dcm"), root / "ct" / f"ct{i:02d}.dcm")
    return root


# ---- a DICOM file cut before its Pixel Data ------------------------------------------------


def _cut_before_pixel_data(src: Path, dst: Path) -> None:
    raw = src.read_bytes()
    at = raw.rfind(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data, little endian
    assert at > 0
    dst.write_bytes(raw[:at])


def test_a_dicom_cut_before_pixel_data_is_named_as_truncated(tmp_path: Path) -> None:
    data = _ct_folder(tmp_path / "set")
    _cut_before_pixel_data(_testfile("CT_small.dcm"), data / "ct" / "cut.dcm")
    line = _refused(data, tmp_path / "out")
    assert "DICOM file 'ct/cut.dcm'" in line and "truncated or has no pixel data" in line
    assert "not an image object" not in line
    for value in _identifiers("CT_small.dcm"):
        assert value not in line
    # skip_unreadable skips it, with one warning naming it, and keeps the others.
    with pytest.warns(UserWarning, match="'ct/cut.dcm' cannot be decoded .*truncated"):
        s = load_images(data, ImageSourceSpec(skip_unreadable=True))
    assert (s.source.n_files, s.source.n_skipped) == (12, 1)


def test_a_dicom_without_pixels_that_is_no_image_is_still_named_so(tmp_path: Path) -> None:
    data = _ct_folder(tmp_path / "set")
    shutil.copy(_testfile("rtplan.dcm"), data / "ct" / "plan.dcm")  # RT Plan: no image
    with pytest.raises(InputDataError, match="'ct/plan.dcm' is not an image object"):
        load_images(data, ImageSourceSpec())


# ---- images of mixed sizes -----------------------------------------------------------------


def _digits_png(root: Path, n: int, odd: int, odd_size: tuple[int, int]) -> Path:
    """`n` sklearn digits as 8-bit PNGs in class folders: 32x32, except `odd` of them."""
    digits = load_digits()
    for i in range(n):
        img = Image.fromarray((digits.images[i] * (255 / 16)).astype(np.uint8))
        size = odd_size if i % (n // odd) == 0 and i // (n // odd) < odd else (32, 32)
        folder = root / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        img.resize(size, Image.Resampling.NEAREST).save(folder / f"{i:03d}.png")
    return root


def _synth_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, SynthWarning)]


def test_mixed_sizes_are_resized_and_counted_in_one_warning(tmp_path: Path) -> None:
    data = _digits_png(tmp_path / "png", n=80, odd=12, odd_size=(48, 40))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = load_images(data, ImageSourceSpec(resolution=32))
    assert _synth_warnings(caught) == [
        "12 of 80 images were not 32x32 and were resized to 32x32 (the set has 2 sizes; "
        "source.images.resolution and fit choose how)"
    ]
    assert s.images.shape == (80, 1, 32, 32) and s.source.n_resized == 12
    assert len(s.class_names) == 10
    # Once per set in a process: the job's steps read the set again, without a new warning.
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        assert load_images(data, ImageSourceSpec(resolution=32)).source.n_resized == 12
    assert _synth_warnings(again) == []


def test_mixed_sizes_warn_once_through_the_preflight(tmp_path: Path) -> None:
    """The job's load step records the count in its summary (the run log's "loaded" line)."""
    data = _digits_png(tmp_path / "png", n=80, odd=12, odd_size=(48, 40))
    spec = build_spec(
        {
            "source": {"path": str(data), "modality": "image", "images": {"fit": "center_crop"}},
            "split": {"min_train_rows": 2, "min_holdout_rows": 2},
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        preflight(spec)  # load, split and check read the set three times
    assert _synth_warnings(caught) == [
        "12 of 80 images were not 32x32 and were cropped to a centred square and resized to "
        "32x32 (the set has 2 sizes; source.images.resolution and fit choose how)"
    ]
    loaded = ImageSteps().load(spec, JobPaths(tmp_path / "job"))
    assert loaded.summary == "80 images, 10 classes, 12 resized to 32x32"


def test_mixed_sizes_print_one_warning_line_on_the_command_line(tmp_path: Path) -> None:
    """Through `synth run`: one `warning:` line however often the steps read the set (here the
    preflight then stops on too few synthetic rows, so nothing trains)."""
    data = _digits_png(tmp_path / "png", n=80, odd=12, odd_size=(48, 40))
    out = tmp_path / "out"
    proc = subprocess.run(  # as a user runs it: pytest's warning capture would hide the line
        [sys.executable, "-m", "synth_cli", "run", "--data", str(data), "--modality", "image",
         "--out", str(out), "--no-progress", *LOW_SPLIT, "--rows", "8"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert [x for x in (proc.stdout + proc.stderr).splitlines() if x.strip()] == [
        "warning: 12 of 80 images were not 32x32 and were resized to 32x32 (the set has 2 "
        "sizes; source.images.resolution and fit choose how)",
        "error: synthetic has 8 images; need at least 10 to evaluate",
    ]
    assert not out.exists()


def test_one_size_throughout_is_scaled_without_a_warning(tmp_path: Path) -> None:
    data = _digits_png(tmp_path / "png", n=20, odd=20, odd_size=(16, 16))  # all 16x16
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = load_images(data, ImageSourceSpec(resolution=32))
    assert _synth_warnings(caught) == [] and s.source.n_resized == 0
    assert s.images.shape == (20, 1, 32, 32)


def test_dicom_of_mixed_sizes_are_counted(tmp_path: Path) -> None:
    root = tmp_path / "set"
    root.mkdir()
    shutil.copy(_testfile("CT_small.dcm"), root / "ct.dcm")  # 128x128, 16-bit signed
    shutil.copy(_testfile("MR_small.dcm"), root / "mr.dcm")  # 64x64, 16-bit signed
    with pytest.warns(SynthWarning, match="^1 of 2 images were not 64x64 and were resized"):
        s = load_images(root, ImageSourceSpec(resolution=64))
    assert s.images.shape == (2, 1, 64, 64) and s.source.n_resized == 1


# ---- 16-bit signed CT beside 8-bit images --------------------------------------------------


def test_16_bit_signed_ct_mixed_with_8_bit_images_is_refused(
    tmp_path: Path, digits_dicom: Path
) -> None:
    data = tmp_path / "set"
    shutil.copytree(digits_dicom, data)
    _ct_folder(data, n=3)
    line = _refused(data, tmp_path / "out")
    assert line == (
        "error: the DICOM folder mixes bit depths / pixel representations (40 files 8-bit "
        "unsigned, e.g. '0/0000.dcm'; 3 files 16-bit signed, e.g. 'ct/ct00.dcm'): keep one "
        "kind per image set (move the others to their own folder)"
    ), line
    for value in _identifiers("CT_small.dcm"):
        assert value not in line
    # Each depth on its own loads; signed and unsigned of one depth share units once rescaled.
    shutil.copy(_testfile("emri_small.dcm"), data / "ct" / "mr.dcm")  # 16-bit unsigned
    with pytest.warns(SynthWarning, match="resized"):  # 128x128 CT beside 64x64 MR
        assert load_images(data / "ct", ImageSourceSpec()).source.signed is True
    assert load_images(digits_dicom, ImageSourceSpec()).source.bits_stored == 8


def test_8_bit_colour_beside_8_bit_grayscale_is_one_kind(
    tmp_path: Path, digits_dicom: Path
) -> None:
    data = tmp_path / "set"
    shutil.copytree(digits_dicom / "0", data / "0")
    (data / "rgb").mkdir()
    shutil.copy(_testfile("SC_rgb.dcm"), data / "rgb" / "rgb.dcm")
    with pytest.warns(SynthWarning, match="^5 of 5 images were not 16x16"):  # 8x8, 100x100
        s = load_images(data, ImageSourceSpec(resolution=16))
    assert s.images.shape == (5, 3, 16, 16)
    assert (s.source.bits_stored, s.source.signed, s.source.photometric) == (8, False, "RGB")


# ---- an identifying label attribute --------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "why"),
    [
        ("PatientID", "it identifies a patient"),
        ("StudyInstanceUID", "it identifies a patient"),
        ("PatientBirthDate", "it identifies a patient"),
        ("AcquisitionDate", "it holds a date"),
        ("OperatorsName", "it identifies a patient"),
        ("ConsultingPhysicianName", "it holds a person's name"),
    ],
)
def test_an_identifying_label_attribute_is_refused(tmp_path: Path, keyword, why) -> None:
    data = _ct_folder(tmp_path / "set", n=4)
    line = _refused(
        data,
        tmp_path / "out",
        "--set", "source.images.labels=dicom_attribute",
        "--set", f"source.images.label_attribute={keyword}",
    )  # fmt: skip
    assert f"source.images.label_attribute: {keyword} cannot be a label" in line
    assert why in line and "BodyPartExamined" in line
    for value in _identifiers("CT_small.dcm"):
        assert value not in line


def test_an_identifying_label_attribute_fails_when_the_spec_is_read() -> None:
    source = {"path": "nowhere", "modality": "image"}
    images = {"labels": "dicom_attribute", "label_attribute": "PatientName"}
    with pytest.raises(ConfigError, match="PatientName cannot be a label"):
        build_spec({"source": {**source, "images": images}})


def test_a_descriptive_label_attribute_is_accepted(tmp_path: Path) -> None:
    root = tmp_path / "set"
    root.mkdir()
    shutil.copy(_testfile("CT_small.dcm"), root / "ct.dcm")
    shutil.copy(_testfile("MR_small.dcm"), root / "mr.dcm")
    spec = ImageSourceSpec(labels="dicom_attribute", label_attribute="Modality")
    with pytest.warns(SynthWarning, match="^2 of 2 images were not 32x32"):  # 128 and 64
        s = load_images(root, spec)
    assert s.class_names == ["CT", "MR"] and s.labels.tolist() == [0, 1]
