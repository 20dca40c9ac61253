"""Load the protected table from CSV, Parquet or a saved Hugging Face dataset.

Every failure is an `InputDataError` whose one-line message says what is wrong and how to
fix it. Messages name files, columns and byte offsets, never cell values.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from synth.errors import InputDataError, did_you_mean

Format = Literal["auto", "csv", "parquet", "hf"]

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
SUPPORTED = (
    "CSV (.csv, .csv.gz), Parquet (.parquet, .pq, or a directory of them) or a "
    "Hugging Face dataset directory saved with save_to_disk"
)
_CHUNK = 1 << 20


def _name(path: Path) -> str:
    return repr(str(path))


def detect_format(path: Path) -> Literal["csv", "parquet", "hf"]:
    """Pick a reader from the suffix, or from what a directory holds."""
    if path.is_dir():
        if any((path / m).is_file() for m in HF_MARKERS):
            return "hf"
        if any(path.rglob("*.parquet")) or any(path.rglob("*.pq")):
            return "parquet"
        raise InputDataError(
            f"directory {_name(path)} holds neither Parquet files nor a Hugging Face dataset "
            f"(no {' / '.join(HF_MARKERS)}); point source.path at {SUPPORTED}"
        )
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise InputDataError(
        f"unsupported file type {_name(path)}: use {SUPPORTED}, or set source.format"
    )


def check_readable(path: Path) -> None:
    """The input exists and may be read; cheap, so a command checks it before anything slow."""
    if not path.exists():
        raise InputDataError(
            f"input {_name(path)} does not exist: check source.path (relative paths are "
            "resolved from the working directory)"
        )
    try:
        if path.is_dir():
            os.listdir(path)
        else:
            open(path, "rb").close()
    except PermissionError:
        raise InputDataError(
            f"input {_name(path)} is not readable (permission denied): fix its permissions "
            "(e.g. chmod u+r) or run as a user that may read it"
        ) from None


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _first_invalid_utf8(path: Path) -> int | None:
    """Byte offset (in the decompressed stream) of the first invalid UTF-8 sequence."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    with _open_binary(path) as f:
        while True:
            chunk = f.read(_CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                # err.start counts into the decoder's buffered tail + this chunk.
                pending = len(err.object) - len(chunk)
                return offset - pending + err.start
            if not chunk:
                return None
            offset += len(chunk)


def _not_utf8(path: Path) -> InputDataError:
    try:
        where = _first_invalid_utf8(path)
    except OSError:
        where = None
    at = f" (first invalid byte at offset {where})" if where is not None else ""
    return InputDataError(
        f"CSV {_name(path)} is not valid UTF-8{at}: re-save it as UTF-8 "
        "(e.g. Excel 'CSV UTF-8', or iconv -f latin1 -t utf-8)"
    )


def _csv_header(path: Path) -> list[str] | None:
    with _open_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")
        return next(csv.reader(text), None)


def _raise_on_duplicates(names: list[str], path: Path) -> None:
    dupes = [n for n, k in Counter(names).items() if k > 1]
    if dupes:
        raise InputDataError(
            f"{_name(path)} has duplicate column names {dupes}: rename them so every "
            "column name is unique"
        )


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        header = _csv_header(path)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except (OSError, EOFError, csv.Error) as err:
        raise InputDataError(
            f"CSV {_name(path)} cannot be read ({type(err).__name__}): check that it is an "
            "uncompressed or gzip-compressed CSV file"
        ) from None
    if not header or all(not h.strip() for h in header):
        raise InputDataError(
            f"CSV {_name(path)} has no columns: the first line must be a header row"
        )
    _raise_on_duplicates(header, path)
    try:
        return pd.read_csv(path, encoding="utf-8", encoding_errors="strict", low_memory=False)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except pd.errors.EmptyDataError:
        raise InputDataError(
            f"CSV {_name(path)} has no columns: the first line must be a header row"
        ) from None
    except pd.errors.ParserError as err:
        detail = str(err).strip().splitlines()[-1] if str(err).strip() else "parse error"
        raise InputDataError(
            f"CSV {_name(path)} is malformed ({detail}): fix the row so every line has as "
            "many fields as the header, and quote fields that contain commas"
        ) from None


def _parquet_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    # pyarrow's dataset reader skips names starting with "_" or "." (e.g. _manifest.json).
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix.lower() in PARQUET_SUFFIXES
        and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
    )


def _corrupt_parquet(path: Path) -> InputDataError:
    return InputDataError(
        f"Parquet file {_name(path)} is corrupt or not Parquet: re-export it from the source "
        "system (a truncated copy or a renamed CSV can cause this)"
    )


