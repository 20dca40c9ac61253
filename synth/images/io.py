"""Load an image set (DICOM, PNG/JPEG, or a Hugging Face dataset) for training.

Images come back as float32 [N, C, H, W] in [0, 1] with their labels, plus what the export
needs to write synthetic pixels back like the source. Every failure is an `InputDataError`
whose one-line message names the file (relative to the root) and says how to fix it; no
message quotes a DICOM attribute value.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps
from pydicom.datadict import tag_for_keyword

from synth.config import ImageSourceSpec
from synth.data.split import unit_codes
from synth.data.units import ROW
from synth.errors import ConfigError, InputDataError, warn_once
from synth.hashing import file_sha256
from synth.images.dicom_read import (
    MissingLabelError,
    NotAnImageError,
    UnreadableDicomError,
    looks_like_dicom,
    read_dicom,
    unit_value,
)

Format = Literal["auto", "dicom", "png", "hf"]
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
HF_METADATA = ("metadata.csv", "metadata.jsonl")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601
_SKIP_HINT = "or set source.images.skip_unreadable: true to skip such files"


@dataclass
class ImageSourceInfo:
    """How the source stored its pixels, so synthetic images can be written back alike."""

    kind: Literal["dicom", "png", "hf"]
    bits_stored: int  # 8 or 16
    signed: bool  # DICOM PixelRepresentation == 1
    photometric: str  # "MONOCHROME2", "MONOCHROME1" or "RGB"
    modality: str | None  # DICOM Modality (e.g. "CT"), else None
    value_range: tuple[float, float]  # modality values mapped to 0 and 1
    n_files: int  # files (hf: rows) that gave images
    n_skipped: int  # unreadable files skipped (skip_unreadable)
    n_resized: int = 0  # images not resolution x resolution in a set of mixed sizes (warned)


@dataclass
class ImageSet:
    """Training images in [0, 1], with optional integer labels into `class_names`."""

    images: np.ndarray  # float32 [N, C, H, W], H = W = resolution
    labels: np.ndarray | None  # int64 [N]
    class_names: list[str]
    source: ImageSourceInfo | None = None  # how the files stored pixels; None for in-memory sets
    units: np.ndarray | None = None  # int64 [N] person codes (`privacy.unit`); None: per image
    classes_declared: bool = False  # class_names are public (source.images.classes)


@dataclass
class _Collected:
    """Images resized but still in source units; normalised once the set's range is known."""

    images: list[np.ndarray] = field(default_factory=list)  # (C, res, res) float32
    invert: list[bool] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    units: list[str | None] = field(default_factory=list)  # each image's person, DICOM only
    depths: list[int] = field(default_factory=list)
    photometrics: list[str] = field(default_factory=list)
    lo: float = np.inf
    hi: float = -np.inf
    n_files: int = 0
    n_skipped: int = 0
    signed: bool = False
    modalities: Counter[str] = field(default_factory=Counter)
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)  # (H, W) before fitting
    kinds: dict[str, list[Any]] = field(default_factory=dict)  # DICOM kind -> [files, example]


