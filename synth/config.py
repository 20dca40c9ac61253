"""The job spec: one pydantic model per step, unknown keys rejected everywhere."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from synth.data.rules import (
    DEFAULT_MIN_SUPPORT,
    DEFAULT_MIN_SUPPORT_FRACTION,
    FixedValue,
    Ordering,
    RuleFilter,
)
from synth.data.schema import ColumnOverride
from synth.errors import ConfigError
from synth.images.identifiers import identifying_reason


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageSourceSpec(_Strict):
    """How a folder of DICOM/PNG files (or an HF imagefolder) becomes training images."""

    resolution: int = Field(32, ge=8, le=1024)
    fit: Literal["resize", "center_crop"] = "resize"
    """`resize` scales the whole image; `center_crop` crops the central square, then scales."""
    channels: Literal[1, 3] | None = None
    """None: 1 for DICOM and grayscale PNGs, 3 for colour PNGs."""
    window: tuple[float, float] | None = None
    """(center, width) in modality units after rescale; None uses the file's full range."""
    labels: Literal["none", "folder", "dicom_attribute"] = "folder"
    """`folder`: the name of each file's sub-folder (no sub-folders: no labels)."""
    label_attribute: str | None = None
    """DICOM keyword holding the label when labels = dicom_attribute, e.g. BodyPartExamined."""
    classes: list[str] | None = Field(None, min_length=1)
    """The label classes, declared public (a protocol's or a folder layout's fixed names).
    Under DP their names cost nothing and no class is thresholded away: only their counts
    are estimated privately. An image whose label is not in the list is refused."""
    skip_unreadable: bool = False
    """Skip (with a warning) files that cannot be decoded, instead of failing."""

    @field_validator("label_attribute")
    @classmethod
    def _not_an_identifier(cls, keyword: str | None) -> str | None:
        """A label is written into every synthetic file: refuse one that identifies people."""
        reason = identifying_reason(keyword) if keyword else None
        if reason:
            raise ValueError(
                f"{keyword} cannot be a label: {reason}; use an attribute that describes the "
                "image, e.g. BodyPartExamined, Modality or SeriesDescription"
            )
        return keyword

    @field_validator("classes")
    @classmethod
    def _distinct(cls, classes: list[str] | None) -> list[str] | None:
        if classes is not None and len(set(classes)) != len(classes):
            raise ValueError("source.images.classes lists a class twice")
        return classes


class SourceSpec(_Strict):
    path: Path
    format: Literal["auto", "csv", "parquet", "hf", "dicom", "png"] = "auto"
    modality: Literal["table", "image"] = "table"
    target: str | None = None
    columns: dict[str, ColumnOverride] = Field(default_factory=dict)
    images: ImageSourceSpec = Field(default_factory=ImageSourceSpec)


class SplitSpec(_Strict):
    holdout_fraction: float = Field(0.3, gt=0.0, lt=1.0)
    min_train_rows: int = Field(50, ge=2)
    min_holdout_rows: int = Field(20, ge=2)


class ModelSpec(_Strict):
    hidden_dims: list[int] = Field(default_factory=lambda: [256, 256, 256])
    time_embedding_dim: int = 64
    dropout: float = 0.0
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    prediction_type: Literal["v_prediction", "epsilon"] = "v_prediction"
    conditional: bool = True
    """Condition on a categorical target (classifier-free guidance) when there is one."""
    cond_drop_prob: float = Field(0.1, ge=0.0, lt=1.0)
    categorical_loss: Literal["cross_entropy", "kl"] = "cross_entropy"
    """How categorical columns learn to denoise (`synth.tabular.diffusion`): cross-entropy on
    the clean category with the exact reverse mixture, or TabDDPM's posterior KL, which kept
    much less of how columns go together. A model saved without this field used "kl"."""


class ImageModelSpec(_Strict):
    """A diffusers UNet2DModel; class-conditional (with a null class for CFG) when labelled."""

    block_out_channels: list[int] = Field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = 1
    attention: bool = False
    """Self-attention in the lowest-resolution blocks (slower on CPU)."""
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    prediction_type: Literal["v_prediction", "epsilon"] = "v_prediction"
    conditional: bool = True
    cond_drop_prob: float = Field(0.1, ge=0.0, lt=1.0)
    pretrained: Path | None = None
    """A local directory saved with `save_pretrained` (a UNet2DModel, or a folder with unet/)
    to fine-tune from. Never fetched from a hub."""


