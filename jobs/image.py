"""The image job's steps: a protected image set (DICOM, PNG, HF) in, a gated synthetic DICOM
or PNG-in-Parquet export out. Synthetic images are staged as .npz shards (no pickle)."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.images.features import CheckpointFeatures
from evaluation.suite import ImageInputs
from jobs.modality import JobSteps, LoadedSource, export_metadata, refuse_protected
from jobs.paths import JobPaths
from jobs.reports import link_published_report, report_attachments
from jobs.shards import staged_files
from synth.atomic import atomic_write_text
from synth.config import JobSpec
from synth.data.split import load_split, save_split, split_records
from synth.dp.accounting import dp_state
from synth.errors import InputDataError
from synth.export.dicom import write_dicom_export
from synth.export.image_parquet import write_image_parquet_export
from synth.images.io import ImageSet, ImageSourceInfo, image_set_hash, load_images
from synth.images.synthesizer import (
    CPU_SHARD_IMAGES,
    CUDA_SHARD_IMAGES,
    ImageDiffusionSynthesizer,
)
from synth.labels import draw_labels
from synth.synthesizer import Shard


def _format(spec: JobSpec) -> str:
    fmt = spec.source.format
    return fmt if fmt in ("auto", "dicom", "png", "hf") else "auto"


def read_info(info_path: Path) -> dict[str, Any]:
    """What `load` recorded: the source's pixel layout, the class names and the image shape."""
    return json.loads(Path(info_path).read_text())


def source_info(info: dict[str, Any]) -> ImageSourceInfo:
    src = info["source"]
    return ImageSourceInfo(**{**src, "value_range": tuple(src["value_range"])})