def image_set_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 over sorted relative paths and file bytes, for lineage."""
    return file_sha256(path)


def _rel(path: Path, root: Path) -> str:
    return path.name if path == root else path.relative_to(root).as_posix()


def _files(root: Path) -> list[Path]:
    """Every regular file under root (hidden ones skipped), sorted by relative path."""
    if root.is_file():
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _no_images(root: Path, what: str = "DICOM, PNG or JPEG images") -> InputDataError:
    return InputDataError(
        f"no {what} found under {str(root)!r}: point source.path at a folder of images "
        "(sub-folders are walked), or set source.format"
    )


def detect_image_format(path: Path) -> Literal["dicom", "png", "hf"]:
    """save_to_disk markers -> hf; any DICOM file -> dicom; imagefolder metadata -> hf; else png."""
    if path.is_dir() and any((path / m).is_file() for m in HF_MARKERS):
        return "hf"
    files = _files(path)
    if any(looks_like_dicom(f) for f in files):
        return "dicom"
    if any(f.name in HF_METADATA for f in files):
        return "hf"
    if any(f.suffix.lower() in RASTER_SUFFIXES for f in files):
        return "png"
    raise _no_images(path)


def _fit(arr: np.ndarray, resolution: int, fit: str) -> np.ndarray:
    """(H, W) or (H, W, C) -> (C, res, res), float32 throughout (Pillow mode "F")."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    h, w = arr.shape[:2]
    if fit == "center_crop" and h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        arr = arr[top : top + side, left : left + side]
    out = np.empty((arr.shape[2], resolution, resolution), dtype=np.float32)
    for c in range(arr.shape[2]):
        plane = np.ascontiguousarray(arr[:, :, c], dtype=np.float32)
        if plane.shape != (resolution, resolution):
            # Bilinear weights are non-negative: outputs stay within the input's range.
            img = Image.fromarray(plane).resize((resolution, resolution), Image.Resampling.BILINEAR)
            plane = np.asarray(img, dtype=np.float32)
        out[c] = plane
    return out


_Prepared = tuple[np.ndarray, float, float, tuple[int, int]]


def _prepare(arr: np.ndarray, spec: ImageSourceSpec) -> _Prepared:
    """Window (before resizing, as a viewer would), measure the range, resize; keep the size
    it had, so a set of mixed sizes can say how many were resized."""
    if spec.window is not None:
        center, width = spec.window
        arr = np.clip(arr, center - width / 2, center + width / 2)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (np.inf, -np.inf)
    size = (int(arr.shape[0]), int(arr.shape[1]))
    return _fit(arr, spec.resolution, spec.fit), lo, hi, size


def _add(
    got: _Collected,
    prepared: _Prepared,
    *,
    label: str | None,
    unit: str | None = None,
    invert: bool = False,
    depth: int = 8,
    photometric: str = "MONOCHROME2",
) -> None:
    img, lo, hi, size = prepared
    got.lo, got.hi = min(got.lo, lo), max(got.hi, hi)
    got.sizes[size] += 1
    got.images.append(img)
    got.invert.append(invert)
    got.labels.append(label)
    got.units.append(unit)
    got.depths.append(depth)
    got.photometrics.append(photometric)


def _unreadable(got: _Collected, spec: ImageSourceSpec, what: str, fix: str) -> None:
    """Fail, or with skip_unreadable warn and count the file."""
    if spec.skip_unreadable:
        warnings.warn(f"skipping {what}", stacklevel=3)
        got.n_skipped += 1
        return
    raise InputDataError(f"{what}: {fix}, {_SKIP_HINT}")


def _check_label_spec(spec: ImageSourceSpec, kind: str) -> None:
    if spec.labels != "dicom_attribute":
        return
    if kind != "dicom":
        raise InputDataError(
            f"source.images.labels is dicom_attribute but the images are {kind}: "
            "use labels: folder or none"
        )
    keyword = spec.label_attribute
    if not keyword or tag_for_keyword(keyword) is None:
        raise InputDataError(
            f"source.images.label_attribute {keyword!r} is not a DICOM keyword: set it to one, "
            "e.g. BodyPartExamined, when labels is dicom_attribute"
        )


def _folder_label(path: Path, root: Path, spec: ImageSourceSpec) -> str | None:
    """The immediate parent folder's name; None at the root (or unless labels = folder)."""
    if spec.labels != "folder" or path == root or path.parent == root:
        return None
    return path.parent.name


