"""No real value in any message: bad input names the column and row, never the value.

Each case plants a distinctive value (`ZQX-LEAK-<case>`) in the protected input, runs the job
as a user would (`synth run`, with its preflight; one subprocess runs the Prefect flows the
way a deployment does, so a failure inside a task reaches Prefect's logs, states and
`run.json`), then searches stdout, stderr, every file the run wrote and the Prefect home (its
SQLite database and write-ahead log read as bytes) for the value: none may hold it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from synth.errors import BadValueError, InputDataError
from synth_cli.main import EXIT_BAD_INPUT, EXIT_INTERNAL, app

ROOT = Path(__file__).resolve().parents[1]
N = 300
BAD_ROW = 203  # 0-based position: "row 204 (1-based, header excluded)"
ROW_TEXT = f"row {BAD_ROW + 1} (1-based, header excluded)"


def leak(case: str) -> str:
    return f"ZQX-LEAK-{case}"


def table(seed: int = 0) -> pd.DataFrame:
    """A small mixed table; `visit` has > 100 distinct dates, so it is inferred a datetime."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "visit": pd.date_range("2020-01-01", periods=N, freq="D").strftime("%Y-%m-%d"),
            "age": rng.integers(18, 90, N),
            "income": rng.normal(50, 10, N).round(2),
            "city": rng.choice(["north", "south", "east"], N),
            "code": rng.integers(100, 999, N).astype(str),
            "target": rng.choice(["yes", "no"], N),
        }
    )


def files_holding(value: str, *roots: Path, skip: tuple[Path, ...] = ()) -> list[str]:
    """Every file under `roots` (bytes, any format) that holds `value`, except `skip`."""
    needle = value.encode()
    hits = []
    for root in roots:
        if not root.exists():
            continue
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.is_file() and path not in skip and needle in path.read_bytes():
                hits.append(str(path))
    return hits


def assert_no_leak(value: str, texts: dict[str, str], *roots: Path, skip=()) -> None:
    for where, text in texts.items():
        assert value not in text, f"{value} leaked into {where}: {text[-2000:]}"
    assert files_holding(value, *roots, skip=tuple(skip)) == []


# ---- through `synth run` and its preflight ---------------------------------------------------

runner = CliRunner()


def cli(*args: str, progress: bool = False):
    return runner.invoke(app, [*args] if progress else [*args, "--no-progress"])


def _run_table(tmp_path: Path, data: Path, *extra: str):
    out = tmp_path / "out"
    args = ["run", "--data", str(data), "--out", str(out), "--rows", "100"]
    return cli(*args, "--train-steps", "5", *extra), out


def _check_bad_input(result, value: str, tmp_path: Path, data: Path, *words: str) -> str:
    text = result.stdout + result.stderr
    assert result.exit_code == EXIT_BAD_INPUT, text
    line = " ".join(result.stderr.split())
    assert line.startswith("error:"), text
    for word in words:
        assert word in line, (word, line)
    assert "Traceback" not in text
    assert not (tmp_path / "out").exists(), "bad input must leave no output behind"
    assert_no_leak(value, {"stdout": result.stdout, "stderr": result.stderr}, tmp_path, skip=[data])
    return line


def test_unparseable_date_after_row_200(tmp_path):
    value = leak("date")
    df = table()
    df.loc[BAD_ROW, "visit"] = f"Jane {value}"
    data = tmp_path / "t.csv"
    df.to_csv(data, index=False)
    result, _ = _run_table(tmp_path, data, "--target", "target")
    _check_bad_input(result, value, tmp_path, data, "'visit'", ROW_TEXT, "expected a date")


def test_non_numeric_value_in_a_column_overridden_numeric(tmp_path):
    value = leak("numeric")
    df = table()
    df.loc[BAD_ROW, "code"] = value
    data = tmp_path / "t.csv"
    df.to_csv(data, index=False)
    result, _ = _run_table(tmp_path, data, "--set", "source.columns.code={kind: numeric}")
    _check_bad_input(result, value, tmp_path, data, "'code'", ROW_TEXT, "expected a number")


def test_text_column_overridden_datetime(tmp_path):
    value = leak("override-date")
    df = table()
    df["seen"] = df["visit"]
    df.loc[BAD_ROW, "seen"] = value
    data = tmp_path / "t.csv"
    df.to_csv(data, index=False)
    result, _ = _run_table(tmp_path, data, "--set", "source.columns.seen={kind: datetime}")
    _check_bad_input(result, value, tmp_path, data, "'seen'", ROW_TEXT)