def read_staged(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with np.load(path, allow_pickle=False) as staged:
        labels = staged["labels"] if "labels" in staged.files else None
        return staged["images"], labels


def _staged_head(staging: Path, limit: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first `limit` staged images and their labels."""
    images, labels, have = [], [], 0
    for f in staged_files(staging):
        x, y = read_staged(f)
        images.append(x[: limit - have])
        labels.append(None if y is None else y[: limit - have])
        have += len(images[-1])
        if have >= limit:
            break
    y_all = None if labels[0] is None else np.concatenate(labels)
    return np.concatenate(images), y_all


class ImageSteps(JobSteps):
    name = "image"
    unit = "images"
    shard_suffix = "npz"
    cpu_shard_rows = CPU_SHARD_IMAGES
    cuda_shard_rows = CUDA_SHARD_IMAGES

    # ---- load ---------------------------------------------------------------------------
    def read(self, spec: JobSpec) -> ImageSet:
        """Read and check the protected image set. Raises one-line InputDataErrors."""
        images = load_images(
            spec.source.path,
            spec.source.images,
            _format(spec),
            spec.privacy.unit,
            range_from_data=spec.privacy.dp is None,
        )
        need = self.min_records(spec)
        if len(images.images) < need:
            raise InputDataError(
                f"the image set has {len(images.images)} images; the train/holdout split needs "
                f"at least {need}: add images, or lower split.min_train_rows / "
                "split.min_holdout_rows"
            )
        return images

    def load(self, spec: JobSpec, paths: JobPaths) -> LoadedSource:
        image_set = self.read(spec)
        paths.make_private(paths.work)
        payload = {
            "source": dataclasses.asdict(image_set.source),
            "class_names": image_set.class_names,
            "shape": list(image_set.images.shape[1:]),
        }
        atomic_write_text(paths.image_source, json.dumps(payload, default=list))
        n = len(image_set.images)
        summary = f"{n} images, {len(image_set.class_names)} classes"
        if image_set.source.n_resized:  # a set of mixed sizes: say how many were resized
            res = image_set.images.shape[-1]
            summary += f", {image_set.source.n_resized} resized to {res}x{res}"
        return LoadedSource(image_set_hash(spec.source.path), n, summary, paths.image_source)

    def _read_real(self, spec: JobSpec, source: LoadedSource) -> ImageSet:
        current = image_set_hash(spec.source.path)
        if current != source.data_hash:
            raise InputDataError(
                f"{spec.source.path} changed while the job ran (hash {current[:12]} != "
                f"{source.data_hash[:12]}): run the job again"
            )
        return load_images(
            spec.source.path,
            spec.source.images,
            _format(spec),
            spec.privacy.unit,
            range_from_data=spec.privacy.dp is None,
        )

    # ---- split --------------------------------------------------------------------------
    def split(self, spec: JobSpec, paths: JobPaths, source: LoadedSource) -> Path:
        """A seeded holdout of real images, stratified by label, and by patient when the set
        has a privacy unit (PatientID): a patient's images all fall on one side. Saves
        indices only."""
        image_set = self._read_real(spec, source)
        s = spec.split
        train_idx, holdout_idx = split_records(
            source.n_records,
            s.holdout_fraction,
            spec.seed,
            units=image_set.units,
            stratify=image_set.labels,
            min_train_rows=s.min_train_rows,
            min_holdout_rows=s.min_holdout_rows,
            unit_name="patient",
        )
        return save_split(paths.split, train_idx, holdout_idx, source.data_hash)

    def real_sets(
        self, spec: JobSpec, source: LoadedSource, split_path: Path
    ) -> tuple[ImageSet, ImageSet]:
        """(train, holdout) images and labels, re-read and selected by the saved split."""
        s = self._read_real(spec, source)
        tr, ho = load_split(split_path, source.data_hash)

        def part(idx: np.ndarray) -> ImageSet:
            labels = None if s.labels is None else s.labels[idx]
            units = None if s.units is None else s.units[idx]
            return dataclasses.replace(s, images=s.images[idx], labels=labels, units=units)

        return part(tr), part(ho)

    # ---- check --------------------------------------------------------------------------
    def check_settings(
        self, spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path
    ) -> None:
        """Label counts name classes of a conditional model; the feature checkpoint loads and
        fits the images; the export format can hold them."""
        info = read_info(source.info_path)
        class_names = info["class_names"] if spec.image_model.conditional else []
        conditions = spec.sampling.conditions
        if conditions:
            if not class_names:
                raise InputDataError("conditions need labelled training images")
            train = self.training_data(spec, source, split_path)
            counts = np.bincount(train.labels, minlength=len(class_names))
            rng = np.random.default_rng(spec.seed)
            n = sum(conditions.values())
            codes = draw_labels(n, conditions, class_names, [1] * len(class_names), rng)
            refuse_protected(counts[codes], spec.privacy.rare_category_min_rows, "images")
        checkpoint = spec.evaluation.feature_checkpoint
        if checkpoint is not None:
            CheckpointFeatures.load(checkpoint, tuple(info["shape"]))
        if self.export_format(spec, source) == "dicom":
            from synth.export.dicom import check_dicom_export

            check_dicom_export(source_info(info), int(info["shape"][0]), class_names)

    # ---- train and sample ---------------------------------------------------------------
    model_file = "unet"

    def new_synthesizer(self, spec: JobSpec, source: LoadedSource) -> ImageDiffusionSynthesizer:
        return ImageDiffusionSynthesizer(
            spec.image_model,
            spec.training,
            seed=spec.seed,
            device=spec.training.device,
            privacy=spec.privacy,
        )

    def load_synthesizer(self, spec: JobSpec, paths: JobPaths) -> ImageDiffusionSynthesizer:
        return ImageDiffusionSynthesizer.load(paths.model, device=spec.training.device)

    def training_data(self, spec: JobSpec, source: LoadedSource, split_path: Path) -> ImageSet:
        return self.real_sets(spec, source, split_path)[0]

    def shard_bytes(self, shard: Shard, synthesizer: ImageDiffusionSynthesizer) -> bytes:
        """The shard's images (and labels) as .npz: plain arrays, no pickle."""
        arrays = {"images": shard.data}
        if shard.labels is not None:
            arrays["labels"] = shard.labels
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    def staged_count(self, path: Path) -> int:
        return len(read_staged(path)[0])

    # ---- evaluate -----------------------------------------------------------------------
    def evaluation_inputs(
        self, spec: JobSpec, paths: JobPaths, source: LoadedSource, split_path: Path
    ) -> ImageInputs:
        train, holdout = self.real_sets(spec, source, split_path)
        synthetic, synthetic_labels = _staged_head(paths.staging, spec.evaluation.max_rows)
        model = self.load_synthesizer(spec, paths)
        checkpoint = spec.evaluation.feature_checkpoint
        features = None
        if checkpoint is not None:
            features = CheckpointFeatures.load(checkpoint, tuple(train.images.shape[1:]))
        return ImageInputs(
            train.images,
            train.labels,
            holdout.images,
            holdout.labels,
            synthetic,
            synthetic_labels,
            class_names=train.class_names or None,
            loss_fn=model.denoising_loss,
            features=features,
            dp=dp_state(model.dp_),
        )

    # ---- export -------------------------------------------------------------------------
    def export_format(self, spec: JobSpec, source: LoadedSource) -> str:
        if spec.export.format != "auto":
            return spec.export.format
        return "dicom" if read_info(source.info_path)["source"]["kind"] == "dicom" else "parquet"

    def export(
        self, spec: JobSpec, paths: JobPaths, source: LoadedSource, report: dict[str, Any]
    ) -> list[Path]:
        """Publish the staged images as DICOM (Secondary Capture) or PNG-in-Parquet."""
        info = read_info(source.info_path)
        src = source_info(info)
        images, labels = _staged_head(paths.staging, 10**12)
        metadata = export_metadata(report)
        names = info["class_names"] or None
        if self.export_format(spec, source) == "dicom":
            files = write_dicom_export(
                images, paths.export, source=src, labels=labels, class_names=names,
                metadata=metadata, attachments=report_attachments(paths),
            )  # fmt: skip
        else:
            files = write_image_parquet_export(
                images,
                paths.export,
                labels=labels,
                class_names=names,
                metadata=metadata,
                rows_per_file=spec.export.rows_per_file,
                bits=16 if src.bits_stored > 8 and src.photometric != "RGB" else 8,
                attachments=report_attachments(paths),
            )
        link_published_report(paths)
        shutil.rmtree(paths.staging, ignore_errors=True)
        return files
