"""The one evaluation entry, for tables and images alike: inputs -> metric parts -> gate -> report.

`synth evaluate`, both job modalities and `synth validate --real` all come through here. A
modality's checks are a `Suite`: a registry of metric parts (pure functions of prepared inputs,
returning JSON-able numbers), the groups of parts that can run apart (a Prefect task each), how
the parts' numbers combine under the gate, and its report. The metrics themselves stay pure
functions in `evaluation.table` and `evaluation.images`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from evaluation.fidelity import DETECTION_FOLDS
from evaluation.images.evaluate import (
    IMAGE_PARTS,
    MIN_IMAGES,
    ImageEvaluation,
    combine_image_parts,
    prepare_images,
    run_image_parts,
)
from evaluation.images.features import CheckpointFeatures, FeatureExtractor
from evaluation.images.privacy import LossFn
from evaluation.images.report import write_image_report
from evaluation.report import write_report as write_table_report
from evaluation.table import (
    EVALUATION_PARTS,
    TableEvaluation,
    combine_parts,
    prepare_frames,
)
from evaluation.table import run_parts as run_table_parts
from synth.config import EvaluationSpec, PrivacySpec, RulesSpec
from synth.data.schema import TableSchema
from synth.errors import InputDataError

Evaluation = TableEvaluation | ImageEvaluation
Parts = dict[str, dict[str, Any] | None]


@dataclass
class TableInputs:
    """Real train and holdout rows, synthetic rows, and the schema the checks read them with;
    `privacy` is the rare-value protection the model was trained under (the job's spec, or the
    export's lineage), which the rare-value check holds the synthetic rows to."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    synthetic: pd.DataFrame
    schema: TableSchema
    privacy: PrivacySpec = field(default_factory=PrivacySpec)
    rules: RulesSpec = field(default_factory=RulesSpec)
    """How the logical rules are found in the real training rows (the job's `rules`)."""
    dp: dict[str, Any] | None = None
    """The DP figures the model was trained under (`synth.dp.accounting.DPPlan` as JSON), for
    the gate's require_dp and epsilon_max; None: trained without DP."""
    modality: ClassVar[str] = "table"


@dataclass
class ImageInputs:
    """Images float [N, C, H, W] in [0, 1] with optional class indices into `class_names`.
    `loss_fn` (the model's per-image denoising loss) selects the loss-based membership attack;
    `features` replaces the CNN fitted on train (e.g. a local TorchScript checkpoint)."""

    train: np.ndarray
    train_labels: np.ndarray | None
    holdout: np.ndarray
    holdout_labels: np.ndarray | None
    synthetic: np.ndarray
    synthetic_labels: np.ndarray | None
    class_names: list[str] | None = None
    loss_fn: LossFn | None = None
    features: FeatureExtractor | CheckpointFeatures | None = None
    dp: dict[str, Any] | None = None
    """As `TableInputs.dp`."""
    modality: ClassVar[str] = "image"


Inputs = TableInputs | ImageInputs


class Suite(Protocol):
    """One modality's checks."""

    parts: list[str]
    groups: list[list[str]]
    """Parts that share prepared state run together; each group can run as its own task."""
    thresholds_field: str
    """The `EvaluationSpec` field holding this modality's gate thresholds."""

    def check_sizes(self, n_train: int, n_holdout: int, n_synthetic: int) -> None: ...

    def run_parts(
        self, inputs: Any, names: list[str], seed: int, max_rows: int, progress: bool
    ) -> Parts: ...

    def combine(self, inputs: Any, parts: Parts, spec: EvaluationSpec, seed: int) -> Any: ...

    def write_report(
        self, evaluation: Any, inputs: Any, out_dir: Path, extra: dict[str, Any] | None
    ) -> Path: ...


class TableSuite:
    parts = list(EVALUATION_PARTS)
    groups = [[name] for name in EVALUATION_PARTS]
    thresholds_field = "thresholds"

    def check_sizes(self, n_train: int, n_holdout: int, n_synthetic: int) -> None:
        for label, n in (("train", n_train), ("holdout", n_holdout), ("synthetic", n_synthetic)):
            if n < 1:
                raise InputDataError(f"the {label} table is empty: nothing to evaluate")
        for label, n in (("train", n_train), ("synthetic", n_synthetic)):
            if n < DETECTION_FOLDS:  # fewer rows than folds: no detection AUC, a certain fail
                raise InputDataError(
                    f"{label} has {n} rows; the detection check needs at least "
                    f"{DETECTION_FOLDS}: ask for more rows"
                )

    def run_parts(
        self, inputs: TableInputs, names: list[str], seed: int, max_rows: int, progress: bool
    ) -> Parts:
        frames = prepare_frames(
            inputs.train, inputs.holdout, inputs.synthetic, inputs.schema,
            seed=seed, max_rows=max_rows, privacy=inputs.privacy, rules=inputs.rules,
        )  # fmt: skip
        return run_table_parts(frames, inputs.schema, names, seed=seed, progress=progress)

    def combine(
        self, inputs: TableInputs, parts: Parts, spec: EvaluationSpec, seed: int
    ) -> TableEvaluation:
        frames = prepare_frames(
            inputs.train, inputs.holdout, inputs.synthetic, inputs.schema,
            seed=seed, max_rows=spec.max_rows,
        )  # fmt: skip
        return combine_parts(
            parts, frames.sizes, inputs.schema, spec.thresholds, seed=seed,
            override=spec.override_gate, override_reason=spec.override_reason, dp=inputs.dp,
        )  # fmt: skip

    def write_report(
        self,
        evaluation: TableEvaluation,
        inputs: TableInputs,
        out_dir: Path,
        extra: dict[str, Any] | None,
    ) -> Path:
        json_path, _ = write_table_report(
            evaluation, out_dir, train=inputs.train, synthetic=inputs.synthetic,
            schema=inputs.schema, extra=extra,
        )  # fmt: skip
        return json_path


class ImageSuite:
    parts = list(IMAGE_PARTS)
    groups = [list(IMAGE_PARTS)]  # `features` fits the network the others embed with
    thresholds_field = "image_thresholds"

    def check_sizes(self, n_train: int, n_holdout: int, n_synthetic: int) -> None:
        for label, n in (("train", n_train), ("holdout", n_holdout), ("synthetic", n_synthetic)):
            if n < MIN_IMAGES:
                raise InputDataError(
                    f"{label} has {n} images; need at least {MIN_IMAGES} to evaluate"
                )

    def _frames(self, inputs: ImageInputs, seed: int, max_rows: int):
        return prepare_images(
            inputs.train, inputs.train_labels, inputs.holdout, inputs.holdout_labels,
            inputs.synthetic, inputs.synthetic_labels, class_names=inputs.class_names,
            loss_fn=inputs.loss_fn, features=inputs.features, seed=seed, max_images=max_rows,
        )  # fmt: skip

    def run_parts(
        self, inputs: ImageInputs, names: list[str], seed: int, max_rows: int, progress: bool
    ) -> Parts:
        return run_image_parts(self._frames(inputs, seed, max_rows), names, progress)  # type: ignore[return-value]

    def combine(
        self, inputs: ImageInputs, parts: Parts, spec: EvaluationSpec, seed: int
    ) -> ImageEvaluation:
        return combine_image_parts(
            parts, self._frames(inputs, seed, spec.max_rows), spec.image_thresholds,
            override=spec.override_gate, override_reason=spec.override_reason, dp=inputs.dp,
        )  # fmt: skip

    def write_report(
        self,
        evaluation: ImageEvaluation,
        inputs: ImageInputs,
        out_dir: Path,
        extra: dict[str, Any] | None,
    ) -> Path:
        json_path, _ = write_image_report(
            evaluation, out_dir, train=inputs.train, synthetic=inputs.synthetic,
            synthetic_labels=inputs.synthetic_labels, class_names=inputs.class_names,
            extra=extra,
        )  # fmt: skip
        return json_path


SUITES: dict[str, Suite] = {"table": TableSuite(), "image": ImageSuite()}


def suite_for(modality: str) -> Suite:
    try:
        return SUITES[modality]
    except KeyError:
        raise InputDataError(
            f"no checks for modality {modality!r}: choose from {', '.join(SUITES)}"
        ) from None


def evaluate_parts(
    inputs: Inputs, names: list[str], *, seed: int = 0, max_rows: int = 10_000,
    progress: bool = False,
) -> Parts:  # fmt: skip
    """The named metric parts on one set of inputs: metric numbers only, never data values."""
    return suite_for(inputs.modality).run_parts(inputs, names, seed, max_rows, progress)


def combine(inputs: Inputs, parts: Parts, spec: EvaluationSpec, *, seed: int = 0) -> Evaluation:
    """Assemble every part's numbers (computed anywhere, in any order) and apply the gate."""
    return suite_for(inputs.modality).combine(inputs, parts, spec, seed)


def evaluate(
    inputs: Inputs, spec: EvaluationSpec | None = None, *, seed: int = 0, progress: bool = True
) -> Evaluation:
    """Every check of the inputs' modality, then the gate with `spec`'s thresholds."""
    spec = spec or EvaluationSpec()
    suite = suite_for(inputs.modality)
    parts = suite.run_parts(inputs, suite.parts, seed, spec.max_rows, progress)
    return suite.combine(inputs, parts, spec, seed)


def write_report(
    evaluation: Evaluation,
    inputs: Inputs,
    out_dir: Path | str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write report.json and report.html into `out_dir`; return the report as written."""
    path = suite_for(inputs.modality).write_report(evaluation, inputs, Path(out_dir), extra)
    return json.loads(path.read_text())


def check_sizes(modality: str, *, n_train: int, n_holdout: int, n_synthetic: int) -> None:
    """Raise the error evaluation would raise for these set sizes, before anything is trained."""
    suite_for(modality).check_sizes(n_train, n_holdout, n_synthetic)
