"""The `recompute.*` checks: measure the exported rows (or images) again against the real
train and holdout data, and gate them with the thresholds the export's report recorded.

A report is a claim; this is the evidence. An export whose report was edited to say
"passed", or produced by a job whose evaluation was skipped, fails here with the metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from evaluation import suite
from evaluation.gate import GateResult
from evaluation.suite import ImageInputs, TableInputs
from synth.config import EvaluationSpec, ImageThresholds, PrivacySpec, RulesSpec, Thresholds
from synth.data.schema import ColumnOverride
from synth.errors import InputDataError
from synth.export.check import Check
from synth.export.folder import Export
from synth.export.formats import export_format
from synth.export.parquet import read_export_rows
from synth.lineage import Lineage


def recorded_thresholds(report: dict[str, Any], model: type[BaseModel]) -> BaseModel:
    """The thresholds the report's gate used; defaults for any it does not record."""
    checks = ((report.get("gate") or {}).get("checks")) or []
    known = set(model.model_fields)
    values = {
        f"{c.get('name')}_{c.get('bound')}": c.get("threshold")
        for c in checks
        if isinstance(c, dict) and isinstance(c.get("threshold"), int | float)
    }
    if any(isinstance(c, dict) and c.get("name") == "dp" for c in checks):
        values["require_dp"] = True  # the `dp` check exists only when DP was required
    return model(**{k: v for k, v in values.items() if k in known})


def _overridden_failures(report: dict[str, Any]) -> set[str]:
    """Checks the report recorded as failing under an override with a reason: failing again
    is what the override already accepted."""
    gate = report.get("gate") or {}
    if not (gate.get("overridden") and str(gate.get("override_reason") or "").strip()):
        return set()
    return {
        str(c.get("name"))
        for c in gate.get("checks") or []
        if isinstance(c, dict) and c.get("applicable", True) and not c.get("passed")
    }


def gate_checks(gate: GateResult, report: dict[str, Any]) -> list[Check]:
    """One `recompute.<metric>` check per gate metric, with value and threshold."""
    accepted = _overridden_failures(report)
    out = []
    for c in gate.checks:
        name = f"recompute.{c.name}"
        if not c.applicable:
            out.append(Check(name=name, passed=True, reason=f"{c.name}: not applicable"))
        elif c.passed:
            out.append(Check(name=name, passed=True, reason=c.line()))
        elif c.name in accepted:
            out.append(Check(name=name, passed=True, reason=f"{c.line()} (OVERRIDDEN, recorded)"))
        else:
            out.append(Check(name=name, passed=False, reason=c.line()))
    return out


def _seed(seed: int | None, report: dict[str, Any]) -> int:
    if seed is not None:
        return seed
    stored = report.get("seed")
    return stored if isinstance(stored, int) else 0


def _lineage(meta: dict[str, Any]) -> Lineage | None:
    return Lineage.read(meta.get("lineage"))


def _max_rows(meta: dict[str, Any]) -> int:
    """The job's `evaluation.max_rows` (recorded in the lineage), else the spec's default."""
    lineage = _lineage(meta)
    stored = lineage.evaluation_max_rows if lineage is not None else None
    return stored if stored is not None and stored > 0 else EvaluationSpec().max_rows


def _column_overrides(meta: dict[str, Any]) -> dict[str, ColumnOverride]:
    """The job's `source.columns` overrides, so columns get the kinds the job gave them."""
    lineage = _lineage(meta)
    stored = lineage.columns if lineage is not None else {}
    try:
        return {str(k): ColumnOverride.model_validate(v) for k, v in stored.items()}
    except (AttributeError, ValidationError) as err:
        raise InputDataError(
            f"the export's lineage has unreadable column overrides: {err}"
        ) from None


def _privacy(meta: dict[str, Any]) -> PrivacySpec:
    """The rare-value protection the lineage records the model was trained under, else the
    default (an export from before protection is held to it: a rare value is a leak either way)."""
    lineage = _lineage(meta)
    recorded = {
        "rare_category_min_rows": lineage.rare_category_min_rows if lineage else None,
        "rare_category_label": lineage.rare_category_label if lineage else None,
    }
    try:
        return PrivacySpec(**{k: v for k, v in recorded.items() if v is not None})
    except ValidationError as err:
        raise InputDataError(
            f"the export's lineage has an unreadable privacy setting: {err}"
        ) from None


def _rules(meta: dict[str, Any]) -> RulesSpec:
    """The job's `rules` settings as the lineage records them, else the defaults."""
    lineage = _lineage(meta)
    try:
        return RulesSpec.model_validate((lineage.rules if lineage else None) or {})
    except ValidationError:  # its text would quote the rules' values
        raise InputDataError("the export's lineage has an unreadable rules setting") from None


