"""Where one job writes, and the lock that gives one run at a time the job's directory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from synth.atomic import recover_directory
from synth.errors import InputDataError, JobBusyError

PRIVATE_MODE = 0o700
MARKER = ".synth-output"
"""The file that says this tool made an output folder: the only non-empty folder a run writes
into. Anything else may be a user's, and a run must never delete or replace a user's files."""


@dataclass(frozen=True)
class JobPaths:
    """Where one job writes. `model/` and `.work/` stay private; `synthetic/` is the export."""

    out: Path

    @property
    def work(self) -> Path:
        return self.out / ".work"

    @property
    def schema(self) -> Path:
        return self.work / "schema.json"

    @property
    def image_source(self) -> Path:
        return self.work / "image_source.json"

    @property
    def split(self) -> Path:
        return self.work / "split.json"

    @property
    def staging(self) -> Path:
        return self.work / "synthetic"

    @property
    def staging_partial(self) -> Path:
        """Shards land here one by one; `finish_staging` renames it to `staging` when all are."""
        return self.work / "synthetic.partial"

    @property
    def model(self) -> Path:
        return self.out / "model"

    @property
    def export(self) -> Path:
        return self.out / "synthetic"

    @property
    def report_json(self) -> Path:
        """The report of the export beside it: a link into `synthetic/`, so the two are
        replaced in the one rename that publishes the export."""
        return self.out / REPORT_JSON

    @property
    def report_html(self) -> Path:
        return self.out / REPORT_HTML

    @property
    def report_staging(self) -> Path:
        """Where this run's report is written: published with the export if the gate passes,
        moved to `failed_run` if it fails, never over the report of an earlier export."""
        return self.work / "report"

    @property
    def failed_run(self) -> Path:
        """The report of the last run whose gate failed, kept apart from the export."""
        return self.out / "failed-run"

    @property
    def marker(self) -> Path:
        return self.out / MARKER

    def make_private(self, folder: Path) -> Path:
        """Create `folder` (`model/` or `.work/`) readable by the owner alone (0700): they hold
        what was learned from the real data (and `.work/` its split and staged records), so
        other users of a shared machine must not list or read them. An existing one is
        tightened."""
        folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_MODE)
        folder.chmod(PRIVATE_MODE)
        return folder


REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


def refuse_foreign(out: Path) -> None:
    """Refuse an output folder this tool did not make, before anything is written into it:
    a run replaces `model/`, `synthetic/` and the reports, and would lose a user's own files
    there (`--out .` in a project with a `model/` folder). New, empty, or marked folders pass."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise InputDataError(f"output {str(out)!r} (--out) is a file, not a folder: give a folder")
    if (out / MARKER).is_file():
        return
    entries = sorted(p.name for p in out.iterdir())
    if entries:
        raise InputDataError(
            f"output folder {str(out)!r} (--out) holds {len(entries)} entries that synth did not "
            f"make, such as {entries[0]!r}: give a new or empty folder (nothing was touched)"
        )


def claim_output(out: Path) -> None:
    """Make (or accept) `out` as this tool's output folder, marking it as made by synth."""
    refuse_foreign(out)
    out.mkdir(parents=True, exist_ok=True)
    # Created in place, not via a temp file: a second run starting at the same instant sees
    # an empty folder or the marker, never a stray temp file it would refuse.
    with suppress(FileExistsError), open(out / MARKER, "x", encoding="utf-8") as f:
        f.write(MARKER_TEXT)


MARKER_TEXT = (
    "This folder was made by synth (synthetic data). A run writes only into folders that\n"
    "hold this file, or empty ones: it replaces model/, synthetic/ and the reports here.\n"
)


@contextmanager
def exclusive(paths: JobPaths) -> Iterator[None]:
    """Hold the job's output directory for one run; a second run fails fast, naming it.

    A folder the tool did not make is refused first, untouched (`refuse_foreign`). While
    held, whatever a killed run left half-done is tidied: an export swap interrupted between
    its renames gets its previous complete copy back, and stale temp dirs go.
    """
    key = paths.out.resolve()
    if key in _HELD:  # this process holds it already (the CLI takes it before the flow does)
        yield
        return
    claim_output(paths.out)
    lock = FileLock(paths.out / ".lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise JobBusyError(
            f"another run is using {str(paths.out)!r}: wait for it to finish, or write to "
            "another output directory"
        ) from None
    _HELD.add(key)
    try:
        for published in (paths.export, paths.staging, paths.failed_run):
            recover_directory(published, remove_temp=True)
        yield
    finally:
        _HELD.discard(key)
        lock.release()


_HELD: set[Path] = set()
"""Output directories this process holds: holding one again (the flow, inside the command
that took the lock first) is a no-op, not a second lock that would refuse itself."""
