"""DICOM export: synthetic images as Secondary Capture (SC) objects, one file per image.

Each image becomes a valid *Secondary Capture Image Storage* instance
(SOP Class 1.2.840.10008.5.1.4.1.1.7) built with highdicom's `SCImage`:

- one new Study Instance UID and one new Series Instance UID per export, a new SOP Instance
  UID per file, InstanceNumber 1..N;
- ConversionType ``SYN`` (synthetic image), ImageType ``DERIVED\\SECONDARY``,
  BurnedInAnnotation ``NO``, Modality ``OT``;
- PatientIdentityRemoved ``YES`` with a DeidentificationMethod; placeholder identifiers only:
  PatientName ``SYNTHETIC^PATIENT``, one PatientID per export (``SYN-0001`` by default),
  StudyID ``SYN``, empty AccessionNumber / birth date / sex / referring physician /
  laterality / patient orientation, and the export's date and time as study and content
  date and time;
- the synthetic class label, when there is one, in **ImageComments (0020,4000)** as
  ``label=<class name>`` (LT, General Image module, allowed by the SC IOD); the manifest
  lists each file's label too (``label_attribute="DerivationDescription"``, ST, is the
  alternative; CS attributes such as ContentLabel cannot hold arbitrary class names);
- pixels in the source's bit depth, sign and photometric interpretation: [0, 1] maps back
  to ``value_range``; integer ranges that fit are stored as is (CT: signed 16-bit HU),
  others through RescaleSlope/RescaleIntercept (Modality LUT module, see
  `plan_quantisation`); MONOCHROME1 is inverted back; RGB is interleaved (Planar 0).

No source dataset ever reaches this module (it receives pixel arrays and a
description of the source's pixel format), so no identifier, UID or free text of a
source file can be copied into an output file: privacy holds by construction, and
``tests/test_export_dicom.py`` searches every output byte to prove it.

The files (``syn-00001.dcm``, ...) and a ``_manifest.json`` (files, SHA-256 each, label
counts, the caller's metadata) are published together with `synth.atomic.atomic_directory`:
a failure midway leaves no output directory behind (and keeps a previous export).

A published export is read back with `read_images` (pixels mapped back to [0, 1] over the
recorded value range, and each file's label) and checked with `check_dicom_schema` (each file
parses and has the SOP class, UIDs, label and pixel layout the manifest recorded; messages name
files and attributes, never pixel values) and `stored_metadata` (the manifest's metadata).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import highdicom
import numpy as np
import pydicom
from highdicom.sc import SCImage
from pydicom.errors import InvalidDicomError
from pydicom.valuerep import DSfloat

from synth import __version__
from synth.atomic import atomic_directory
from synth.config import ImageSourceSpec
from synth.errors import InputDataError
from synth.export.check import MAX_NAMED, Check
from synth.export.folder import MANIFEST_NAME, Export, attach
from synth.export.metadata import json_default
from synth.hashing import file_record
from synth.images.io import load_images

SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
LABEL_PREFIX = "label="
PATIENT_NAME = "SYNTHETIC^PATIENT"
STUDY_ID = "SYN"
DEIDENTIFICATION_METHOD = "Synthetic image from a diffusion model; no source identifiers"
MANUFACTURER = "synth"
_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2", "RGB")
# Text attributes of the SC Image IOD (General Image / General Series modules) that may hold
# the label; LT/LO/ST carry free text, unlike CS attributes such as ContentLabel.
_LABEL_ATTRIBUTES = {"ImageComments": 10240, "DerivationDescription": 1024}


class ImageSourceLike(Protocol):
    """What the export needs to know of the source images' pixel format (any object with
    these attributes will do, e.g. `synth.images.io`'s source description)."""

    @property
    def kind(self) -> str: ...  # "dicom" | "png" | "hf"

    @property
    def bits_stored(self) -> int: ...  # 8 | 16

    @property
    def signed(self) -> bool: ...

    @property
    def photometric(self) -> str: ...  # "MONOCHROME2" | "MONOCHROME1" | "RGB"

    @property
    def modality(self) -> str | None: ...

    @property
    def value_range(self) -> tuple[float, float]: ...  # modality values that [0, 1] maps to


