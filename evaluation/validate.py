"""`validate_export`: is a published export intact, and does it carry a passing gate?

A CI job (or a data consumer) runs this on an export it did not make: the manifest must list
exactly the files on disk, every file must match its recorded SHA-256 and size, every file
must have the recorded schema (Parquet) or pixel layout (DICOM), and the report the export
carries must say the gate passed (or was overridden, with a reason). Given the real train and
holdout data, the checks are also run again on the exported rows and gated with the
thresholds the report recorded (`evaluation.validate_recompute`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from synth.errors import InputDataError
from synth.export.parquet import MANIFEST_NAME, METADATA_KEY
from synth.hashing import file_sha256

Format = Literal["parquet", "image-parquet", "dicom"]
FORMATS: tuple[str, ...] = ("parquet", "image-parquet", "dicom")
MAX_NAMED = 5
"""At most this many files or columns are named in one reason; the rest are counted."""


class Check(BaseModel):
    """One named check: passed or failed, and a one-line reason either way."""

    name: str
    passed: bool
    reason: str


class ValidationResult(BaseModel):
    """Every check run on one export. The export is valid when all of them passed."""

    path: str
    format: Format
    checks: list[Check]
    overridden: bool = False
    override_reason: str | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def check(self, name: str) -> Check:
        """The check called `name` (KeyError if it was not run)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def summary(self, max_reasons: int = 3) -> str:
        """`validate: PASSED`, with the override when there was one, or `validate: FAILED (...)`."""
        if self.passed:
            if self.overridden:
                return f"validate: PASSED (gate OVERRIDDEN: {self.override_reason})"
            return "validate: PASSED"
        failed = self.failures()
        reasons = [f"{c.name}: {_clip(c.reason)}" for c in failed[:max_reasons]]
        more = len(failed) - max_reasons
        return f"validate: FAILED ({'; '.join(reasons)}{f'; {more} more' if more > 0 else ''})"


def _clip(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMED])
    return shown + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")


# --------------------------------------------------------------------------- the export


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
    def data_files(self) -> list[str]:
        """The files to check: the selected one, or every data file on disk."""
        if self.selected is not None:
            return [self.selected]
        suffix = ".dcm" if self.format == "dicom" else ".parquet"
        return [n for n in self.on_disk if n.endswith(suffix) and (self.root / n).is_file()]


def _read_manifest(root: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, None) or (None, why it cannot be used)."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None, f"no {MANIFEST_NAME} in {str(root)!r}"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return None, f"{MANIFEST_NAME} does not parse ({type(err).__name__})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("path"), str)
        and isinstance(e.get("sha256"), str)
        and isinstance(e.get("bytes"), int)
        for e in files
    ):
        return None, f"{MANIFEST_NAME} has no valid 'files' list (path, sha256, bytes)"
    unsafe = [
        e["path"] for e in files if Path(e["path"]).name != e["path"] or e["path"][:1] in ".~"
    ]
    if unsafe:
        return None, f"{MANIFEST_NAME} lists paths outside the folder: {_names(unsafe)}"
    if len({e["path"] for e in files}) != len(files):
        return None, f"{MANIFEST_NAME} lists a file twice"
    return manifest, None


def _guess_format(root: Path, names: list[str]) -> Format | None:
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
    manifest, error = _read_manifest(root)
    fmt = manifest.get("format") if manifest is not None else None
    if fmt not in FORMATS:
        fmt = _guess_format(root, on_disk)
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
    missing = [n for n in listed if n not in export.on_disk]
    extra = [n for n in export.on_disk if n not in listed]
    problems = []
    if missing:
        problems.append(f"missing {_names(missing)}")
    if extra:
        problems.append(f"not in the manifest: {_names(extra)}")
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
    entries = export.entries
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
        return Check(name="checksums", passed=False, reason=f"content changed: {_names(bad)}")
    if checked == 0:
        return Check(name="checksums", passed=False, reason="no listed file to check")
    return Check(
        name="checksums", passed=True, reason=f"{checked} file(s) match their SHA-256 and size"
    )


def export_intact(path: str | os.PathLike[str]) -> bool:
    """The integrity half of `validate_export`: the manifest names exactly the files on disk,
    and each has its recorded size and SHA-256. (What a cache may trust without a report.)"""
    try:
        export = open_export(path)
    except InputDataError:
        return False
    return check_manifest(export).passed and check_checksums(export).passed


