"""The modalities a job can have, by name: the one place that maps `source.modality` to steps."""

from __future__ import annotations

from jobs.image import ImageSteps
from jobs.modality import Modality
from jobs.table import TableSteps
from synth.config import JobSpec
from synth.errors import ConfigError

MODALITIES: dict[str, Modality] = {"table": TableSteps(), "image": ImageSteps()}


def modality_for(spec: JobSpec) -> Modality:
    """The steps for the job's `source.modality`."""
    try:
        return MODALITIES[spec.source.modality]
    except KeyError:
        raise ConfigError(
            f"unknown modality {spec.source.modality!r}: choose from {', '.join(MODALITIES)}"
        ) from None
