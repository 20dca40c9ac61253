"""An export folder as found on disk: its manifest, its format, and the checks every format
shares (the manifest names exactly the files on disk; each file has its recorded SHA-256)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from synth.errors import InputDataError
from synth.export.check import Check, name_list
from synth.hashing import file_record, file_sha256

MANIFEST_NAME = "_manifest.json"
Format = Literal["parquet", "image-parquet", "dicom"]
FORMATS: tuple[str, ...] = ("parquet", "image-parquet", "dicom")


@dataclass
class Export:
    """An export folder as found on disk, before anything is trusted."""

    root: Path
    format: Format
    manifest: dict[str, Any] | None
    manifest_error: str | None
    on_disk: list[str]
    """Every visible entry of the folder but the manifest (data files, and anything extra)."""
    selected: str | None = None
    """Single-file mode: the one part file to check."""

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        """Manifest entries by file name (empty without a usable manifest)."""
        if self.manifest is None:
            return {}
        return {e["path"]: e for e in self.manifest["files"]}

    @property
    def attachments(self) -> dict[str, dict[str, Any]]:
        """Files that travel with the data (the report), by name: checked like data files."""
        if self.manifest is None:
            return {}
        return {e["path"]: e for e in self.manifest.get("attachments", [])}

    @property
    def data_files(self) -> list[str]:
        """The files to check: the selected one, or every data file on disk."""
        if self.selected is not None:
            return [self.selected]
        suffix = ".dcm" if self.format == "dicom" else ".parquet"
        return [n for n in self.on_disk if n.endswith(suffix) and (self.root / n).is_file()]


def read_manifest(root: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, None) or (None, why it cannot be used)."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None, f"no {MANIFEST_NAME} in {str(root)!r}"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return None, f"{MANIFEST_NAME} does not parse ({type(err).__name__})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or not all(_is_entry(e) for e in files):
        return None, f"{MANIFEST_NAME} has no valid 'files' list (path, sha256, bytes)"
    attached = manifest.get("attachments", [])
    if not isinstance(attached, list) or not all(_is_entry(e) for e in attached):
        return None, f"{MANIFEST_NAME} has an invalid 'attachments' list (path, sha256, bytes)"
    listed = files + attached
    unsafe = [
        e["path"] for e in listed if Path(e["path"]).name != e["path"] or e["path"][:1] in ".~"
    ]
    if unsafe:
        return None, f"{MANIFEST_NAME} lists paths outside the folder: {name_list(unsafe)}"
    if len({e["path"] for e in listed}) != len(listed):
        return None, f"{MANIFEST_NAME} lists a file twice"
    return manifest, None


def _is_entry(e: Any) -> bool:
    return (
        isinstance(e, dict)
        and isinstance(e.get("path"), str)
        and isinstance(e.get("sha256"), str)
        and isinstance(e.get("bytes"), int)
    )


def attach(folder: Path, attachments: Mapping[str, Path] | None) -> list[dict[str, Any]]:
    """Copy files that must travel with an export (its report) into the export's temp folder,
    before it is published: they are swapped in with the data in one rename. Returns their
    manifest entries (name, SHA-256, bytes)."""
    entries = []
    for name, source in (attachments or {}).items():
        if Path(name).name != name or name.startswith((".", "~")) or name == MANIFEST_NAME:
            raise ValueError(f"attachment name {name!r} must be a plain file name")
        shutil.copyfile(source, folder / name)
        entries.append({"path": name, **file_record(folder / name)})
    return entries


def guess_format(root: Path, names: list[str]) -> Format | None:
    """The format from the files alone (when the manifest is missing or unreadable)."""
    if any(n.endswith(".dcm") for n in names):
        return "dicom"
    parquet = sorted(n for n in names if n.endswith(".parquet"))
    if not parquet:
        return None
    try:
        schema = pq.read_schema(root / parquet[0])
    except (pa.ArrowException, OSError):
        return "parquet"
    field = schema.field("image") if "image" in schema.names else None
    return "image-parquet" if field is not None and pa.types.is_binary(field.type) else "parquet"


def open_export(path: str | os.PathLike[str]) -> Export:
    """Find the export at `path`: an export folder, or one of its Parquet part files."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"export {str(path)!r} does not exist: check the path")
    selected = None
    if path.is_file():
        if path.suffix != ".parquet":
            raise InputDataError(
                f"{str(path)!r} is not a Parquet file: give an export folder (the one holding "
                f"{MANIFEST_NAME}) or one of its part-NNNNN.parquet files"
            )
        selected, root = path.name, path.parent
    else:
        root = path
    on_disk = sorted(
        p.name for p in root.iterdir() if not p.name.startswith(".") and p.name != MANIFEST_NAME
    )
    manifest, error = read_manifest(root)
    fmt = manifest.get("format") if manifest is not None else None
    if fmt not in FORMATS:
        fmt = guess_format(root, on_disk)
    if fmt is None:
        raise InputDataError(
            f"{str(path)!r} is not a synth export: it holds no {MANIFEST_NAME} naming a format "
            "and no .parquet or .dcm files"
        )
    if selected is not None and fmt == "dicom":
        raise InputDataError(f"{str(path)!r} sits in a DICOM export: give the export folder")
    return Export(root, fmt, manifest, error, on_disk, selected)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- integrity checks