def test_bad_date_in_the_target_column(tmp_path):
    value = leak("target")
    df = table()
    df.loc[BAD_ROW, "visit"] = value
    data = tmp_path / "t.csv"
    df.to_csv(data, index=False)
    result, _ = _run_table(tmp_path, data, "--target", "visit")
    _check_bad_input(result, value, tmp_path, data, "'visit'", ROW_TEXT)


def test_condition_label_unknown_lists_no_class(tmp_path):
    """Class labels are data values: an unknown condition label counts them, never lists them."""
    value = leak("class")
    df = table()
    df.loc[df.index[:30], "target"] = value  # a real class, frequent enough to be kept
    data = tmp_path / "t.csv"
    df.to_csv(data, index=False)
    result, _ = _run_table(
        tmp_path, data, "--target", "target", "--set", "sampling.conditions={nope: 10}"
    )
    _check_bad_input(result, value, tmp_path, data, "not a class")


def test_bad_cells_in_parquet(tmp_path):
    """A string date column read from Parquet, and a timestamp outside what nanoseconds hold
    (pyarrow and pandas quote it: "Out of bounds nanosecond timestamp: 9876-05-04 ...")."""
    value = leak("parquet")
    df = table()
    df.loc[BAD_ROW, "visit"] = value
    data = tmp_path / "t.parquet"
    df.to_parquet(data, index=False)
    result, _ = _run_table(tmp_path, data)
    _check_bad_input(result, value, tmp_path, data, "'visit'", ROW_TEXT)

    stamps = pd.date_range("2020-01-01", periods=N, freq="D").to_numpy().astype("datetime64[us]")
    stamps[BAD_ROW] = np.datetime64("9876-05-04T03:02:01", "us")
    pq.write_table(pa.table({"when": stamps, **table().drop(columns="visit")}), data)
    result, _ = _run_table(tmp_path, data)
    for planted in ("9876", "9876-05-04", "03:02:01"):
        _check_bad_input(result, planted, tmp_path, data, "'when'", ROW_TEXT)


def test_bad_cell_in_synthetic_table_given_to_evaluate(tmp_path):
    value = leak("evaluate")
    df = table()
    real, holdout, synthetic = (tmp_path / f"{n}.csv" for n in ("real", "holdout", "syn"))
    df.iloc[:200].to_csv(real, index=False)
    df.iloc[200:].to_csv(holdout, index=False)
    syn = df.iloc[:150].astype({"income": object})
    syn.loc[42, "income"] = value
    syn.to_csv(synthetic, index=False)
    out = tmp_path / "report"
    result = cli(
        "evaluate", "--real", str(real), "--holdout", str(holdout), "--synthetic",
        str(synthetic), "--target", "target", "--out", str(out),
    )  # fmt: skip
    text = result.stdout + result.stderr
    assert result.exit_code == EXIT_BAD_INPUT, text
    assert "the synthetic table: column 'income', row 43 (1-based" in " ".join(text.split())
    assert_no_leak(value, {"output": text}, tmp_path, skip=[synthetic])


def renderings(value: float) -> list[str]:
    """How a report could print `value`: in full and at the precisions it rounds to."""
    return [f"{value:.0f}", *(f"{value:.{d}g}" for d in (3, 4, 6))]