def _fields(schema_text: str) -> dict[str, str]:
    """`name: type` top-level fields of a printed Arrow schema (nested lines kept with theirs)."""
    fields: dict[str, str] = {}
    name = None
    for line in schema_text.splitlines():
        if line.startswith("-- "):
            break  # schema or field metadata follows
        if line[:1].isspace() and name is not None:
            fields[name] += "\n" + line
            continue
        name, _, kind = line.partition(": ")
        fields[name] = kind
    return fields


def schema_difference(got: str, want: str) -> str:
    """What differs between two printed Arrow schemas, column by column."""
    g, w = _fields(got), _fields(want)
    parts = []
    for name, kind in w.items():
        if name not in g:
            parts.append(f"column {name!r} missing")
        elif g[name] != kind:
            parts.append(
                f"column {name!r} is {g[name].splitlines()[0]}, expected {kind.split()[0]}"
            )
    parts += [f"unexpected column {name!r}" for name in g if name not in w]
    if not parts:
        parts.append("column order differs" if list(g) != list(w) else "types differ")
    return "; ".join(parts)


def _parquet_schemas(export: Export) -> tuple[dict[str, pq.FileMetaData], list[str]]:
    """File metadata per readable data file, and the files that are not Parquet."""
    meta, unreadable = {}, []
    for name in export.data_files:
        try:
            meta[name] = pq.read_metadata(export.root / name)
        except (pa.ArrowException, OSError):
            unreadable.append(name)
    return meta, unreadable


def check_parquet_schema(export: Export) -> Check:
    """Every file has the Arrow schema and row count the manifest recorded (so all agree)."""
    meta, unreadable = _parquet_schemas(export)
    problems = [f"{n} is not a readable Parquet file" for n in unreadable]
    texts = {n: str(m.schema.to_arrow_schema().remove_metadata()) for n, m in meta.items()}
    recorded = (export.manifest or {}).get("arrow_schema")
    reference_name = MANIFEST_NAME if isinstance(recorded, str) else None
    if reference_name is None and texts:
        reference_name = next(iter(texts))
        recorded = texts[reference_name]
    for name, text in texts.items():
        if text != recorded:
            problems.append(f"{name}: {schema_difference(text, recorded)} (vs {reference_name})")
    entries = export.entries
    for name, m in meta.items():
        rows = entries.get(name, {}).get("rows")
        if isinstance(rows, int) and m.num_rows != rows:
            problems.append(f"{name} holds {m.num_rows} rows, manifest says {rows}")
    if not meta and not problems:
        problems.append("no Parquet file to check")
    if problems:
        return Check(name="schema", passed=False, reason="; ".join(problems[:MAX_NAMED]))
    n_cols = len(_fields(str(recorded)))
    return Check(
        name="schema",
        passed=True,
        reason=f"{len(meta)} file(s), {n_cols} columns, schema as recorded in {reference_name}",
    )


def check_dicom_schema(export: Export) -> Check:
    """Each file parses, is the recorded SOP class and instance, and has the recorded pixel
    layout; all files share one image size."""
    from evaluation.validate_dicom import dicom_problems

    problems, n, size = dicom_problems(export)
    if problems:
        return Check(name="schema", passed=False, reason="; ".join(problems[:MAX_NAMED]))
    return Check(
        name="schema",
        passed=True,
        reason=f"{n} DICOM file(s) parse; SOP class, UIDs and pixel layout as recorded ({size})",
    )


# --------------------------------------------------------------------------- the gate


def stored_metadata(export: Export) -> tuple[dict[str, Any] | None, str | None]:
    """The {lineage, report} the export carries, or (None, why not). Every Parquet file must
    carry the same one; a DICOM export keeps it in the manifest."""
    if export.format == "dicom":
        meta = (export.manifest or {}).get("metadata")
        if not isinstance(meta, dict):
            return None, f"{MANIFEST_NAME} carries no metadata (lineage, report)"
        return meta, None
    blobs: dict[str, bytes] = {}
    for name in export.data_files:
        try:
            kv = pq.read_schema(export.root / name).metadata or {}
        except (pa.ArrowException, OSError):
            return None, f"{name} is not a readable Parquet file"
        if METADATA_KEY not in kv:
            return None, f"{name} carries no synth metadata (lineage, report)"
        blobs[name] = kv[METADATA_KEY]
    if not blobs:
        return None, "no file carries synth metadata"
    parsed = {}
    for name, blob in blobs.items():
        try:
            parsed[name] = json.loads(blob)
        except ValueError:
            return None, f"{name}: its synth metadata does not parse"
    first, *rest = parsed
    differ = [n for n in rest if parsed[n] != parsed[first]]
    if differ:
        return None, f"{_names(differ)} carry a different report than {first}"
    meta = parsed[first]
    return (meta, None) if isinstance(meta, dict) else (None, f"{first}: metadata is not a dict")


