"""ImageDiffusionSynthesizer: a diffusers UNet2DModel behind the shared synthesizer contract.

Training is the DDPM objective (diffusers' `DDPMScheduler.add_noise`, v-prediction by default),
with AdamW, a warmup-cosine learning rate, diffusers' `EMAModel`, and bf16 autocast on CUDA.
With labels the UNet is class-conditional; label dropout trains a null class so sampling can
use classifier-free guidance. Sampling uses DDIM or DPM-Solver in a few steps, in shards.
Fine-tuning starts from a local `save_pretrained` directory; nothing is fetched from a hub.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

from synth.checkpoint import (
    read_state,
    training_settings,
    write_state,
)
from synth.config import IMAGE_TRAINING_DEFAULTS, ImageModelSpec, PrivacySpec, TrainingSpec
from synth.device import autocast, pick_device
from synth.dp.accounting import DPPlan, PrivacyBudgetError, dp_from_state, dp_state
from synth.dp.plan import dp_plan
from synth.dp.preprocess import private_class_counts
from synth.errors import InputDataError, NotFittedError
from synth.hashing import json_sha256
from synth.labels import draw_labels
from synth.progress import progress_bar
from synth.synthesizer import Shard, guided
from synth.tabular.diffusion import make_solver
from synth.training import drop_labels, make_accelerator, should_resume, train_loop

if TYPE_CHECKING:
    from synth.images.io import ImageSet

KIND = "image-diffusion"
CPU_SHARD_IMAGES = 256
CUDA_SHARD_IMAGES = 4096


IMAGE_STEPS = IMAGE_TRAINING_DEFAULTS["steps"]


class ImageDiffusionSynthesizer:
    """The constructor only stores parameters; `fit` learns (scikit-learn's contract)."""

    def __init__(
        self,
        model: ImageModelSpec | None = None,
        training: TrainingSpec | None = None,
        seed: int = 0,
        device: str = "auto",
        privacy: PrivacySpec | None = None,
    ):
        self.model = model or ImageModelSpec()
        self.training = training or TrainingSpec(steps=IMAGE_STEPS, batch_size=64, lr=1e-3)
        if self.training.steps is None:  # the table scaling does not apply to images
            self.training = self.training.model_copy(update={"steps": IMAGE_STEPS})
        self.seed = seed
        self.device = device
        self.privacy = privacy

    # ---- build --------------------------------------------------------------------------
    def _unet(self, resolution: int, channels: int, n_classes: int) -> UNet2DModel:
        spec = self.model
        depth = len(spec.block_out_channels)
        down = ["DownBlock2D"] * depth
        up = ["UpBlock2D"] * depth
        if spec.attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        kwargs: dict[str, Any] = {}
        if n_classes:
            kwargs["num_class_embeds"] = n_classes + 1  # + the null class for CFG
        if spec.pretrained is not None:
            return _load_pretrained(Path(spec.pretrained), resolution, channels, kwargs)
        return UNet2DModel(
            sample_size=resolution,
            in_channels=channels,
            out_channels=channels,
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            block_out_channels=tuple(spec.block_out_channels),
            layers_per_block=spec.layers_per_block,
            norm_num_groups=min(32, min(spec.block_out_channels)),
            add_attention=spec.attention,
            **kwargs,
        )

    def _scheduler(self) -> DDPMScheduler:
        return DDPMScheduler(
            num_train_timesteps=self.model.num_train_timesteps,
            beta_schedule=self.model.beta_schedule,
            prediction_type=self.model.prediction_type,
            clip_sample=False,
        )

    # ---- fit ----------------------------------------------------------------------------
    def fit(
        self,
        train: ImageSet,
        *,
        checkpoint_dir: Path | str | None = None,
        progress: bool = True,
        fingerprint: str | None = None,
    ) -> ImageDiffusionSynthesizer:
        """Learn from `train.images` (float32 [N, C, H, W] in [0, 1]) and, when the set has
        them, `train.labels` (int [N]) into `train.class_names`. Resumes only from a checkpoint
        in `checkpoint_dir` made for the same `fingerprint` (by default `self.fingerprint`)."""
        images = _check_images(train.images)
        self.fingerprint_ = fingerprint or self.fingerprint(train)
        labels, class_names = train.labels, train.class_names
        n, channels, height, _ = images.shape
        use_labels = labels is not None and self.model.conditional
        self.class_names_ = list(class_names or []) if use_labels else []
        if use_labels and not self.class_names_:
            self.class_names_ = [str(i) for i in range(int(labels.max()) + 1)]
        n_classes = len(self.class_names_)
        counts = np.bincount(labels, minlength=n_classes) if use_labels else np.zeros(0, int)
        # A class of fewer than k training images is protected: its images train as the
        # null (unconditional) class, its name is not kept, and it is never sampled.
        privacy = self.privacy or PrivacySpec()
        self.dp_ = self.plan_dp(train)
        released = np.ones(n_classes, dtype=bool)
        if self.dp_ is not None and use_labels:  # the counts a DP model may keep are noisy
            counts, released = self._dp_class_counts(train, self.dp_, n_classes)
        # Under DP the threshold is the rare-class protection (none for declared classes)
        rare = counts < privacy.rare_category_min_rows if self.dp_ is None else ~released
        protected = np.flatnonzero(rare)
        if use_labels and len(protected) == n_classes:
            raise InputDataError(
                f"every class has fewer than privacy.rare_category_min_rows="
                f"{privacy.rare_category_min_rows} training images: none could be sampled; add "
                "images, lower k, or set image_model.conditional to false"
            )
        self.protected_classes_ = protected.tolist()
        for i in self.protected_classes_:
            self.class_names_[i] = privacy.rare_category_label
        counts[protected] = 0
        self.label_counts_ = counts.tolist()
        if use_labels and len(protected):
            labels = np.where(np.isin(labels, protected), n_classes, labels)
        self.resolution_, self.channels_ = height, channels
        torch.manual_seed(self.seed)
        accelerator = make_accelerator(pick_device(self.device))  # one process, or one of N
        device = accelerator.device
        checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.unet_ = self._unet(height, channels, n_classes)
        self.noise_scheduler_ = self._scheduler()

        unet = self.unet_.to(device).train()
        x_all = torch.as_tensor(images, device=device) * 2 - 1  # diffusion works in [-1, 1]
        y_all = torch.as_tensor(labels, device=device) if use_labels else None
        alphas = self.noise_scheduler_.alphas_cumprod.to(device)
        self.noise_scheduler_.alphas_cumprod = alphas

        def loss_fn(net: torch.nn.Module, idx: torch.Tensor, generator: torch.Generator):
            class_labels = None
            if y_all is not None:
                class_labels = drop_labels(
                    y_all[idx], self.model.cond_drop_prob, n_classes, generator
                )
            return self._loss(net, x_all[idx], class_labels, generator).mean(), {}

        self.final_loss_ = train_loop(
            unet,
            accelerator,
            self.training,
            n_rows=n,
            seed=self.seed,
            loss_fn=loss_fn,
            checkpoint_dir=checkpoint_dir,
            resume=should_resume(checkpoint_dir, self.fingerprint_, self.training.resume),
            save=self.save,
            on_checkpoint=lambda done: setattr(self, "steps_trained_", done),
            progress=progress,
            fingerprint=self.fingerprint_,
            dp=self.dp_,
            units=train.units,
        )
        self.steps_trained_ = self.training.steps
        return self

    def plan_dp(self, train: ImageSet) -> DPPlan | None:
        """What DP training on `train` would spend, and how (None without `privacy.dp`): the
        class counts are estimated privately when the model is conditional. Raises
        `PrivacyBudgetError` when the budget cannot cover the training."""
        labelled = train.labels is not None and self.model.conditional
        privacy = self.privacy or PrivacySpec()
        estimated = []
        if labelled:  # declared names still need their counts estimated
            estimated = ["class counts"] if train.classes_declared else ["classes"]
        plan = dp_plan(None, privacy, self.training, train.units, len(train.images), estimated)
        if plan is not None and labelled:  # refused here, before training, if none is kept
            self._dp_class_counts(train, plan, len(train.class_names) or train.labels.max() + 1)
        return plan

    def _dp_class_counts(
        self, train: ImageSet, plan: DPPlan, n_classes: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The noisy class counts and the classes released (seeded: the same release each
        call, so checking it before training spends nothing more)."""
        counts, released = private_class_counts(
            train.labels,
            train.units,
            n_classes,
            plan.epsilon_preprocessing,
            plan.delta_preprocessing,
            self.seed,
            declared=train.classes_declared,
        )
        if not released.any():
            raise PrivacyBudgetError(
                f"under DP at epsilon {plan.epsilon:g}, no class's noisy count passed the "
                "threshold that keeps private class names out: declare the class names public "
                "(source.images.classes), or raise privacy.dp.epsilon or "
                "privacy.dp.preprocessing_fraction"
            )
        if not counts[released].any():  # all noise: sample the released classes evenly
            counts = released.astype(np.int64)
        return counts, released

    def fingerprint(self, train: ImageSet) -> str:
        """What a checkpoint must have been made for to be resumed: the training images, their
        labels and class names, and every setting that shapes the weights."""
        h = hashlib.sha256()
        for array in (train.images, train.labels):
            if array is not None:
                array = np.ascontiguousarray(array)
                h.update(f"{array.dtype.str}{array.shape}".encode())
                h.update(array.data)
        return json_sha256(
            {
                "kind": KIND,
                "data": h.hexdigest(),
                "class_names": list(train.class_names or []),
                # declared classes change what DP releases; absent (as before) when not
                **({"classes_declared": True} if train.classes_declared else {}),
                "model": self.model.model_dump(mode="json"),
                "training": training_settings(self.training),
                "privacy": (self.privacy or PrivacySpec()).model_dump(mode="json"),
                "seed": self.seed,
            }
        )

    def _loss(
        self, unet: UNet2DModel, x0: torch.Tensor, class_labels, generator=None, t=None
    ) -> torch.Tensor:
        """Per-image DDPM loss (mean squared error of the v- or noise-prediction)."""
        device = x0.device
        if t is None:
            t = torch.randint(
                0,
                self.noise_scheduler_.config.num_train_timesteps,
                (len(x0),),
                device=device,
                generator=generator,
            )
        noise = torch.randn(x0.shape, device=device, generator=generator)
        x_t = self.noise_scheduler_.add_noise(x0, noise, t)
        with autocast(device):
            out = unet(x_t, t, class_labels=class_labels).sample.float()
        if self.noise_scheduler_.config.prediction_type == "v_prediction":
            target = self.noise_scheduler_.get_velocity(x0, noise, t)
        else:
            target = noise
        return F.mse_loss(out, target, reduction="none").mean(dim=(1, 2, 3))

    # ---- sample -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "unet_"):
            raise NotFittedError(
                "ImageDiffusionSynthesizer is not fitted yet: call fit(train) or load(dir) first"
            )

    def _labels_for(self, n: int, conditions: dict[Any, int] | None, rng) -> np.ndarray | None:
        if not self.class_names_:
            if conditions:
                raise InputDataError("conditions need labelled training images")
            return None
        drawn = draw_labels(n, conditions, self.class_names_, self.label_counts_, rng)
        if np.isin(drawn, self.protected_classes_).any():
            raise InputDataError(
                "a condition names a protected class (fewer than "
                "privacy.rare_category_min_rows training images): it is never sampled"
            )
        return drawn

    @torch.inference_mode()
    def sample_shards(
        self,
        n: int | None = None,
        conditions: dict[Any, int] | None = None,
        *,
        shard_rows: int | None = None,
        num_inference_steps: int = 20,
        scheduler: str = "dpmsolver",
        guidance_scale: float = 1.0,
        seed: int | None = None,
        progress: bool = False,
    ) -> Iterator[Shard]:
        """Yield Shards of images [b, C, H, W] in [0, 1] (labels or None), all drawn from one
        generator seeded `seed`."""
        self._check_fitted()
        if conditions:
            n = sum(int(v) for v in conditions.values())
        if n is None or n < 1:
            raise InputDataError("ask for at least one image")
        seed = self.seed if seed is None else seed
        labels = self._labels_for(n, conditions, np.random.default_rng(seed))
        device = pick_device(self.device)
        if shard_rows is None:
            shard_rows = CUDA_SHARD_IMAGES if device.type == "cuda" else CPU_SHARD_IMAGES
        generator = torch.Generator(device=device).manual_seed(seed)
        bar = progress_bar(
            total=n, desc="sample", unit="img", disable=not progress, dynamic_ncols=True
        )
        for start in range(0, n, shard_rows):
            size = min(shard_rows, n - start)
            batch = None if labels is None else labels[start : start + size]
            yield self._draw(
                start, size, batch, num_inference_steps, scheduler, guidance_scale, generator
            )
            bar.update(size)
        bar.close()

    @torch.inference_mode()
    def sample_shard(
        self,
        n: int,
        conditions: dict[Any, int] | None = None,
        *,
        seed: int,
        offset: int = 0,
        num_inference_steps: int = 20,
        scheduler: str = "dpmsolver",
        guidance_scale: float = 1.0,
    ) -> Shard:
        """One independent shard in one pass: `n` images (or exactly `conditions`' counts)
        drawn from its own `seed`, as images `offset` onwards. Shards depend on nothing but
        their arguments, so they can be drawn on other machines, in any order."""
        self._check_fitted()
        if conditions:
            n = sum(int(v) for v in conditions.values())
        if n < 1:
            raise InputDataError("ask for at least one image")
        labels = self._labels_for(n, conditions, np.random.default_rng(seed))
        generator = torch.Generator(device=pick_device(self.device)).manual_seed(seed)
        return self._draw(
            offset, n, labels, num_inference_steps, scheduler, guidance_scale, generator
        )

    def _draw(
        self,
        start: int,
        size: int,
        labels: np.ndarray | None,
        num_inference_steps: int,
        scheduler: str,
        guidance_scale: float,
        generator: torch.Generator,
    ) -> Shard:
        """One reverse-diffusion pass of `size` images from `generator`, on its device."""
        device = generator.device
        unet = self.unet_.to(device).eval()
        y = None if labels is None else torch.as_tensor(labels, device=device)

        def predict(x: torch.Tensor, t: torch.Tensor, cls: torch.Tensor | None) -> torch.Tensor:
            with autocast(device):
                return unet(x, t, class_labels=cls).sample.float()

        denoise = guided(predict, y, guidance_scale, len(self.class_names_))
        solver = make_solver(scheduler, self.noise_scheduler_)
        solver.set_timesteps(num_inference_steps, device=device)
        shape = (size, self.channels_, self.resolution_, self.resolution_)
        x = torch.randn(shape, device=device, generator=generator)
        for t in solver.timesteps:
            tt = torch.full((size,), int(t), device=device, dtype=torch.long)
            x = solver.step(denoise(x, tt), t, x, generator=generator).prev_sample
        images = ((x.clamp(-1, 1) + 1) / 2).float().cpu().numpy()
        return Shard(start=start, data=images, labels=None if y is None else y.cpu().numpy())

    def sample(self, n: int | None = None, conditions: dict[Any, int] | None = None, **kw: Any):
        """All shards at once: (images, labels or None)."""
        shards = list(self.sample_shards(n, conditions, **kw))
        images = np.concatenate([s.data for s in shards])
        labels = None if shards[0].labels is None else np.concatenate([s.labels for s in shards])
        return images, labels

    @torch.inference_mode()
    def denoising_loss(
        self,
        images: np.ndarray,
        labels: np.ndarray | None = None,
        n_timesteps: int = 8,
        seed: int = 0,
    ) -> np.ndarray:
        """Per-image loss at fixed timesteps and noise: lower on memorised (member) images."""
        self._check_fitted()
        device = pick_device(self.device)
        unet = self.unet_.to(device).eval()
        x0 = torch.as_tensor(_check_images(images), device=device) * 2 - 1
        y = None
        if self.class_names_:  # a conditional UNet: without labels, score with the null class
            null = torch.full((len(x0),), len(self.class_names_), device=device)
            y = null if labels is None else torch.as_tensor(labels, device=device)
        total = torch.zeros(len(x0), device=device)
        steps = torch.linspace(
            50, self.noise_scheduler_.config.num_train_timesteps - 50, n_timesteps
        )
        for i, t in enumerate(steps.long().tolist()):
            g = torch.Generator(device=device).manual_seed(seed + i)
            for a in range(0, len(x0), 256):
                xb = x0[a : a + 256]
                yb = None if y is None else y[a : a + 256]
                tb = torch.full((len(xb),), t, device=device, dtype=torch.long)
                total[a : a + 256] += self._loss(unet, xb, yb, g, tb)
        return (total / n_timesteps).cpu().numpy()

    # ---- persistence --------------------------------------------------------------------
    def protection(self) -> dict[str, Any]:
        """What rare-value protection did, as counts only: for the report."""
        self._check_fitted()
        privacy = self.privacy or PrivacySpec()
        return {
            "rare_category_min_rows": privacy.rare_category_min_rows,
            "protected_classes": len(self.protected_classes_),
        }

    def save(self, directory: Path | str) -> Path:
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.unet_.save_pretrained(directory / "unet", safe_serialization=True)
        self.noise_scheduler_.save_pretrained(directory / "scheduler")
        state = {
            "seed": self.seed,
            "model": self.model.model_dump(mode="json"),
            "training": self.training.model_dump(mode="json"),
            "class_names": self.class_names_,
            "label_counts": self.label_counts_,
            "protected_classes": self.protected_classes_,
            "privacy": (self.privacy or PrivacySpec()).model_dump(mode="json"),
            "resolution": self.resolution_,
            "channels": self.channels_,
            "steps_trained": getattr(self, "steps_trained_", None),
            "final_loss": getattr(self, "final_loss_", None),
            "dp": dp_state(getattr(self, "dp_", None)),
        }
        write_state(directory, KIND, state)
        return directory

    @classmethod
    def load(cls, directory: Path | str, device: str = "auto") -> ImageDiffusionSynthesizer:
        directory = Path(directory)
        state = read_state(directory, KIND)
        obj = cls(
            ImageModelSpec.model_validate(state["model"]),
            TrainingSpec.model_validate(state["training"]),
            seed=state["seed"],
            device=device,
            privacy=PrivacySpec.model_validate(state["privacy"]),
        )
        obj.unet_ = UNet2DModel.from_pretrained(directory / "unet", low_cpu_mem_usage=False).eval()
        obj.noise_scheduler_ = DDPMScheduler.from_pretrained(directory / "scheduler")
        obj.class_names_ = state["class_names"]
        obj.label_counts_ = state["label_counts"]
        obj.protected_classes_ = state["protected_classes"]
        obj.resolution_ = state["resolution"]
        obj.channels_ = state["channels"]
        obj.steps_trained_ = state["steps_trained"]
        obj.final_loss_ = state["final_loss"]
        obj.dp_ = dp_from_state(state.get("dp"))  # saved before DP existed: none
        return obj


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise InputDataError(f"images must be [N, C, H, W] squares; got shape {images.shape}")
    if len(images) < 2:
        raise InputDataError("need at least 2 training images")
    if images.min() < -1e-4 or images.max() > 1 + 1e-4:
        raise InputDataError("image values must lie in [0, 1]")
    return images


def _load_pretrained(
    path: Path, resolution: int, channels: int, kwargs: dict[str, Any]
) -> UNet2DModel:
    """Fine-tune from a local checkpoint: a UNet2DModel folder, or a pipeline folder with unet/."""
    if not path.is_dir():
        raise InputDataError(f"pretrained checkpoint {str(path)!r} is not a local directory")
    folder = path / "unet" if (path / "unet" / "config.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise InputDataError(f"{str(path)!r} holds no UNet2DModel (no config.json, no unet/)")
    config = json.loads((folder / "config.json").read_text())
    if config.get("in_channels") != channels:
        raise InputDataError(
            f"pretrained UNet takes {config.get('in_channels')} channels; "
            f"the images have {channels}"
        )
    unet = UNet2DModel.from_pretrained(
        folder,
        low_cpu_mem_usage=False,
        ignore_mismatched_sizes=True,
        sample_size=resolution,
        **kwargs,
    )
    # Weights the checkpoint lacks (e.g. a class embedding added for conditioning) can come
    # back uninitialised; give them a fresh model's initialisation, explicitly.
    stored = _checkpoint_shapes(folder)
    fresh = UNet2DModel.from_config(unet.config).state_dict()
    with torch.no_grad():
        for name, param in unet.state_dict().items():
            if stored.get(name) != tuple(param.shape):
                param.copy_(fresh[name])
    if not all(torch.isfinite(p).all() for p in unet.parameters()):
        raise InputDataError(f"pretrained checkpoint {str(path)!r} holds non-finite weights")
    return unet


def _checkpoint_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a dict
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes
