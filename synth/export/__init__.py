"""Exporting synthetic tables in their source types, with lineage metadata attached."""

from synth.export.parquet import read_export_metadata, to_arrow_table, write_parquet_export

__all__ = ["read_export_metadata", "to_arrow_table", "write_parquet_export"]