class TrainingSpec(_Strict):
    steps: int | None = Field(None, ge=1)
    """Optimiser steps. None (the default): scaled to the table by `default_steps`, 2,250
    for the demo's 4,930 rows x 20 columns, between 1,000 and 6,000 (images: 800)."""
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    ema_decay: float = Field(0.995, ge=0.0, lt=1.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    resume: bool = True
    checkpoint_every: int = 1000

    def resolved(
        self, n_rows: int, n_columns: int, n_numeric: int = 0, dp: bool = False
    ) -> TrainingSpec:
        """This spec with `steps` fixed: as set, `DP_STEPS` under DP, or `default_steps(...)`
        for its batch."""
        if self.steps is not None:
            return self
        if dp:
            return self.model_copy(update={"steps": DP_STEPS})
        steps = default_steps(n_rows, n_columns, n_numeric, batch_size=self.batch_size)
        return self.model_copy(update={"steps": steps})


DP_STEPS = 600
"""Default DP-SGD steps: each step spends budget, so DP trains far fewer. On the demo at
epsilon 3: quality 0.842 at 300 steps, 0.850 at 600."""
BUDGET_REFERENCE = (5_000, 20, 2_000)
"""(rows, width, steps): the demo's scale, where about 2,000 steps of 1,024 rows train well."""
BUDGET_BOUNDS = (1_000, 6_000)
NUMERIC_WEIGHT = 3
"""A numeric or datetime column counts as this many columns in a table's width."""
MAX_EPOCHS = 1_250
"""Passes over the training rows, at most, above the floor: small tables memorise past it."""


def default_steps(n_rows: int, n_columns: int, n_numeric: int = 0, batch_size: int = 1024) -> int:
    """Training steps for `n_rows` training rows and `n_columns` modelled columns, of which
    `n_numeric` are numeric or datetime.

    2,000 x sqrt(rows / 5,000) x sqrt(width / 20), where width = columns + 2 x numeric columns;
    rounded to 250, within 1,000..6,000, and at most `MAX_EPOCHS` passes over the rows (the
    floor wins on tables under about 820 rows).
    - Square roots: a larger table holds more to learn, yet each epoch of it repeats less, so it
      needs more steps but fewer epochs (about 470 epochs at 5k rows, 25 at 235k); a wider table
      has more relations to learn per row.
    - A numeric column weighs 3: it is learnt by regression on a continuous value, slower than a
      categorical column's cross-entropy. lending_club (13 of 22 numeric) had detection AUC
      0.885 at 2,500 steps, 0.815 at 3,500 and 0.783 at 4,000.
    - The epoch cap: Ames (2,051 rows, 74 columns) memorises past 2,500 steps (DCR share 0.59
      there, 0.62 at 4,000) while its held-out loss has been flat since about 1,000.
    - The floor: under 1,000 steps the rules and rare combinations are not learned. The
      ceiling: 6,000 steps take all of flights (235k training rows) about 2 minutes on 2 CPU
      cores; 50k flights gained 0.009 of quality from 4,000 to 8,000 steps.
    """
    ref_rows, ref_width, ref_steps = BUDGET_REFERENCE
    width = max(n_columns + (NUMERIC_WEIGHT - 1) * n_numeric, 1)
    raw = ref_steps * math.sqrt(max(n_rows, 1) / ref_rows) * math.sqrt(width / ref_width)
    lo, hi = BUDGET_BOUNDS
    cap = MAX_EPOCHS * n_rows / batch_size
    steps = min(round(raw / 250) * 250, hi, math.floor(cap / 250) * 250)
    return int(max(steps, lo))


class SamplingSpec(_Strict):
    rows: int | None = Field(None, ge=1)
    """Rows to generate; defaults to the number of training rows."""
    num_inference_steps: int = Field(10, ge=1)
    scheduler: Literal["ddim", "dpmsolver", "ddpm"] = "dpmsolver"
    guidance_scale: float = 1.0
    shard_rows: int | None = Field(None, ge=1)
    """Rows generated per pass; memory is flat in `rows`. Default: 10k on CPU, 1M on CUDA."""
    conditions: dict[str, int] | None = None
    """Requested counts per target label, e.g. {"Yes": 500, "No": 1500}."""


class DPSpec(_Strict):
    """Differential privacy: DP-SGD (Opacus) with an accountant, per privacy unit."""

    epsilon: float = Field(gt=0.0)
    """The whole run's epsilon: preprocessing (when it estimates from the data) plus training."""
    delta: float | Literal["auto"] = "auto"
    """auto: 1 / (10 n), n the training units (people), rounded down to one significant
    digit. An explicit delta must be below 1 / n."""
    max_grad_norm: float = Field(1.0, gt=0.0)
    """Each unit's gradient is clipped to this L2 norm before the noise is added."""
    unit: str | None = None
    """The column (tables) or DICOM attribute (images) naming a person; see privacy.unit."""
    accountant: Literal["prv", "rdp"] = "prv"
    noise_multiplicity: int = Field(4, ge=1, le=64)
    """Noise draws (timestep and noise) per example inside its one clipped gradient (DPDM):
    free in privacy, it lowers the variance the clipping and noise act on."""
    max_physical_batch_size: int = Field(256, ge=1)
    """The most examples whose per-example gradients are held in memory at once: a larger
    Poisson batch is clipped in parts and noised once (Opacus's BatchMemoryManager protocol).
    Memory only: the privacy is unchanged."""
    preprocessing_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of epsilon (and delta) spent estimating categories, bounds and quantiles when the
    schema does not declare them (0 is allowed only when every column is declared)."""


class PrivacySpec(_Strict):
    """Privacy by construction: what the model may learn from the training rows at all."""

    rare_category_min_rows: int = Field(5, ge=1)
    """`k`: a categorical value held by fewer than `k` training rows is never emitted (it is
    grouped into `rare_category_label`); numeric and datetime bounds are the `k`-th smallest
    and largest training values; each stored quantile knot averages at least `k` rows; image
    classes with fewer than `k` training images are not sampled. 1 turns protection off.
    Default 5, as MOSTLY AI's rare-category protection (5 plus up to 3 of random noise)."""
    rare_category_label: str = Field("_RARE_", min_length=1)
    """The one category the grouped rare values of a text column become. Rare values of a
    numeric or boolean categorical column become a missing value instead (the column's type
    has no room for a label)."""
    unit: str = "auto"
    """Who a record belongs to: the train/holdout split keeps each unit on one side, and DP
    bounds each unit's contribution. `row` (every record its own person), a column naming the
    person (tables), or a DICOM attribute (images); auto: `PatientID` for DICOM sets whose
    files all carry one, otherwise `row`."""
    dp: DPSpec | None = None
    """Train with differential privacy (None: no formal guarantee, the export says dp: null)."""

    @model_validator(mode="after")
    def _one_unit(self) -> PrivacySpec:
        """`privacy.dp.unit` names the unit too; it may not disagree with `privacy.unit`."""
        if self.dp is not None and self.dp.unit is not None:
            if self.unit not in ("auto", self.dp.unit):
                raise ValueError(
                    f"privacy.unit {self.unit!r} and privacy.dp.unit {self.dp.unit!r} differ: "
                    "set one of them"
                )
            self.unit = self.dp.unit
        return self


class RulesSpec(_Strict):
    """Logical rules every training row keeps (`synth.data.rules`), found at fit and kept in
    the synthetic rows: a drawn row that breaks one is drawn again."""

    discover: bool = True
    """Find the rules in the training rows; false keeps only the ones under `add`."""
    min_support: int = Field(DEFAULT_MIN_SUPPORT, ge=1)
    """A rule's premise must hold on at least max(k, min_support, min_support_fraction of the
    training rows) rows, so it is a fact about many people, not one."""
    min_support_fraction: float = Field(DEFAULT_MIN_SUPPORT_FRACTION, ge=0.0, le=1.0)
    add: list[FixedValue | Ordering] = Field(default_factory=list)
    """Rules to keep besides the discovered ones, e.g. {if_column: a, if_value: x,
    then_column: b, then_value: y} or {kind: order, lower: a, upper: b}; values must be held
    by at least k training rows. Edit a rule: drop it, then add the new one."""
    drop: list[RuleFilter] = Field(default_factory=list)
    """Discovered rules to forget; every field given must match, e.g. {if_column: a,
    then_column: b} drops each value pair from a to b."""
    offsets: bool = True
    """Keep an ordering `lower <= upper` whose ties are a pattern (equal on at least as many
    rows as a premise needs) by construction: the model learns `upper - lower`, which is never
    negative and is exactly 0 as often as in the training rows (`synth.tabular.offsets`)."""
    enforce: bool = True
    """Draw again the synthetic rows that break a rule (rejection sampling)."""
    repair: bool = True
    """Before redrawing, mend a broken rule whose fix is clear: complete a group of values
    that fix one another when a row holds most of them, set what a one-way rule fixes."""
    max_redraws: int = Field(20, ge=0)
    """Rounds of redrawing; rows still breaking a rule after them are kept, and counted."""


class DPThresholds(_Strict):
    """The formal guarantee an export must carry (both modalities)."""

    require_dp: bool = False
    """Fail the gate unless the model was trained with differential privacy."""
    epsilon_max: float | None = Field(None, gt=0.0)
    """Fail the gate when the run's epsilon (preprocessing plus training) exceeds this."""


class Thresholds(DPThresholds):
    """Gate thresholds. Each names the direction it bounds."""

    column_shapes_min: float = 0.85
    pair_trends_min: float = 0.85
    detection_auc_max: float = 0.90
    tstr_gap_max: float = 0.10
    """Train-on-real AUC (or R^2) minus train-on-synthetic, on the real holdout."""
    exact_copy_excess_max: float = 0.01
    """Synthetic exact-copy rate minus the rate fresh holdout rows show."""
    near_copy_excess_max: float = 0.03
    """Synthetic near-copy rate minus the holdout's (near: closer than the holdout's 1% DCR)."""
    dcr_share_max: float = 0.60
    nndr_low_share_max: float = 0.10
    """Share of synthetic rows whose NNDR is below the holdout's 5th percentile (ideal 0.05)."""
    mia_auc_max: float = 0.60
    rare_values_emitted_max: float = 0.0
    """Synthetic cells holding a value fewer than `k` training rows hold, or a number outside
    the protected bounds: protection makes these impossible, so the tolerance is zero."""
    holdout_only_values_emitted_max: float = 0.0
    """Synthetic cells holding a categorical value only the holdout holds."""
    unique_copy_excess_lcb_max: float = 0.0
    """Lower 99.9% confidence bound of the excess rate of exact copies of one-of-a-kind
    training rows over the holdout's rate: above 0, more copies than chance explains."""
    unique_near_copy_excess_lcb_max: float = 0.0
    """The same for near copies (closer than the holdout's 1st percentile of non-zero
    distances to train)."""
    domias_auc_max: float = 0.55
    """Density-ratio (DOMIAS-style) membership attack ROC AUC; fresh real rows score <= 0.53."""
    domias_tpr_at_1pct_fpr_max: float = 0.05
    """The attack's true-positive rate at 1% false positives; fresh real rows score <= 0.02."""
    singling_out_risk_max: float = 0.10
    """Anonymeter singling-out risk (the stronger of the univariate and multivariate attacks):
    the share of training records a query built from synthetic rows isolates, beyond the
    holdout's share. Fresh real rows score <= 0.03 on the test tables."""
    linkability_risk_max: float = 0.10
    """Anonymeter linkability risk: records whose two halves link through one synthetic row."""
    inference_risk_max: float = 0.10
    """Anonymeter attribute-inference risk, pooled over every column as the secret."""
    rule_break_excess_max: float = 0.01
    """Share of synthetic rows breaking a logical rule every real training row keeps, minus
    the share of fresh holdout rows breaking it (a rule found in train may not be a law)."""


class ImageThresholds(DPThresholds):
    """Gate thresholds for image sets."""

    fid_max: float = 50.0
    """FID in the project's feature space (a classifier trained on the real training images)."""
    precision_min: float = 0.5
    recall_min: float = 0.3
    cas_ratio_min: float = 0.9
    """Classification Accuracy Score / real-data accuracy, on the real holdout (with labels)."""
    nn_distance_ratio_min: float = 0.9
    """Median synthetic-to-train NN distance / median holdout-to-train NN distance."""
    near_duplicate_share_max: float = 0.01
    """Share of synthetic images closer to a train image than any two real images ever are."""
    mia_auc_max: float = 0.6


class EvaluationSpec(_Strict):
    max_rows: int = Field(10_000, ge=100)
    """Evaluate on at most this many synthetic rows (privacy checks use an equal-size holdout)."""
    thresholds: Thresholds = Field(default_factory=Thresholds)
    image_thresholds: ImageThresholds = Field(default_factory=ImageThresholds)
    feature_checkpoint: Path | None = None
    """Images: a local TorchScript feature extractor (e.g. an exported Inception-v3 pool layer)
    for FID and precision/recall; default: a CNN trained on the real training images."""
    override_gate: bool = False
    override_reason: str | None = None


class ExportSpec(_Strict):
    format: Literal["auto", "parquet", "dicom"] = "auto"
    """auto: DICOM for DICOM image sources, Parquet otherwise (tables, PNG, HF images)."""
    out: Path = Path("out")
    rows_per_file: int = Field(1_000_000, ge=1)
    id_strategy: Literal["regenerate", "drop"] = "regenerate"


class RuntimeSpec(_Strict):
    """How the job runs, not what it makes: excluded from `JobSpec.spec_hash`."""

    task_runner: Literal["default", "dask"] = "default"
    """`dask` fans the sampling shards and the evaluation checks out over a Dask cluster;
    `default` runs the same tasks on Prefect's thread pool in this process."""
    dask_address: str | None = None
    """An existing cluster's scheduler, e.g. tcp://scheduler:8786 (started with `dask scheduler`
    or dask-kubernetes); None starts a LocalCluster for the run and stops it after."""
    dask_workers: int | None = Field(None, ge=1)
    """LocalCluster worker processes; default min(2, CPU cores)."""
    dask_threads_per_worker: int = Field(1, ge=1)
    """Threads per LocalCluster worker, and torch's intra-op threads there: one thread per
    process keeps N workers from oversubscribing N cores."""
    evaluation_tasks: int | None = Field(None, ge=1)
    """Metric tasks run at once on the default runner; default: the CPU cores. Each holds its
    own copy of the tables, so more than the cores adds memory, not speed (on 336k flights,
    all 11 at once peaked at 8-9.6 GB). The Dask runner spreads them over its workers."""


IMAGE_TRAINING_DEFAULTS: dict[str, Any] = {
    "steps": 800,
    "batch_size": 64,
    "lr": 1e-3,
    "warmup_steps": 100,
    "ema_decay": 0.999,
}
IMAGE_SAMPLING_DEFAULTS: dict[str, Any] = {"num_inference_steps": 20}


class JobSpec(_Strict):
    name: str = "synth-job"
    seed: int = 0
    source: SourceSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    image_model: ImageModelSpec = Field(default_factory=ImageModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    sampling: SamplingSpec = Field(default_factory=SamplingSpec)
    privacy: PrivacySpec = Field(default_factory=PrivacySpec)
    rules: RulesSpec = Field(default_factory=RulesSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)

    @model_validator(mode="after")
    def _modality_defaults(self) -> JobSpec:
        """Image jobs get image-sized training and sampling defaults for fields left unset."""
        if self.source.modality == "image":
            for section, defaults in (
                (self.training, IMAGE_TRAINING_DEFAULTS),
                (self.sampling, IMAGE_SAMPLING_DEFAULTS),
            ):
                for name, value in defaults.items():
                    if name not in section.model_fields_set:
                        setattr(section, name, value)
        return self

    def spec_hash(self) -> str:
        """Content hash of the spec, for lineage and caching. `runtime` is left out: where and
        how a job runs does not change what it makes."""
        what = self.model_dump(mode="json", exclude={"runtime"})
        blob = json.dumps(what, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def format_validation_error(err: ValidationError, what: str = "job spec") -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key {where!r}")
        else:
            # a validator's own message, without pydantic's "Value error, " in front of it
            parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
    return f"invalid {what}: " + "; ".join(parts)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {p!r} is not a section")
    node[leaf] = value


class _YamlLoader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 booleans (true/false only). YAML 1.1's yes/no/on/off would
    turn labels such as the churn target's `Yes`/`No` into True/False."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """Parse YAML text as our spec and request files are read."""
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a SafeLoader subclass)


def parse_set_option(item: str) -> tuple[str, Any]:
    """`key.sub=value` -> (key.sub, YAML-parsed value)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    return key.strip(), load_yaml(raw)


def build_spec(
    base: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> JobSpec:
    """Merge dotted overrides into a raw spec dict and validate it."""
    data: dict[str, Any] = json.loads(json.dumps(base or {}, default=str))
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    try:
        return JobSpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def read_yaml_mapping(path: Path | str, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping (`what` names it in errors: "config", "request")."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file {str(path)!r} does not exist")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} file {str(path)!r} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} file {str(path)!r} must hold a mapping at the top level")
    return data


def load_spec(path: Path | str | None, overrides: dict[str, Any] | None = None) -> JobSpec:
    """Read a YAML job spec (or none) and apply CLI overrides. Relative data paths are
    relative to the working directory, as on the command line."""
    base = read_yaml_mapping(path, "config") if path is not None else {}
    return build_spec(base, overrides)