def _read_parquet(path: Path) -> pd.DataFrame:
    files = _parquet_files(path)
    if not files:
        raise InputDataError(
            f"directory {_name(path)} holds no readable .parquet files: point source.path at "
            "a Parquet file or a directory of them"
        )
    for f in files:  # footers only: cheap, and catches corrupt files and duplicate names
        try:
            names = pq.read_schema(f).names
        except (pa.ArrowException, OSError):
            raise _corrupt_parquet(f) from None
        _raise_on_duplicates(names, f)
    try:
        table = pq.read_table(path) if path.is_dir() else pq.read_table(files[0])
    except (pa.ArrowException, OSError) as err:
        raise InputDataError(
            f"Parquet data at {_name(path)} cannot be read ({type(err).__name__}): check that "
            "all files are complete and share one schema"
        ) from None
    try:
        df = table.to_pandas()
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as err:
        # The type of error, not its text: Arrow's messages can quote cell values.
        raise InputDataError(
            f"Parquet data at {_name(path)} cannot be converted to a table "
            f"({type(err).__name__}): check its column types"
        ) from None
    if not isinstance(df.index, pd.RangeIndex):  # a pandas index stored in the file
        named = any(n is not None for n in df.index.names)
        df = df.reset_index(drop=not named)
    return df


def _read_hf(path: Path) -> pd.DataFrame:
    import datasets  # heavy import: only when needed

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as err:  # datasets raises many types for a bad directory
        raise InputDataError(
            f"Hugging Face dataset at {_name(path)} cannot be loaded ({type(err).__name__}): "
            "save it again with Dataset.save_to_disk"
        ) from None
    if isinstance(ds, datasets.DatasetDict):
        if not ds:
            raise InputDataError(
                f"Hugging Face dataset at {_name(path)} has no splits: save a dataset with rows"
            )
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    try:
        return ds.to_pandas()
    except Exception as err:  # Arrow underneath: its messages can quote cell values
        raise InputDataError(
            f"Hugging Face dataset at {_name(path)} cannot be converted to a table "
            f"({type(err).__name__}): check its features"
        ) from None


_NESTED = (list, tuple, dict, set, np.ndarray)


def _raise_on_nested(df: pd.DataFrame, path: Path) -> None:
    """A list, struct or map column (Parquet, Hugging Face) has no one value per cell that a
    table model could learn: refuse it by name, rather than drop the user's data unasked."""
    for name in df.columns:
        column = df[name]
        if column.dtype != object:
            continue
        if column.map(lambda v: isinstance(v, _NESTED)).any():
            raise InputDataError(
                f"column {str(name)!r} of {_name(path)} holds lists or structs (nested values), "
                "which a table model cannot learn: flatten it into plain columns, or drop it, "
                "and run again"
            )


def load_table(path: str | os.PathLike[str], format: Format = "auto") -> pd.DataFrame:
    """Read the protected table; `format="auto"` picks the reader by suffix or directory."""
    path = Path(path)
    check_readable(path)
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "csv":
        if path.is_dir():
            raise InputDataError(f"{_name(path)} is a directory, not a CSV file: fix source.path")
        df = _read_csv(path)
    elif fmt == "parquet":
        df = _read_parquet(path)
    elif fmt == "hf":
        df = _read_hf(path)
    else:
        raise InputDataError(f"unknown source.format {format!r}: use auto, csv, parquet or hf")
    _raise_on_duplicates([str(c) for c in df.columns], path)
    _raise_on_nested(df, path)
    if df.shape[1] == 0:
        raise InputDataError(f"{_name(path)} has no columns: export the table with its columns")
    if len(df) == 0:
        raise InputDataError(
            f"{_name(path)} has columns but no rows: export the table with its data rows"
        )
    return df


def unknown_target(target: str, columns: Iterable[object]) -> InputDataError:
    """The error for a target that names no column: the closest column, then all of them."""
    columns = [str(c) for c in columns]
    return InputDataError(
        f"target column {target!r} is not in the table{did_you_mean(target, columns)}; set "
        f"source.target to one of: {', '.join(columns)}"
    )


def check_table(df: pd.DataFrame, target: str | None, min_rows: int) -> None:
    """Reject a table the pipeline cannot use, before any work is spent on it."""
    if df.shape[1] == 0:
        raise InputDataError("the table has no columns: export the table with its columns")
    if len(df) < min_rows:
        raise InputDataError(
            f"the table has {len(df)} rows; the train/holdout split needs at least {min_rows}: "
            "add rows, or lower split.min_train_rows / split.min_holdout_rows"
        )
    if target is not None and target not in df.columns:
        raise unknown_target(target, df.columns)
    empty = [str(c) for c in df.columns if df[c].isna().all()]
    if empty:
        raise InputDataError(
            f"column(s) {empty} are entirely null: drop them from the table, or fill them, "
            "and run again"
        )