@dataclass(frozen=True)
class ImageSource:
    """The pixel format of the source images: what [0, 1] synthetic values map back to."""

    kind: str
    bits_stored: int
    signed: bool
    photometric: str
    modality: str | None
    value_range: tuple[float, float]


@dataclass(frozen=True)
class Quantisation:
    """How modality values are stored: ``value = stored * slope + intercept``."""

    bits: int
    signed: bool
    slope: float
    intercept: float

    @property
    def step(self) -> float:
        """One quantisation step, in modality units."""
        return self.slope


def _is_int(v: float) -> bool:
    return float(v).is_integer()


def plan_quantisation(source: ImageSourceLike) -> Quantisation:
    """Choose stored values for `source.value_range`.

    If the range has integer ends that fit the integer range of `bits_stored` (signed or
    not), modality values are stored as they are (slope 1, intercept 0): a CT range of
    (-1024, 3071) is stored as signed 16-bit HU. Otherwise [0, 1] spans the whole integer
    range and RescaleSlope / RescaleIntercept map stored values back (monochrome only; an
    RGB image is scaled the same way, but DICOM has no rescale for colour: the manifest
    records the mapping).
    """
    bits = int(source.bits_stored)
    if bits not in (8, 16):
        raise ValueError(f"bits_stored must be 8 or 16, not {bits}")
    if source.photometric not in _PHOTOMETRICS:
        raise ValueError(f"photometric must be one of {_PHOTOMETRICS}, not {source.photometric!r}")
    signed = bool(source.signed)
    if source.photometric == "RGB" and signed:
        raise ValueError("an RGB source cannot be signed")
    lo, hi = (float(v) for v in source.value_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"value_range must be finite with min < max, not {source.value_range}")
    smin, smax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if _is_int(lo) and _is_int(hi) and smin <= lo and hi <= smax:
        return Quantisation(bits, signed, 1.0, 0.0)
    # Round to what a DS element holds, so the file's rescale is exactly the one used here.
    slope = float(_ds((hi - lo) / (smax - smin)))
    return Quantisation(bits, signed, slope, float(_ds(lo - smin * slope)))


def quantise(image: np.ndarray, source: ImageSourceLike, q: Quantisation) -> np.ndarray:
    """[C, H, W] floats in [0, 1] -> stored integers [H, W] or [H, W, 3] (RGB, interleaved).

    MONOCHROME1 sources are inverted back (the pipeline shows every image as MONOCHROME2,
    0 = black), so the stored values mean what the source's did.
    """
    x = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if source.photometric == "MONOCHROME1":
        x = 1.0 - x
    lo, hi = (float(v) for v in source.value_range)
    dtype = np.dtype(f"<{'i' if q.signed else 'u'}{q.bits // 8}")
    info = np.iinfo(dtype)
    values = ((lo + x * (hi - lo)) - q.intercept) / q.slope
    stored = np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return np.moveaxis(stored, 0, -1) if stored.shape[0] == 3 else stored[0]


def _check_images(images: np.ndarray, source: ImageSourceLike) -> None:
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        raise ValueError("images must be a numpy array [N, C, H, W]")
    channels = images.shape[1]
    want = 3 if source.photometric == "RGB" else 1
    if channels != want:
        raise ValueError(f"{source.photometric} needs {want} channel(s), images have {channels}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be floats in [0, 1], not {images.dtype}")


def _label_names(
    labels: np.ndarray | None, class_names: Sequence[str] | None, n: int
) -> list[str | None]:
    if labels is None:
        return [None] * n
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({n},), not {labels.shape}")
    names = list(class_names) if class_names is not None else None
    out: list[str | None] = []
    for k in labels.tolist():
        if names is None:
            out.append(str(k))
        elif 0 <= k < len(names):
            out.append(str(names[k]))
        else:
            raise ValueError(f"label {k} has no class name ({len(names)} classes)")
    return out


