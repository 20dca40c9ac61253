"""Image Parquet export: synthetic images as PNG bytes in Parquet, one row per image.

Columns: ``image`` (binary, a PNG: 8-bit ``L`` or ``RGB``, or 16-bit grayscale ``I;16``
with ``bits=16``), ``label`` (string class name, null when unlabelled), ``label_index``
(int32, null when unlabelled), ``height`` and ``width`` (int32). Every file carries the
caller's `metadata` (lineage, report) as JSON under the ``synth`` key, like the tabular
export (`synth.export.parquet.read_export_metadata` reads it back). Files
``part-NNNNN.parquet`` and ``_manifest.json`` are published together with
`synth.atomic.atomic_directory`; images are encoded and written a batch at a time.

`read_images` decodes a published export back to float images and label names; its checks
are the Parquet export's (`check_schema`; `synth.export.parquet.stored_metadata` reads the
metadata, under the same key).
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from synth.atomic import atomic_directory
from synth.export.check import Check
from synth.export.folder import MANIFEST_NAME, Export, attach
from synth.export.metadata import METADATA_KEY, encode_metadata
from synth.export.parquet import check_parquet_schema, read_export_rows
from synth.hashing import file_record

BATCH_ROWS = 256  # images encoded and held at once
SCHEMA = pa.schema(
    [
        ("image", pa.binary()),
        ("label", pa.string()),
        ("label_index", pa.int32()),
        ("height", pa.int32()),
        ("width", pa.int32()),
    ]
)


def encode_png(image: np.ndarray, bits: int = 8) -> bytes:
    """[C, H, W] floats in [0, 1] -> PNG bytes: 8-bit L (C=1) or RGB (C=3), or 16-bit
    grayscale (mode ``I;16``) when `bits` is 16. Values are clipped and rounded."""
    x = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    channels = x.shape[0]
    if bits == 8:
        arr = np.rint(x * 255).astype(np.uint8)
        pil = (
            Image.fromarray(arr[0], mode="L")
            if channels == 1
            else Image.fromarray(np.ascontiguousarray(np.moveaxis(arr, 0, -1)), mode="RGB")
        )
    elif bits == 16:
        if channels != 1:
            raise ValueError("16-bit PNG export is for grayscale images only (Pillow)")
        pil = Image.fromarray(np.rint(x[0] * 65535).astype(np.uint16))  # mode I;16
    else:
        raise ValueError(f"bits must be 8 or 16, not {bits}")
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> [H, W] or [H, W, 3] integers as stored (uint8, or uint16 for I;16)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def _check(images: np.ndarray, labels: np.ndarray | None, class_names: Sequence[str] | None):
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError("images must be a numpy array [N, C, H, W] with C = 1 or 3")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be floats in [0, 1], not {images.dtype}")
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({images.shape[0]},)")
    if labels.size and (labels.min() < 0 or (class_names and labels.max() >= len(class_names))):
        raise ValueError("labels must be class indices in [0, len(class_names))")
    return labels


def _batch(
    images: np.ndarray,
    labels: np.ndarray | None,
    names: list[str] | None,
    start: int,
    stop: int,
    bits: int,
) -> pa.Table:
    chunk = images[start:stop]
    if not np.isfinite(chunk).all():
        raise ValueError("images hold NaN or infinite values")
    n, _, h, w = chunk.shape
    pngs = [encode_png(img, bits) for img in chunk]
    if labels is None:
        idx = pa.nulls(n, pa.int32())
        text = pa.nulls(n, pa.string())
    else:
        ks = labels[start:stop].astype(np.int32)
        idx = pa.array(ks, type=pa.int32())
        text = pa.array([names[k] if names else str(k) for k in ks.tolist()], type=pa.string())
    sizes = pa.array(np.full(n, h, np.int32)), pa.array(np.full(n, w, np.int32))
    return pa.Table.from_arrays(
        [pa.array(pngs, type=pa.binary()), text, idx, *sizes], schema=SCHEMA
    )


def write_image_parquet_export(
    images: np.ndarray,
    out_dir: str | os.PathLike[str],
    *,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    metadata: dict[str, Any],
    rows_per_file: int = 10_000,
    bits: int = 8,
    compression: str = "zstd",
    attachments: Mapping[str, Path] | None = None,
) -> list[Path]:
    """Write `images` ([N, C, H, W] floats in [0, 1]) as PNG rows into ``part-NNNNN.parquet``
    files of at most `rows_per_file` rows under `out_dir`, published atomically with
    ``_manifest.json`` (files, rows, SHA-256, label counts) and `attachments` (the report).

    `bits` = 16 writes 16-bit grayscale PNGs. `compression` applies to the small columns;
    PNG bytes are stored uncompressed (they are compressed already). Memory holds one batch
    of encoded images; `images` may be a memory map. Returns the written files in order.
    """
    if rows_per_file < 1:
        raise ValueError("rows_per_file must be >= 1")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, not {bits}")
    labels = _check(images, labels, class_names)
    if bits == 16 and images.shape[1] != 1:
        raise ValueError("16-bit PNG export is for grayscale images only (Pillow)")
    names = [str(c) for c in class_names] if class_names else None
    n = int(images.shape[0])
    kv = {METADATA_KEY: encode_metadata(metadata)}
    schema = SCHEMA.with_metadata(kv)
    codecs = {f.name: ("none" if f.name == "image" else compression) for f in SCHEMA}

    out_dir = Path(out_dir)
    files: list[tuple[str, int]] = []
    with atomic_directory(out_dir) as tmp:
        for first in range(0, max(n, 1), rows_per_file):
            name = f"part-{len(files):05d}.parquet"
            last = min(first + rows_per_file, n)
            with pq.ParquetWriter(tmp / name, schema, compression=codecs) as writer:
                for start in range(first, last, BATCH_ROWS):
                    stop = min(start + BATCH_ROWS, last)
                    table = _batch(images, labels, names, start, stop, bits)
                    writer.write_table(table.replace_schema_metadata(kv))
            files.append((name, last - first))
        counts: Counter[str] = Counter()
        if labels is not None:
            counts.update(names[k] if names else str(k) for k in labels.tolist())
        manifest = {
            "format": "image-parquet",
            "image_encoding": "png",
            "bits": bits,
            "png_mode": "I;16" if bits == 16 else ("L" if images.shape[1] == 1 else "RGB"),
            "total_rows": n,
            "label_counts": dict(sorted(counts.items())),
            "files": [
                {"path": name, "rows": rows, **file_record(tmp / name)} for name, rows in files
            ],
            "arrow_schema": str(SCHEMA),
            "attachments": attach(tmp, attachments),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return [out_dir / name for name, _ in files]


# -- reading and checking a published export ---------------------------------------------------


def check_schema(export: Export) -> Check:
    """The Parquet export's schema check: every file has the Arrow schema (`SCHEMA`) and the
    row count the manifest recorded."""
    return check_parquet_schema(export)


def read_images(export: Export) -> tuple[np.ndarray, list[str | None]]:
    """[N, C, H, W] floats in [0, 1] and the label names, decoded from the PNG rows."""
    table = read_export_rows(export)
    images, labels = [], []
    for png, label in zip(table["image"], table["label"], strict=True):
        arr = decode_png(png)
        scale = 65535.0 if arr.dtype == np.uint16 else 255.0
        x = arr.astype(np.float32) / scale
        images.append(x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0))
        labels.append(None if label is None or pd.isna(label) else str(label))
    return np.stack(images), labels
