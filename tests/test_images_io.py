"""Image sets from PNG/JPEG folders and Hugging Face datasets; the digits demo; lineage hash."""

from __future__ import annotations

import time
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from synth.config import ImageSourceSpec
from synth.errors import InputDataError
from synth.images.demo import digits_images, write_digits_dicom, write_digits_png
from synth.images.io import detect_image_format, image_set_hash, load_images


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _gray(seed: int, shape: tuple[int, int] = (16, 16)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def digits_dicom(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    folder = tmp_path_factory.mktemp("digits") / "dicom"
    t0 = time.perf_counter()
    write_digits_dicom(folder)
    return folder, time.perf_counter() - t0


def test_png_folder_grayscale_with_folder_labels(tmp_path: Path) -> None:
    imgs = {"cat/1.png": _gray(1), "cat/2.png": _gray(2), "dog/3.png": _gray(3)}
    for rel, arr in imgs.items():
        _save(tmp_path / "set" / rel, arr)
    s = load_images(tmp_path / "set", ImageSourceSpec(resolution=16))
    assert s.images.shape == (3, 1, 16, 16) and s.images.dtype == np.float32
    np.testing.assert_allclose(s.images[:, 0], np.stack(list(imgs.values())) / 255.0, atol=1e-6)
    assert s.class_names == ["cat", "dog"] and s.labels.tolist() == [0, 0, 1]
    src = s.source
    assert (src.kind, src.bits_stored, src.photometric, src.value_range) == (
        "png",
        8,
        "MONOCHROME2",
        (0.0, 255.0),
    )
    assert (src.modality, src.signed, src.n_files, src.n_skipped) == (None, False, 3, 0)
    assert load_images(tmp_path / "set", ImageSourceSpec(labels="none")).labels is None


def test_png_rgb_and_channel_conversion(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    _save(tmp_path / "set" / "a.png", rgb)
    s = load_images(tmp_path / "set", ImageSourceSpec(resolution=12))
    assert s.images.shape == (1, 3, 12, 12) and s.source.photometric == "RGB"
    assert s.labels is None  # no sub-folders: no labels
    np.testing.assert_allclose(s.images[0], rgb.transpose(2, 0, 1) / 255.0, atol=1e-6)
    gray = load_images(tmp_path / "set", ImageSourceSpec(resolution=12, channels=1))
    luma = rgb.astype(np.float64) @ [0.299, 0.587, 0.114] / 255.0
    np.testing.assert_allclose(gray.images[0, 0], luma, atol=1e-5)


def test_jpeg_and_16_bit_png(tmp_path: Path) -> None:
    _save(tmp_path / "jpg" / "a.jpg", _gray(4, (32, 32)))
    s = load_images(tmp_path / "jpg", ImageSourceSpec(resolution=32))
    assert s.source.kind == "png" and np.abs(s.images[0, 0] - _gray(4, (32, 32)) / 255).mean() < 0.1
    deep = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    _save(tmp_path / "deep" / "a.png", deep)
    s16 = load_images(tmp_path / "deep", ImageSourceSpec(resolution=64))
    assert (s16.source.bits_stored, s16.source.value_range) == (16, (0.0, 65535.0))
    np.testing.assert_allclose(s16.images[0, 0], deep / 65535.0, atol=1e-6)


def test_resize_and_center_crop_differ_on_a_non_square_image(tmp_path: Path) -> None:
    wide = np.zeros((20, 40), dtype=np.uint8)
    wide[:, 10:30] = 255  # white centre square, black side bands
    _save(tmp_path / "set" / "wide.png", wide)
    crop = load_images(tmp_path / "set", ImageSourceSpec(resolution=10, fit="center_crop"))
    squash = load_images(tmp_path / "set", ImageSourceSpec(resolution=10, fit="resize"))
    np.testing.assert_allclose(crop.images, 1.0)  # only the white centre survives
    cols = squash.images[0, 0].mean(axis=0)  # the whole width, squeezed
    assert cols[0] < 0.05 and cols[-1] < 0.05 and np.all(cols[3:7] > 0.95)
    assert np.allclose(squash.images[0, 0], squash.images[0, 0, :1])  # rows all alike


def test_corrupt_png_errors_or_is_skipped(tmp_path: Path) -> None:
    _save(tmp_path / "set" / "a" / "ok.png", _gray(5))
    (tmp_path / "set" / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(InputDataError, match="'a/bad.png' cannot be decoded"):
        load_images(tmp_path / "set", ImageSourceSpec())
    with pytest.warns(UserWarning, match="a/bad.png"):
        s = load_images(tmp_path / "set", ImageSourceSpec(skip_unreadable=True))
    assert (len(s.images), s.source.n_skipped) == (1, 1)


def test_label_rules(tmp_path: Path) -> None:
    _save(tmp_path / "set" / "root.png", _gray(6))
    _save(tmp_path / "set" / "cls" / "x.png", _gray(7))
    with pytest.raises(InputDataError, match="class sub-folder"):
        load_images(tmp_path / "set", ImageSourceSpec())
    with pytest.raises(InputDataError, match="dicom_attribute"):
        load_images(
            tmp_path / "set",
            ImageSourceSpec(labels="dicom_attribute", label_attribute="BodyPartExamined"),
        )


def test_declared_classes_fix_the_order_and_refuse_an_unlisted_label(tmp_path: Path) -> None:
    for i, cls in enumerate(["zeta", "alpha", "zeta"]):
        _save(tmp_path / "set" / cls / f"{i}.png", _gray(i))
    found = load_images(tmp_path / "set", ImageSourceSpec())
    assert found.class_names == ["alpha", "zeta"] and not found.classes_declared
    declared = load_images(tmp_path / "set", ImageSourceSpec(classes=["zeta", "beta", "alpha"]))
    assert declared.class_names == ["zeta", "beta", "alpha"] and declared.classes_declared
    assert declared.labels.tolist() == [2, 0, 0]  # sorted files: alpha/1, zeta/0, zeta/2
    with pytest.raises(InputDataError, match="outside source.images.classes") as err:
        load_images(tmp_path / "set", ImageSourceSpec(classes=["alpha"]))
    assert "zeta" not in str(err.value)  # the image is named, never its label
    with pytest.raises(ValueError, match="twice"):
        ImageSourceSpec(classes=["a", "a"])


def _digits_dataset(n: int) -> tuple[datasets.Dataset, np.ndarray, np.ndarray]:
    pixels, targets = digits_images(resolution=8)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(d) for d in range(10)])}
    )
    ds = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(p) for p in pixels[:n]], "label": targets[:n].tolist()},
        features=features,
    )
    return ds, pixels[:n], targets[:n]


