"""Where a run's report goes: with its export, or apart as a failed run's.

The report is written into private staging first. If the gate passes it is published inside
the export folder (`synthetic/_report.json`, `_report.html`; the leading `_` keeps Parquet
readers from taking them for data), in the same rename that publishes the records, and
`out/report.json` / `out/report.html` are links to them: a reader never sees a report that
describes other records than the export beside it. If the gate fails it goes to
`out/failed-run/`, named as such, and the earlier export keeps its own report.
"""

from __future__ import annotations

import os
import shutil
from contextlib import suppress
from pathlib import Path

from jobs.paths import REPORT_HTML, REPORT_JSON, JobPaths
from synth.atomic import atomic_directory, atomic_write_bytes

PUBLISHED_NAMES = {REPORT_JSON: "_report.json", REPORT_HTML: "_report.html"}
"""The staged report's files, and their names inside the export folder."""


def report_attachments(paths: JobPaths) -> dict[str, Path]:
    """The staged report, as the export writers' `attachments` (name in export -> file)."""
    return {
        published: paths.report_staging / staged for staged, published in PUBLISHED_NAMES.items()
    }


def link_published_report(paths: JobPaths) -> None:
    """Point `out/report.json` and `out/report.html` at the export's own report (relative
    links, replaced atomically; copies where the filesystem has no links), and drop what the
    published export supersedes: the staged copy and an older failed run's report."""
    for top, published in PUBLISHED_NAMES.items():
        link = paths.out / top
        tmp = paths.out / f".tmp-link-{top}"
        with suppress(FileNotFoundError):
            tmp.unlink()
        try:
            os.symlink(Path(paths.export.name) / published, tmp)
            os.replace(tmp, link)
        except OSError:  # no links on this filesystem: a copy, replaced atomically
            atomic_write_bytes(link, (paths.export / published).read_bytes())
    shutil.rmtree(paths.report_staging, ignore_errors=True)
    shutil.rmtree(paths.failed_run, ignore_errors=True)


def keep_failed_report(paths: JobPaths) -> Path:
    """Move the staged report of a run whose gate failed to `out/failed-run/` (replaced
    whole): apart from the export, which still holds the report of the run that made it."""
    with atomic_directory(paths.failed_run) as tmp:
        for staged in PUBLISHED_NAMES:
            if (paths.report_staging / staged).is_file():
                shutil.copyfile(paths.report_staging / staged, tmp / staged)
    shutil.rmtree(paths.report_staging, ignore_errors=True)
    return paths.failed_run
