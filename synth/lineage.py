"""Lineage: which spec, data, model, seed and software produced an export.

`Lineage` is written by the job (`Lineage.create(...).to_dict()`, into the export's metadata
and report) and read back by `synth validate` (`Lineage.read(meta.get("lineage"))`), so both
sides name its keys through one class.
"""

from __future__ import annotations

import importlib.metadata
import platform
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

import synth

# Distributions whose versions change what a run produces.
_PACKAGES = (
    "synth",
    "torch",
    "diffusers",
    "pandas",
    "pyarrow",
    "numpy",
    "scikit-learn",
    "prefect",
)
LINEAGE_VERSION = 1


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        if dist == "synth":  # running from a source tree that was never pip-installed
            return synth.__version__
        return "not installed"


def package_versions() -> dict[str, str]:
    """Python and key package versions, so a result can be tied to the software that made it."""
    versions = {"python": platform.python_version()}
    versions.update({dist: _version(dist) for dist in _PACKAGES})
    return versions


class SplitRecord(BaseModel):
    """The train / holdout split the model was trained on."""

    holdout_fraction: float
    n_train: int
    n_holdout: int


class Lineage(BaseModel):
    """The lineage record an export carries. Field order is the order of the written JSON."""

    model_config = ConfigDict(extra="allow")  # keys of other versions survive a read

    lineage_version: int = LINEAGE_VERSION
    created_at: str
    spec_hash: str
    data_hash: str
    model_hash: str
    seed: int
    split: SplitRecord | None = None
    packages: dict[str, str]
    job: str | None = None
    modality: str | None = None
    target: str | None = None
    gate_override: bool = False
    gate_override_reason: str | None = None
    # The job's `source.columns` overrides and `evaluation.max_rows`: what
    # `synth validate --real` needs to measure the export as the job did.
    columns: dict[str, dict[str, Any]] = {}
    evaluation_max_rows: int | None = None
    # Rare-value protection the model was trained under (`privacy` in the spec): `k` = 1 means
    # protection was turned off; None, an export made before protection existed.
    rare_category_min_rows: int | None = None
    rare_category_label: str | None = None
    # The job's `rules` section (how logical rules are found and kept); None, an export made
    # before rules existed, whose evaluation used the defaults.
    rules: dict[str, Any] | None = None

    @classmethod
    def create(
        cls,
        *,
        spec_hash: str,
        data_hash: str,
        model_hash: str,
        seed: int,
        split: SplitRecord | dict[str, Any] | None = None,
        job: str | None = None,
        modality: str | None = None,
        target: str | None = None,
        gate_override: bool = False,
        gate_override_reason: str | None = None,
        columns: dict[str, dict[str, Any]] | None = None,
        evaluation_max_rows: int | None = None,
        rare_category_min_rows: int | None = None,
        rare_category_label: str | None = None,
        rules: dict[str, Any] | None = None,
    ) -> Lineage:
        """A new record, stamped with the current UTC time and the installed package versions."""
        return cls(
            created_at=datetime.now(UTC).isoformat(),
            spec_hash=spec_hash,
            data_hash=data_hash,
            model_hash=model_hash,
            seed=seed,
            split=split,  # type: ignore[arg-type]  # a dict is validated into a SplitRecord
            packages=package_versions(),
            job=job,
            modality=modality,
            target=target,
            gate_override=gate_override,
            gate_override_reason=gate_override_reason,
            columns=columns or {},
            evaluation_max_rows=evaluation_max_rows,
            rare_category_min_rows=rare_category_min_rows,
            rare_category_label=rare_category_label,
            rules=rules,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able record, keys in field order."""
        return self.model_dump(mode="json")

    @classmethod
    def read(cls, value: Any) -> Lineage | None:
        """The lineage an export carries, or None when it carries none (not a dict).

        Tolerant of other versions: a missing key takes its default (required ones an empty
        placeholder: "" or 0), a key of the wrong type too, and unknown keys are kept
        (`model_extra`); reading never raises.
        """
        if not isinstance(value, dict):
            return None
        data = {**_PLACEHOLDERS, **{str(k): v for k, v in value.items()}}
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            bad = {str(e["loc"][0]) for e in err.errors() if e["loc"]}
        for key in bad:  # a placeholder, or the field's default: both validate
            if key in _PLACEHOLDERS:
                data[key] = _PLACEHOLDERS[key]
            else:
                data.pop(key, None)
        return cls.model_validate(data)


_PLACEHOLDERS: dict[str, Any] = {
    "created_at": "",
    "spec_hash": "",
    "data_hash": "",
    "model_hash": "",
    "seed": 0,
    "packages": {},
}
