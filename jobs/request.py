"""A data scientist's request for a synthetic dataset, checked before anything runs.

A request names the source, the rows wanted, optional label counts, the modality and any
thresholds to tighten. Everything else (model, training budget, the default gate) comes from
the platform's job spec (`base`), so a request can make the gate stricter, never looser.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evaluation.suite import suite_for
from synth.config import (
    EvaluationSpec,
    JobSpec,
    build_spec,
    format_validation_error,
    load_spec,
    read_yaml_mapping,
)
from synth.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


class SynthRequest(BaseModel):
    """What to synthesize. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    source: Path
    """The protected table (CSV, Parquet, HF dataset dir) or image folder (DICOM/PNG)."""
    modality: Literal["table", "image"] = "table"
    rows: int | None = Field(None, ge=1)
    """Rows (or images) wanted; default: as many as the training split. With `conditions`,
    their sum."""
    target: str | None = None
    """Tables: the label column that `conditions` count (and TSTR uses)."""
    conditions: dict[str, int] | None = None
    """Exact counts per label, e.g. {"Yes": 500, "No": 1500}."""
    thresholds: dict[str, float] = Field(default_factory=dict)
    """Gate thresholds to tighten, e.g. {dcr_share_max: 0.55}; loosening one is refused."""
    name: str | None = None
    """A readable name for the run; default: the source's file name."""
    base: Path | None = None
    """The job spec to start from (model, training, defaults); default: the built-in one."""
    seed: int = 0
    output_root: Path = Path("out/runs")

    @model_validator(mode="after")
    def _consistent(self) -> SynthRequest:
        if self.conditions is not None:
            if not self.conditions or any(n < 0 for n in self.conditions.values()):
                raise ValueError("conditions need at least one label and counts >= 0")
            total = sum(self.conditions.values())
            if total < 1:
                raise ValueError("conditions must ask for at least one row")
            if self.rows is not None and self.rows != total:
                raise ValueError(f"rows={self.rows} but the conditions add up to {total}")
            if self.modality == "table" and not self.target:
                raise ValueError("conditions count the labels of a target column: set target")
        if self.name is not None and not _NAME.fullmatch(self.name):
            raise ValueError("name: letters, digits, '.', '_' and '-' only (at most 80)")
        return self

    def job_name(self) -> str:
        if self.name:
            return self.name
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", self.source.stem).strip("-.") or "request"
        return stem[:80]

    def to_job_spec(self) -> JobSpec:
        """The job this request runs: the base spec, with the request's fields applied."""
        if not self.source.exists():
            raise ConfigError(f"source {str(self.source)!r} does not exist: check the path")
        base = load_spec(self.base, {"source.path": str(self.source)}) if self.base else None
        data: dict[str, Any] = base.model_dump(mode="json") if base else {}
        section = suite_for(self.modality).thresholds_field
        current = getattr(base.evaluation if base else EvaluationSpec(), section)
        _check_stricter(self.thresholds, current)
        overrides: dict[str, Any] = {
            "name": self.job_name(),
            "seed": self.seed,
            "source.path": str(self.source.resolve()),
            "source.modality": self.modality,
            "source.target": self.target,
            "sampling.rows": self.rows,
            "sampling.conditions": self.conditions,
        }
        overrides.update({f"evaluation.{section}.{k}": v for k, v in self.thresholds.items()})
        return build_spec(data, overrides)


def _check_stricter(requested: dict[str, float], current: BaseModel) -> None:
    """`*_min` thresholds may only go up and `*_max` ones only down."""
    known = type(current).model_fields
    for key, value in requested.items():
        if key not in known:
            raise ConfigError(f"unknown threshold {key!r}: choose from {', '.join(sorted(known))}")
        default = getattr(current, key)
        looser = value < default if key.endswith("_min") else value > default
        if looser:
            raise ConfigError(
                f"threshold {key}={value} is looser than the job's {default}: a request can "
                "only make the gate stricter"
            )


def load_request(path: Path | str | None = None, **fields: Any) -> SynthRequest:
    """A request from a YAML file, a set of fields (CLI flags), or both (fields win)."""
    data = read_yaml_mapping(path, "request") if path is not None else {}
    data.update({k: v for k, v in fields.items() if v is not None})
    if "source" not in data:
        raise ConfigError("a request needs a source: --data PATH, or source: in the file")
    try:
        return SynthRequest.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "request")) from None
