"""Demo image sets from scikit-learn's digits (1,797 8x8 images, 10 classes).

The DICOM copy is written as real Secondary Capture files, so the demo walks the same path
as a hospital export: `folder/<digit>/<index>.dcm`. UIDs are derived from fixed seeds, so the
same call writes the same bytes and the set's lineage hash is stable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

_SEED = "synth-digits-demo"


def digits_images(resolution: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The pixels the demo writes: uint8 [1797, res, res] (0..255, nearest upscaling), targets."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    raw = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    if resolution == raw.shape[1]:
        return raw, digits.target
    up = np.stack(
        [
            np.asarray(
                Image.fromarray(img).resize((resolution, resolution), Image.Resampling.NEAREST)
            )
            for img in raw
        ]
    )
    return up, digits.target


def _template(study: str, series: str, resolution: int) -> Dataset:
    """The attributes every file shares; per-file UIDs and pixels are set in place."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientName = "Digits^Demo"  # demo identifiers, not a person
    ds.PatientID = "DIGITS-0000"  # set per file
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = "OT"
    ds.SeriesNumber = 1
    ds.ConversionType = "WSD"
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = resolution
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    return ds


def write_digits_dicom(
    folder: str | Path, resolution: int = 32, images_per_patient: int = 1
) -> Path:
    """Write the digits as 8-bit MONOCHROME2 Secondary Capture files; return the folder.
    Consecutive images share a (made-up) PatientID, `images_per_patient` at a time, so a set
    can stand for patients with several images each."""
    folder = Path(folder)
    images, targets = digits_images(resolution)
    seed = [_SEED, str(resolution)]
    study = generate_uid(entropy_srcs=[*seed, "study"])
    series = generate_uid(entropy_srcs=[*seed, "series"])
    ds = _template(study, series, resolution)
    for d in np.unique(targets):
        (folder / str(d)).mkdir(parents=True, exist_ok=True)
    for i, (img, digit) in enumerate(zip(images, targets, strict=True)):
        # One dataset, updated per file: building 1,797 from scratch costs seconds.
        uid = generate_uid(entropy_srcs=[*seed, "sop", str(i)])
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPInstanceUID = uid
        ds.InstanceNumber = i + 1
        ds.PatientID = f"DIGITS-{i // images_per_patient:04d}"
        ds.PixelData = np.ascontiguousarray(img, dtype=np.uint8).tobytes()
        ds.save_as(folder / str(digit) / f"{i:04d}.dcm", enforce_file_format=True)
    return folder


def write_digits_png(folder: str | Path, resolution: int = 32) -> Path:
    """Write the digits as 8-bit grayscale PNGs, `folder/<digit>/<index>.png`."""
    folder = Path(folder)
    images, targets = digits_images(resolution)
    for d in np.unique(targets):
        (folder / str(d)).mkdir(parents=True, exist_ok=True)
    for i, (img, digit) in enumerate(zip(images, targets, strict=True)):
        Image.fromarray(img).save(folder / str(digit) / f"{i:04d}.png")
    return folder
