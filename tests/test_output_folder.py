"""A run writes only into a folder it made (issue 10): a user's own folder is refused, exit 2,
one line, before any training, with every file in it as it was and nothing added."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_wine
from typer.testing import CliRunner

from jobs.paths import MARKER, JobPaths, claim_output, exclusive, refuse_foreign
from jobs.reports import keep_failed_report, link_published_report, report_attachments
from synth.data.schema import infer_schema
from synth.errors import InputDataError
from synth.export.folder import export_intact, open_export
from synth.export.parquet import write_parquet_export
from synth_cli.main import EXIT_BAD_INPUT, app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def wine_csv(tmp_path) -> Path:
    wine = load_wine(as_frame=True).frame
    wine["grade"] = np.array(["a", "b", "c"])[wine.pop("target")]
    path = tmp_path / "wine.csv"
    wine.to_csv(path, index=False)
    return path


def _tree(root: Path) -> dict[str, str]:
    """Every entry under `root` (hidden ones too): its relative path and content hash."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[str(Path(dirpath, name).relative_to(root))] = "dir"
        for name in filenames:
            path = Path(dirpath, name)
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _users_folder(root: Path) -> Path:
    """The issue's folder: a user's own files where a run would write."""
    for rel, text in {
        "model/important.bin": "weights of another project",
        "synthetic/keep.csv": "a,b\n1,2\n",
        ".work/synthetic/notes.txt": "notes",
        "report.json": "{}",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _refused(args: list[str], root: Path) -> str:
    before = _tree(root)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert _tree(root) == before  # nothing deleted, changed or added (no lock, no marker)
    return lines[0]


def test_a_users_folder_is_refused_and_untouched(wine_csv, tmp_path):
    out = _users_folder(tmp_path / "project")
    line = _refused(
        ["run", "--data", str(wine_csv), "--target", "grade", "--out", str(out), "--no-progress"],
        out,
    )
    assert "synth did not make" in line and "4 entries" in line and "new or empty" in line


def test_out_dot_in_a_project_with_a_model_folder_is_refused(wine_csv, tmp_path):
    project = tmp_path / "project"
    (project / "model").mkdir(parents=True)
    (project / "model" / "classifier.pt").write_bytes(b"\x00" * 64)
    before = _tree(project)
    proc = subprocess.run(
        [sys.executable, "-m", "synth_cli", "run", "--data", str(wine_csv), "--target", "grade",
         "--out", ".", "--no-progress"],
        cwd=project, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    lines = [x for x in (proc.stdout + proc.stderr).splitlines() if x.strip()]
    assert len(lines) == 1 and "'model'" in lines[0], lines
    assert _tree(project) == before


def test_evaluate_and_train_refuse_a_users_folder_too(wine_csv, tmp_path):
    out = _users_folder(tmp_path / "reports")
    line = _refused(
        ["evaluate", "--real", str(wine_csv), "--holdout", str(wine_csv),
         "--synthetic", str(wine_csv), "--out", str(out), "--no-progress"],
        out,
    )  # fmt: skip
    assert "synth did not make" in line
    spec = tmp_path / "job.yaml"
    spec.write_text(f"source:\n  path: {wine_csv}\n  target: grade\nexport:\n  out: {out}\n")
    assert "synth did not make" in _refused(["train", str(spec), "--no-progress"], out)


def test_a_file_as_out_is_refused(wine_csv, tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("mine")
    line = _refused(
        ["run", "--data", str(wine_csv), "--target", "grade", "--out", str(target)], tmp_path
    )
    assert "is a file, not a folder" in line


def test_new_empty_and_marked_folders_are_accepted(tmp_path):
    new = tmp_path / "new"
    with exclusive(JobPaths(new)):
        assert (new / MARKER).is_file()
    refuse_foreign(new)  # marked: accepted again, whatever it holds now
    (new / "model").mkdir()
    refuse_foreign(new)
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_output(empty)
    assert sorted(p.name for p in empty.iterdir()) == [MARKER]
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "a.txt").write_text("x")
    with (
        pytest.raises(InputDataError, match="1 entries that synth did not make"),
        exclusive(JobPaths(tmp_path / "theirs")),
    ):
        pass


def test_the_report_is_published_with_its_export_and_a_failed_one_kept_apart(tmp_path):
    """The steps' own functions, without a model: the report inside the export is swapped in
    the same rename as the records; a failed run's report goes to failed-run/."""
    paths = JobPaths(tmp_path / "out")
    claim_output(paths.out)
    wine = load_wine(as_frame=True).frame
    schema = infer_schema(wine, "target")

    def run(rows: int, passed: bool) -> None:
        paths.report_staging.mkdir(parents=True, exist_ok=True)
        (paths.report_staging / "report.json").write_text(f'{{"rows": {rows}}}')
        (paths.report_staging / "report.html").write_text(f"<p>{rows}</p>")
        if not passed:
            keep_failed_report(paths)
            return
        write_parquet_export(
            [wine.head(rows)], paths.export, schema, {"rows": rows},
            attachments=report_attachments(paths),
        )  # fmt: skip
        link_published_report(paths)

    run(100, passed=True)
    assert paths.report_json.read_text() == '{"rows": 100}'
    assert export_intact(paths.export)
    assert sorted(open_export(paths.export).attachments) == ["_report.html", "_report.json"]
    run(50, passed=False)  # the gate failed: the export and its report stay as they were
    assert paths.report_json.read_text() == '{"rows": 100}'
    assert (paths.failed_run / "report.json").read_text() == '{"rows": 50}'
    run(120, passed=True)  # a later pass supersedes the failed run's report
    assert paths.report_json.read_text() == '{"rows": 120}'
    assert paths.report_html.read_text() == "<p>120</p>"
    assert not paths.failed_run.exists() and not paths.report_staging.exists()
    # The report is covered by the manifest's checksums like the data files.
    (paths.export / "_report.json").write_text('{"rows": 1}')
    assert not export_intact(paths.export)


def test_debug_shows_the_traceback_and_only_then(wine_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTH_DEBUG", "")  # restored after the test: --debug sets it
    out = _users_folder(tmp_path / "project")
    args = ["run", "--data", str(wine_csv), "--out", str(out), "--no-progress"]
    quiet = CliRunner().invoke(app, args)
    assert quiet.exit_code == EXIT_BAD_INPUT and "Traceback" not in quiet.output
    loud = CliRunner().invoke(app, ["--debug", *args])
    assert loud.exit_code == EXIT_BAD_INPUT
    assert "Traceback" in loud.output and "refuse_foreign" in loud.output
    assert loud.output.strip().splitlines()[-1] == quiet.output.strip()
    assert os.environ["SYNTH_DEBUG"] == "1"  # so a flow's steps and workers see it too


def test_without_links_the_top_level_report_is_a_copy(tmp_path, monkeypatch):
    paths = JobPaths(tmp_path / "out")
    claim_output(paths.out)
    paths.report_staging.mkdir(parents=True)
    for name in ("report.json", "report.html"):
        (paths.report_staging / name).write_text(name)
    wine = load_wine(as_frame=True).frame
    write_parquet_export(
        [wine], paths.export, infer_schema(wine, "target"), {},
        attachments=report_attachments(paths),
    )  # fmt: skip

    def no_links(*args, **kwargs):
        raise OSError("symbolic links are not supported here")

    monkeypatch.setattr(os, "symlink", no_links)
    link_published_report(paths)
    assert not paths.report_json.is_symlink() and paths.report_json.read_text() == "report.json"
    assert paths.report_html.read_text() == "report.html"