def _expected_pass(check: dict[str, Any]) -> bool | None:
    """Whether a recorded check should have passed, from its own value and threshold.
    None when the record cannot say. NaN is written as null with applicable = true."""
    value, threshold, bound = check.get("value"), check.get("threshold"), check.get("bound")
    if value is None:
        return not check.get("applicable", True)
    if not isinstance(value, int | float) or not isinstance(threshold, int | float):
        return None
    if math.isnan(value):
        return False
    if bound == "min":
        return value >= threshold
    if bound == "max":
        return value <= threshold
    return None


def check_gate(meta: dict[str, Any] | None, why: str | None) -> tuple[Check, str | None]:
    """The stored verdict: passed, or overridden with a reason (returned second)."""
    report = (meta or {}).get("report")
    gate = report.get("gate") if isinstance(report, dict) else None
    if meta is None or not isinstance(gate, dict) or not isinstance(gate.get("passed"), bool):
        return Check(
            name="gate", passed=False, reason=why or "the export carries no gate verdict"
        ), None
    checks = [c for c in gate.get("checks") or [] if isinstance(c, dict)]
    contradicted = [
        str(c.get("name"))
        for c in checks
        if _expected_pass(c) is not None and _expected_pass(c) != c.get("passed")
    ]
    if contradicted:
        return Check(
            name="gate",
            passed=False,
            reason=f"the report's verdict contradicts its own numbers for {_names(contradicted)}",
        ), None
    failing = [
        str(c.get("name")) for c in checks if c.get("applicable", True) and not c.get("passed")
    ]
    lines = [str(f) for f in gate.get("failures") or []] or failing
    if gate.get("overridden"):
        reason = gate.get("override_reason")
        if not isinstance(reason, str) or not reason.strip():
            return Check(
                name="gate", passed=False, reason="gate overridden without a recorded reason"
            ), None
        shown = f"; failing: {'; '.join(lines)}" if lines else ""
        return Check(name="gate", passed=True, reason=f"OVERRIDDEN: {reason}{shown}"), reason
    if not gate["passed"]:
        return Check(
            name="gate",
            passed=False,
            reason="gate failed: " + ("; ".join(lines) or "no reason recorded"),
        ), None
    if failing:
        return Check(
            name="gate",
            passed=False,
            reason=f"the report says passed but {_names(failing)} failed, without an override",
        ), None
    n_na = sum(1 for c in checks if not c.get("applicable", True))
    return Check(
        name="gate",
        passed=True,
        reason=f"gate passed: {len(checks) - n_na} checks within thresholds"
        + (f", {n_na} not applicable" if n_na else ""),
    ), None


# --------------------------------------------------------------------------- all together


def validate_export(
    path: str | os.PathLike[str],
    *,
    real: str | os.PathLike[str] | None = None,
    holdout: str | os.PathLike[str] | None = None,
    target: str | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> ValidationResult:
    """Check the export at `path` (an export folder, or one Parquet part file of one).

    Checks `manifest`, `checksums`, `schema` and `gate` always; with `real` and `holdout` (the
    train and holdout data: a table, or image folders) also `recompute.<metric>` for every
    gate metric, measured again on the exported rows with the report's thresholds. `seed`
    defaults to the one the report recorded. Raises `InputDataError` when `path` is not an
    export or the real data cannot be used.
    """
    if (real is None) != (holdout is None):
        raise InputDataError("real and holdout go together: give both, or neither")
    export = open_export(path)
    checks = [check_manifest(export), check_checksums(export)]
    if export.format == "dicom":
        checks.append(check_dicom_schema(export))
    else:
        checks.append(check_parquet_schema(export))
    meta, why = stored_metadata(export)
    gate_check, override_reason = check_gate(meta, why)
    checks.append(gate_check)
    if real is not None and holdout is not None:
        from evaluation.validate_recompute import recompute

        checks += recompute(
            export,
            meta or {},
            Path(real),
            Path(holdout),
            target=target,
            seed=seed,
            progress=progress,
        )
    return ValidationResult(
        path=str(path),
        format=export.format,
        checks=checks,
        overridden=override_reason is not None,
        override_reason=override_reason,
    )
