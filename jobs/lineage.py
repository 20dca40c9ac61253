"""The lineage a job's export carries: which spec, data, model, seed and split made it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synth.config import JobSpec
from synth.lineage import Lineage


def split_sizes(split_path: Path) -> tuple[int, int]:
    """(train, holdout) sizes of a saved split."""
    payload = json.loads(Path(split_path).read_text())
    return len(payload["train"]), len(payload["holdout"])


def lineage_for(spec: JobSpec, data_hash: str, split_path: Path, model_hash: str) -> dict[str, Any]:
    """The export's lineage as JSON, for either modality."""
    n_train, n_holdout = split_sizes(split_path)
    return Lineage.create(
        spec_hash=spec.spec_hash(),
        data_hash=data_hash,
        model_hash=model_hash,
        seed=spec.seed,
        split={
            "holdout_fraction": spec.split.holdout_fraction,
            "n_train": n_train,
            "n_holdout": n_holdout,
        },
        job=spec.name,
        modality=spec.source.modality,
        target=spec.source.target,
        gate_override=spec.evaluation.override_gate,
        gate_override_reason=spec.evaluation.override_reason,
        # What `synth validate --real` needs to measure the export as the job did.
        columns={
            name: o.model_dump(mode="json", exclude_none=True)
            for name, o in spec.source.columns.items()
        },
        evaluation_max_rows=spec.evaluation.max_rows,
        rare_category_min_rows=spec.privacy.rare_category_min_rows,
        rare_category_label=spec.privacy.rare_category_label,
        rules=spec.rules.model_dump(mode="json"),
    ).to_dict()
