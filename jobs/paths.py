"""Where one job writes, and the lock that gives one run at a time the job's directory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from synth.atomic import recover_directory
from synth.errors import JobBusyError

PRIVATE_MODE = 0o700


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
        return self.out / "report.json"

    @property
    def report_html(self) -> Path:
        return self.out / "report.html"

    def make_private(self, folder: Path) -> Path:
        """Create `folder` (`model/` or `.work/`) readable by the owner alone (0700): they hold
        what was learned from the real data (and `.work/` its split and staged records), so
        other users of a shared machine must not list or read them. An existing one is
        tightened."""
        folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_MODE)
        folder.chmod(PRIVATE_MODE)
        return folder


@contextmanager
def exclusive(paths: JobPaths) -> Iterator[None]:
    """Hold the job's output directory for one run; a second run fails fast, naming it.

    While held, whatever a killed run left half-done is tidied: an export swap interrupted
    between its renames gets its previous complete copy back, and stale temp dirs go.
    """
    paths.out.mkdir(parents=True, exist_ok=True)
    key = paths.out.resolve()
    if key in _HELD:  # this process holds it already (the CLI takes it before the flow does)
        yield
        return
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
        for published in (paths.export, paths.staging):
            recover_directory(published, remove_temp=True)
        yield
    finally:
        _HELD.discard(key)
        lock.release()


_HELD: set[Path] = set()
"""Output directories this process holds: holding one again (the flow, inside the command
that took the lock first) is a no-op, not a second lock that would refuse itself."""
