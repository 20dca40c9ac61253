"""The output root: one directory per run, keyed by run id, each with a manifest that
`synth runs` lists, and a content-hash cache of successful exports.

```
ROOT/
  runs/<run id>/run.json        status, gate verdict, rows, export path, lineage
  runs/<run id>/synthetic/      the export (model/, .work/ and the reports beside it)
  cache/<key>.json              the last good export of a job whose source and spec hash to key
```

Every file is written atomically, and each run owns its directory, so two runs of the same
job at once never write to the same place; the cache entry they both record is replaced
whole, never merged. The manifest holds hashes, counts and paths, never a data value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, ValidationError

from jobs.paths import claim_output
from synth.atomic import atomic_write_text, recover_directory
from synth.config import JobSpec
from synth.errors import InputDataError
from synth.export.folder import export_intact
from synth.hashing import file_sha256

RUNS_DIR = "runs"
CACHE_DIR = "cache"
RUN_MANIFEST = "run.json"

RunStatus = Literal["running", "interrupted", "completed", "cached", "gate_failed", "failed"]
RUN_LOCK = ".run.lock"
GateVerdict = Literal["passed", "failed", "overridden"]

# Fields that change where or how a job runs, not what it makes: they stay out of the key.
_NOT_CONTENT = {"name", "runtime", ("export", "out"), ("training", "device")}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class RunManifest(BaseModel):
    """What one run did. Written when it starts and again when it ends."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    name: str
    """The flow run's readable name, e.g. `churn-5000-rows-20261122-1402`."""
    job: str
    modality: str
    status: RunStatus
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    cache_key: str | None = None
    gate: GateVerdict | None = None
    rows: int | None = None
    export: str | None = None
    reused_from: str | None = None
    """For a cache hit: the run whose export is still current."""
    message: str | None = None
    lineage: dict[str, Any] | None = None


class CacheEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    run_id: str
    export: str
    rows: int | None
    gate: GateVerdict
    recorded_at: dt.datetime
    lineage: dict[str, Any]


def job_content(spec: JobSpec) -> dict[str, Any]:
    """The parts of the spec that decide the synthetic data."""
    data = spec.model_dump(mode="json")
    for item in _NOT_CONTENT:
        if isinstance(item, tuple):
            data.get(item[0], {}).pop(item[1], None)
        else:
            data.pop(item, None)
    return data


def cache_key(spec: JobSpec, data_hash: str | None = None) -> str:
    """SHA-256 over the source's bytes and the job's content: equal keys make equal exports."""
    data_hash = data_hash or file_sha256(spec.source.path)
    blob = json.dumps({"data": data_hash, "job": job_content(spec)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class OutputRoot:
    """Reads and writes the run directories, manifests and cache entries under one root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ValueError(f"bad run id {run_id!r}")
        return self.root / RUNS_DIR / run_id

    def own_dir(self, run_id: str) -> Path:
        """The run's folder, made as synth's own (marked), so the job may write into it."""
        folder = self.run_dir(run_id)
        claim_output(folder)
        return folder

    def write(self, manifest: RunManifest) -> Path:
        path = self.own_dir(manifest.run_id) / RUN_MANIFEST
        return atomic_write_text(path, manifest.model_dump_json(indent=2))

    def read(self, run_id: str) -> RunManifest:
        path = self.run_dir(run_id) / RUN_MANIFEST
        try:
            return RunManifest.model_validate_json(path.read_text())
        except FileNotFoundError:
            raise InputDataError(f"no run {run_id!r} under {str(self.root)!r}") from None

    @contextmanager
    def hold(self, run_id: str) -> Iterator[None]:
        """Held for as long as the run is alive: a `running` manifest whose lock is free
        belongs to a run that was killed."""
        with FileLock(self.own_dir(run_id) / RUN_LOCK):
            yield

    def _alive(self, run_id: str) -> bool:
        try:
            with FileLock(self.run_dir(run_id) / RUN_LOCK, timeout=0):
                return False
        except Timeout:
            return True

    def runs(self) -> list[RunManifest]:
        """Every run's manifest, oldest first; unreadable ones are skipped, not fatal.
        A run that says `running` but whose process is gone is reported `interrupted`."""
        found = []
        for path in (self.root / RUNS_DIR).glob(f"*/{RUN_MANIFEST}"):
            try:
                manifest = RunManifest.model_validate_json(path.read_text())
            except (OSError, ValidationError):
                continue
            if manifest.status == "running" and not self._alive(manifest.run_id):
                manifest.status = "interrupted"
            found.append(manifest)
        return sorted(found, key=lambda m: (m.started_at, m.run_id))

    def lookup(self, key: str) -> CacheEntry | None:
        """The cached export for `key`, if it is still there and intact."""
        path = self.root / CACHE_DIR / f"{key}.json"
        try:
            entry = CacheEntry.model_validate_json(path.read_text())
        except (OSError, ValidationError):
            return None
        recover_directory(entry.export)
        return entry if export_intact(Path(entry.export)) else None

    def record(self, entry: CacheEntry) -> Path:
        return atomic_write_text(
            self.root / CACHE_DIR / f"{entry.key}.json", entry.model_dump_json(indent=2)
        )
