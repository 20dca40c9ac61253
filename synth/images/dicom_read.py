"""Read one DICOM file into frames of modality values, with pydicom.

Rescale, photometric and multi-frame details stay here, so `io.py` only sees float arrays.
Every message this module raises is safe to show: it never quotes an attribute value (a
patient's name or ID could be one), only keywords, standard UID names and byte counts.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, iter_pixels
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

DICOM_SUFFIXES = (".dcm", ".dicom")
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory: an index, not data
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM"}
_TEXT_VRS |= {"UC", "UI", "UR", "UT"}


class UnreadableDicomError(Exception):
    """The file gives no pixels; the message is a reason that quotes no attribute value."""


class NotAnImageError(UnreadableDicomError):
    """A valid DICOM object without pixel data (SR, RT structure set, ...)."""


class MissingLabelError(Exception):
    """The label attribute is absent or empty in a file."""


class _DropWhileQuiet(logging.Filter):
    """pydicom logs each warning too (`warn_and_log`), and a log record reaches the console
    through the root logger's handler: drop its records while a `_quiet` block runs."""

    depth = 0

    def filter(self, record: logging.LogRecord) -> bool:
        return self.depth == 0


_PYDICOM_LOG = _DropWhileQuiet()
logging.getLogger("pydicom").addFilter(_PYDICOM_LOG)


@contextlib.contextmanager
def _quiet() -> Iterator[list[warnings.WarningMessage]]:
    # pydicom's own warnings can quote values (e.g. an over-long PatientName): keep them in.
    _PYDICOM_LOG.depth += 1
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        _PYDICOM_LOG.depth -= 1


def _int(ds: Dataset, keyword: str) -> int | None:
    """An integer attribute, or None when absent or empty; a malformed one (an IS string that
    is not a number...) names the keyword, never the value."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise UnreadableDicomError(f"{keyword} is not an integer") from None


def has_dicom_preamble(path: Path) -> bool:
    """True when bytes 128..131 are b"DICM" (a Part 10 file, whatever its name)."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def looks_like_dicom(path: Path) -> bool:
    """A Part 10 file, or a file named *.dcm (which may lack the preamble or be corrupt)."""
    return path.suffix.lower() in DICOM_SUFFIXES or has_dicom_preamble(path)


def _header_strings(ds: Dataset) -> list[str]:
    out: list[str] = []
    with contextlib.suppress(Exception):
        for elem in ds.iterall():
            if elem.VR not in _TEXT_VRS or elem.value is None:
                continue
            values = elem.value if isinstance(elem.value, MultiValue) else [elem.value]
            out.extend(s for v in values if len(s := str(v).strip()) >= 3)
    return sorted(set(out), key=len, reverse=True)


def safe_reason(err: BaseException, ds: Dataset | None) -> str:
    """One line from a decoder's error, with any text value of the header redacted."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = "; ".join(lines).replace(":;", ":") or "no detail"
    if ds is None:  # nothing to redact against: keep only the error type
        return type(err).__name__
    for value in _header_strings(ds):
        text = text.replace(value, "<redacted>")
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(err).__name__}: {text}"


def _photometric(ds: Dataset) -> str:
    pi = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    spp = _int(ds, "SamplesPerPixel") or 1
    if spp == 1 and pi in ("", "MONOCHROME2"):
        return "MONOCHROME2"
    if spp == 1 and pi == "MONOCHROME1":
        return "MONOCHROME1"
    if pi == "PALETTE COLOR" or (spp == 3 and pi.startswith(("RGB", "YBR"))):
        return "RGB"  # pydicom converts YBR to RGB; palettes are looked up below
    raise UnreadableDicomError(
        "unsupported PhotometricInterpretation / SamplesPerPixel (use MONOCHROME1, "
        "MONOCHROME2, RGB, YBR_* or PALETTE COLOR)"
    )


def _rescale_source(ds: Dataset, frame: int) -> Dataset:
    """Where the frame's rescale lives: enhanced objects keep it in functional groups."""
    for keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(keyword)
        if not groups:
            continue
        item = groups[frame] if keyword.startswith("PerFrame") and frame < len(groups) else None
        item = item if item is not None else groups[0]
        pvt = item.get("PixelValueTransformationSequence")
        if pvt:
            return pvt[0]
    return ds


