"""The metadata an export carries ({lineage, report}) as JSON: one encoder for every format."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

METADATA_KEY = b"synth"
"""The Parquet key-value metadata key under which every Parquet file carries the metadata."""


def json_default(obj: Any) -> Any:
    """`json.dumps(default=...)` for metadata: numpy scalars and arrays as Python values,
    anything else (paths, dates) as its text."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def encode_metadata(metadata: dict[str, Any]) -> bytes:
    """The metadata as compact JSON with sorted keys: the value stored under `METADATA_KEY`."""
    return json.dumps(metadata, sort_keys=True, default=json_default).encode()