def _label_value(name: str, attribute: str) -> str:
    value = f"{LABEL_PREFIX}{name}"
    if len(value) > _LABEL_ATTRIBUTES[attribute]:
        raise ValueError(f"class name {name!r} is too long for {attribute}")
    return value


def check_dicom_export(
    source: ImageSourceLike,
    channels: int,
    class_names: Sequence[str] | None,
    label_attribute: str = "ImageComments",
) -> None:
    """Raise `InputDataError` now for what `write_dicom_export` would refuse later: a source
    description it cannot store, images with the wrong channel count, or a class name too long
    for the label attribute. Messages name the setting, never a value."""
    try:
        plan_quantisation(source)
    except ValueError as err:
        raise InputDataError(f"the image source cannot be written back as DICOM: {err}") from None
    want = 3 if source.photometric == "RGB" else 1
    if channels != want:
        raise InputDataError(
            f"a {source.photometric} DICOM export needs {want} channel(s), the images have "
            f"{channels}: set source.images.channels, or export.format: parquet"
        )
    limit = _LABEL_ATTRIBUTES[label_attribute] - len(LABEL_PREFIX)
    long = [i for i, name in enumerate(class_names or []) if len(str(name)) > limit]
    if long:
        raise InputDataError(
            f"{len(long)} class name(s) are longer than the {limit} characters DICOM "
            f"{label_attribute} holds: shorten the label folders, or export.format: parquet"
        )


def read_dicom_label(ds: Any, label_attribute: str = "ImageComments") -> str | None:
    """The class name an exported file carries, or None."""
    value = str(getattr(ds, label_attribute, "") or "")
    return value[len(LABEL_PREFIX) :] if value.startswith(LABEL_PREFIX) else None


def _set_pixels(ds: Any, stored: np.ndarray, q: Quantisation, source: ImageSourceLike) -> None:
    """(Re)write the Image Pixel module from `stored`, which highdicom cannot express for
    signed or 16-bit colour pixels; plus the Modality LUT for monochrome images."""
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated = q.bits
    ds.BitsStored = q.bits
    ds.HighBit = q.bits - 1
    ds.PixelRepresentation = 1 if q.signed else 0
    data = np.ascontiguousarray(stored).tobytes()
    if len(data) % 2:
        data += b"\x00"
    ds.PixelData = data
    ds["PixelData"].VR = "OW" if q.bits > 8 else "OB"
    if source.photometric != "RGB":
        ds.RescaleIntercept = _ds(q.intercept)
        ds.RescaleSlope = _ds(q.slope)
        ds.RescaleType = "HU" if (source.modality or "").upper() == "CT" else "US"


def _ds(value: float) -> DSfloat:
    return DSfloat(value, auto_format=True)


def build_sc_dataset(
    stored: np.ndarray,
    *,
    source: ImageSourceLike,
    quantisation: Quantisation,
    study_uid: str,
    series_uid: str,
    instance_number: int,
    patient_id: str,
    created: datetime.datetime,
    label: str | None,
    label_attribute: str,
) -> Any:
    """One Secondary Capture dataset holding `stored` pixels and placeholder identifiers."""
    q = quantisation
    if stored.ndim == 3 and q.bits == 8:
        hd_pixels = stored
    elif stored.ndim == 3:  # 16-bit colour: highdicom takes 8 bits only; replaced below
        hd_pixels = np.zeros(stored.shape, np.uint8)
    else:  # signed values go in as the same bytes; PixelRepresentation is set below
        hd_pixels = stored.view(np.uint8 if q.bits == 8 else np.uint16)
    ds = SCImage(
        pixel_array=hd_pixels,
        photometric_interpretation=source.photometric,
        bits_allocated=8 if stored.ndim == 3 else q.bits,
        coordinate_system="PATIENT",
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        series_number=1,
        sop_instance_uid=highdicom.UID(),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        patient_id=patient_id,
        patient_name=PATIENT_NAME,
        accession_number=None,
        study_id=STUDY_ID,
        study_date=created.date(),
        study_time=created.time(),
        content_date=created.date(),
        content_time=created.time(),
        patient_orientation=("L", "P"),  # required by highdicom; emptied below
        series_description="synthetic images (diffusion model)",
        software_versions=f"synth {__version__}",
        specific_character_set="ISO_IR 192",
    )
    ds.PatientOrientation = None  # Type 2: unknown for a synthetic image
    ds.Laterality = None  # Type 2C: dciodvfy wants it present; empty = unknown
    ds.ConversionType = "SYN"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation = "NO"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    ds.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    ds.SecondaryCaptureDeviceSoftwareVersions = f"synth {__version__}"
    _set_pixels(ds, stored, q, source)
    if label is not None:
        setattr(ds, label_attribute, _label_value(label, label_attribute))
    return ds


