"""Which module reads and checks which export format: the one place that dispatches on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from synth.export import dicom, image_parquet, parquet
from synth.export.check import Check
from synth.export.folder import Export

Images = tuple[np.ndarray, list[str | None]]
"""[N, C, H, W] floats in [0, 1], and each image's label name (None when unlabelled)."""


@dataclass(frozen=True)
class ExportFormat:
    """How to check and read back a published export of one format."""

    name: str
    modality: str
    """"table" or "image": which recompute (and which real data) the export is measured with."""
    check_schema: Callable[[Export], Check]
    """The `schema` check: every file is of the recorded layout."""
    stored_metadata: Callable[[Export], tuple[dict[str, Any] | None, str | None]]
    """The {lineage, report} the export carries, or (None, why not)."""
    read_images: Callable[[Export], Images] | None = None
    """An image export's images and labels (None for a table export)."""


# One handler per format `synth.export.folder.open_export` accepts (`folder.FORMATS`).
EXPORT_FORMATS: dict[str, ExportFormat] = {
    "parquet": ExportFormat(
        "parquet", "table", parquet.check_parquet_schema, parquet.stored_metadata
    ),
    "image-parquet": ExportFormat(
        "image-parquet",
        "image",
        image_parquet.check_schema,
        parquet.stored_metadata,
        image_parquet.read_images,
    ),
    "dicom": ExportFormat(
        "dicom", "image", dicom.check_dicom_schema, dicom.stored_metadata, dicom.read_images
    ),
}


def export_format(export: Export) -> ExportFormat:
    """The handler of `export`'s format."""
    return EXPORT_FORMATS[export.format]