def test_the_report_shows_no_rare_category_or_extreme_number(tmp_path):
    """The report's plots, worst-first lists and per-column table draw on real and synthetic
    rows: a category fewer than k rows hold, and a number beyond the k-th extremes, on either
    side, must appear in neither report file."""
    rare_real, rare_syn = leak("report-real"), leak("report-syn")
    extreme_real, extreme_syn = 987654.0, 876543.0
    df = table()
    real, holdout, syn = df.iloc[:200].copy(), df.iloc[200:], df.iloc[:150].copy()
    real.loc[[10, 11], "city"] = rare_real  # 2 rows: under k = 5
    real.loc[5, "income"] = extreme_real
    syn.loc[7, "city"] = rare_syn
    syn.loc[3, "income"] = extreme_syn
    paths = {name: tmp_path / f"{name}.csv" for name in ("real", "holdout", "syn")}
    for name, frame in zip(paths, (real, holdout, syn), strict=True):
        frame.to_csv(paths[name], index=False)
    out = tmp_path / "report"
    result = cli(
        "evaluate", "--real", str(paths["real"]), "--holdout", str(paths["holdout"]),
        "--synthetic", str(paths["syn"]), "--target", "target", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code in (0, 1), result.output  # the planted values may fail the gate
    page = (out / "report.html").read_text()
    assert 'id="worst-first"' in page and 'id="columns"' in page and "plotly-graph-div" in page
    for value in (rare_real, rare_syn, *renderings(extreme_real), *renderings(extreme_syn)):
        assert_no_leak(value, {"output": result.output}, out)


def _dicom_folder(tmp_path: Path, value: str) -> Path:
    import pydicom
    from pydicom import config
    from pydicom.data import get_testdata_file

    folder = tmp_path / "dicom"
    folder.mkdir()
    for i in range(3):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PatientName = f"{value}^name"
        ds.PatientID = f"{value}-id"
        if i == 1:  # a malformed IS value: pydicom warns quoting it, int() raises quoting it
            ds.add_new("NumberOfFrames", "IS", "1")
            ds["NumberOfFrames"]._value = value
        before = config.settings.writing_validation_mode
        config.settings.writing_validation_mode = config.IGNORE
        try:
            ds.save_as(folder / f"img{i}.dcm")
        finally:
            config.settings.writing_validation_mode = before
    return folder


def test_bad_dicom_attribute(tmp_path):
    value = leak("dcm")
    folder = _dicom_folder(tmp_path, value)
    result, _ = _run_table(tmp_path, folder, "--modality", "image")
    text = result.stdout + result.stderr
    assert result.exit_code == EXIT_BAD_INPUT, text
    assert "NumberOfFrames is not an integer" in " ".join(text.split())
    assert_no_leak(value, {"output": text}, tmp_path, skip=list(folder.iterdir()))


def test_bad_png(tmp_path):
    value = leak("png")
    from PIL import Image

    folder = tmp_path / "png"
    (folder / "a").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8), i * 40, np.uint8)).save(folder / "a" / f"{i}.png")
    bad = folder / "a" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + value.encode() * 4)
    result, _ = _run_table(tmp_path, folder, "--modality", "image")
    text = result.stdout + result.stderr
    assert result.exit_code == EXIT_BAD_INPUT, text
    assert "'a/bad.png' cannot be decoded" in " ".join(text.split())
    assert_no_leak(value, {"output": text}, tmp_path, skip=[bad])


def test_unexpected_error_in_the_command_shows_its_type_only(tmp_path, monkeypatch):
    """Defence in depth: a third-party error the library did not foresee."""
    value = leak("raw-cli")

    def boom(*args, **kwargs):
        raise ValueError(f"cannot parse {value}")

    monkeypatch.setattr("synth.data.io.load_table", boom)
    monkeypatch.delenv("SYNTH_DEBUG", raising=False)
    data = tmp_path / "t.csv"
    table().to_csv(data, index=False)
    result = cli("schema", str(data), progress=True)  # `synth schema` has no progress bar
    text = result.stdout + result.stderr
    assert result.exit_code == EXIT_INTERNAL, text  # not the input's fault: its own code
    assert "failed with ValueError" in text and "SYNTH_DEBUG=1" in text
    assert_no_leak(value, {"output": text}, tmp_path)


# ---- the library's parse and cast sites --------------------------------------------------------


def test_unseen_category_in_a_fitted_encoder():
    from synth.data.schema import infer_schema
    from synth.tabular.encoders import TableEncoder

    value = leak("unseen")
    train = table()
    encoder = TableEncoder(infer_schema(train, "target")).fit(train)
    bad = train.head(50).copy()
    bad.loc[7, "city"] = value
    with pytest.raises(InputDataError) as err:
        encoder.transform(bad)
    assert "'city', row 8 (1-based" in str(err.value)
    assert value not in str(err.value) and err.value.__context__ is None


def test_cast_of_a_bad_value_to_the_source_type():
    from synth.data.schema import infer_schema
    from synth.export.parquet import to_arrow_table

    value = leak("cast")
    schema = infer_schema(table(), "target")
    bad = table().drop(columns="visit")
    bad["age"] = bad["age"].astype(object)
    bad.loc[5, "age"] = value
    with pytest.raises(ValueError) as err:
        to_arrow_table(bad, schema)
    assert "'age'" in str(err.value) and value not in str(err.value)