def test_hf_dataset_saved_to_disk(tmp_path: Path) -> None:
    ds, pixels, targets = _digits_dataset(300)
    ds.save_to_disk(str(tmp_path / "hf"))
    assert detect_image_format(tmp_path / "hf") == "hf"
    s = load_images(tmp_path / "hf", ImageSourceSpec(resolution=8))
    assert s.source.kind == "hf" and s.images.shape == (300, 1, 8, 8)
    assert s.class_names == [str(d) for d in range(10)]
    np.testing.assert_array_equal(s.labels, targets)
    np.testing.assert_allclose(s.images[:, 0], pixels / 255.0, atol=1e-6)
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "hfdict"))
    assert len(load_images(tmp_path / "hfdict", ImageSourceSpec(labels="none")).images) == 300


def test_hf_imagefolder_layout(tmp_path: Path) -> None:
    for i, cls in enumerate(["a", "b", "b"]):
        _save(tmp_path / "imf" / cls / f"{i}.png", _gray(i, (8, 8)))
    s = load_images(tmp_path / "imf", ImageSourceSpec(resolution=8), format="hf")
    assert s.source.kind == "hf" and s.class_names == ["a", "b"]
    assert sorted(s.labels.tolist()) == [0, 1, 1]
    as_png = load_images(tmp_path / "imf", ImageSourceSpec(resolution=8))
    assert as_png.source.kind == "png" and sorted(as_png.labels.tolist()) == [0, 1, 1]


