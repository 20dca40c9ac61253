"""A data scientist's request for a synthetic dataset, checked before anything runs.

A request names the source, the rows wanted, optional label counts, the modality and any
thresholds to tighten. Everything else (model, training budget, the default gate, the feature
checkpoint, the runtime) comes from the platform's job spec (`base`), so a request can make the
gate stricter, never looser.

What a request may name is decided by a `RequestPolicy`, which belongs to whoever runs the
request (the `requests` deployment, or the local command line), never to the request: the
folder `base:` must lie in, and the roots its source and output root must lie in. The policy
builds the job spec (`RequestPolicy.job_spec`), so every path goes through its checks.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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
    thresholds: dict[str, float | bool] = Field(default_factory=dict)
    """Gate thresholds to tighten, e.g. {dcr_share_max: 0.55}; loosening one is refused."""
    name: str | None = None
    """A readable name for the run; default: the source's file name."""
    base: Path | None = None
    """The job spec to start from (model, training, defaults), inside the policy's spec
    folder; default: the policy's `default_base` (or the built-in defaults)."""
    seed: int = 0
    output_root: Path | None = None
    """Where the run directory goes; default: the policy's `default_output_root`."""

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

    def to_job_spec(self, policy: RequestPolicy | None = None) -> JobSpec:
        """The job this request runs under `policy` (default: the local default policy)."""
        return (policy or RequestPolicy.local_default()).job_spec(self)

    def to_parameters(self) -> dict[str, Any]:
        """The request as the `requests` deployment takes it: plain JSON, paths made absolute
        here (where they were written), fields left unset left out."""
        data = self.model_dump(mode="json", exclude_unset=True)
        for key in ("source", "base", "output_root"):
            if data.get(key) is not None:
                data[key] = str(Path(data[key]).absolute())
        return data


def _check_stricter(requested: dict[str, float], current: BaseModel) -> None:
    """`*_min` thresholds may only go up and `*_max` ones only down; `require_dp` may only be
    switched on."""
    known = type(current).model_fields
    for key, value in requested.items():
        if key not in known:
            raise ConfigError(f"unknown threshold {key!r}: choose from {', '.join(sorted(known))}")
        if not math.isfinite(value):
            raise ConfigError(f"threshold {key} must be a finite number")
        default = getattr(current, key)
        if default is None:  # no cap yet (epsilon_max): any value is stricter
            continue
        looser = value < default if key.endswith("_min") else value > default
        if key == "require_dp":
            looser = bool(default) and not value
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


def request_from_parameters(data: Any) -> SynthRequest:
    """A request as a deployment receives it (a plain mapping), validated as a file would be."""
    if not isinstance(data, dict):
        raise ConfigError("request: expected a mapping of request fields")
    try:
        return SynthRequest.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "request")) from None


# ---- the policy -----------------------------------------------------------------------------
POLICY_ENV = "SYNTH_REQUEST_POLICY"
"""Names the policy file; the `requests` deployment sets it in its job variables."""
DEPLOYMENT_POLICY = Path("configs/request_policy.yaml")
"""The policy file a deployment uses when `SYNTH_REQUEST_POLICY` is not set."""


