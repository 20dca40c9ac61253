"""DICOM export as Secondary Capture: every file passes dciodvfy and dcmdump, pixels read back
in the source's format, placeholder identifiers only, nothing of a source file leaks into an
output byte, and a failure midway publishes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut
from pydicom.uid import generate_uid

import synth.export.dicom as dicom_export
from synth.export.dicom import (
    ImageSource,
    dump_with_dcmdump,
    plan_quantisation,
    read_dicom_label,
    validate_with_dciodvfy,
    write_dicom_export,
)
from synth.hashing import file_sha256

pytestmark = pytest.mark.skipif(
    shutil.which("dciodvfy") is None or shutil.which("dcmdump") is None,
    reason="needs dciodvfy (dicom3tools) and dcmdump (dcmtk)",
)

N = 20
SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
META = {"lineage": {"seed": 7, "data_hash": "e" * 64}, "report": {"gate": "passed"}}

# name -> (source, channels, height, width, class names)
CASES = {
    "digits_u8_mono2": (
        ImageSource("hf", 8, False, "MONOCHROME2", None, (0, 255)),
        1,
        28,
        28,
        [f"digit {k}" for k in range(10)],
    ),
    "ct_s16_mono2": (
        ImageSource("dicom", 16, True, "MONOCHROME2", "CT", (-1024, 3071)),
        1,
        32,
        24,
        ["normal", "lesion"],
    ),
    "cr_u16_mono1": (
        ImageSource("dicom", 16, False, "MONOCHROME1", "CR", (0, 4095)),
        1,
        20,
        30,
        ["left", "right", "both"],
    ),
    "photo_u8_rgb": (
        ImageSource("png", 8, False, "RGB", None, (0, 255)),
        3,
        18,
        26,
        ["cat", "dog"],
    ),
    # Beyond the four required kinds: a rescaled (non-integer) range, and 16-bit colour.
    "mr_u16_rescaled": (
        ImageSource("dicom", 16, False, "MONOCHROME2", "MR", (0.5, 2.25)),
        1,
        16,
        16,
        ["a", "b"],
    ),
    "photo_u16_rgb": (
        ImageSource("png", 16, False, "RGB", None, (0, 65535)),
        3,
        12,
        10,
        ["x"],
    ),
}


def _synthetic(n: int, c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth structure plus noise, float32 in [0, 1], with exact 0 and 1 present."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(xx / 3.0) * np.cos(yy / 4.0) + 1) / 2
    imgs = 0.6 * base[None, None] + 0.4 * rng.random((n, c, h, w))
    imgs = np.clip(imgs, 0, 1).astype(np.float32)
    imgs[0, :, 0, 0] = 0.0
    imgs[0, :, 0, 1] = 1.0
    return imgs


def _expected_modality(images: np.ndarray, source: ImageSource) -> np.ndarray:
    x = images.astype(np.float64)
    if source.photometric == "MONOCHROME1":
        x = 1.0 - x
    lo, hi = source.value_range
    return lo + x * (hi - lo)


@pytest.fixture(scope="module", params=list(CASES))
def export(request, tmp_path_factory):
    source, c, h, w, names = CASES[request.param]
    images = _synthetic(N, c, h, w)
    labels = np.arange(N, dtype=np.int64) % len(names)
    out = tmp_path_factory.mktemp(request.param) / "dicom"
    paths = write_dicom_export(
        images, out, source=source, labels=labels, class_names=names, metadata=META
    )
    return source, images, labels, names, out, paths


def test_files_pass_dciodvfy_and_dcmdump(export):
    *_, out, paths = export
    assert [p.name for p in paths] == [f"syn-{i:05d}.dcm" for i in range(1, N + 1)]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [p.name for p in paths] + ["_manifest.json"]
    )
    for p in paths:
        assert validate_with_dciodvfy(p) == [], p.name
        dump = dump_with_dcmdump(p)  # raises if dcmdump exits non-zero
        assert "SecondaryCaptureImageStorage" in dump


def test_pixels_read_back_in_source_format(export):
    source, images, _, _, _, paths = export
    q = plan_quantisation(source)
    expected = _expected_modality(images, source)
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        assert ds.PhotometricInterpretation == source.photometric
        assert ds.BitsAllocated == ds.BitsStored == source.bits_stored
        assert ds.HighBit == source.bits_stored - 1
        assert ds.PixelRepresentation == (1 if source.signed else 0)
        assert (ds.Rows, ds.Columns) == images.shape[2:]
        arr = ds.pixel_array
        if source.photometric == "RGB":
            assert ds.SamplesPerPixel == 3 and ds.PlanarConfiguration == 0
            values = np.moveaxis(arr.astype(np.float64), -1, 0) * q.slope + q.intercept
        else:
            assert ds.SamplesPerPixel == 1 and "PlanarConfiguration" not in ds
            values = apply_modality_lut(arr, ds).astype(np.float64)[None]
        assert arr.dtype == np.dtype(f"{'i' if source.signed else 'u'}{source.bits_stored // 8}")
        err = np.abs(values - expected[i]).max()
        assert err <= 0.5 * q.step * (1 + 1e-6), (p.name, err, q.step)


def test_value_range_ends_are_stored_exactly(export):
    source, _, _, _, _, paths = export
    ds = pydicom.dcmread(paths[0])
    arr = ds.pixel_array
    px = (arr[0, 0], arr[0, 1]) if arr.ndim == 2 else (arr[0, 0, 0], arr[0, 1, 0])
    lo, hi = source.value_range
    if source.photometric == "RGB":
        return
    values = [float(v) * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for v in px]
    if source.photometric == "MONOCHROME1":  # 0 (black) is the top of the stored range
        values = values[::-1]
    assert values == pytest.approx([lo, hi], abs=1e-6 * (hi - lo))


def test_sc_attributes_uids_and_placeholders(export):
    source, _, labels, names, _, paths = export
    datasets = [pydicom.dcmread(p) for p in paths]
    sops = {str(ds.SOPInstanceUID) for ds in datasets}
    assert len(sops) == N
    assert {str(ds.StudyInstanceUID) for ds in datasets} == {str(datasets[0].StudyInstanceUID)}
    assert {str(ds.SeriesInstanceUID) for ds in datasets} == {str(datasets[0].SeriesInstanceUID)}
    assert datasets[0].StudyInstanceUID != datasets[0].SeriesInstanceUID
    assert not sops & {str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)}
    assert [int(ds.InstanceNumber) for ds in datasets] == list(range(1, N + 1))
    for i, ds in enumerate(datasets):
        assert ds.SOPClassUID == SC_IMAGE_STORAGE
        assert ds.file_meta.MediaStorageSOPClassUID == SC_IMAGE_STORAGE
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.ConversionType == "SYN"
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.BurnedInAnnotation == "NO"
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethod
        assert str(ds.PatientName) == "SYNTHETIC^PATIENT"
        assert ds.PatientID == "SYN-0001"
        assert ds.StudyID == "SYN"
        assert not ds.AccessionNumber
        assert not ds.PatientBirthDate and not ds.PatientSex
        assert ds.Modality == "OT"
        assert read_dicom_label(ds) == names[labels[i]]
        assert ds.ImageComments == f"label={names[labels[i]]}"
    if source.photometric != "RGB":
        assert datasets[0].RescaleType == ("HU" if source.modality == "CT" else "US")


def test_manifest(export):
    source, _, labels, names, out, paths = export
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["metadata"] == META
    assert manifest["sop_class_uid"] == SC_IMAGE_STORAGE
    assert manifest["total_images"] == N
    assert [f["path"] for f in manifest["files"]] == [p.name for p in paths]
    for f, p in zip(manifest["files"], paths, strict=True):
        assert f["sha256"] == file_sha256(p)
        assert f["sop_instance_uid"] == pydicom.dcmread(p).SOPInstanceUID
    counts = {name: int((labels == k).sum()) for k, name in enumerate(names)}
    assert manifest["label_counts"] == {k: v for k, v in counts.items() if v}
    assert manifest["label_attribute"] == "ImageComments"


def test_two_exports_have_different_study_and_series(tmp_path):
    source, c, h, w, _ = CASES["digits_u8_mono2"]
    images = _synthetic(2, c, h, w)
    a = write_dicom_export(images, tmp_path / "a", source=source, metadata={})
    b = write_dicom_export(images, tmp_path / "b", source=source, metadata={})
    da, db = pydicom.dcmread(a[0]), pydicom.dcmread(b[0])
    assert da.StudyInstanceUID != db.StudyInstanceUID
    assert da.SeriesInstanceUID != db.SeriesInstanceUID
    assert "ImageComments" not in da  # unlabelled: no label attribute at all
    assert validate_with_dciodvfy(a[0]) == []


def test_bad_inputs_are_refused_before_writing(tmp_path):
    source, c, h, w, names = CASES["ct_s16_mono2"]
    images = _synthetic(3, c, h, w)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="channel"):
        write_dicom_export(np.repeat(images, 3, axis=1), out, source=source, metadata={})
    with pytest.raises(ValueError, match="class name"):
        write_dicom_export(
            images, out, source=source, labels=np.array([0, 1, 5]), class_names=names, metadata={}
        )
    bad = images.copy()
    bad[2, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_dicom_export(bad, out, source=source, metadata={})
    with pytest.raises(ValueError, match="signed"):
        write_dicom_export(
            images, out, source=ImageSource("png", 8, True, "RGB", None, (0, 255)), metadata={}
        )
    assert not out.exists()


def test_failure_midway_leaves_no_output(tmp_path, monkeypatch):
    source, c, h, w, _ = CASES["ct_s16_mono2"]
    images = _synthetic(10, c, h, w)
    out = tmp_path / "out"
    real = dicom_export.build_sc_dataset
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(dicom_export, "build_sc_dataset", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_dicom_export(images, out, source=source, metadata={})
    assert calls["n"] == 6
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp dir left behind either

    # A previous export survives a failed one untouched.
    monkeypatch.setattr(dicom_export, "build_sc_dataset", real)
    first = write_dicom_export(images, out, source=source, metadata={"run": 1})
    digest = file_sha256(out)
    calls["n"] = 0
    monkeypatch.setattr(dicom_export, "build_sc_dataset", flaky)
    with pytest.raises(RuntimeError):
        write_dicom_export(images, out, source=source, metadata={"run": 2})
    assert file_sha256(out) == digest and all(p.exists() for p in first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# -- identifier leak ------------------------------------------------------------------------

MARKERS = [
    "LEAKY",
    "SURNAME",
    "PID-7741-XYZ",
    "Saint Leak Hospital",
    "leakmarker study",
    "ACC99812",
    "OTHERPID-5531",
    "SEQPID-2290",
    "privatefreetext",
    "LEAKCORP",
    "DR^LEAKINGTON",
    "leakseries text",
    "LEAKSTATION",
    "leakcomment",
]


def _leaky_sources(folder: Path, n: int = 3) -> list[Path]:
    """Copies of pydicom's CT_small.dcm filled with recognisable identifiers and free text."""
    from pydicom.dataset import Dataset

    folder.mkdir()
    paths = []
    for k in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PatientName = "LEAKY^SURNAME"
        ds.PatientID = "PID-7741-XYZ"
        ds.InstitutionName = "Saint Leak Hospital"
        ds.StudyDescription = "leakmarker study"
        ds.SeriesDescription = "leakseries text"
        ds.AccessionNumber = "ACC99812"
        ds.ReferringPhysicianName = "DR^LEAKINGTON"
        ds.StationName = "LEAKSTATION"
        ds.ImageComments = "leakcomment"
        ds.OtherPatientIDs = "OTHERPID-5531"
        item = Dataset()
        item.PatientID = "SEQPID-2290"
        item.TypeOfPatientID = "TEXT"
        ds.OtherPatientIDsSequence = [item]
        block = ds.private_block(0x0011, "LEAKCORP", create=True)
        block.add_new(0x01, "LT", "privatefreetext")
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        path = folder / f"src-{k}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def test_no_source_identifier_reaches_any_output_byte(tmp_path):
    sources = _leaky_sources(tmp_path / "source")
    uids: set[str] = set()
    pixels = []
    for p in sources:
        ds = pydicom.dcmread(p)
        uids |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)}
        pixels.append(apply_modality_lut(ds.pixel_array, ds).astype(np.float64))
    first = pydicom.dcmread(sources[0])
    stack = np.stack(pixels)
    info = ImageSource(
        kind="dicom",
        bits_stored=int(first.BitsStored),
        signed=bool(first.PixelRepresentation),
        photometric=str(first.PhotometricInterpretation),
        modality=str(first.Modality),
        value_range=(float(stack.min()), float(stack.max())),
    )
    lo, hi = info.value_range
    unit = (stack - lo) / (hi - lo)
    # "Synthetic" images derived from the sources: blends plus noise, as a model would give.
    rng = np.random.default_rng(1)
    weights = rng.dirichlet(np.ones(len(sources)), size=12)
    syn = np.einsum("nk,khw->nhw", weights, unit) + rng.normal(0, 0.02, (12, *unit.shape[1:]))
    syn = np.clip(syn, 0, 1).astype(np.float32)[:, None]
    out = tmp_path / "export"
    paths = write_dicom_export(
        syn,
        out,
        source=info,
        labels=np.arange(12) % 2,
        class_names=["class a", "class b"],
        metadata={"lineage": {"data_hash": "f" * 64, "seed": 1, "images": len(sources)}},
    )

    needles = [m.encode() for m in MARKERS] + [u.encode() for u in uids]
    for src in sources:  # the search would find them: they are in the sources
        blob = src.read_bytes()
        assert all(m.encode() in blob for m in MARKERS)
        assert sum(u.encode() in blob for u in uids) == 3
    outputs = sorted(out.iterdir())
    assert len(outputs) == 13 and (out / "_manifest.json") in outputs
    for f in outputs:
        blob = f.read_bytes()
        lower = blob.lower()
        for needle in needles:
            assert needle not in blob and needle.lower() not in lower, (f.name, needle)
        if f.suffix == ".dcm":
            assert validate_with_dciodvfy(f) == []
            ds = pydicom.dcmread(f)
            assert not any(elem.tag.is_private for elem in ds.iterall())
    assert paths == [f for f in outputs if f.suffix == ".dcm"]


@pytest.mark.parametrize("attribute", ["ImageComments", "DerivationDescription"])
def test_any_class_name_fits_the_label_attribute(tmp_path, attribute):
    source, c, h, w, _ = CASES["digits_u8_mono2"]
    names = ["Ödem / œdème, grade\\2", "x" * 200]
    paths = write_dicom_export(
        _synthetic(2, c, h, w),
        tmp_path / "out",
        source=source,
        labels=np.array([0, 1]),
        class_names=names,
        metadata={},
        label_attribute=attribute,
    )
    for p, name in zip(paths, names, strict=True):
        assert validate_with_dciodvfy(p) == []
        assert read_dicom_label(pydicom.dcmread(p), attribute) == name
