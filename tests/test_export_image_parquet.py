"""Image Parquet export, checked with pyarrow and DuckDB as an independent reader: PNGs decode
with Pillow to the quantised pixels, labels and sizes, lineage metadata, sharding, manifest,
and no partial export on failure."""

from __future__ import annotations

import io
import json

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from synth.export.image_parquet import write_image_parquet_export
from synth.export.parquet import METADATA_KEY, read_export_metadata
from synth.hashing import file_sha256

META = {"lineage": {"seed": 3, "data_hash": "d" * 64}, "report": {"gate": "passed", "fid": 12.5}}
NAMES = ["zero", "one", "two"]


def _images(n: int, c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    imgs = rng.random((n, c, h, w), dtype=np.float32)
    imgs[0, :, 0, 0], imgs[0, :, 0, 1] = 0.0, 1.0
    return imgs


def _glob(d) -> str:
    return f"read_parquet('{d}/*.parquet')"


def _decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def test_gray_round_trip_pyarrow_duckdb_pillow(tmp_path):
    n, h, w = 50, 16, 12
    images = _images(n, 1, h, w)
    labels = np.arange(n, dtype=np.int64) % 3
    out = tmp_path / "img"
    paths = write_image_parquet_export(
        images, out, labels=labels, class_names=NAMES, metadata=META, rows_per_file=20
    )
    assert [p.name for p in paths] == [f"part-{i:05d}.parquet" for i in range(3)]
    assert [pq.read_metadata(p).num_rows for p in paths] == [20, 20, 10]

    table = pq.read_table(out)
    assert table.schema.field("image").type == pa.binary()
    assert table.schema.field("label").type == pa.string()
    assert table.schema.field("label_index").type == pa.int32()
    assert table.schema.field("height").type == pa.int32()
    assert table.column("label").to_pylist() == [NAMES[k] for k in labels]
    assert table.column("label_index").to_pylist() == labels.tolist()
    assert set(table.column("height").to_pylist()) == {h}
    assert set(table.column("width").to_pylist()) == {w}
    expected = np.rint(images[:, 0] * 255).astype(np.uint8)
    for i, png in enumerate(table.column("image").to_pylist()):
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        im = _decode(png)
        assert im.mode == "L" and im.size == (w, h)
        np.testing.assert_array_equal(np.asarray(im), expected[i])
        # within one 8-bit step of the float image
        assert np.abs(np.asarray(im) / 255.0 - images[i, 0]).max() <= 0.5 / 255 + 1e-6

    # DuckDB: an independent Parquet reader.
    rows = duckdb.sql(f"select label, octet_length(image) as n from {_glob(out)}").fetchall()
    assert [r[0] for r in rows] == [NAMES[k] for k in labels]
    assert [r[1] for r in rows] == [len(b) for b in table.column("image").to_pylist()]
    counts = dict(duckdb.sql(f"select label, count(*) from {_glob(out)} group by 1").fetchall())
    blobs = duckdb.sql(f"select image from {_glob(out)}").fetchall()
    np.testing.assert_array_equal(np.asarray(_decode(bytes(blobs[7][0]))), expected[7])

    # Metadata: in every file, and readable with the tabular export's reader.
    for p in paths:
        assert json.loads(pq.read_schema(p).metadata[METADATA_KEY]) == META
    assert read_export_metadata(out) == META

    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["total_rows"] == n
    assert manifest["label_counts"] == counts
    assert manifest["png_mode"] == "L" and manifest["bits"] == 8
    for f, p in zip(manifest["files"], paths, strict=True):
        assert f["path"] == p.name and f["sha256"] == file_sha256(p)
    assert sorted(x.name for x in out.iterdir()) == sorted(
        [p.name for p in paths] + ["_manifest.json"]
    )


def test_rgb_round_trip(tmp_path):
    images = _images(9, 3, 10, 14, seed=1)
    out = tmp_path / "rgb"
    write_image_parquet_export(
        images, out, labels=np.zeros(9, np.int64), class_names=["x"], metadata=META
    )
    table = pq.read_table(out)
    expected = np.rint(np.moveaxis(images, 1, -1) * 255).astype(np.uint8)
    for i, png in enumerate(table.column("image").to_pylist()):
        im = _decode(png)
        assert im.mode == "RGB" and im.size == (14, 10)
        np.testing.assert_array_equal(np.asarray(im), expected[i])
    assert table.column("height").to_pylist() == [10] * 9
    assert table.column("width").to_pylist() == [14] * 9


def test_16_bit_grayscale(tmp_path):
    images = _images(5, 1, 8, 6, seed=2)
    out = tmp_path / "g16"
    write_image_parquet_export(images, out, metadata=META, bits=16)
    table = pq.read_table(out)
    expected = np.rint(images[:, 0].astype(np.float64) * 65535).astype(np.uint16)
    for i, png in enumerate(table.column("image").to_pylist()):
        im = _decode(png)
        assert im.mode == "I;16"
        arr = np.asarray(im)
        assert arr.dtype == np.uint16
        np.testing.assert_array_equal(arr, expected[i])
    assert json.loads((out / "_manifest.json").read_text())["png_mode"] == "I;16"


def test_unlabelled_rows_have_null_labels(tmp_path):
    out = tmp_path / "nolabel"
    write_image_parquet_export(_images(4, 1, 5, 5), out, metadata=META)
    table = pq.read_table(out)
    assert table.column("label").null_count == 4
    assert table.column("label_index").null_count == 4
    nulls = duckdb.sql(f"select count(*) from {_glob(out)} where label is null").fetchall()[0][0]
    assert nulls == 4
    assert json.loads((out / "_manifest.json").read_text())["label_counts"] == {}


def test_bad_inputs_are_refused(tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(ValueError, match="grayscale"):
        write_image_parquet_export(_images(2, 3, 4, 4), out, metadata=META, bits=16)
    with pytest.raises(ValueError, match="class indices"):
        write_image_parquet_export(
            _images(2, 1, 4, 4), out, labels=np.array([0, 3]), class_names=NAMES, metadata=META
        )
    with pytest.raises(ValueError, match="C = 1 or 3"):
        write_image_parquet_export(_images(2, 2, 4, 4), out, metadata=META)
    assert not out.exists()


def test_failure_midway_leaves_no_output_and_keeps_previous(tmp_path):
    images = _images(40, 1, 6, 6)
    out = tmp_path / "img"
    bad = images.copy()
    bad[30, 0, 2, 2] = np.nan  # met only after two files have been written
    with pytest.raises(ValueError, match="NaN"):
        write_image_parquet_export(bad, out, metadata=META, rows_per_file=8)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []

    write_image_parquet_export(images, out, metadata=META, rows_per_file=8)
    digest = file_sha256(out)
    with pytest.raises(ValueError, match="NaN"):
        write_image_parquet_export(bad, out, metadata={"other": 1}, rows_per_file=8)
    assert file_sha256(out) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"]
