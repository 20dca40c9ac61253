"""Parquet export, checked with DuckDB as an independent reader: source types, nulls,
values, lineage metadata, sharding, and no partial export on failure."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from synth.data.schema import infer_schema
from synth.export import read_export_metadata, to_arrow_table, write_parquet_export
from synth.hashing import file_sha256
from synth.lineage import Lineage

N = 120
META = {"lineage": {"seed": 3, "data_hash": "d" * 64}, "report": {"gate": "passed", "auc": 0.61}}


@pytest.fixture(scope="module")
def source() -> pd.DataFrame:
    k = np.arange(N)
    return pd.DataFrame(
        {
            "id": k + 1000,
            "amount": (k * 37) % 1001,
            "visits": pd.array([None if i % 7 == 0 else i % 11 for i in k], dtype="Int64"),
            "score": [np.nan if i % 5 == 0 else i / 8 for i in k],
            "active": k % 3 == 0,
            "note": [None if i % 9 == 0 else f"note {i % 40}" for i in k],
            "plan": pd.Categorical(["basic", "pro", "team"][i % 3] for i in k),
            "flag": (k % 2).astype("int64"),
            "when": pd.Timestamp("2021-03-01") + pd.to_timedelta(k * 3600, unit="s"),
        }
    )


@pytest.fixture(scope="module")
def schema(source):
    return infer_schema(source)


def _synthetic(source: pd.DataFrame) -> pd.DataFrame:
    """What a decoder may hand over: floats for ints, objects for categories, no ID."""
    syn = source.drop(columns="id").copy()
    syn["amount"] = syn["amount"].astype(float)
    syn["visits"] = syn["visits"].astype("float64")
    syn["flag"] = syn["flag"].astype(float)
    syn["plan"] = syn["plan"].astype(object)
    return syn


def _glob(d) -> str:
    return f"read_parquet('{d}/*.parquet')"


def test_types_nulls_values_via_duckdb(tmp_path, source, schema):
    syn = _synthetic(source)
    out = tmp_path / "export"
    paths = write_parquet_export([syn.iloc[:50], syn.iloc[50:]], out, schema, META)
    assert [p.name for p in paths] == ["part-00000.parquet"]

    described = duckdb.sql(f"DESCRIBE SELECT * FROM {_glob(out)}").fetchall()
    types = {row[0]: row[1] for row in described}
    assert types == {
        "amount": "BIGINT",
        "visits": "BIGINT",
        "score": "DOUBLE",
        "active": "BOOLEAN",
        "note": "VARCHAR",
        "plan": "VARCHAR",
        "flag": "BIGINT",
        "when": "TIMESTAMP_NS",
    }
    nulls = duckdb.sql(
        f"SELECT count(*) - count(visits), count(*) - count(score), count(*) - count(note), "
        f"count(*) - count(amount), count(*) FROM {_glob(out)}"
    ).fetchall()[0]
    assert nulls == (
        source["visits"].isna().sum(),
        source["score"].isna().sum(),
        source["note"].isna().sum(),
        0,
        N,
    )
    back = duckdb.sql(f"SELECT * FROM {_glob(out)}").df()
    assert list(back.columns) == [c for c in schema.names if c != "id"]
    assert back["amount"].tolist() == source["amount"].tolist()
    assert back["flag"].tolist() == source["flag"].tolist()
    assert back["active"].tolist() == source["active"].tolist()
    assert back["plan"].tolist() == source["plan"].astype(str).tolist()
    assert back["when"].astype("datetime64[ns]").tolist() == source["when"].tolist()
    np.testing.assert_allclose(back["score"], source["score"], equal_nan=True)


def test_pandas_and_arrow_types(source, schema):
    table = to_arrow_table(_synthetic(source), schema)
    types = {f.name: str(f.type) for f in table.schema}
    assert types["plan"] == "dictionary<values=string, indices=int32, ordered=0>"
    assert types["flag"] == "int64" and types["visits"] == "int64"
    assert types["when"] == "timestamp[ns]"
    back = table.to_pandas()  # pandas metadata restores the nullable integer dtype
    assert str(back["visits"].dtype) == "Int64" and str(back["plan"].dtype) == "category"


def test_timezone_and_int_categories():
    src = pd.DataFrame(
        {
            "t": pd.date_range("2020-01-01", periods=30, freq="D", tz="UTC"),
            "grade": pd.Categorical([1, 2, 3] * 10),
            "small": np.arange(30, dtype="int32"),
        }
    )
    table = to_arrow_table(src, infer_schema(src))
    assert str(table.schema.field("t").type) == "timestamp[ns, tz=UTC]"
    assert str(table.schema.field("grade").type).startswith("dictionary<values=int64")
    assert str(table.schema.field("small").type) == "int32"


def test_dictionary_holds_only_the_values_rows_use(tmp_path):
    """A category the schema lists but no exported row holds (one seen only in the holdout,
    say) must not reach the file's dictionary, where any reader would see it."""
    real = pd.DataFrame({"city": pd.Categorical(["Oslo", "Lima", "Oslo", "Holdout-only-town"])})
    synthetic = pd.DataFrame({"city": pd.Categorical(["Lima", "Oslo", "Oslo", None] * 5)})
    schema = infer_schema(real)
    assert "Holdout-only-town" in schema.column("city").categories
    files = write_parquet_export(
        [synthetic.iloc[:8], synthetic.iloc[8:]], tmp_path / "x", schema, META
    )
    for f in files:
        assert b"Holdout-only-town" not in f.read_bytes()
    back = duckdb.sql(f"SELECT DISTINCT city FROM '{tmp_path / 'x'}/*.parquet'").fetchall()
    assert {c for (c,) in back} == {"Lima", "Oslo", None}
    dictionary = pq.read_table(files[0]).column("city").chunk(0).dictionary.to_pylist()
    assert sorted(dictionary) == ["Lima", "Oslo"]


