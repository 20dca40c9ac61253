"""The image job's steps as plain functions: load, split, train, sample, evaluate, gate, export.

The same story as `synth.pipeline` for tables, and the same rule: steps pass paths and content
hashes, never pixels. Real images are re-read from the source folder (checked against its hash)
and selected with the saved split indices; synthetic images are staged as .npy shards.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synth.atomic import atomic_directory, atomic_write_text
from synth.config import JobSpec
from synth.data.split import load_split, min_rows_for_split, save_split, split_indices
from synth.errors import InputDataError
from synth.hashing import file_sha256
from synth.images.io import ImageSet, ImageSourceInfo, image_set_hash, load_images
from synth.images.synthesizer import ImageDiffusionSynthesizer
from synth.pipeline import JobPaths
from synth.training import is_main_process, wait_for_everyone


@dataclass(frozen=True)
class LoadedImages:
    data_hash: str
    n_images: int
    class_names: list[str]
    source_path: Path  # .work/image_source.json: what the export needs (bit depth, photometric)

    @property
    def summary(self) -> str:
        return f"{self.n_images} images, {len(self.class_names)} classes"


def read_images(spec: JobSpec) -> ImageSet:
    """Read and check the protected image set. Raises one-line InputDataErrors."""
    images = load_images(spec.source.path, spec.source.images, _format(spec))
    s = spec.split
    need = min_rows_for_split(s.holdout_fraction, s.min_train_rows, s.min_holdout_rows)
    if len(images.images) < need:
        raise InputDataError(
            f"the image set has {len(images.images)} images; the train/holdout split needs at "
            f"least {need}: add images, or lower split.min_train_rows / split.min_holdout_rows"
        )
    return images


def _format(spec: JobSpec) -> str:
    fmt = spec.source.format
    return fmt if fmt in ("auto", "dicom", "png", "hf") else "auto"


def load(spec: JobSpec, paths: JobPaths) -> LoadedImages:
    image_set = read_images(spec)
    paths.work.mkdir(parents=True, exist_ok=True)
    source = paths.work / "image_source.json"
    payload = {"source": dataclasses.asdict(image_set.source), "class_names": image_set.class_names}
    atomic_write_text(source, json.dumps(payload, default=list))
    return LoadedImages(
        image_set_hash(spec.source.path), len(image_set.images), image_set.class_names, source
    )


def _read_real(spec: JobSpec, loaded: LoadedImages) -> ImageSet:
    current = image_set_hash(spec.source.path)
    if current != loaded.data_hash:
        raise InputDataError(
            f"{spec.source.path} changed while the job ran (hash {current[:12]} != "
            f"{loaded.data_hash[:12]}): run the job again"
        )
    return load_images(spec.source.path, spec.source.images, _format(spec))


def split(spec: JobSpec, paths: JobPaths, loaded: LoadedImages) -> Path:
    """A seeded holdout of real images, stratified by label. Saves indices only."""
    image_set = _read_real(spec, loaded)
    train_idx, holdout_idx = split_indices(
        loaded.n_images,
        spec.split.holdout_fraction,
        spec.seed,
        stratify=image_set.labels,
        min_train_rows=spec.split.min_train_rows,
        min_holdout_rows=spec.split.min_holdout_rows,
    )
    return save_split(paths.split, train_idx, holdout_idx, loaded.data_hash)


def real_sets(spec: JobSpec, loaded: LoadedImages, split_path: Path):
    """(train images, train labels, holdout images, holdout labels)."""
    s = _read_real(spec, loaded)
    tr, ho = load_split(split_path, loaded.data_hash)
    labels = s.labels
    return (
        s.images[tr],
        None if labels is None else labels[tr],
        s.images[ho],
        None if labels is None else labels[ho],
    )


def _synthesizer(spec: JobSpec) -> ImageDiffusionSynthesizer:
    return ImageDiffusionSynthesizer(
        spec.image_model, spec.training, seed=spec.seed, device=spec.training.device
    )


def train(
    spec: JobSpec, paths: JobPaths, loaded: LoadedImages, split_path: Path, progress: bool = True
) -> str:
    x, y, _, _ = real_sets(spec, loaded, split_path)
    synthesizer = _synthesizer(spec)
    synthesizer.fit(x, y, loaded.class_names, checkpoint_dir=paths.model, progress=progress)
    if is_main_process():  # under `accelerate launch`, one process writes the model
        synthesizer.save(paths.model)
    wait_for_everyone()
    return file_sha256(paths.model / "unet")


def sample(spec: JobSpec, paths: JobPaths, n_train: int, progress: bool = True) -> int:
    """Generate the images into private staging shards (.npy, no pickle)."""
    synthesizer = ImageDiffusionSynthesizer.load(paths.model, device=spec.training.device)
    s = spec.sampling
    n = sum(s.conditions.values()) if s.conditions else (s.rows or n_train)
    shards = synthesizer.sample_shards(
        n,
        s.conditions,
        shard_rows=s.shard_rows,
        num_inference_steps=s.num_inference_steps,
        scheduler=s.scheduler,
        guidance_scale=s.guidance_scale,
        seed=spec.seed,
        progress=progress,
    )
    with atomic_directory(paths.staging) as tmp:
        for i, (images, labels) in enumerate(shards):
            np.save(tmp / f"images-{i:05d}.npy", images)
            if labels is not None:
                np.save(tmp / f"labels-{i:05d}.npy", labels)
    return n


def staged_shards(staging: Path) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    for f in sorted(Path(staging).glob("images-*.npy")):
        labels = f.with_name(f.name.replace("images-", "labels-"))
        yield (
            np.load(f, allow_pickle=False),
            np.load(labels, allow_pickle=False) if labels.exists() else None,
        )


def _staged(staging: Path, limit: int) -> tuple[np.ndarray, np.ndarray | None]:
    images, labels, have = [], [], 0
    for x, y in staged_shards(staging):
        images.append(x[: limit - have])
        labels.append(None if y is None else y[: limit - have])
        have += len(images[-1])
        if have >= limit:
            break
    y_all = None if labels[0] is None else np.concatenate(labels)
    return np.concatenate(images), y_all


def evaluate(
    spec: JobSpec,
    paths: JobPaths,
    loaded: LoadedImages,
    split_path: Path,
    lineage: dict[str, Any],
    progress: bool = True,
) -> dict[str, Any]:
    from evaluation.images.evaluate import evaluate_images
    from evaluation.images.report import write_image_report

    x, y, xh, yh = real_sets(spec, loaded, split_path)
    syn, syn_y = _staged(paths.staging, spec.evaluation.max_rows)
    model = ImageDiffusionSynthesizer.load(paths.model, device=spec.training.device)
    ev = spec.evaluation
    features = None
    if ev.feature_checkpoint is not None:
        from evaluation.images.features import CheckpointFeatures

        features = CheckpointFeatures.load(ev.feature_checkpoint, tuple(x.shape[1:]))
    evaluation = evaluate_images(
        x,
        y,
        xh,
        yh,
        syn,
        syn_y,
        ev.image_thresholds,
        class_names=loaded.class_names or None,
        loss_fn=model.denoising_loss,
        seed=spec.seed,
        progress=progress,
        override=ev.override_gate,
        override_reason=ev.override_reason,
        max_images=ev.max_rows,
        features=features,
    )
    write_image_report(evaluation, paths.out, train=x, synthetic=syn, extra={"lineage": lineage})
    return json.loads(paths.report_json.read_text())


def export_format(spec: JobSpec, loaded: LoadedImages) -> str:
    if spec.export.format != "auto":
        return spec.export.format
    source = json.loads(Path(loaded.source_path).read_text())["source"]
    return "dicom" if source["kind"] == "dicom" else "parquet"


def export(
    spec: JobSpec, paths: JobPaths, loaded: LoadedImages, report: dict[str, Any]
) -> list[Path]:
    """Publish the staged images as DICOM (Secondary Capture) or PNG-in-Parquet."""
    from synth.export.dicom import write_dicom_export
    from synth.export.image_parquet import write_image_parquet_export

    payload = json.loads(Path(loaded.source_path).read_text())
    source = ImageSourceInfo(
        **{**payload["source"], "value_range": tuple(payload["source"]["value_range"])}
    )
    images, labels = _staged(paths.staging, 10**12)
    metadata = {"lineage": report["extra"]["lineage"], "report": report}
    names = loaded.class_names or None
    if export_format(spec, loaded) == "dicom":
        files = write_dicom_export(
            images, paths.export, source=source, labels=labels, class_names=names, metadata=metadata
        )
    else:
        files = write_image_parquet_export(
            images,
            paths.export,
            labels=labels,
            class_names=names,
            metadata=metadata,
            rows_per_file=spec.export.rows_per_file,
            bits=16 if source.bits_stored > 8 and source.photometric != "RGB" else 8,
        )
    shutil.rmtree(paths.staging, ignore_errors=True)
    return files
