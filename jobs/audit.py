"""The one-run privacy audit of a job (`synth audit`): train once with canaries, then check
the claimed epsilon against the empirical lower bound (`synth.dp.audit`).

Canaries are fresh real records from the holdout (one per person), each added to the
training set with probability 1/2. The attack scores each by its denoising loss (a
member's is lower). Nothing is exported: the trained model and its data stay in a temporary
folder that is deleted afterwards.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.paths import JobPaths
from jobs.registry import modality_for
from synth.config import DPSpec, JobSpec
from synth.data.units import table_units, unit_column
from synth.dp.accounting import resolve_delta
from synth.dp.audit import AuditResult, audit
from synth.dp.preprocess import one_per_person
from synth.errors import InputDataError
from synth.images.io import ImageSet

MIN_CANARIES = 50


def _pick(n_people: int, canaries: int, rng: np.random.Generator) -> np.ndarray:
    m = min(canaries, n_people)
    if m < MIN_CANARIES:
        raise InputDataError(
            f"the holdout holds {n_people} people; the audit needs at least {MIN_CANARIES} "
            "canaries: use a larger table, or a larger split.holdout_fraction"
        )
    return np.sort(rng.choice(n_people, size=m, replace=False))


def run_audit(
    spec: JobSpec, canaries: int = 500, confidence: float = 0.95, progress: bool = True
) -> AuditResult:
    """Train `spec`'s model once on its training split plus canaries, and audit it."""
    steps = modality_for(spec)
    rng = np.random.default_rng(spec.seed + 7)
    with tempfile.TemporaryDirectory(prefix="synth-audit-") as tmp:
        paths = JobPaths(Path(tmp))
        source = steps.load(spec, paths)
        split_path = steps.split(spec, paths, source)
        steps.check(spec, paths, source, split_path)
        model = steps.new_synthesizer(spec, source)
        if steps.name == "table":
            train, holdout = steps.real_frames(spec, source, split_path)
            units = table_units(holdout, unit_column(spec.privacy.unit, list(holdout.columns)))
            people = one_per_person(len(holdout), units, rng)
            canary = holdout.iloc[people[_pick(len(people), canaries, rng)]]
            canary = canary.reset_index(drop=True)
            included = rng.random(len(canary)) < 0.5
            model.fit(pd.concat([train, canary[included]], ignore_index=True), progress=progress)
            scores = -model.denoising_loss(canary)
            n_people = len(train) + int(included.sum())
        else:
            train, holdout = steps.real_sets(spec, source, split_path)
            people = one_per_person(len(holdout.images), holdout.units, rng)
            pick = people[_pick(len(people), canaries, rng)]
            included = rng.random(len(pick)) < 0.5
            model.fit(_with(train, holdout, pick[included]), progress=progress)
            labels = None if holdout.labels is None else holdout.labels[pick]
            scores = -model.denoising_loss(holdout.images[pick], labels)
            n_people = len(train.images) + int(included.sum())
    plan = model.dp_
    delta = plan.delta if plan is not None else resolve_delta(DPSpec(epsilon=1.0), n_people)
    return audit(
        scores,
        included,
        delta=delta,
        claimed_epsilon=None if plan is None else plan.epsilon,
        confidence=confidence,
    )


def _with(train: ImageSet, holdout: ImageSet, extra: np.ndarray) -> ImageSet:
    """`train` plus the holdout images at `extra` (their people join the training set)."""

    def cat(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
        return None if a is None or b is None else np.concatenate([a, b[extra]])

    return dataclasses.replace(
        train,
        images=np.concatenate([train.images, holdout.images[extra]]),
        labels=cat(train.labels, holdout.labels),
        units=cat(train.units, holdout.units),
    )