def _load_dicom(
    root: Path, spec: ImageSourceSpec, got: _Collected, unit_attribute: str | None
) -> None:
    keyword = spec.label_attribute if spec.labels == "dicom_attribute" else None
    for path in (p for p in _files(root) if looks_like_dicom(p)):
        rel = _rel(path, root)
        try:
            dcm = read_dicom(path, keyword)
            if dcm is None:  # DICOMDIR
                continue
            # Decode the whole file before keeping any frame: a bad frame skips the file.
            frames = [_prepare(frame, spec) for frame in dcm.frames()]
        except MissingLabelError as err:
            raise InputDataError(
                f"DICOM file {rel!r}: label attribute {err}; set it in every file, or choose "
                "another source.images.label_attribute"
            ) from None
        except NotAnImageError as err:
            _unreadable(got, spec, f"DICOM file {rel!r} is {err}", "remove it from the folder")
            continue
        except UnreadableDicomError as err:
            _unreadable(
                got, spec, f"DICOM file {rel!r} cannot be decoded ({err})", "replace or remove it"
            )
            continue
        label = dcm.label if keyword else _folder_label(path, root, spec)
        unit = unit_value(dcm.dataset, unit_attribute) if unit_attribute else None
        kind = f"{dcm.bits_stored}-bit {'signed' if dcm.signed else 'unsigned'}"
        got.kinds.setdefault(kind, [0, rel])[0] += 1
        for frame in frames:
            _add(
                got,
                frame,
                label=label,
                unit=unit,
                invert=dcm.photometric == "MONOCHROME1",
                depth=dcm.bits_stored,
                photometric=dcm.photometric,
            )
        got.n_files += 1
        got.signed = got.signed or dcm.signed
        if dcm.modality:
            got.modalities[dcm.modality] += 1


def _raster(img: Image.Image) -> tuple[np.ndarray, int, bool]:
    """A PIL image as float32 (H, W) or (H, W, 3), its bit depth and whether it is colour."""
    img = ImageOps.exif_transpose(img)
    if img.mode.startswith("I"):  # 16-bit grayscale PNG ("I;16") or 32-bit "I"
        return np.asarray(img, dtype=np.float32), 16, False
    if img.mode in ("1", "L", "LA", "La"):
        return np.asarray(img.convert("L"), dtype=np.float32), 8, False
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    return np.asarray(img.convert("RGB"), dtype=np.float32), 8, True


def _add_raster(
    got: _Collected, img: Image.Image, spec: ImageSourceSpec, label: str | None
) -> None:
    arr, depth, colour = _raster(img)
    photometric = "RGB" if colour else "MONOCHROME2"
    _add(got, _prepare(arr, spec), label=label, depth=depth, photometric=photometric)
    got.n_files += 1


def _load_png(root: Path, spec: ImageSourceSpec, got: _Collected) -> None:
    for path in (p for p in _files(root) if p.suffix.lower() in RASTER_SUFFIXES):
        rel = _rel(path, root)
        try:
            with Image.open(path) as img:
                img.load()
                _add_raster(got, img, spec, _folder_label(path, root, spec))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            # The type of error, not its text: a decoder's message can quote the file's bytes.
            reason = type(err).__name__
            _unreadable(got, spec, f"image {rel!r} cannot be decoded ({reason})", "re-export it")


def _pick_split(ds: Any, root: Path) -> Any:
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        if not ds:
            raise InputDataError(f"Hugging Face dataset at {str(root)!r} has no splits")
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    return ds


