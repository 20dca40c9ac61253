"""TabularDiffusionSynthesizer: fit / sample / save / load, the contract every modality shares."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from diffusers import DDPMScheduler

from synth.checkpoint import (
    read_state,
    training_settings,
    write_state,
)
from synth.config import ModelSpec, PrivacySpec, RulesSpec, TrainingSpec
from synth.data.categories import MISSING, category_key
from synth.data.rules import (
    FixedValue,
    Ordering,
    repair,
    resolve_rules,
    rule_breaks,
    rules_from_state,
)
from synth.data.schema import TableSchema
from synth.data.units import table_units, unit_column
from synth.device import autocast, pick_device
from synth.dp.accounting import DPPlan, dp_from_state, dp_state
from synth.dp.plan import dp_plan
from synth.dp.preprocess import private_sketch
from synth.errors import InputDataError, NotFittedError, SynthWarning
from synth.hashing import dataframe_sha256, json_sha256
from synth.labels import draw_labels
from synth.progress import progress_bar
from synth.synthesizer import Shard, guided
from synth.tabular.denoiser import TabularDenoiser
from synth.tabular.diffusion import GaussianMultinomialDiffusion, make_solver
from synth.tabular.encoders import EncodedTable, TableEncoder, columns_to_frame
from synth.tabular.offsets import configured_offsets
from synth.training import drop_labels, make_accelerator, should_resume, train_loop

log = logging.getLogger(__name__)
KIND = "tabular-diffusion"
CPU_SHARD_ROWS = 10_000
CUDA_SHARD_ROWS = 1_000_000
MAX_CANDIDATES = 64  # redrawn candidates per rule-breaking row, at most, in one round


class TabularDiffusionSynthesizer:
    """A TabDDPM-style synthesizer. The constructor only stores parameters; `fit` learns."""

    def __init__(
        self,
        schema: TableSchema,
        model: ModelSpec | None = None,
        training: TrainingSpec | None = None,
        seed: int = 0,
        device: str = "auto",
        privacy: PrivacySpec | None = None,
        rules: RulesSpec | None = None,
    ):
        self.schema = schema
        self.model = model or ModelSpec()
        self.training = training or TrainingSpec()
        self.seed = seed
        self.device = device
        self.privacy = privacy
        self.rules = rules

    # ---- fit ----------------------------------------------------------------------------
    def _build(self, enc: TableEncoder) -> None:
        self.encoder_ = enc
        self.noise_scheduler_ = DDPMScheduler(
            num_train_timesteps=self.model.num_train_timesteps,
            beta_schedule=self.model.beta_schedule,
            clip_sample=False,
            prediction_type=self.model.prediction_type,
        )
        self.denoiser_ = TabularDenoiser(
            n_num=enc.n_num,
            num_classes=enc.num_classes,
            num_labels=len(enc.target_classes_) if enc.conditional else 0,
            hidden_dims=list(self.model.hidden_dims),
            time_embedding_dim=self.model.time_embedding_dim,
            dropout=self.model.dropout,
        )

    def fit(
        self,
        train: pd.DataFrame,
        *,
        checkpoint_dir: Path | str | None = None,
        progress: bool = True,
        fingerprint: str | None = None,
    ) -> TabularDiffusionSynthesizer:
        """Learn the table. With `checkpoint_dir`, save there as training goes, and resume from
        a checkpoint there made for the same `fingerprint` (by default `self.fingerprint(train)`:
        the training rows and every setting that shapes training)."""
        if len(train) < 2:
            raise InputDataError("the training table needs at least 2 rows")
        torch.manual_seed(self.seed)
        device = pick_device(self.device)
        checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.fingerprint_ = fingerprint or self.fingerprint(train)
        privacy = self.privacy or PrivacySpec()
        units = self._units(train)
        self.training_ = self._resolved_training(train)
        if self.training.steps is None and privacy.dp is None:
            log.info(
                "training budget: %d steps, scaled to %d rows x %d columns",
                self.training_.steps, len(train), len(self.schema.modelled),
            )  # fmt: skip
        resume = should_resume(checkpoint_dir, self.fingerprint_, self.training.resume)
        if resume:
            loaded = type(self).load(checkpoint_dir, device=self.device)
            self._build(loaded.encoder_)
            self.label_counts_ = loaded.label_counts_
        k = privacy.rare_category_min_rows
        # What the encoder and rules learn from: the training rows, or under DP their
        # private sketch (`synth.dp.preprocess`), so that all it keeps is DP.
        self.dp_ = dp_plan(self.schema, privacy, self.training_, units, len(train))
        facts = train
        if self.dp_ is not None and not resume:
            facts = private_sketch(
                train,
                self.schema,
                units,
                self.dp_.epsilon_preprocessing,
                self.dp_.delta_preprocessing,
                self.seed,
            ).frame
        self.rules_ = self._find_rules(facts, k, private=self.dp_ is not None)
        if not resume:
            offsets = (
                configured_offsets(train, self.schema, self.rules_, self.rules or RulesSpec(), k)
                if self.dp_ is None
                else {}  # a tie pattern is the data's, not the sketch's
            )
            encoder = TableEncoder(
                self.schema,
                self.model.conditional,
                self.seed,
                min_rows=privacy.rare_category_min_rows,
                rare_label=privacy.rare_category_label,
                offsets=offsets,
                protect_unseen=self.dp_ is not None,
            )
            self._build(encoder.fit(facts))
            labels = self.encoder_.transform(facts).y
            self.label_counts_ = (
                np.bincount(labels, minlength=len(self.encoder_.target_classes_)).tolist()
                if labels is not None
                else []
            )
        enc = self.encoder_.transform(train)
        self._train(enc, device, checkpoint_dir, resume, progress, units)
        return self

    def _units(self, train: pd.DataFrame) -> np.ndarray | None:
        """Each training row's person code (`privacy.unit`); None: each row is a person."""
        unit = (self.privacy or PrivacySpec()).unit
        return table_units(train, unit_column(unit, list(train.columns)))

    def _resolved_training(self, train: pd.DataFrame) -> TrainingSpec:
        numeric = len(self.schema.of_kind("numeric", "datetime"))
        dp = (self.privacy or PrivacySpec()).dp is not None
        return self.training.resolved(len(train), len(self.schema.modelled), numeric, dp=dp)

    def plan_dp(self, train: pd.DataFrame) -> DPPlan | None:
        """What DP training on `train` would spend, and how (None without `privacy.dp`).
        Raises `PrivacyBudgetError` when the budget cannot cover the training: called by the
        job's check step, before any training."""
        privacy = self.privacy or PrivacySpec()
        training = self._resolved_training(train)
        return dp_plan(self.schema, privacy, training, self._units(train), len(train))

    def _find_rules(
        self, train: pd.DataFrame, k: int, private: bool = False
    ) -> list[FixedValue | Ordering]:
        """The logical rules of the training rows (`synth.data.rules`), as configured. Found
        again on resume; they shape the weights through the offsets (`configured_offsets`),
        so the rules spec is in the fingerprint."""
        spec = self.rules or RulesSpec()
        return resolve_rules(
            train,
            self.schema,
            k=k,
            discover=spec.discover and not private,  # under DP, only declared rules
            min_support=spec.min_support,
            min_support_fraction=spec.min_support_fraction,
            add=spec.add,
            drop=spec.drop,
        )

    def fingerprint(self, train: pd.DataFrame) -> str:
        """What a checkpoint must have been made for to be resumed: the training rows, the
        schema and every setting that shapes the weights."""
        return json_sha256(
            {
                "kind": KIND,
                "data": dataframe_sha256(train),
                "schema": self.schema.model_dump(mode="json"),
                "model": self.model.model_dump(mode="json"),
                "training": training_settings(self.training),
                "privacy": (self.privacy or PrivacySpec()).model_dump(mode="json"),
                "rules": (self.rules or RulesSpec()).model_dump(mode="json"),
                "seed": self.seed,
            }
        )

    def _train(
        self,
        enc: EncodedTable,
        device: torch.device,
        checkpoint_dir: Path | None,
        resume: bool,
        progress: bool,
        units: np.ndarray | None = None,
    ) -> None:
        accelerator = make_accelerator(device)  # one process, or one of N launched
        device = accelerator.device
        model = self.denoiser_.to(device).train()
        diffusion = self._diffusion(device)
        x_num, x_cat, y = self._tensors(enc, device)
        n_labels = len(self.encoder_.target_classes_)

        # DP: each sampled row is drawn `draws` times (timestep and noise), in one example
        draws = self.dp_.noise_multiplicity if self.dp_ is not None else 1

        def loss_fn(net: torch.nn.Module, idx: torch.Tensor, generator: torch.Generator):
            kw: dict[str, Any] = {}
            if self.dp_ is not None:  # per example: its draws' mean (`p_losses` per row)
                idx = idx.repeat_interleave(draws)
                kw["groups"], kw["per_row"] = draws, True
            if y is not None:
                kw["labels"] = drop_labels(y[idx], self.model.cond_drop_prob, n_labels, generator)
            with autocast(device):
                loss_num, loss_cat = diffusion.p_losses(net, x_num[idx], x_cat[idx], **kw)
            if self.dp_ is not None:
                return (loss_num + loss_cat).view(-1, draws).mean(1), {}
            return loss_num + loss_cat, {"num": loss_num, "cat": loss_cat}

        self.final_loss_ = train_loop(
            model,
            accelerator,
            self.training_,
            n_rows=len(x_num),
            seed=self.seed,
            loss_fn=loss_fn,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            save=self.save,
            on_checkpoint=lambda done: setattr(self, "steps_trained_", done),
            progress=progress,
            fingerprint=self.fingerprint_,
            dp=self.dp_,
            units=units,
            per_example_loss=True,
        )
        self.steps_trained_ = self.training_.steps

    def _diffusion(self, device: torch.device) -> GaussianMultinomialDiffusion:
        """The diffusion over the encoder's layout, on `device` (with the scheduler's table)."""
        self.noise_scheduler_.alphas_cumprod = self.noise_scheduler_.alphas_cumprod.to(device)
        return GaussianMultinomialDiffusion(
            self.encoder_.n_num,
            self.encoder_.num_classes,
            self.noise_scheduler_,
            self.model.categorical_loss,
        ).to(device)

    @staticmethod
    def _tensors(enc: EncodedTable, device: torch.device):
        """(x_num, x_cat, y or None) of an encoded table, on `device`."""
        y = None if enc.y is None else torch.as_tensor(enc.y, device=device)
        return (
            torch.as_tensor(enc.x_num, device=device),
            torch.as_tensor(enc.x_cat, device=device),
            y,
        )

    def denoising_loss(self, rows: pd.DataFrame, draws: int = 16, seed: int = 0) -> np.ndarray:
        """Per-row denoising loss, averaged over `draws` fixed draws of timestep and noise:
        lower on rows the model memorised (the one-run audit's membership score)."""
        self._check_fitted()
        device = pick_device(self.device)
        diffusion = self._diffusion(device)
        x_num, x_cat, y = self._tensors(self.encoder_.transform(rows), device)
        kw = {} if y is None else {"labels": y}
        net = self.denoiser_.to(device).eval()
        total = torch.zeros(len(rows), device=device)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            for d in range(draws):
                torch.manual_seed(seed + d)  # the same draws for every row
                loss_num, loss_cat = diffusion.p_losses(net, x_num, x_cat, per_row=True, **kw)
                total += loss_num + loss_cat
        return (total / draws).cpu().numpy()

    # ---- sample -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "denoiser_"):
            raise NotFittedError(
                "TabularDiffusionSynthesizer is not fitted yet: call fit(train) or load(dir) first"
            )

    def _labels_for(
        self, n: int, conditions: dict[Any, int] | None, rng: np.random.Generator
    ) -> np.ndarray | None:
        enc = self.encoder_
        if not enc.conditional:
            if conditions:
                raise InputDataError(
                    "conditions need a categorical target that the model was conditioned on"
                )
            return None
        return draw_labels(n, conditions, enc.target_classes_, self.label_counts_, rng)

    def sample_shards(
        self,
        n: int | None = None,
        conditions: dict[Any, int] | None = None,
        *,
        shard_rows: int | None = None,
        num_inference_steps: int = 10,
        scheduler: str = "dpmsolver",
        guidance_scale: float = 1.0,
        id_strategy: str = "regenerate",
        seed: int | None = None,
        progress: bool = False,
    ) -> Iterator[Shard]:
        """Yield the synthetic table shard by shard (rows `start` onwards), so memory stays
        flat in `n`."""
        self._check_fitted()
        if conditions:
            n = sum(int(v) for v in conditions.values())
        if n is None or n < 1:
            raise InputDataError("ask for at least one row")
        seed = self.seed if seed is None else seed
        rng = np.random.default_rng(seed)
        labels = self._labels_for(n, conditions, rng)
        device = pick_device(self.device)
        if shard_rows is None:  # small passes stay in CPU caches; a GPU wants big batches
            shard_rows = CUDA_SHARD_ROWS if device.type == "cuda" else CPU_SHARD_ROWS
        generator = torch.Generator(device=device).manual_seed(seed)
        bar = progress_bar(
            total=n, desc="sample", unit="row", disable=not progress, dynamic_ncols=True
        )
        starts = list(range(0, n, shard_rows))

        def draw(start: int) -> pd.DataFrame:
            size = min(shard_rows, n - start)
            batch_labels = None if labels is None else labels[start : start + size]
            return self._draw_decoded(
                size, batch_labels, num_inference_steps, scheduler, guidance_scale, generator
            )

        # On a GPU, shard k+1's reverse diffusion runs on a worker thread (waiting in CUDA
        # calls that release the GIL) while this thread decodes shard k on the CPU. Shards
        # are still drawn one after another from the one generator: the rows are the same.
        with ThreadPoolExecutor(1) as pool:
            prefetch = device.type == "cuda"
            pending = pool.submit(draw, starts[0]) if prefetch else None
            for i, start in enumerate(starts):
                decoded = pending.result() if pending is not None else draw(start)
                if prefetch and i + 1 < len(starts):
                    pending = pool.submit(draw, starts[i + 1])
                yield Shard(start=start, data=self._complete(decoded, start, id_strategy))
                bar.update(len(decoded))
        bar.close()

    def _draw_decoded(
        self,
        size: int,
        labels: np.ndarray | None,
        num_inference_steps: int,
        scheduler: str,
        guidance_scale: float,
        generator: torch.Generator,
    ) -> pd.DataFrame:
        """`size` decoded rows that keep the model's logical rules. With `rules.repair`, a
        broken rule whose fix is clear is mended first (`synth.data.rules.repair`: a row that
        holds most of a group of values fixing one another is completed). Then each row that
        still breaks one is replaced by the first rule-keeping row of a batch of candidates
        drawn with its label, sized by the share of rows that kept the rules so far (at most
        `size` rows a round), for up to `rules.max_redraws` rounds. Rejection alone samples
        the model's distribution restricted to rule-keeping rows, but thins out the rows a
        rule governs when the model breaks it mostly there; repairing every cell instead
        would pile the broken rows' mass onto each rule's conclusion."""

        spec = self.rules or RulesSpec()
        rules = getattr(self, "rules_", [])
        enforce = bool(rules) and spec.enforce
        if enforce and spec.repair:
            seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)
            rng = np.random.default_rng(int(seed.item()))
            emitted = {
                name: {category_key(v): v for v in cats if v != MISSING}
                for name, cats in self.encoder_.categories_.items()
            }

        def draw(m: int, batch_labels: np.ndarray | None) -> pd.DataFrame:
            enc = self._draw_encoded(
                m, batch_labels, num_inference_steps, scheduler, guidance_scale, generator
            )
            decoded = self.encoder_.inverse_transform(enc)
            if not (enforce and spec.repair):
                return decoded
            columns = {name: decoded[name].to_numpy(copy=True) for name in decoded.columns}
            repair(columns, rules, self.schema, emitted, rng)
            return columns_to_frame(columns)

        decoded = draw(size, labels)
        if not enforce:
            return decoded
        bad = np.flatnonzero(rule_breaks(decoded, rules, self.schema)[0])
        kept_share = max(1.0 - len(bad) / size, 1.0 / MAX_CANDIDATES)
        columns = {name: decoded[name].to_numpy(copy=True) for name in decoded.columns}
        for _ in range(spec.max_redraws):
            if not len(bad):
                break
            # a round draws at most `size` rows: a poor model costs rounds, not memory
            # about one rule-keeping candidate per row expected: a row not served is drawn
            # again next round, so more would mostly draw rows that are thrown away
            per_row = int(min(MAX_CANDIDATES, round(1.0 / kept_share), size // len(bad)))
            per_row = max(per_row, 1)
            slots = np.repeat(bad, per_row)
            fresh = draw(len(slots), None if labels is None else labels[slots])
            keeps = ~rule_breaks(fresh, rules, self.schema)[0]
            kept_share = max(float(keeps.mean()), 1.0 / MAX_CANDIDATES)
            keeps = keeps.reshape(len(bad), per_row)
            found = keeps.any(axis=1)
            pick = np.arange(len(bad)) * per_row + keeps.argmax(axis=1)
            for name, values in columns.items():
                values[bad[found]] = fresh[name].to_numpy()[pick[found]]
            bad = bad[~found]
        if len(bad):
            warnings.warn(
                f"{len(bad)} of {size} synthetic rows still break a logical rule after "
                f"{spec.max_redraws} redraws; they are kept (see the report's rule_breaks)",
                SynthWarning,
                stacklevel=2,
            )
        return columns_to_frame(columns)

    def _draw_encoded(
        self,
        size: int,
        labels: np.ndarray | None,
        num_inference_steps: int,
        scheduler: str,
        guidance_scale: float,
        generator: torch.Generator,
    ) -> EncodedTable:
        """One reverse-diffusion pass of `size` rows, copied to the host still encoded."""
        device = generator.device
        model = self.denoiser_.to(device).eval()
        diffusion = self._diffusion(device)
        y = None if labels is None else torch.as_tensor(labels, device=device)

        def predict(x: torch.Tensor, t: torch.Tensor, cls: torch.Tensor | None) -> torch.Tensor:
            with autocast(device):  # inside predict: guidance's arithmetic stays float32
                return model(x, t) if cls is None else model(x, t, cls)

        denoise = guided(predict, y, guidance_scale, len(self.encoder_.target_classes_))
        x_num, x_cat = diffusion.sample(
            denoise,
            size,
            make_solver(scheduler, self.noise_scheduler_),
            num_inference_steps,
            device,
            generator,
            forbidden=self._forbidden(diffusion, device),
        )
        return EncodedTable(
            x_num=x_num.cpu().numpy(),
            x_cat=_codes_to_host(x_cat, max(self.encoder_.num_classes, default=1)),
            y=None if y is None else y.cpu().numpy(),
        )

    def _forbidden(self, diffusion: GaussianMultinomialDiffusion, device) -> torch.Tensor | None:
        """The [feature, category] cells the model must never emit (`never_emit_`)."""
        never = getattr(self.encoder_, "never_emit_", {})
        if not never:
            return None
        forbidden = torch.zeros_like(diffusion.mask, dtype=torch.bool, device=device)
        for name, code in never.items():
            forbidden[self.encoder_.cat_columns_.index(name), code] = True
        return forbidden

    def sample_shard(
        self,
        n: int,
        conditions: dict[Any, int] | None = None,
        *,
        seed: int,
        offset: int = 0,
        num_inference_steps: int = 10,
        scheduler: str = "dpmsolver",
        guidance_scale: float = 1.0,
        id_strategy: str = "regenerate",
    ) -> Shard:
        """One independent shard in one pass: `n` rows (or exactly `conditions`' counts) drawn
        from its own `seed`, starting at row `offset` (regenerated IDs number from `offset + 1`).

        Shards depend on nothing but their arguments, so they can be drawn on other machines
        in any order and still join into the same table, with IDs unique across shards.
        """
        self._check_fitted()
        if conditions:
            n = sum(int(v) for v in conditions.values())
        if n < 1:
            raise InputDataError("ask for at least one row")
        labels = self._labels_for(n, conditions, np.random.default_rng(seed))
        generator = torch.Generator(device=pick_device(self.device)).manual_seed(seed)
        decoded = self._draw_decoded(
            n, labels, num_inference_steps, scheduler, guidance_scale, generator
        )
        return Shard(start=offset, data=self._complete(decoded, offset, id_strategy))

    def sample(
        self, n: int | None = None, conditions: dict[Any, int] | None = None, **kwargs: Any
    ) -> pd.DataFrame:
        """Sample `n` rows (or the counts in `conditions`) as one DataFrame."""
        shards = self.sample_shards(n, conditions, **kwargs)
        return pd.concat([shard.data for shard in shards], ignore_index=True)

    def _complete(self, df: pd.DataFrame, offset: int, id_strategy: str) -> pd.DataFrame:
        """Add back the columns that are not modelled: constants, and regenerated IDs."""
        out: dict[str, Any] = {}
        n = len(df)
        for spec in self.schema.columns:
            if spec.modelled:
                out[spec.name] = df[spec.name].to_numpy()
            elif spec.kind == "constant":
                out[spec.name] = np.full(n, spec.constant_value, dtype=object)
            elif spec.kind == "id" and id_strategy == "regenerate":
                out[spec.name] = self.encoder_.regenerate_ids(spec, offset, n)
        return columns_to_frame(out)

    def protection(self) -> dict[str, Any]:
        """What rare-value protection did, as counts only (never a value): for the report."""
        self._check_fitted()
        enc = self.encoder_
        return {
            "rare_category_min_rows": enc.min_rows,
            "rare_category_label": enc.rare_label,
            "grouped_values": dict(enc.rare_grouped_),
            "clipped_bounds": len(enc.bounds_) if enc.min_rows > 1 else 0,
            "id_collision_chance": {n: f.collision_chance for n, f in enc.id_formats_.items()},
        }

    # ---- persistence (diffusers layout, safetensors + JSON, never pickle) -----------------
    def save(self, directory: Path | str) -> Path:
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.denoiser_.save_pretrained(directory / "denoiser", safe_serialization=True)
        self.noise_scheduler_.save_pretrained(directory / "scheduler")
        state = {
            "seed": self.seed,
            "schema": self.schema.model_dump(mode="json"),
            "model": self.model.model_dump(mode="json"),
            "training": self.training.model_dump(mode="json"),
            "training_resolved": getattr(self, "training_", self.training).model_dump(mode="json"),
            "privacy": (self.privacy or PrivacySpec()).model_dump(mode="json"),
            "rules_spec": (self.rules or RulesSpec()).model_dump(mode="json"),
            "rules": [r.model_dump(mode="json") for r in getattr(self, "rules_", [])],
            "encoder": self.encoder_.state_dict(),
            "label_counts": self.label_counts_,
            "steps_trained": getattr(self, "steps_trained_", None),
            "final_loss": getattr(self, "final_loss_", None),
            "dp": dp_state(getattr(self, "dp_", None)),
        }
        write_state(directory, KIND, state)
        return directory

    @classmethod
    def load(cls, directory: Path | str, device: str = "auto") -> TabularDiffusionSynthesizer:
        directory = Path(directory)
        state = read_state(directory, KIND)
        schema = TableSchema.model_validate(state["schema"])
        obj = cls(
            schema,
            # saved before the cross-entropy loss: trained, so sampled, with the KL
            ModelSpec.model_validate({"categorical_loss": "kl", **state["model"]}),
            TrainingSpec.model_validate(state["training"]),
            seed=state["seed"],
            device=device,
            privacy=PrivacySpec.model_validate(state["privacy"]),
            rules=RulesSpec.model_validate(state.get("rules_spec") or {}),
        )
        # models saved before rules existed carry none, and sample as they did
        obj.rules_ = rules_from_state(state.get("rules"))
        obj.encoder_ = TableEncoder.from_state_dict(schema, state["encoder"])
        obj.noise_scheduler_ = DDPMScheduler.from_pretrained(directory / "scheduler")
        obj.denoiser_ = TabularDenoiser.from_pretrained(
            directory / "denoiser", low_cpu_mem_usage=False
        ).eval()
        for param in obj.denoiser_.parameters():
            # fresh 64-byte-aligned copies, as trained weights are: a safetensors tensor may
            # sit at any offset, and a one-row matmul (the shared timestep's embedding) rounds
            # differently by alignment, so a loaded model would not draw the fitted one's rows
            param.data = param.data.clone()
        obj.label_counts_ = state["label_counts"]
        resolved = state.get("training_resolved") or state["training"]
        obj.training_ = TrainingSpec.model_validate(resolved)
        obj.steps_trained_ = state["steps_trained"]
        obj.final_loss_ = state["final_loss"]
        obj.dp_ = dp_from_state(state.get("dp"))  # saved before DP existed: none
        return obj


def _codes_to_host(codes: torch.Tensor, k_max: int) -> np.ndarray:
    """Category codes [n, F] to the host as the smallest integers that hold them, one feature
    per contiguous row: an eighth of int64's bytes over PCIe, and fast per-column decoding."""
    small = torch.uint8 if k_max <= 256 else torch.int32
    return codes.to(small).T.contiguous().cpu().numpy().T
