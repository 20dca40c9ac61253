"""Parquet export: synthetic columns cast back to the source dtypes, streamed shard by shard
into an atomically published directory whose every file carries the lineage metadata.

Writing (`write_parquet_export`), reading back (`read_export_metadata`, `read_export_rows`)
and the checks of a published export (`check_parquet_schema`, `stored_metadata`; the
image-Parquet export shares both) live here together.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from synth.atomic import atomic_directory
from synth.data.schema import ColumnSpec, TableSchema
from synth.errors import InputDataError
from synth.export.check import MAX_NAMED, Check, name_list
from synth.export.folder import MANIFEST_NAME, Export, attach
from synth.export.metadata import METADATA_KEY, encode_metadata
from synth.hashing import file_record

_TRUE = frozenset({"true", "1", "1.0", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "0.0", "no", "n", "f"})


# -- target types ---------------------------------------------------------------------------


def _source_dtype(spec: ColumnSpec) -> Any:
    try:
        return pd.api.types.pandas_dtype(spec.dtype)
    except TypeError:
        return None


def _arrow_type(spec: ColumnSpec) -> pa.DataType | None:
    """The Arrow type matching the source pandas dtype; None means dictionary (category)."""
    dtype = _source_dtype(spec)
    if isinstance(dtype, pd.CategoricalDtype):
        return None
    if isinstance(dtype, pd.ArrowDtype):
        return dtype.pyarrow_dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return pa.timestamp(dtype.unit, tz=str(dtype.tz))
    if dtype is not None and pd.api.types.is_bool_dtype(dtype):
        return pa.bool_()
    if dtype is not None and (
        pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype)
    ):
        return pa.from_numpy_dtype(getattr(dtype, "numpy_dtype", dtype))
    if dtype is not None and dtype.kind in "mM":
        unit = np.datetime_data(dtype)[0]
        return pa.timestamp(unit) if dtype.kind == "M" else pa.duration(unit)
    if spec.kind == "datetime":
        # Dates read from CSV are strings; a typed timestamp serves readers better than text.
        # Text with UTC offsets was normalised to UTC (`ColumnSpec.timezone`): say so in the type.
        return pa.timestamp("ns", tz=spec.timezone)
    return pa.string()


# -- converters -----------------------------------------------------------------------------


def _to_numbers(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if pd.api.types.is_bool_dtype(s.dtype):
        s = s.astype("Int64") if s.isna().any() else s.astype("int64")
    return pd.to_numeric(s, errors="raise")


def _integers(s: pd.Series, target: pa.DataType) -> pa.Array:
    num = _to_numbers(s)
    if pd.api.types.is_integer_dtype(num.dtype):
        arr = pa.array(num, from_pandas=True)
    else:  # floats from the model: round, keep NaN as null
        values = num.to_numpy(dtype=float, na_value=np.nan)
        mask = np.isnan(values)
        if np.isinf(values).any():
            raise ValueError("holds infinite values")
        ints = np.where(mask, 0.0, np.rint(values)).astype(np.int64)
        arr = pa.array(ints, mask=mask, type=pa.int64())
    return arr.cast(target)  # safe cast: out-of-range values raise


def _floats(s: pd.Series, target: pa.DataType) -> pa.Array:
    values = _to_numbers(s).to_numpy(dtype=float, na_value=np.nan)
    return pa.array(values, from_pandas=True).cast(target)  # NaN -> null, as pandas means it


def _bools(s: pd.Series, target: pa.DataType) -> pa.Array:
    if pd.api.types.is_bool_dtype(s.dtype):
        return pa.array(s, from_pandas=True).cast(target)
    obj = s.astype(object)
    mask = obj.isna().to_numpy()
    text = obj.map(lambda v: str(v).strip().lower())
    truthy = text.isin(_TRUE).to_numpy()
    if not (truthy | text.isin(_FALSE).to_numpy() | mask).all():
        raise ValueError("holds values that are not booleans")
    return pa.array(truthy, mask=mask, type=pa.bool_()).cast(target)


def _strings(s: pd.Series, target: pa.DataType) -> pa.Array:
    return pa.array(s.astype("string"), from_pandas=True).cast(target)


def _timestamps(s: pd.Series, target: pa.TimestampType) -> pa.Array:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        dt = s
    elif pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        dt = pd.to_datetime(s, unit="ns")  # epoch nanoseconds, as the schema records them
    else:
        dt = pd.to_datetime(s, format="mixed", utc=target.tz is not None)
    aware = isinstance(dt.dtype, pd.DatetimeTZDtype)
    if target.tz is not None:
        dt = (dt if aware else dt.dt.tz_localize("UTC")).dt.tz_convert(target.tz)
    elif aware:
        dt = dt.dt.tz_convert(None)  # naive UTC
    dt = dt.dt.as_unit(target.unit)
    return pa.array(dt, from_pandas=True).cast(target)


def _durations(s: pd.Series, target: pa.DurationType) -> pa.Array:
    td = pd.to_timedelta(s).dt.as_unit(target.unit)
    return pa.array(td, from_pandas=True).cast(target)


def _value_type(categories: list[Any]) -> pa.DataType:
    kinds = {type(c) for c in categories}
    if not categories or kinds <= {str}:
        return pa.string()
    if kinds <= {bool, np.bool_}:
        return pa.bool_()
    if all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in categories):
        return pa.int64()
    if all(isinstance(c, int | float | np.number) and not isinstance(c, bool) for c in categories):
        return pa.float64()
    return pa.string()


def _dictionary(s: pd.Series, spec: ColumnSpec) -> pa.Array:
    """pandas `category` -> dictionary<int32, values> holding only the values the rows use
    (in the schema's order where it lists them): a category no synthetic row holds, such as
    one seen only in the holdout, never reaches the file."""
    values = s.astype(object)
    used = list(pd.unique(values.dropna()))
    in_use = set(used)
    categories: list[Any] = [c for c in spec.categories or [] if c in in_use]
    listed = set(categories)
    categories += [v for v in used if v not in listed]
    value_type = _value_type(categories)
    if value_type == pa.string():
        categories = list(dict.fromkeys(str(c) for c in categories))
        values = values.map(lambda v: v if pd.isna(v) else str(v))
    codes = pd.Categorical(values, categories=categories).codes.astype(np.int32)
    indices = pa.array(codes, mask=codes < 0, type=pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array(categories, type=value_type))


def _column_to_arrow(s: pd.Series, spec: ColumnSpec) -> pa.Array:
    target = _arrow_type(spec)
    if target is None:
        return _dictionary(s, spec)
    if pa.types.is_integer(target):
        return _integers(s, target)
    if pa.types.is_floating(target):
        return _floats(s, target)
    if pa.types.is_boolean(target):
        return _bools(s, target)
    if pa.types.is_timestamp(target):
        return _timestamps(s, target)
    if pa.types.is_duration(target):
        return _durations(s, target)
    if pa.types.is_string(target) or pa.types.is_large_string(target):
        return _strings(s, target)
    return pa.array(s, from_pandas=True).cast(target)


def to_arrow_table(df: pd.DataFrame, schema: TableSchema) -> pa.Table:
    """Cast a synthetic frame to the source column types, in schema order.

    Columns in the schema but not in `df` (e.g. dropped IDs) are skipped; columns in `df` that
    the schema does not know are refused rather than exported unseen.
    """
    unknown = [str(c) for c in df.columns if c not in set(schema.names)]
    if unknown:
        raise ValueError(f"columns not in the table schema: {unknown}")
    arrays, fields = [], []
    for spec in schema.columns:
        if spec.name not in df.columns:
            continue
        try:
            arrays.append(_column_to_arrow(df[spec.name], spec))
        except (ValueError, TypeError, pa.ArrowException) as err:
            # The type of error, not its text: Arrow messages can quote cell values.
            raise ValueError(
                f"column {spec.name!r} cannot be cast to its source dtype {spec.dtype!r} "
                f"({type(err).__name__})"
            ) from None
        note = {NOTE_KEY: spec.note.encode()} if spec.note else None
        fields.append(pa.field(spec.name, arrays[-1].type, metadata=note))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    return table.replace_schema_metadata(
        {**_pandas_metadata(table, schema), **_notes_metadata(table, schema)}
    )


NOTE_KEY = b"synth.note"
"""Field metadata key: what reading the column changed (`ColumnSpec.note`), on that column."""
NOTES_KEY = b"synth.notes"
"""File metadata key: a JSON list of every column's note, "column 'x': ...", for readers that
look at the file's metadata only."""


def _notes_metadata(table: pa.Table, schema: TableSchema) -> dict[bytes, bytes]:
    """The columns' notes (mixed UTC offsets normalised to UTC...), none when no column has one.
    Notes are fixed text and column names: never a value."""
    notes = [
        f"column {field.name!r}: {schema.column(field.name).note}"
        for field in table.schema
        if schema.column(field.name).note
    ]
    return {NOTES_KEY: json.dumps(notes).encode()} if notes else {}


def _pandas_metadata(table: pa.Table, schema: TableSchema) -> dict[bytes, bytes]:
    """pandas' own metadata, so `pd.read_parquet` restores dtypes such as `Int64` too."""
    empty = {}
    for field in table.schema:
        spec = schema.column(field.name)
        timestamp_from_text = pa.types.is_timestamp(field.type) and _source_dtype(spec) is not None
        timestamp_from_text &= not pd.api.types.is_datetime64_any_dtype(_source_dtype(spec))
        zone = f", {field.type.tz}" if timestamp_from_text and field.type.tz else ""
        dtype = f"datetime64[ns{zone}]" if timestamp_from_text else spec.dtype
        try:
            empty[field.name] = pd.Series(dtype=dtype)
        except (TypeError, ValueError):
            return {}
    try:
        meta = pa.Schema.from_pandas(pd.DataFrame(empty), preserve_index=False).metadata
        table.slice(0, 0).replace_schema_metadata(meta).to_pandas()  # it must read back
    except (pa.ArrowException, TypeError, ValueError):
        return {}
    return {b"pandas": meta[b"pandas"]} if meta and b"pandas" in meta else {}


# -- writing --------------------------------------------------------------------------------


def _part_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def write_parquet_export(
    shards: Iterable[pd.DataFrame],
    out_dir: str | os.PathLike[str],
    schema: TableSchema,
    metadata: dict[str, Any],
    *,
    rows_per_file: int = 1_000_000,
    compression: str = "zstd",
    attachments: Mapping[str, Path] | None = None,
) -> list[Path]:
    """Stream shards into `part-NNNNN.parquet` files under `out_dir`, published atomically.
    `attachments` (name -> file: the report) are published with them, listed in the manifest.

    Memory holds one shard and one open writer. Each file carries `metadata` as JSON under
    the `synth` key; `_manifest.json` lists files, rows and checksums. On any failure (a
    shard generator raising included) no partial export appears and a previous one stays.
    """
    if rows_per_file < 1:
        raise ValueError("rows_per_file must be >= 1")
    out_dir = Path(out_dir)
    kv = {METADATA_KEY: encode_metadata(metadata)}
    arrow_schema: pa.Schema | None = None
    files: list[tuple[str, int]] = []
    with atomic_directory(out_dir) as tmp:
        writer: pq.ParquetWriter | None = None
        file_rows = 0
        try:
            for k, shard in enumerate(shards):
                table = to_arrow_table(shard, schema)
                if arrow_schema is None:
                    arrow_schema = table.schema.with_metadata(
                        {**(table.schema.metadata or {}), **kv}
                    )
                elif not table.schema.remove_metadata().equals(arrow_schema.remove_metadata()):
                    raise ValueError(f"shard {k} has different columns or types than shard 0")
                table = table.replace_schema_metadata(arrow_schema.metadata)
                offset = 0
                while offset < table.num_rows:
                    if writer is None:
                        name = _part_name(len(files))
                        writer = pq.ParquetWriter(tmp / name, arrow_schema, compression=compression)
                        files.append((name, 0))
                        file_rows = 0
                    take = min(rows_per_file - file_rows, table.num_rows - offset)
                    writer.write_table(table.slice(offset, take))
                    offset += take
                    file_rows += take
                    files[-1] = (files[-1][0], file_rows)
                    if file_rows == rows_per_file:
                        writer.close()
                        writer = None
            if arrow_schema is None:
                raise ValueError("no shards to export")
            if not files:  # only empty shards: still publish one file that holds the schema
                with pq.ParquetWriter(tmp / _part_name(0), arrow_schema, compression=compression):
                    pass
                files.append((_part_name(0), 0))
        finally:
            if writer is not None:
                writer.close()
        manifest = {
            "format": "parquet",
            "compression": compression,
            "total_rows": sum(rows for _, rows in files),
            "files": [
                {"path": name, "rows": rows, **file_record(tmp / name)} for name, rows in files
            ],
            "arrow_schema": str(arrow_schema.remove_metadata()),
            "attachments": attach(tmp, attachments),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return [out_dir / name for name, _ in files]


# -- reading ---------------------------------------------------------------------------------


def read_export_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `synth` metadata of an export file, or of the first file of an export directory."""
    path = Path(path)
    if path.is_dir():
        parts = sorted(path.glob("part-*.parquet")) or sorted(path.glob("*.parquet"))
        if not parts:
            raise InputDataError(f"{str(path)!r} holds no Parquet files: is it an export dir?")
        path = parts[0]
    if not path.is_file():
        raise InputDataError(f"export {str(path)!r} does not exist: check the path")
    try:
        kv = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError):
        raise InputDataError(f"{str(path)!r} is not a readable Parquet file") from None
    if METADATA_KEY not in kv:
        raise InputDataError(f"{str(path)!r} carries no synth metadata: it is not a synth export")
    return json.loads(kv[METADATA_KEY])


def read_export_rows(export: Export) -> pd.DataFrame:
    """The exported rows, read back from the Parquet files (manifest order)."""
    names = export.data_files if export.selected else list(export.entries) or export.data_files
    frames = [pq.read_table(export.root / n).to_pandas() for n in names]
    if not frames:
        raise InputDataError(f"{str(export.root)!r} holds no Parquet rows to evaluate")
    return pd.concat(frames, ignore_index=True)


# -- checks of a published export ------------------------------------------------------------


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


def stored_metadata(export: Export) -> tuple[dict[str, Any] | None, str | None]:
    """The {lineage, report} the export carries, or (None, why not): every Parquet file must
    carry the same one."""
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
        return None, f"{name_list(differ)} carry a different report than {first}"
    meta = parsed[first]
    return (meta, None) if isinstance(meta, dict) else (None, f"{first}: metadata is not a dict")