def _collect_hf(ds: Any, root: Path, spec: ImageSourceSpec, got: _Collected) -> list[str] | None:
    """Decode the image column row by row; return the ClassLabel names, if any."""
    import datasets

    features = ds.features
    image_cols = [k for k, f in features.items() if isinstance(f, datasets.Image)]
    col = "image" if "image" in features else (image_cols[0] if image_cols else None)
    if col is None:
        raise InputDataError(
            f"Hugging Face dataset at {str(root)!r} has no image column: save it with an "
            "'image' column of type datasets.Image"
        )
    label_col = None
    if spec.labels == "folder":
        class_cols = [k for k, f in features.items() if isinstance(f, datasets.ClassLabel)]
        label_col = "label" if "label" in features else (class_cols[0] if class_cols else None)
    names = None
    if label_col is not None and isinstance(features[label_col], datasets.ClassLabel):
        names = list(features[label_col].names)
    if isinstance(features[col], datasets.Image):
        ds = ds.cast_column(col, datasets.Image(decode=False))
    ds = ds.select_columns([c for c in (col, label_col) if c is not None])
    for i, row in enumerate(ds):
        label = row.get(label_col) if label_col is not None else None
        if names is not None and label is not None and not 0 <= int(label) < len(names):
            raise InputDataError(
                f"Hugging Face dataset at {str(root)!r}: row {i} has no valid '{label_col}' "
                "(missing or -1): label every row, or set source.images.labels: none"
            )
        try:
            img = _open_hf_image(row[col])
            with img:
                img.load()
                _add_raster(got, img, spec, None if label is None else str(label))
        except (OSError, ValueError, TypeError, Image.DecompressionBombError) as err:
            what = f"row {i} of the Hugging Face dataset cannot be decoded ({type(err).__name__})"
            _unreadable(got, spec, what, "fix or drop that row")
    return names


def _open_hf_image(value: Any) -> Image.Image:
    """An undecoded datasets.Image cell ({"bytes", "path"}), a path, or a PIL image."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict) and value.get("bytes"):
        return Image.open(io.BytesIO(value["bytes"]))
    path = value.get("path") if isinstance(value, dict) else value
    if isinstance(path, str) and path:
        return Image.open(path)
    raise ValueError("empty image cell")


def _load_hf(root: Path, spec: ImageSourceSpec, got: _Collected) -> list[str] | None:
    import datasets

    saved = root.is_dir() and any((root / m).is_file() for m in HF_MARKERS)
    try:
        if saved:
            return _collect_hf(
                _pick_split(datasets.load_from_disk(str(root)), root), root, spec, got
            )
        with tempfile.TemporaryDirectory() as cache:  # leave no cache behind
            ds = datasets.load_dataset("imagefolder", data_dir=str(root), cache_dir=cache)
            return _collect_hf(_pick_split(ds, root), root, spec, got)
    except InputDataError:
        raise
    except Exception as err:  # datasets raises many types for a bad directory
        raise InputDataError(
            f"Hugging Face dataset at {str(root)!r} cannot be loaded ({type(err).__name__}): "
            "save it again with Dataset.save_to_disk, or use an imagefolder layout"
        ) from None


def _value_range(
    got: _Collected, kind: str, spec: ImageSourceSpec, from_data: bool = True
) -> tuple[float, float]:
    """The values mapped to [0, 1]: the window, or a DICOM set's own (min, max), or the bit
    depth's full range (PNG, and DICOM under DP, where one image's extreme would leak)."""
    if spec.window is not None:
        center, width = spec.window
        return (center - width / 2, center + width / 2)
    if kind == "dicom" and from_data:  # a constant set still gets a range with min < max
        return (got.lo, got.hi if got.hi > got.lo else got.lo + 1.0)
    top = 65535.0 if max(got.depths) == 16 else 255.0
    if kind == "dicom" and got.signed:
        half = (top + 1) / 2
        return (-half, half - 1)
    return (0.0, top)


def _stack(
    got: _Collected, channels: int, kind: str, spec: ImageSourceSpec, range_from_data: bool
) -> np.ndarray:
    """Harmonise channels and units, then map the set's value range to [0, 1]."""
    rescale_8bit = kind != "dicom" and len(set(got.depths)) > 1
    if rescale_8bit and spec.window is not None:
        raise InputDataError(
            "the images mix 8- and 16-bit files and source.images.window is set: convert "
            "them to one bit depth, or remove the window"
        )
    lo, hi = _value_range(got, kind, spec, range_from_data)
    scale = hi - lo
    res = spec.resolution
    out = np.empty((len(got.images), channels, res, res), dtype=np.float32)
    for i, img in enumerate(got.images):
        if img.shape[0] != channels:
            img = (
                np.tensordot(_LUMA, img, axes=1)[None]
                if channels == 1
                else np.repeat(img, 3, axis=0)
            )
        if rescale_8bit and got.depths[i] == 8:
            img = img * 257.0
        x = np.clip((img - lo) / scale, 0.0, 1.0)
        out[i] = 1.0 - x if got.invert[i] else x
    return out