class RequestPolicy(BaseModel):
    """What a request may name. It belongs to whoever runs requests, never to a request.

    Relative paths are relative to the working directory of whoever applies the policy (on a
    worker, the deployment's working directory). Every path, the policy's and the request's,
    is compared after resolving symlinks and `..`.
    """

    model_config = ConfigDict(extra="forbid")

    spec_dir: Path = Path("configs")
    """`base:` must name a job spec inside this folder. Every spec in it is trusted: its
    thresholds, `evaluation.override_gate`, `feature_checkpoint` and `runtime` apply."""
    default_base: Path | None = None
    """The spec a request without `base:` starts from; None: the built-in defaults."""
    source_roots: list[Path] | None = None
    """A request's source must lie inside one of these; None: anywhere."""
    output_roots: list[Path] | None = None
    """A request's output root must lie inside one of these; None: anywhere."""
    default_output_root: Path = Path("out/runs")
    """The output root of a request that names none (it must lie inside `output_roots`)."""

    @classmethod
    def local_default(cls) -> RequestPolicy:
        """`synth request` with no policy configured: specs from ./configs, any roots."""
        return cls()

    @classmethod
    def load(cls, path: Path | str, workdir: Path | None = None) -> RequestPolicy:
        """A policy file; its relative paths are taken against `workdir` (default: here)."""
        data = read_yaml_mapping(path, "request policy")
        try:
            policy = cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, "request policy")) from None
        return policy.anchored(workdir or Path.cwd())

    def anchored(self, workdir: Path) -> RequestPolicy:
        """The same policy with every path absolute and real (symlinks and `..` resolved)."""

        def real(path: Path) -> Path:
            return (workdir / path).resolve()

        def reals(paths: list[Path] | None) -> list[Path] | None:
            return None if paths is None else [real(p) for p in paths]

        return self.model_copy(
            update={
                "spec_dir": real(self.spec_dir),
                "default_base": real(self.default_base) if self.default_base else None,
                "source_roots": reals(self.source_roots),
                "output_roots": reals(self.output_roots),
                "default_output_root": real(self.default_output_root),
            }
        )

    def job_spec(self, req: SynthRequest) -> JobSpec:
        """The job `req` runs: its base spec with the request's fields applied, after every
        rule of this policy. A refusal is a `ConfigError` naming the field, never a value."""
        policy = self.anchored(Path.cwd())
        base = policy.base_spec(req)
        source = policy.source(req)
        policy.output_root(req)
        data: dict[str, Any] = {}
        if base is not None:
            data = load_spec(base, {"source.path": str(source)}).model_dump(mode="json")
        from evaluation.suite import suite_for  # after the path checks: it loads torch

        section = suite_for(req.modality).thresholds_field
        current = getattr(EvaluationSpec.model_validate(data.get("evaluation", {})), section)
        _check_stricter(req.thresholds, current)
        overrides: dict[str, Any] = {
            "name": req.job_name(),
            "seed": req.seed,
            "source.path": str(source),
            "source.modality": req.modality,
            "source.target": req.target,
            "sampling.rows": req.rows,
            "sampling.conditions": req.conditions,
        }
        overrides.update({f"evaluation.{section}.{k}": v for k, v in req.thresholds.items()})
        return build_spec(data, overrides)

    def base_spec(self, req: SynthRequest) -> Path | None:
        """The real path of the spec to start from; it must lie inside the spec folder."""
        if req.base is None:
            return self.default_base
        base = req.base.resolve()
        if not base.is_relative_to(self.spec_dir):
            raise ConfigError(
                f"base: not inside the spec folder {self.spec_dir} that this policy allows; "
                "name a job spec there"
            )
        if not base.is_file():
            raise ConfigError(f"base: no job spec at that path in the spec folder {self.spec_dir}")
        return base

    def source(self, req: SynthRequest) -> Path:
        """The real path of the source; it must lie inside an allowed source root."""
        source = req.source.resolve()
        _check_inside(source, self.source_roots, "source", "source roots")
        if not source.exists():
            raise ConfigError(f"source: no file or folder at {str(req.source)!r}: check the path")
        return source

    def output_root(self, req: SynthRequest) -> Path:
        """The real path of the output root; it must lie inside an allowed output root."""
        root = req.output_root.resolve() if req.output_root else self.default_output_root
        _check_inside(root, self.output_roots, "output_root", "output roots")
        return root


def _check_inside(path: Path, roots: list[Path] | None, field: str, what: str) -> None:
    if roots is not None and not any(path.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots) or "none"
        raise ConfigError(f"{field}: not inside the {what} that this policy allows ({allowed})")


def request_policy(path: Path | str | None = None) -> RequestPolicy:
    """The policy `synth request` applies here: `path`, else the file `$SYNTH_REQUEST_POLICY`
    names, else the local default (specs from ./configs, no root restriction)."""
    path = path or os.environ.get(POLICY_ENV)
    return RequestPolicy.load(path) if path else RequestPolicy.local_default()


def deployment_policy() -> RequestPolicy:
    """The policy of the deployment this process runs for: the file `$SYNTH_REQUEST_POLICY`
    names, else configs/request_policy.yaml. No policy file refuses every request."""
    path = Path(os.environ.get(POLICY_ENV) or DEPLOYMENT_POLICY)
    if not path.is_file():
        raise ConfigError(
            f"this deployment has no request policy: no file at {path} (set {POLICY_ENV})"
        )
    return RequestPolicy.load(path)