def _infer_transfer_syntax(ds: Dataset) -> None:
    """Files without file meta (old, pre-Part 10) are native: name the encoding they used."""
    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    if little is None:
        return
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _label(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if isinstance(value, Sequence):
        raise MissingLabelError(f"{keyword} is a sequence, not a value")
    if isinstance(value, MultiValue):
        value = "\\".join(str(v) for v in value)
    text = "" if value is None else str(value).strip()
    if not text:
        raise MissingLabelError(f"{keyword} is missing or empty")
    return text


def unit_value(ds: Dataset, keyword: str) -> str | None:
    """The person a file belongs to (e.g. its PatientID), or None when the file has none.
    Used only to group files; the value is never kept or written."""
    try:
        return _label(ds, keyword)
    except MissingLabelError:
        return None


@dataclass
class DicomFile:
    """A parsed file; `frames()` decodes lazily, one frame at a time."""

    dataset: Dataset
    photometric: str  # MONOCHROME1, MONOCHROME2 or RGB (after decoding)
    bits_stored: int  # 8 or 16
    signed: bool
    modality: str | None
    label: str | None
    n_frames: int

    def frames(self) -> Iterator[np.ndarray]:
        """float32 modality values per frame: (H, W) grayscale or (H, W, 3) RGB."""
        ds = self.dataset
        with _quiet():
            pi = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        palette = pi == "PALETTE COLOR"
        try:
            with _quiet():
                it = iter_pixels(ds)
            for i in range(self.n_frames):
                with _quiet():
                    arr = next(it, None)
                    if arr is None:
                        raise UnreadableDicomError(f"only {i} of {self.n_frames} frames decoded")
                    if palette:
                        arr = apply_color_lut(arr, ds)
                    elif arr.ndim == 2:
                        arr = apply_modality_lut(arr, _rescale_source(ds, i))
                yield np.asarray(arr, dtype=np.float32)
        except UnreadableDicomError:
            raise
        except Exception as err:  # decoders raise many types for bad or truncated data
            raise UnreadableDicomError(safe_reason(err, ds)) from None


def _describes_pixels(ds: Dataset) -> bool:
    """True when the header has the Image Pixel module or an image storage SOP class."""
    if any(k in ds for k in ("Rows", "Columns", "BitsAllocated")):
        return True
    with _quiet():
        uid = UID(str(ds.get("SOPClassUID", "")))
    return bool(uid) and uid.name.endswith("Image Storage")


def read_dicom(path: Path, label_attribute: str | None = None) -> DicomFile | None:
    """Parse the header; None for a DICOMDIR, which indexes other files and holds no image."""
    try:
        with _quiet() as caught:
            ds = pydicom.dcmread(path, force=not has_dicom_preamble(path))
    except Exception as err:  # parse errors may quote bytes: report the type only
        raise UnreadableDicomError(
            f"not a valid or complete DICOM file ({safe_reason(err, None)})"
        ) from None
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("MediaStorageSOPClassUID") == DICOMDIR_SOP_CLASS:
        return None
    if not any(k in ds for k in PIXEL_KEYWORDS):
        # A file cut at (or inside) Pixel Data parses as a header alone: its image attributes
        # (Rows, Columns, an "... Image Storage" class) say pixels were meant to follow.
        cut = any("End of file" in str(w.message) for w in caught)
        if cut or _describes_pixels(ds):
            raise UnreadableDicomError(
                "the file is truncated or has no pixel data: its header describes an image, "
                "but Pixel Data is missing or cut off"
            )
        if "SOPClassUID" not in ds:
            raise UnreadableDicomError("not a DICOM file, or an empty one (no SOP Class UID)")
        uid = UID(str(ds.get("SOPClassUID", "")))
        kind = f"{uid.name}, " if uid and uid.name != str(uid) else ""
        raise NotAnImageError(f"not an image object ({kind}no Pixel Data)")
    # Values are converted on first access, and pydicom warns (quoting them) about bad ones.
    with _quiet():
        _infer_transfer_syntax(ds)
        bits = _int(ds, "BitsStored") or _int(ds, "BitsAllocated") or 8
        lut = ds.get("RedPaletteColorLookupTableDescriptor")
        pi = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        if pi == "PALETTE COLOR" and lut:
            bits = int(lut[2])  # the palette's entries, not the indices, are the pixel values
        return DicomFile(
            dataset=ds,
            photometric=_photometric(ds),
            bits_stored=8 if bits <= 8 else 16,
            signed=(_int(ds, "PixelRepresentation") or 0) == 1,
            modality=str(ds.get("Modality") or "").strip() or None,
            label=_label(ds, label_attribute) if label_attribute else None,
            n_frames=max(1, _int(ds, "NumberOfFrames") or 1),
        )