def file_name(i: int) -> str:
    return f"syn-{i:05d}.dcm"


def write_dicom_export(
    images: np.ndarray,
    out_dir: str | os.PathLike[str],
    *,
    source: ImageSourceLike,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    metadata: dict[str, Any],
    label_attribute: str = "ImageComments",
    patient_id: str = "SYN-0001",
    created: datetime.datetime | None = None,
    attachments: Mapping[str, Path] | None = None,
) -> list[Path]:
    """Write each image of `images` ([N, C, H, W] floats in [0, 1]) as a Secondary Capture
    file ``syn-NNNNN.dcm`` under `out_dir`, published atomically with ``_manifest.json``.

    The class name of ``labels[i]`` (``class_names[labels[i]]``, or the index as text when
    there are no names) goes in `label_attribute` as ``label=<name>``: by default
    ImageComments (0020,4000), LT; ``"DerivationDescription"`` (ST) is the other choice.
    Pixels are stored as `source` describes them (bits, sign, photometric); see
    `plan_quantisation`. `metadata` (lineage, report) goes in the manifest only.
    Study date and time are `created` (default: now), the export's own time.
    `attachments` (name -> file: the report) are published with the images, in the manifest.
    Returns the written file paths, in order.
    """
    if label_attribute not in _LABEL_ATTRIBUTES:
        raise ValueError(f"label_attribute must be one of {sorted(_LABEL_ATTRIBUTES)}")
    q = plan_quantisation(source)  # checks the source description
    _check_images(images, source)
    n = int(images.shape[0])
    names = _label_names(labels, class_names, n)
    for name in {nm for nm in names if nm is not None}:
        _label_value(name, label_attribute)  # fail before writing anything
    for start in range(0, n, 256):  # chunked: no full-size temporary
        if not np.isfinite(images[start : start + 256]).all():
            raise ValueError("images hold NaN or infinite values")
    created = (created or datetime.datetime.now()).replace(microsecond=0)
    study_uid, series_uid = highdicom.UID(), highdicom.UID()

    out_dir = Path(out_dir)
    entries: list[dict[str, Any]] = []
    with atomic_directory(out_dir) as tmp:
        for i in range(n):
            ds = build_sc_dataset(
                quantise(images[i], source, q),
                source=source,
                quantisation=q,
                study_uid=study_uid,
                series_uid=series_uid,
                instance_number=i + 1,
                patient_id=patient_id,
                created=created,
                label=names[i],
                label_attribute=label_attribute,
            )
            name = file_name(i + 1)
            ds.save_as(tmp / name, enforce_file_format=True)
            entries.append(
                {
                    "path": name,
                    "sop_instance_uid": str(ds.SOPInstanceUID),
                    "label": names[i],
                    **file_record(tmp / name),
                }
            )
        counts = Counter(nm for nm in names if nm is not None)
        manifest = {
            "format": "dicom",
            "sop_class_uid": SC_IMAGE_STORAGE,
            "sop_class": "Secondary Capture Image Storage",
            "study_instance_uid": str(study_uid),
            "series_instance_uid": str(series_uid),
            "total_images": n,
            "label_attribute": label_attribute,
            "label_format": f"{LABEL_PREFIX}<class name>",
            "label_counts": dict(sorted(counts.items())),
            "pixels": {
                "photometric": source.photometric,
                "bits_stored": q.bits,
                "signed": q.signed,
                "value_range": [float(v) for v in source.value_range],
                "rescale_slope": q.slope,
                "rescale_intercept": q.intercept,
                "source_kind": source.kind,
                "source_modality": source.modality,
            },
            "files": entries,
            "attachments": attach(tmp, attachments),
            "metadata": metadata,
        }
        (tmp / MANIFEST_NAME).write_text(
            json.dumps(manifest, indent=2, sort_keys=False, default=json_default),
            encoding="utf-8",
        )
    return [out_dir / e["path"] for e in entries]