def test_detect_format(tmp_path: Path, digits_dicom: tuple[Path, float]) -> None:
    assert detect_image_format(digits_dicom[0]) == "dicom"
    _save(tmp_path / "p" / "a.png", _gray(0))
    assert detect_image_format(tmp_path / "p") == "png"
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.txt").write_text("x")
    with pytest.raises(InputDataError, match="no DICOM, PNG or JPEG images"):
        load_images(tmp_path / "t", ImageSourceSpec())


def test_digits_dicom_demo_round_trips(digits_dicom: tuple[Path, float]) -> None:
    folder, seconds = digits_dicom
    assert seconds < 10.0, f"writing the demo took {seconds:.1f}s"
    digits = load_digits()
    s = load_images(folder, ImageSourceSpec(resolution=32))
    assert s.images.shape == (1797, 1, 32, 32)
    assert s.class_names == [str(d) for d in range(10)]
    np.testing.assert_array_equal(np.bincount(s.labels), np.bincount(digits.target))
    src = s.source
    assert (src.kind, src.modality, src.bits_stored, src.photometric) == (
        "dicom",
        "OT",
        8,
        "MONOCHROME2",
    )
    assert src.value_range == (0.0, 255.0) and src.n_files == 1797
    # Files are <digit>/<index>.dcm, read in sorted order: a stable sort by digit.
    pixels, _ = digits_images(32)
    order = np.argsort(digits.target, kind="stable")
    np.testing.assert_array_equal(s.labels, digits.target[order])
    np.testing.assert_allclose(s.images[:, 0], pixels[order] / 255.0, atol=1e-6)


def test_digits_dicom_files_are_valid_secondary_capture(digits_dicom: tuple[Path, float]) -> None:
    import pydicom
    from pydicom.uid import SecondaryCaptureImageStorage

    a = pydicom.dcmread(digits_dicom[0] / "3" / "0003.dcm")
    b = pydicom.dcmread(digits_dicom[0] / "4" / "0004.dcm")
    assert a.SOPClassUID == SecondaryCaptureImageStorage == a.file_meta.MediaStorageSOPClassUID
    assert a.SOPInstanceUID != b.SOPInstanceUID and a.SOPInstanceUID.is_valid
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert (a.Modality, str(a.PatientName), a.PatientID) == ("OT", "Digits^Demo", "DIGITS-0003")
    assert b.PatientID == "DIGITS-0004"  # each image its own made-up patient, by default
    assert (a.BitsStored, a.PhotometricInterpretation, a.pixel_array.shape) == (
        8,
        "MONOCHROME2",
        (32, 32),
    )


def test_digits_png_matches_dicom(tmp_path: Path, digits_dicom: tuple[Path, float]) -> None:
    png = load_images(write_digits_png(tmp_path / "png"), ImageSourceSpec())
    dcm = load_images(digits_dicom[0], ImageSourceSpec())
    np.testing.assert_array_equal(png.images, dcm.images)
    np.testing.assert_array_equal(png.labels, dcm.labels)


def test_image_set_hash(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "x" / "1.png", _gray(1))
    _save(tmp_path / "b" / "x" / "1.png", _gray(1))
    assert image_set_hash(tmp_path / "a") == image_set_hash(tmp_path / "b")
    _save(tmp_path / "b" / "x" / "1.png", _gray(2))
    assert image_set_hash(tmp_path / "a") != image_set_hash(tmp_path / "b")
    (tmp_path / "a" / "x" / "1.png").rename(tmp_path / "a" / "x" / "2.png")
    assert image_set_hash(tmp_path / "a") != image_set_hash(tmp_path / "b")
