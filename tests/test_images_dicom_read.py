"""DICOM image sets from pydicom's test files: decoders, rescale, photometric, errors."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from synth.config import ImageSourceSpec
from synth.errors import InputDataError
from synth.images.io import ImageSet, load_images

SECRET_NAME = "Secret^Patient"
SECRET_ID = "PID-937162"


def _testfile(name: str) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a missing file warns about its download first
        path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not in this pydicom / pydicom-data install")
    return Path(path)


def _copy(name: str, dst: Path, **attrs: object) -> Path:
    """Copy a test file, setting attributes (an attribute set to None is deleted)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not attrs:
        shutil.copy(_testfile(name), dst)
        return dst
    ds = pydicom.dcmread(_testfile(name))
    for key, value in attrs.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(dst)
    return dst


def _load(folder: Path, **spec: object) -> ImageSet:
    return load_images(folder, ImageSourceSpec(**spec))


def _one(tmp_path: Path, name: str, **spec: object) -> ImageSet:
    folder = tmp_path / name.replace(".dcm", "")
    _copy(name, folder / name)
    return _load(folder, **spec)


def _phi_free(text: str) -> None:
    assert SECRET_NAME not in text and "Secret" not in text and SECRET_ID not in text


# name: (images, channels, photometric); every file decodes through pydicom's plugins.
CASES = {
    "CT_small.dcm": (1, 1, "MONOCHROME2"),  # 16-bit signed, rescale -1024
    "MR_small.dcm": (1, 1, "MONOCHROME2"),
    "MR_small_jp2klossless.dcm": (1, 1, "MONOCHROME2"),  # JPEG 2000 lossless
    "MR_small_RLE.dcm": (1, 1, "MONOCHROME2"),
    "MR_small_jpeg_ls_lossless.dcm": (1, 1, "MONOCHROME2"),
    "SC_rgb_rle.dcm": (1, 3, "RGB"),
    "SC_rgb_jpeg_dcmtk.dcm": (1, 3, "RGB"),  # JPEG baseline, YBR_FULL -> RGB
    "emri_small.dcm": (10, 1, "MONOCHROME2"),  # multi-frame, 12-bit unsigned
    "JPEG2000.dcm": (1, 1, "MONOCHROME2"),
    "JPEG-LL.dcm": (1, 1, "MONOCHROME2"),  # JPEG lossless, process 14
    "JPGLosslessP14SV1_1s_1f_8b.dcm": (1, 1, "MONOCHROME2"),  # 8-bit lossless JPEG
    "liver.dcm": (3, 1, "MONOCHROME2"),  # 1-bit multi-frame segmentation
    "examples_ybr_color.dcm": (30, 3, "RGB"),  # JPEG baseline YBR_FULL_422, 30 frames
    "OT-PAL-8-face.dcm": (1, 3, "RGB"),  # palette colour, no file meta
    "mlut_18.dcm": (1, 1, "MONOCHROME2"),  # Modality LUT Sequence
    "MR2_J2KI.dcm": (1, 1, "MONOCHROME2"),  # lossy JPEG 2000, rescale slope 3.77
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_test_files_load(tmp_path: Path, name: str) -> None:
    n, channels, photometric = CASES[name]
    s = _one(tmp_path, name, resolution=32)
    assert s.images.shape == (n, channels, 32, 32)
    assert s.images.dtype == np.float32
    assert np.isfinite(s.images).all()
    assert s.images.min() >= 0.0 and s.images.max() <= 1.0
    assert s.images.max() > 0.2  # not blank
    assert s.labels is None and s.class_names == []
    src = s.source
    assert (src.kind, src.photometric, src.n_files, src.n_skipped) == ("dicom", photometric, 1, 0)
    assert src.bits_stored in (8, 16) and src.value_range[0] < src.value_range[1]


def test_source_info_of_signed_ct(tmp_path: Path) -> None:
    src = _one(tmp_path, "CT_small.dcm").source
    assert (src.modality, src.bits_stored, src.signed) == ("CT", 16, True)
    rgb = _one(tmp_path, "SC_rgb_rle.dcm").source
    assert (rgb.modality, rgb.bits_stored, rgb.signed) == ("OT", 8, False)


def test_ct_rescale_maps_hounsfield_units_monotonically(tmp_path: Path) -> None:
    raw = pydicom.dcmread(_testfile("CT_small.dcm")).pixel_array.astype(np.float64)
    s = _one(tmp_path, "CT_small.dcm", resolution=128)  # native size: no resampling
    hu = raw - 1024.0  # RescaleSlope 1, RescaleIntercept -1024
    assert s.source.value_range == (hu.min(), hu.max())
    expected = (hu - hu.min()) / (hu.max() - hu.min())
    np.testing.assert_allclose(s.images[0, 0], expected, atol=1e-6)
    order = np.argsort(raw, axis=None, kind="stable")
    assert np.all(np.diff(s.images[0, 0].ravel()[order]) >= 0)


def test_rescale_slope_and_intercept_are_applied(tmp_path: Path) -> None:
    _copy("MR_small.dcm", tmp_path / "r" / "a.dcm", RescaleSlope=2, RescaleIntercept=-100)
    scaled = _load(tmp_path / "r", resolution=64)
    plain = _one(tmp_path, "MR_small.dcm", resolution=64)
    assert scaled.source.value_range == (2 * 127 - 100, 2 * 2145 - 100)
    np.testing.assert_allclose(scaled.images, plain.images, atol=1e-6)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    _copy("MR_small.dcm", tmp_path / "m1" / "a.dcm", PhotometricInterpretation="MONOCHROME1")
    inverted = _load(tmp_path / "m1", resolution=64)
    plain = _one(tmp_path, "MR_small.dcm", resolution=64)
    assert inverted.source.photometric == "MONOCHROME1"
    assert inverted.source.value_range == plain.source.value_range
    np.testing.assert_allclose(inverted.images, 1.0 - plain.images, atol=1e-6)
    # In one set with its MONOCHROME2 twin, both share the range: they sum to 1.
    _copy("MR_small.dcm", tmp_path / "m1" / "b.dcm")
    both = _load(tmp_path / "m1", resolution=64)
    np.testing.assert_allclose(both.images[0] + both.images[1], 1.0, atol=1e-6)


def test_window_clips_to_center_and_width(tmp_path: Path) -> None:
    raw = pydicom.dcmread(_testfile("MR_small.dcm")).pixel_array.astype(np.float64)
    s = _one(tmp_path, "MR_small.dcm", resolution=64, window=(600, 400))
    assert s.source.value_range == (400.0, 800.0)
    img = s.images[0, 0]
    assert np.all(img[raw <= 400] == 0.0) and np.all(img[raw >= 800] == 1.0)
    inside = (raw > 400) & (raw < 800)
    assert inside.any()
    np.testing.assert_allclose(img[inside], (raw[inside] - 400) / 400, atol=1e-6)


def test_multiframe_frames_become_images(tmp_path: Path) -> None:
    frames = pydicom.dcmread(_testfile("emri_small.dcm")).pixel_array.astype(np.float64)
    s = _one(tmp_path, "emri_small.dcm", resolution=64)
    lo, hi = frames.min(), frames.max()
    assert s.images.shape == (10, 1, 64, 64) and s.source.value_range == (lo, hi)
    np.testing.assert_allclose(s.images[:, 0], (frames - lo) / (hi - lo), atol=1e-6)


@pytest.mark.parametrize(
    ("plain", "compressed", "resolution", "atol"),
    [
        ("MR_small.dcm", "MR_small_jp2klossless.dcm", 64, 0.0),
        ("MR_small.dcm", "MR_small_RLE.dcm", 64, 0.0),
        ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm", 64, 0.0),
        ("emri_small.dcm", "emri_small_RLE.dcm", 64, 0.0),
        ("emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm", 64, 0.0),
        ("emri_small.dcm", "emri_small_jpeg_ls_lossless.dcm", 64, 0.0),
        ("JPEG2000_UNC.dcm", "JPEG2000.dcm", 64, 0.0),
        ("SC_rgb.dcm", "SC_rgb_rle.dcm", 100, 0.0),
        ("SC_rgb_16bit.dcm", "SC_rgb_rle_16bit.dcm", 100, 0.0),
        ("SC_rgb.dcm", "SC_rgb_jpeg_dcmtk.dcm", 100, 0.05),  # lossy JPEG baseline
        ("MR2_UNCI.dcm", "MR2_J2KI.dcm", 64, 0.02),  # lossy JPEG 2000
    ],
)
def test_compressed_equals_uncompressed(
    tmp_path: Path, plain: str, compressed: str, resolution: int, atol: float
) -> None:
    a = _one(tmp_path, plain, resolution=resolution)
    b = _one(tmp_path, compressed, resolution=resolution)
    assert a.images.shape == b.images.shape
    np.testing.assert_allclose(b.images, a.images, atol=atol, rtol=0)
    if atol == 0.0:
        assert a.source.value_range == b.source.value_range


def test_labels_from_sub_folders(tmp_path: Path) -> None:
    _copy("MR_small.dcm", tmp_path / "set" / "knee" / "1.dcm")
    _copy("MR_small.dcm", tmp_path / "set" / "head" / "2.dcm")
    _copy("emri_small.dcm", tmp_path / "set" / "head" / "3.dcm")  # 10 frames, one label
    s = _load(tmp_path / "set")
    assert s.class_names == ["head", "knee"]
    assert s.labels.tolist() == [0] * 11 + [1]  # sorted paths: head/2, head/3, knee/1
    assert s.labels.dtype == np.int64


def test_labels_from_dicom_attribute(tmp_path: Path) -> None:
    root = tmp_path / "set"
    for i, part in enumerate(["KNEE", "HEAD", "KNEE"]):
        _copy("MR_small.dcm", root / "x" / f"{i}.dcm", BodyPartExamined=part)
    s = _load(root, labels="dicom_attribute", label_attribute="BodyPartExamined")
    assert s.class_names == ["HEAD", "KNEE"] and s.labels.tolist() == [1, 0, 1]


def test_missing_label_attribute_names_the_file_not_its_contents(tmp_path: Path) -> None:
    root = tmp_path / "set"
    _copy("MR_small.dcm", root / "ok.dcm", BodyPartExamined="KNEE")
    _copy("MR_small.dcm", root / "sub" / "bad.dcm", PatientName=SECRET_NAME, PatientID=SECRET_ID)
    with pytest.raises(InputDataError, match="BodyPartExamined") as err:
        _load(root, labels="dicom_attribute", label_attribute="BodyPartExamined")
    assert "sub/bad.dcm" in str(err.value)
    _phi_free(str(err.value))
    with pytest.raises(InputDataError, match="not a DICOM keyword"):
        _load(root, labels="dicom_attribute", label_attribute="NoSuchKeyword")


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        # An image's header without its pixels: cut short, not some other kind of object.
        ("deleted-pixel-data", "truncated or has no pixel data"),
        ("test-SR.dcm", "not an image object"),
        ("rtstruct.dcm", "not an image object"),
    ],
)
def test_non_image_object_is_rejected(tmp_path: Path, source: str, reason: str) -> None:
    root = tmp_path / "set"
    _copy("MR_small.dcm", root / "good.dcm")
    if source == "deleted-pixel-data":
        _copy("MR_small.dcm", root / "other.dcm", PixelData=None, PatientName=SECRET_NAME)
    else:
        _copy(source, root / "other.dcm")
    with pytest.raises(InputDataError, match=reason) as err:
        _load(root)
    assert "'other.dcm'" in str(err.value)
    _phi_free(str(err.value))
    with pytest.warns(UserWarning, match=reason):
        s = _load(root, skip_unreadable=True)
    assert (len(s.images), s.source.n_files, s.source.n_skipped) == (1, 1, 1)


