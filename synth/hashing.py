"""Content hashes for lineage and caching: the same bytes always give the same digest."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

_CHUNK = 1 << 20


def _update_from_file(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, streamed; a directory hashes its sorted relative paths and contents."""
    path = Path(path)
    h = hashlib.sha256()
    if not path.is_dir():
        _update_from_file(h, path)
        return h.hexdigest()
    files = sorted(p for p in path.rglob("*") if p.is_file())
    for p in sorted(files, key=lambda p: p.relative_to(path).as_posix()):
        # Length-prefix the name so ("ab", "c") and ("a", "bc") cannot collide.
        name = p.relative_to(path).as_posix().encode("utf-8")
        h.update(len(name).to_bytes(8, "big") + name)
        inner = hashlib.sha256()
        _update_from_file(inner, p)
        h.update(inner.digest())
    return h.hexdigest()


def file_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Size and SHA-256 of a published file, as export manifests list them."""
    return {"bytes": Path(path).stat().st_size, "sha256": file_sha256(path)}


def json_sha256(obj: Any) -> str:
    """SHA-256 of canonical JSON (sorted keys, no whitespace), so key order does not matter."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _column_hashes(s: pd.Series) -> bytes:
    try:
        values = pd.util.hash_pandas_object(s, index=False)
    except TypeError:  # unhashable cells (lists, dicts from nested data): hash their text
        values = pd.util.hash_pandas_object(s.astype(str), index=False)
    return values.to_numpy().tobytes()


def dataframe_sha256(df: pd.DataFrame) -> str:
    """SHA-256 of a table's values and column names, sensitive to row and column order.

    The index is ignored: the same rows read from CSV or Parquet hash the same.
    """
    h = hashlib.sha256()
    h.update(len(df).to_bytes(8, "big"))
    for name in df.columns:
        label = str(name).encode("utf-8")
        h.update(len(label).to_bytes(8, "big") + label)
        h.update(_column_hashes(df[name]))
    return h.hexdigest()