# --------------------------------------------------------------------------- tables


def _target(target: str | None, meta: dict[str, Any], report: dict[str, Any]) -> str | None:
    """--target, else a target the lineage records; refuse to silently skip TSTR."""
    if target is not None:
        return target
    lineage = _lineage(meta)
    if lineage is not None and lineage.target is not None:
        return lineage.target
    older = ((lineage.model_extra or {}) if lineage is not None else {}).get("source")
    if isinstance(older, dict) and isinstance(older.get("target"), str):
        return older["target"]  # lineages that nested the job's source
    if (report.get("metrics") or {}).get("tstr") is not None:
        raise InputDataError(
            "the export's report measured TSTR on a target column the export does not name: "
            "pass --target COLUMN"
        )
    return None


def table_inputs(
    export: Export, meta: dict[str, Any], real: Path, holdout: Path, target: str | None
) -> TableInputs:
    """The exported rows against the real tables, read with the job's column overrides."""
    from synth.data.io import load_table
    from synth.data.parsing import check_values
    from synth.data.schema import infer_schema

    report = meta.get("report") or {}
    real_df, holdout_df = load_table(real), load_table(holdout)
    schema = infer_schema(real_df, _target(target, meta, report), _column_overrides(meta))
    check_values(holdout_df, [(c.name, c.kind) for c in schema.modelled], "the holdout table")
    return TableInputs(
        real_df, holdout_df, read_export_rows(export), schema, _privacy(meta), _rules(meta),
        dp=meta.get("dp"),
    )  # fmt: skip


# --------------------------------------------------------------------------- images


def _label_indices(labels: list[str | None], class_names: list[str]) -> np.ndarray | None:
    if not class_names or all(lab is None for lab in labels):
        return None
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({str(lab) for lab in labels if lab not in index})
    if unknown:
        raise InputDataError(
            f"the export holds classes {unknown[:5]} that are no class folder of the real "
            f"images ({class_names[:5]}...): point --real at the training image folders"
        )
    return np.asarray([index[lab] for lab in labels], dtype=np.int64)


def image_inputs(
    export: Export, meta: dict[str, Any], real: Path, holdout: Path, target: str | None
) -> ImageInputs:
    """The exported images against folders of real images, at the export's resolution."""
    from synth.config import ImageSourceSpec
    from synth.images.io import load_images

    for label, folder in (("--real", real), ("--holdout", holdout)):
        if not folder.is_dir():
            raise InputDataError(
                f"{label} {str(folder)!r} is not a folder: an image export is checked against "
                "folders of real images"
            )
    read_images = export_format(export).read_images
    if read_images is None:
        raise InputDataError(f"a {export.format} export holds no images to evaluate")
    images, names = read_images(export)
    spec = ImageSourceSpec(resolution=int(images.shape[-1]), channels=int(images.shape[1]))
    train, held = load_images(real, spec), load_images(holdout, spec)
    if held.labels is not None and held.class_names != train.class_names:
        raise InputDataError("--real and --holdout must use the same class folders")
    labels = _label_indices(names, train.class_names) if train.labels is not None else None
    return ImageInputs(
        train.images,
        train.labels,
        held.images,
        held.labels,
        images,
        labels,
        class_names=train.class_names or None,
        dp=meta.get("dp"),
    )


INPUT_READERS = {"table": table_inputs, "image": image_inputs}
"""How each modality's export is read back, with the real data, for the evaluation entry."""


def recompute(
    export: Export,
    meta: dict[str, Any],
    real: Path,
    holdout: Path,
    *,
    target: str | None,
    seed: int | None,
    progress: bool,
) -> list[Check]:
    """The `recompute.*` checks: the export measured again through the one evaluation entry,
    with the thresholds, seed and row cap the export's report and lineage recorded."""
    for label, path in (("--real", real), ("--holdout", holdout)):
        if not path.exists():
            raise InputDataError(f"{label} {str(path)!r} does not exist: check the path")
    report = meta.get("report") or {}
    inputs = INPUT_READERS[export_format(export).modality](export, meta, real, holdout, target)
    spec = EvaluationSpec(
        thresholds=recorded_thresholds(report, Thresholds),
        image_thresholds=recorded_thresholds(report, ImageThresholds),
        max_rows=_max_rows(meta),
    )
    evaluation = suite.evaluate(inputs, spec, seed=_seed(seed, report), progress=progress)
    return gate_checks(evaluation.gate, report)