def check_manifest(export: Export) -> Check:
    """The manifest parses and names exactly the files on disk."""
    if export.manifest is None:
        return Check(name="manifest", passed=False, reason=str(export.manifest_error))
    listed = export.entries
    if export.selected is not None:
        if export.selected not in listed:
            return Check(
                name="manifest",
                passed=False,
                reason=f"{export.selected} is not listed in {MANIFEST_NAME}",
            )
        return Check(name="manifest", passed=True, reason=f"{export.selected} is listed")
    expected = {**listed, **export.attachments}
    missing = [n for n in expected if n not in export.on_disk]
    extra = [n for n in export.on_disk if n not in expected]
    problems = []
    if missing:
        problems.append(f"missing {name_list(missing)}")
    if extra:
        problems.append(f"not in the manifest: {name_list(extra)}")
    total_key = "total_images" if export.format == "dicom" else "total_rows"
    counts = [e.get("rows", 1) for e in listed.values()]
    total = export.manifest.get(total_key)
    if total is not None and all(isinstance(c, int) for c in counts) and total != sum(counts):
        problems.append(f"{total_key} {total} != the files' {sum(counts)}")
    if problems:
        return Check(name="manifest", passed=False, reason="; ".join(problems))
    return Check(
        name="manifest",
        passed=True,
        reason=f"{len(listed)} {export.format} file(s) listed, all present, nothing extra",
    )


def check_checksums(export: Export) -> Check:
    """Every file's SHA-256 and byte size are those the manifest recorded."""
    if export.manifest is None:
        return Check(name="checksums", passed=False, reason="no usable manifest to check against")
    entries = {**export.entries, **export.attachments}
    names = [n for n in export.data_files if n in entries] if export.selected else list(entries)
    bad: list[str] = []
    checked = 0
    for name in names:
        path = export.root / name
        if not path.is_file():
            continue  # named by the manifest check
        checked += 1
        size = path.stat().st_size
        if size != entries[name]["bytes"]:
            bad.append(f"{name} ({size} bytes, manifest says {entries[name]['bytes']})")
        elif file_sha256(path) != entries[name]["sha256"]:
            bad.append(f"{name} (sha256 differs)")
    if bad:
        return Check(name="checksums", passed=False, reason=f"content changed: {name_list(bad)}")
    if checked == 0:
        return Check(name="checksums", passed=False, reason="no listed file to check")
    return Check(
        name="checksums", passed=True, reason=f"{checked} file(s) match their SHA-256 and size"
    )


def export_intact(path: str | os.PathLike[str]) -> bool:
    """The integrity half of `synth validate`: the manifest names exactly the files on disk,
    and each has its recorded size and SHA-256. (What a cache may trust without a report.)"""
    try:
        export = open_export(path)
    except InputDataError:
        return False
    return check_manifest(export).passed and check_checksums(export).passed