# -- reading a published export ----------------------------------------------------------------


def read_images(export: Export) -> tuple[np.ndarray, list[str | None]]:
    """The exported images mapped back to [0, 1] ([N, C, H, W] floats) over the value range
    the export recorded (the source's), and each file's label."""
    manifest = export.manifest or {}
    lo, hi = (manifest.get("pixels") or {}).get("value_range") or (None, None)
    names = sorted(export.data_files)
    if not names:
        raise InputDataError(f"{str(export.root)!r} holds no DICOM files to evaluate")
    first = pydicom.dcmread(export.root / names[0], stop_before_pixels=True)
    window = None if lo is None or hi is None or hi <= lo else ((lo + hi) / 2, hi - lo)
    spec = ImageSourceSpec(resolution=int(first.Rows), labels="none", window=window)
    images = load_images(export.root, spec, format="dicom").images
    attribute = str(manifest.get("label_attribute") or "ImageComments")
    labels = [
        read_dicom_label(pydicom.dcmread(export.root / n, stop_before_pixels=True), attribute)
        for n in names
    ]
    return images, labels


def stored_metadata(export: Export) -> tuple[dict[str, Any] | None, str | None]:
    """The {lineage, report} the export carries in its manifest, or (None, why not)."""
    meta = (export.manifest or {}).get("metadata")
    if not isinstance(meta, dict):
        return None, f"{MANIFEST_NAME} carries no metadata (lineage, report)"
    return meta, None


# -- checking a published export ---------------------------------------------------------------


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


def check_dicom_schema(export: Export) -> Check:
    """Each file parses, is the recorded SOP class and instance, and has the recorded pixel
    layout; all files share one image size."""
    problems, n, size = dicom_problems(export)
    if problems:
        return Check(name="schema", passed=False, reason="; ".join(problems[:MAX_NAMED]))
    return Check(
        name="schema",
        passed=True,
        reason=f"{n} DICOM file(s) parse; SOP class, UIDs and pixel layout as recorded ({size})",
    )


# -- validation helpers (external tools) --------------------------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed: install dicom3tools / dcmtk")
    return path


def _dciodvfy_lines(path: str | os.PathLike[str]) -> list[str]:
    proc = subprocess.run(
        [_tool("dciodvfy"), os.fspath(path)], capture_output=True, text=True, check=False
    )
    return (proc.stdout + proc.stderr).splitlines()


def validate_with_dciodvfy(path: str | os.PathLike[str]) -> list[str]:
    """The error lines (those starting with "Error") dicom3tools' `dciodvfy` reports."""
    return [line for line in _dciodvfy_lines(path) if line.startswith("Error")]


def dciodvfy_warnings(path: str | os.PathLike[str]) -> list[str]:
    """The warning lines of `dciodvfy` (allowed, but worth a look)."""
    return [line for line in _dciodvfy_lines(path) if line.startswith("Warning")]


def dump_with_dcmdump(path: str | os.PathLike[str]) -> str:
    """dcmtk's `dcmdump` of a file; raises `subprocess.CalledProcessError` if it fails."""
    proc = subprocess.run(
        [_tool("dcmdump"), os.fspath(path)], capture_output=True, text=True, check=True
    )
    return proc.stdout