def _truncate_pixels(dst: Path) -> None:
    ds = pydicom.dcmread(_testfile("MR_small.dcm"))
    ds.PatientName, ds.PatientID = SECRET_NAME, SECRET_ID
    ds.PixelData = ds.PixelData[:1000]
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst)


def _truncate_file(dst: Path) -> None:
    data = _copy("MR_small.dcm", dst, PatientName=SECRET_NAME).read_bytes()
    dst.write_bytes(data[: len(data) - 3000])


def _real_short_file(dst: Path) -> None:
    _copy("emri_small_jpeg_2k_lossless_too_short.dcm", dst)


@pytest.mark.parametrize("corrupt", [_truncate_pixels, _truncate_file, _real_short_file])
def test_corrupt_file_errors_or_is_skipped(tmp_path: Path, corrupt) -> None:
    root = tmp_path / "set"
    _copy("MR_small.dcm", root / "a" / "good.dcm")
    corrupt(root / "a" / "bad.dcm")
    with pytest.raises(InputDataError, match="cannot be decoded") as err:
        _load(root)
    msg = str(err.value)
    assert "'a/bad.dcm'" in msg and "skip_unreadable" in msg and "\n" not in msg
    _phi_free(msg)
    with pytest.warns(UserWarning, match="a/bad.dcm") as caught:
        s = _load(root, skip_unreadable=True)
    for w in caught:
        _phi_free(str(w.message))
    assert s.images.shape == (1, 1, 32, 32)
    assert (s.source.n_files, s.source.n_skipped) == (1, 1)


