"""The command line as a user meets it: `--help` with real examples and the defaults, errors on
one line at any width that name the flag typed, a close column name suggested, and a missing
input refused in well under a second, before torch or a Prefect server loads."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from synth.errors import did_you_mean
from synth_cli.main import EXIT_BAD_INPUT, app

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["run", "request", "runs", "evaluate", "validate", "train", "audit", "schema", "demo"]
runner = CliRunner()
wide = {"COLUMNS": "250", "TERMINAL_WIDTH": "250"}  # one example per line, unwrapped


def _help(command: str | None) -> str:
    result = runner.invoke(app, [*([command] if command else []), "--help"], env=wide)
    assert result.exit_code == 0, result.output
    return result.output


def _examples(text: str) -> list[str]:
    lines = text.split("Examples:", 1)[1].splitlines()
    return [line.strip() for line in lines if line.strip()]


def _options(command: typer.core.TyperCommand) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *getattr(p, "secondary_opts", []))}


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_real_examples_and_no_type_noise(command):
    text = _help(command)
    assert "<bool>" not in text and "list[" not in text, text
    examples = _examples(text)
    assert examples, text
    group = typer.main.get_command(app)
    for example in examples:
        words = shlex.split(example)
        if words[:2] == ["accelerate", "launch"]:  # ... -m synth_cli train CONFIG
            words = ["synth", *words[words.index("synth_cli") + 1 :]]
        assert words[0] == "synth", example
        flags = [w.split("=")[0] for w in words[1:] if w.startswith("--")]
        name = next(w for w in words[1:] if not w.startswith("--"))
        assert name in group.commands, example  # a command that exists ...
        known = _options(group.commands[name]) | _options(group)
        assert set(flags) <= known, (example, set(flags) - known)  # ... with its own flags


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_the_defaults(command):
    assert "[default:" in _help(command)


def test_help_names_what_list_and_choice_options_take():
    run, request, demo = _help("run"), _help("request"), _help("demo")
    for metavar in ("KEY=VALUE", "auto|cpu|cuda", "table|image"):
        assert metavar in run, metavar
    for metavar in ("LABEL=COUNT", "NAME=VALUE", "table|image"):
        assert metavar in request, metavar
    assert "--write-split" in demo  # documented in the README, so shown
    assert "from CONFIG, else auto" in run  # a flag over a spec field: where its default is


# ---- errors name the flag typed ---------------------------------------------------------------
def _bad_input(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    text = " ".join(result.output.split())
    assert text.startswith("error:") and "Traceback" not in text, result.output
    return text


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [
        ("--rows", "0", "sampling.rows"),
        ("--device", "gpu", "training.device"),
        ("--modality", "video", "source.modality"),
        ("--train-steps", "0", "training.steps"),
    ],
)
def test_a_bad_flag_value_names_the_flag(tmp_path, flag, value, field):
    data = tmp_path / "t.csv"
    data.write_text("a,b\n1,2\n")
    text = _bad_input("run", "--data", str(data), "--out", str(tmp_path / "o"), flag, value)
    assert f"{flag} ({field})" in text


def test_a_missing_input_names_the_flag_it_came_from(tmp_path):
    missing = str(tmp_path / "missing.csv")
    text = _bad_input("run", "--data", missing, "--out", str(tmp_path / "o"))
    assert "check --data (source.path)" in text and missing in text
    # the same field set with --set is named as typed, and wins over --data
    out = ["--out", str(tmp_path / "o")]
    text = _bad_input("run", "--data", "x.csv", *out, "--set", f"source.path={missing}")
    assert "check source.path" in text and "--data" not in text
    other = tmp_path / "real.csv"
    other.write_text("a,b\n1,2\n")
    args = ["--real", str(other), "--synthetic", str(other), "--out", str(tmp_path / "r")]
    text = _bad_input("evaluate", *args, "--holdout", missing)
    assert "check --holdout" in text and "source.path" not in text
    text = _bad_input("request", "--data", missing)
    assert "--data (source)" in text


def test_an_unknown_target_suggests_the_column(tmp_path, churn_csv):
    text = _bad_input("schema", str(churn_csv), "--target", "Churn")
    assert "did you mean 'churn'?" in text and "--target" in text
    out = tmp_path / "out"
    text = _bad_input("run", "--data", str(churn_csv), "--target", "Chrn", "--out", str(out))
    assert "did you mean 'churn'?" in text and "--target (source.target)" in text
    assert not out.exists()


def test_did_you_mean_prefers_case_then_spelling_and_stays_quiet_otherwise():
    assert did_you_mean("CHURN", ["churn_rate", "churn"]) == " (did you mean 'churn'?)"
    assert did_you_mean("tenur", ["churn", "tenure"]) == " (did you mean 'tenure'?)"
    assert did_you_mean("zip_code", ["churn", "tenure"]) == ""


# ---- one line at any width --------------------------------------------------------------------
def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "synth_cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "--data", "/no/such/" + "long-folder-name/" * 4 + "table.csv"], ["--data"]),
        (["run", "--no-such-option-with-a-long-name"], ["No such option", "run --help')"]),
        (["evaluate", "--real", "x.csv"], ["Missing option", "--holdout"]),
        (["rn"], ["No such command", "did you mean", "'run'"]),
    ],
)
def test_an_error_is_one_line_on_a_narrow_terminal(tmp_path, args, words):
    result = _cli(*args, "--out", str(tmp_path / "o"), cwd=tmp_path, env={"COLUMNS": "40"})
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    assert "╭" not in result.stderr and result.stdout == ""


# ---- a missing input fails fast -----------------------------------------------------------------
FAST_FAILS = [
    "run --data {missing} --out {tmp}/o",
    "run {repo}/configs/demo_churn.yaml --set source.path={missing} --set export.out={tmp}/o",
    "request --data {missing} --rows 100",
    "train {repo}/configs/demo_churn.yaml --set source.path={missing} --out {tmp}/o",
    "audit {repo}/configs/demo_churn.yaml --set source.path={missing}",
    "evaluate --real {missing} --holdout {missing} --synthetic {missing} --out {tmp}/o",
    "validate {missing}",
    "validate {tmp} --real {missing} --holdout {missing}",
]
REPORT_HEAVY = (
    "import atexit, sys; atexit.register(lambda: print('heavy:', "
    "[m for m in ('torch', 'prefect', 'diffusers', 'sklearn') if m in sys.modules], "
    "file=sys.stderr)); from synth_cli.main import main; main()"
)


@pytest.mark.parametrize("command", FAST_FAILS)
def test_a_missing_input_fails_before_anything_heavy_loads(tmp_path, command):
    line = command.format(missing=tmp_path / "missing.csv", tmp=tmp_path, repo=REPO)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", REPORT_HEAVY, *shlex.split(line)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert "missing.csv" in result.stderr or "synth export" in result.stderr, result.stderr
    assert "heavy: []" in result.stderr, result.stderr  # no torch, no Prefect server
    assert elapsed < 3.0, f"{line}: {elapsed:.2f} s"
    assert not (tmp_path / "o").exists()
