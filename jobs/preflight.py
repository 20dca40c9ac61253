"""Preflight: the job's own load, split and check steps, run where nothing of the job is written.

A command line runs this before it starts an orchestrator, so bad input or a setting that
would fail after training ends the command in seconds, with one error line and no output
folder. The flow runs the same `check` step again, before its training step, for runs that
do not come through the command line (deployments, requests).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from jobs.guard import run_step
from jobs.paths import JobPaths
from synth.config import JobSpec
from synth.data.io import check_readable


def preflight(spec: JobSpec) -> None:
    """Raise the error the job would raise before training; write nothing where it writes."""
    # A missing input fails in well under a second: before the steps' modules (torch) load.
    run_step("load step", check_readable, spec.source.path)
    from jobs.registry import modality_for

    steps = modality_for(spec)
    with tempfile.TemporaryDirectory(prefix="synth-preflight-") as scratch:
        paths = JobPaths(Path(scratch))  # private (0700) and gone when this returns
        source = run_step("load step", steps.load, spec, paths)
        split_path = run_step("split step", steps.split, spec, paths, source)
        run_step("check step", steps.check, spec, paths, source, split_path)