def test_all_files_unreadable_is_an_error(tmp_path: Path) -> None:
    _truncate_pixels(tmp_path / "set" / "bad.dcm")
    with pytest.warns(UserWarning), pytest.raises(InputDataError, match="no readable images"):
        _load(tmp_path / "set", skip_unreadable=True)


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="no DICOM, PNG or JPEG images"):
        _load(tmp_path / "empty")
    with pytest.raises(InputDataError, match="no DICOM images"):
        load_images(tmp_path / "empty", ImageSourceSpec(), format="dicom")
    with pytest.raises(InputDataError, match="does not exist"):
        _load(tmp_path / "missing")


def test_dicom_found_by_preamble_whatever_the_name(tmp_path: Path) -> None:
    root = tmp_path / "set"
    _copy("MR_small.dcm", root / "IM0001")  # no extension
    _copy("CT_small.dcm", root / "series" / "slice.IMA")
    (root / "notes.txt").write_text("not an image")
    shutil.copy(_testfile("DICOMDIR"), root / "DICOMDIR")  # an index: ignored
    s = _load(root, labels="none")
    assert s.source.n_files == 2 and s.source.n_skipped == 0
    assert s.source.modality in ("CT", "MR")


def test_mixed_colour_and_grayscale(tmp_path: Path) -> None:
    root = tmp_path / "set"
    _copy("MR_small.dcm", root / "a.dcm")
    _copy("SC_rgb_16bit.dcm", root / "b.dcm")  # 16 bits too: 8 beside 16 is refused
    s = _load(root)
    assert s.images.shape == (2, 3, 32, 32)  # channels default to 3 when any is colour
    assert (s.source.photometric, s.source.signed) == ("RGB", False)  # as the export needs
    np.testing.assert_array_equal(s.images[0, 0], s.images[0, 1])
    gray = _load(root, channels=1)
    assert gray.images.shape == (2, 1, 32, 32)
    assert (gray.source.photometric, gray.source.signed) == ("MONOCHROME2", True)


def test_constant_image_gets_a_valid_range(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_testfile("MR_small.dcm"))
    ds.PixelData = np.full((64, 64), 300, dtype=np.int16).tobytes()
    (tmp_path / "c").mkdir()
    ds.save_as(tmp_path / "c" / "a.dcm")
    s = _load(tmp_path / "c")
    assert s.source.value_range == (300.0, 301.0)
    assert np.all(s.images == 0.0)


def test_enhanced_multiframe_rescale_in_functional_groups(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(_testfile("emri_small.dcm"))  # Enhanced MR, 10 frames
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 2, 10, "US"
    shared = Dataset()
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    (tmp_path / "e").mkdir()
    ds.save_as(tmp_path / "e" / "a.dcm")
    raw = ds.pixel_array.astype(np.float64)
    s = _load(tmp_path / "e", resolution=64)
    assert s.source.value_range == (2 * raw.min() + 10, 2 * raw.max() + 10)
    np.testing.assert_allclose(s.images[:, 0], (raw - raw.min()) / np.ptp(raw), atol=1e-6)
