"""Training alone (load, split, check, train), for `synth train` under `accelerate launch`."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from jobs.paths import JobPaths, exclusive
from jobs.registry import modality_for
from synth.config import JobSpec
from synth.training import is_main_process


def train_only(spec: JobSpec, progress: bool = True) -> Path:
    """load -> split -> check -> train through the plain job steps; returns the model folder.

    Under `accelerate launch` every process runs this. Only the main one writes into the job's
    directory (schema, split, model; holding its lock); the others derive the same seeded
    schema and split in a private temporary folder and only read the job's checkpoint.
    """
    steps = modality_for(spec)
    paths = JobPaths(Path(spec.export.out))
    main = is_main_process()
    with (
        tempfile.TemporaryDirectory(prefix="synth-train-") as scratch,
        exclusive(paths) if main else contextlib.nullcontext(),
    ):
        own = paths if main else JobPaths(Path(scratch))
        source = steps.load(spec, own)
        split_path = steps.split(spec, own, source)
        steps.check(spec, own, source, split_path)
        steps.train(spec, paths, source, split_path, progress)
    return paths.model