def test_parsers_name_the_row_by_the_table_row():
    from synth.data.parsing import epoch_ns, parse_numbers

    s = pd.Series(["2020-01-01"] * 10 + [leak("p"), None], name="d")
    with pytest.raises(BadValueError, match=r"column 'd', row 11 \(1-based") as err:
        epoch_ns(s.dropna(), "d")  # dropna keeps the table's row labels
    assert leak("p") not in str(err.value)
    with pytest.raises(BadValueError, match="row 3 "):
        parse_numbers(pd.Series(["1", None, "x"]), "n")
    assert parse_numbers(pd.Series(["1", None, "2.5"]), "n").tolist()[2] == 2.5
    mixed = epoch_ns(pd.Series(["2020-01-01T00:00:00+01:00", "2020-01-01", None]), "m")
    assert mixed.iloc[0] == pd.Timestamp("2019-12-31T23:00").value and np.isnan(mixed.iloc[2])


# ---- inside the Prefect flow: states, logs, run.json -------------------------------------------

FLOWS = textwrap.dedent(
    """
    import sys
    import pandas as pd
    import jobs.table as jt
    from flows.jobs import synth_job
    from synth.config import build_spec

    def spec(name):
        return build_spec({
            "name": name,
            "source": {"path": sys.argv[1], "target": "target"},
            "training": {"steps": 5, "device": "cpu"},
            "sampling": {"rows": 100},
        })

    # 1. A bad date inside the load task (a deployment runs no command-line preflight).
    print("1:", synth_job(spec("leak-load"), sys.argv[2], return_state=True).message)

    # 2. A bad value the load step passed, reaching the model's encoder in the train task.
    clean = jt.TableSteps.read
    real = jt.TableSteps.real_frames
    def bad_train(self, spec, source, split_path):
        train, holdout = real(self, spec, source, split_path)
        train.loc[7, "visit"] = sys.argv[4]
        return train, holdout
    jt.TableSteps.read = lambda self, spec: clean(self, spec.model_copy(
        update={"source": spec.source.model_copy(update={"path": sys.argv[3]})}))
    jt.TableSteps.real_frames = bad_train
    jt.TableSteps._read_real = lambda self, spec, data_hash: pd.read_csv(sys.argv[3])
    print("2:", synth_job(spec("leak-train"), sys.argv[2], return_state=True).message)

    # 3. A third-party error nobody foresaw, carrying a value: only its type may leave.
    def boom(self, spec):
        raise ValueError("unknown format: " + sys.argv[5])
    jt.TableSteps.read = boom
    print("3:", synth_job(spec("leak-raw"), sys.argv[2], return_state=True).message)
    """
)


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prefect-home")


def test_failures_inside_the_flow_reach_no_state_log_or_manifest(tmp_path, prefect_home):
    load_value, train_value, raw_value = leak("flow-load"), leak("flow-train"), leak("flow-raw")
    df = table()
    df.loc[BAD_ROW, "visit"] = f"Jane {load_value}"
    data, clean = tmp_path / "bad.csv", tmp_path / "clean.csv"
    df.to_csv(data, index=False)
    table().to_csv(clean, index=False)
    root = tmp_path / "root"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SYNTH_DEBUG"))}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = subprocess.run(
        [sys.executable, "-c", FLOWS, str(data), str(root), str(clean), train_value, raw_value],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(
        line.split(": ", 1) for line in proc.stdout.splitlines() if line[:2] in {"1:", "2:", "3:"}
    )
    assert f"column 'visit', {ROW_TEXT}" in lines["1"], proc.stdout
    assert "column 'visit', row 8 (1-based" in lines["2"], proc.stdout
    assert "the load step failed with ValueError" in lines["3"], proc.stdout
    manifests = sorted(root.glob("runs/*/run.json"))
    assert len(manifests) == 3 and all('"failed"' in m.read_text() for m in manifests)
    # Prefect recorded the failures: the rows are there, the values are not.
    assert files_holding("Task run encountered an exception", prefect_home)
    for value in (load_value, train_value, raw_value):
        assert_no_leak(
            value,
            {"stdout": proc.stdout, "stderr": proc.stderr},
            root,
            prefect_home,
            skip=[data],
        )
