"""Lineage: which spec, data, model, seed and software produced an export."""

from __future__ import annotations

import importlib.metadata
import platform
from datetime import UTC, datetime
from typing import Any

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


def build_lineage(
    *,
    spec_hash: str,
    data_hash: str,
    model_hash: str,
    seed: int,
    split: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON-able lineage record. `extra` keys are merged in but may not shadow core keys."""
    lineage: dict[str, Any] = {
        "lineage_version": LINEAGE_VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "spec_hash": spec_hash,
        "data_hash": data_hash,
        "model_hash": model_hash,
        "seed": seed,
        "split": split,
        "packages": package_versions(),
    }
    clash = sorted(set(extra or {}) & set(lineage))
    if clash:
        raise ValueError(f"extra lineage keys would overwrite core keys: {clash}")
    lineage.update(extra or {})
    return lineage
