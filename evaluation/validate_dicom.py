"""The `schema` check of a DICOM export: each file parses and has the SOP class, UIDs, label
and pixel layout the manifest recorded. Messages name files and attributes, never values of
the pixel data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pydicom
from pydicom.errors import InvalidDicomError

from synth.export.dicom import read_dicom_label

if TYPE_CHECKING:
    from evaluation.validate import Export


def _expected(manifest: dict[str, Any]) -> dict[str, Any]:
    """Attribute -> value every file must carry, from the manifest's top level and `pixels`."""
    px = manifest.get("pixels") or {}
    want: dict[str, Any] = {
        "SOPClassUID": manifest.get("sop_class_uid"),
        "StudyInstanceUID": manifest.get("study_instance_uid"),
        "SeriesInstanceUID": manifest.get("series_instance_uid"),
        "PhotometricInterpretation": px.get("photometric"),
        "BitsStored": px.get("bits_stored"),
        "BitsAllocated": px.get("bits_stored"),
        "HighBit": None if px.get("bits_stored") is None else px["bits_stored"] - 1,
        "PixelRepresentation": None if px.get("signed") is None else int(bool(px["signed"])),
        "SamplesPerPixel": None
        if px.get("photometric") is None
        else (3 if px["photometric"] == "RGB" else 1),
    }
    return {k: v for k, v in want.items() if v is not None}


def _pixel_bytes(ds: Any) -> int:
    n = int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel) * int(ds.BitsAllocated) // 8
    return n + n % 2  # pixel data is padded to an even length


def _file_problems(
    ds: Any, name: str, want: dict[str, Any], entry: dict[str, Any], label_attribute: str
) -> list[str]:
    problems = []
    for keyword, value in want.items():
        got = getattr(ds, keyword, None)
        if got is None or str(got) != str(value):
            problems.append(f"{name}: {keyword} is not the manifest's {value}")
    uid = entry.get("sop_instance_uid")
    if uid is not None and str(getattr(ds, "SOPInstanceUID", "")) != uid:
        problems.append(f"{name}: SOPInstanceUID differs from the manifest")
    if "label" in entry and read_dicom_label(ds, label_attribute) != entry["label"]:
        problems.append(f"{name}: the label in {label_attribute} differs from the manifest")
    try:
        if len(ds.PixelData) != _pixel_bytes(ds):
            problems.append(f"{name}: PixelData length does not fit Rows x Columns x bits")
    except (AttributeError, TypeError, ValueError):
        problems.append(f"{name}: no PixelData, or no Rows/Columns/SamplesPerPixel/BitsAllocated")
    return problems


def dicom_problems(export: Export) -> tuple[list[str], int, str]:
    """(problems, files parsed, the image size as text) for every .dcm file on disk."""
    manifest = export.manifest or {}
    want = _expected(manifest)
    entries = export.entries
    label_attribute = str(manifest.get("label_attribute") or "ImageComments")
    problems: list[str] = []
    if not manifest:
        problems.append("no usable manifest: SOP class and pixel layout cannot be checked")
    sizes: set[tuple[int, int]] = set()
    parsed = 0
    for name in export.data_files:
        try:
            ds = pydicom.dcmread(export.root / name)
        except (InvalidDicomError, OSError, ValueError, KeyError, TypeError, EOFError) as err:
            problems.append(f"{name} does not parse as DICOM ({type(err).__name__})")
            continue
        parsed += 1
        problems += _file_problems(ds, name, want, entries.get(name, {}), label_attribute)
        if "Rows" in ds and "Columns" in ds:
            sizes.add((int(ds.Rows), int(ds.Columns)))
    if len(sizes) > 1:
        problems.append(f"files differ in size: {sorted(sizes)}")
    if parsed == 0 and not problems:
        problems.append("no DICOM file to check")
    size = "x".join(map(str, next(iter(sizes)))) if len(sizes) == 1 else "?"
    return problems, parsed, size