def _refuse_mixed_kinds(got: _Collected) -> None:
    """DICOM files of 8 and of 16 bits are different sources (a CT series beside 8-bit
    screenshots): merged, the 8-bit values would be read as modality units and the export
    would take the widest kind. Refuse, counting each kind with one example file. Signed and
    unsigned files of one depth pass: after the rescale they share units (scanners differ)."""
    if len({kind.split("-")[0] for kind in got.kinds}) < 2:
        return
    parts = [
        f"{n} {'file' if n == 1 else 'files'} {kind}, e.g. {example!r}"
        for kind, (n, example) in sorted(got.kinds.items(), key=lambda kv: -kv[1][0])
    ]
    raise InputDataError(
        "the DICOM folder mixes bit depths / pixel representations ("
        + "; ".join(parts)
        + "): keep one kind per image set (move the others to their own folder)"
    )


def _count_resized(got: _Collected, root: Path, spec: ImageSourceSpec) -> int:
    """Images not resolution x resolution, when the set mixes sizes; warned about once per
    set in this process (the CLI's preflight and the job's steps read the same set)."""
    if len(got.sizes) < 2:
        return 0  # one size throughout: scaled as configured, nothing to tell
    res = spec.resolution
    total = sum(got.sizes.values())
    n = total - got.sizes.get((res, res), 0)
    how = "cropped to a centred square and resized" if spec.fit == "center_crop" else "resized"
    warn_once(
        ("resized", str(root.resolve()), n, total, res, spec.fit),
        f"{n} of {total} images were not {res}x{res} and were {how} to {res}x{res} (the "
        f"set has {len(got.sizes)} sizes; source.images.resolution and fit choose how)",
        stacklevel=3,
    )
    return n


def _labels(
    got: _Collected, names: list[str] | None, declared: list[str] | None = None
) -> tuple[np.ndarray | None, list[str]]:
    present = [lab is not None for lab in got.labels]
    if not any(present):
        return None, []
    if not all(present):
        raise InputDataError(
            "some images have a label and others none (e.g. files directly in the root folder "
            "beside class sub-folders): put every image in a class sub-folder, or set "
            "source.images.labels: none"
        )
    if names is not None:  # ClassLabel ids
        found = [names[int(str(lab))] for lab in got.labels]
    else:
        found = [str(lab) for lab in got.labels]
    if declared is not None:
        classes = list(declared)
    else:  # a ClassLabel's own order, else the sorted names
        classes = list(names) if names is not None else sorted(set(found))
    index = {c: i for i, c in enumerate(classes)}
    outside = [i for i, lab in enumerate(found) if lab not in index]
    if outside:  # the label itself may be private: name the image, not the value
        raise InputDataError(
            f"{len(outside)} images have a label outside source.images.classes (the first is "
            f"image {outside[0]} in sorted file order): add the class, or move the images"
        )
    return np.asarray([index[lab] for lab in found], dtype=np.int64), classes


def _photometric(got: _Collected, channels: int) -> str:
    """The source's photometric, consistent with the channels delivered (the export's rule)."""
    if channels == 3:
        return "RGB"
    mono = Counter(p for p in got.photometrics if p != "RGB")
    return mono.most_common(1)[0][0] if mono else "MONOCHROME2"