def test_metadata_readable_by_pyarrow_and_duckdb(tmp_path, source, schema):
    out = tmp_path / "export"
    write_parquet_export([source], out, schema, META)
    assert read_export_metadata(out) == META
    assert read_export_metadata(out / "part-00000.parquet") == META
    rows = duckdb.sql(
        f"SELECT value FROM parquet_kv_metadata('{out}/*.parquet') WHERE key = 'synth'"
    ).fetchall()
    assert len(rows) == 1 and json.loads(rows[0][0]) == META


def test_sharding_and_manifest(tmp_path, source, schema):
    out = tmp_path / "export"
    shards = (source.iloc[i : i + 35] for i in range(0, N, 35))
    paths = write_parquet_export(shards, out, schema, META, rows_per_file=50)
    assert [p.name for p in paths] == [f"part-0000{i}.parquet" for i in range(3)]
    counts = [pq.ParquetFile(p).metadata.num_rows for p in paths]
    assert counts == [50, 50, 20]
    assert duckdb.sql(f"SELECT count(*) FROM {_glob(out)}").fetchall() == [(N,)]
    assert all(read_export_metadata(p) == META for p in paths)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["total_rows"] == N
    assert [f["rows"] for f in manifest["files"]] == counts
    assert all(f["sha256"] == file_sha256(out / f["path"]) for f in manifest["files"])
    assert "plan: dictionary<values=string" in manifest["arrow_schema"]


def test_failure_midway_leaves_no_export(tmp_path, source, schema):
    def shards():
        yield source.iloc[:60]
        raise RuntimeError("sampler crashed")

    out = tmp_path / "export"
    with pytest.raises(RuntimeError):
        write_parquet_export(shards(), out, schema, META, rows_per_file=20)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []

    write_parquet_export([source], out, schema, {"run": 1})
    with pytest.raises(RuntimeError):
        write_parquet_export(shards(), out, schema, {"run": 2}, rows_per_file=20)
    assert read_export_metadata(out) == {"run": 1}  # the previous export survives
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_unknown_column_refused(source, schema):
    with pytest.raises(ValueError, match="not in the table schema"):
        to_arrow_table(source.assign(extra=1), schema)


def test_lineage_travels_with_the_export(tmp_path, source, schema):
    split = {"holdout_fraction": 0.2, "n_train": 4, "n_holdout": 1}
    lineage = Lineage.create(
        spec_hash="s", data_hash="d", model_hash="m", seed=3, split=split
    ).to_dict()
    assert {"python", "torch", "pandas", "pyarrow", "prefect"} <= set(lineage["packages"])
    assert lineage["created_at"].endswith("+00:00")
    write_parquet_export([source], tmp_path / "e", schema, {"lineage": lineage})
    assert read_export_metadata(tmp_path / "e") == {"lineage": lineage}


def test_lineage_writes_its_keys_in_order_and_reads_older_records():
    lineage = Lineage.create(spec_hash="s", data_hash="d", model_hash="m", seed=3, job="j")
    assert list(lineage.to_dict()) == [
        "lineage_version", "created_at", "spec_hash", "data_hash", "model_hash", "seed",
        "split", "packages", "job", "modality", "target", "gate_override",
        "gate_override_reason", "columns", "evaluation_max_rows", "rare_category_min_rows",
        "rare_category_label", "rules",
    ]  # fmt: skip
    assert Lineage.read(lineage.to_dict()) == lineage
    older = Lineage.read({"seed": 7, "data_hash": "e" * 64, "source": {"target": "churn"}})
    assert older is not None and older.seed == 7 and older.columns == {}
    assert older.target is None and older.evaluation_max_rows is None
    assert (older.model_extra or {})["source"] == {"target": "churn"}  # unknown keys kept
    assert Lineage.read({"columns": [1], "evaluation_max_rows": "many"}).columns == {}
    assert Lineage.read(None) is None and Lineage.read(["lineage"]) is None