def _units(got: _Collected, unit: str, kind: str) -> np.ndarray | None:
    """Person codes for `privacy.unit` (None: each image is its own person). `auto` groups a
    DICOM set by PatientID when every file carries one."""
    if unit == ROW or (unit == "auto" and kind != "dicom"):
        return None
    if kind != "dicom":
        raise ConfigError(
            f"privacy.unit {unit!r} names a DICOM attribute, and this is a {kind} set: use row"
        )
    missing = [i for i, u in enumerate(got.units) if u is None]
    if missing and unit == "auto":
        warn_once(
            ("unit", "auto-missing"),
            f"{len(missing)} images have no PatientID: each image is treated as its own "
            "person (set privacy.unit to the attribute that names the patient)",
        )
        return None
    if missing:
        raise InputDataError(
            f"{len(missing)} images have no {unit} (the privacy unit): set it in every file, "
            "or choose another privacy.unit"
        )
    return unit_codes(np.asarray(got.units, dtype=object))


def unit_attribute(unit: str) -> str | None:
    """The DICOM keyword to read for `privacy.unit`."""
    if unit == ROW:
        return None
    return "PatientID" if unit == "auto" else unit


def load_images(
    path: str | os.PathLike[str],
    spec: ImageSourceSpec,
    format: Format = "auto",
    unit: str = ROW,
    range_from_data: bool = True,
) -> ImageSet:
    """Read an image set; `format="auto"` picks DICOM, PNG/JPEG or a Hugging Face dataset.

    Sub-folders are walked in sorted order. Labels: `folder` takes each file's parent folder
    name (for a Hugging Face dataset, its `label` / ClassLabel column); `dicom_attribute` the
    value of `spec.label_attribute`. DICOM values are mapped to [0, 1] over the set's global
    (min, max) after rescale, or over the window; PNG/JPEG over the bit depth's full range.
    """
    root = Path(path)
    if not root.exists():
        raise InputDataError(
            f"input {str(root)!r} does not exist: check source.path (relative paths are "
            "resolved from the working directory)"
        )
    if spec.window is not None and spec.window[1] <= 0:
        raise InputDataError("source.images.window width must be > 0: set (center, width)")
    kind = detect_image_format(root) if format == "auto" else format
    if kind not in ("dicom", "png", "hf"):
        raise InputDataError(f"unknown image format {format!r}: use auto, dicom, png or hf")
    _check_label_spec(spec, kind)
    got = _Collected()
    names: list[str] | None = None
    if kind == "dicom":
        _load_dicom(root, spec, got, unit_attribute(unit))
    elif kind == "png":
        _load_png(root, spec, got)
    else:
        names = _load_hf(root, spec, got)
    if not got.images:
        if got.n_skipped:
            raise InputDataError(
                f"no readable images under {str(root)!r}: all {got.n_skipped} files were "
                "skipped as unreadable; check the warnings and fix the files"
            )
        raise _no_images(
            root, {"dicom": "DICOM images", "png": "PNG or JPEG images"}.get(kind, "images")
        )
    if kind == "dicom":
        _refuse_mixed_kinds(got)
    n_resized = _count_resized(got, root, spec)
    colour = any(img.shape[0] == 3 for img in got.images)
    channels = spec.channels or (3 if colour else 1)
    images = _stack(got, channels, kind, spec, range_from_data)
    labels, class_names = _labels(got, names, spec.classes)
    lo, hi = _value_range(got, kind, spec, range_from_data)
    photometric = _photometric(got, channels)
    info = ImageSourceInfo(
        kind=kind,
        bits_stored=16 if max(got.depths) > 8 else 8,
        signed=got.signed and photometric != "RGB",
        photometric=photometric,
        modality=got.modalities.most_common(1)[0][0] if got.modalities else None,
        value_range=(float(lo), float(hi)),
        n_files=got.n_files,
        n_skipped=got.n_skipped,
        n_resized=n_resized,
    )
    units = _units(got, unit, kind)
    declared = spec.classes is not None and labels is not None
    return ImageSet(images, labels, class_names, info, units, classes_declared=declared)
