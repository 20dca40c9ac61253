"""One training code path for one process or N, on CPU or GPUs, through Hugging Face accelerate.

`accelerate launch --num_processes N -m synth_cli train job.yaml` starts N copies of the same
fit. Each builds its `Accelerator` here, holds the whole (small) training set, and draws its
own share of every global batch from a generator seeded by its rank; DDP averages the
gradients, so N processes take the same optimiser steps on the same global batch size as one.
Rank 0 keeps the single-process seeds, so a plain `python` run trains exactly as it always did.
Only the main process writes files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import get_int_from_env
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel

from synth.checkpoint import discard_training_state, load_checkpoint, resume_check, save_checkpoint
from synth.config import TrainingSpec
from synth.dp.accounting import DPPlan
from synth.dp.sgd import DPTrainer
from synth.errors import ConfigError
from synth.progress import progress_bar

log = logging.getLogger(__name__)

# The variables torchrun (`accelerate launch`) and the MPI launchers set for each process.
_RANK_ENV = ["RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"]
_WORLD_ENV = ["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"]
_RANK_STRIDE = 1 << 32  # rank r's seeds start here, far from any step count a resume adds


def process_rank() -> int:
    """This process's rank among those a launcher started (0 when run plainly)."""
    return get_int_from_env(_RANK_ENV, 0)


def is_main_process() -> bool:
    """Whether this process writes files: rank 0, or the only process."""
    return process_rank() == 0


def launched() -> bool:
    """True when a launcher started several processes for one training."""
    return get_int_from_env(_WORLD_ENV, 1) > 1


def make_accelerator(device: torch.device) -> Accelerator:
    """The accelerator for one fit on `device` (cpu or cuda).

    accelerate keeps one state per process. A plain process that fits on CUDA and then on the
    CPU (or back) gets a fresh state rather than an error or, worse, the previous device.
    """
    if not launched():
        state_device = PartialState._shared_state.get("device")
        if state_device is not None and torch.device(state_device).type != device.type:
            AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=device.type == "cpu")


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank `rank`'s random stream: rank 0 keeps `seed`, the others get disjoint ones."""
    return seed + rank * _RANK_STRIDE


def local_batch(batch_size: int, n_rows: int, world: int) -> int:
    """Each process's share of the global batch (the global batch never exceeds the rows)."""
    return max(1, -(-min(batch_size, n_rows) // world))


def world_size() -> int:
    """How many processes trained together (1 unless a process group is up)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def wait_for_everyone() -> None:
    """A barrier across the launched processes; a no-op in a plain process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def should_resume(checkpoint_dir: Path | None, fingerprint: str, resume: bool) -> bool:
    """Resume only from a checkpoint made for the same fingerprint (data and settings). A stale
    one is said in one log line and its training state discarded (by the main process only;
    the inference files are replaced by the first new checkpoint)."""
    if not resume or checkpoint_dir is None:
        return False
    step, stale = resume_check(checkpoint_dir, fingerprint)
    if stale is None:
        return step is not None
    log.warning(stale)
    # Another process that looks after the main one deleted state.json sees no checkpoint:
    # the same decision, so no barrier is needed (and none could deadlock).
    if is_main_process():
        discard_training_state(checkpoint_dir)
    return False


LossFn = Callable[
    [torch.nn.Module, torch.Tensor, torch.Generator], tuple[torch.Tensor, dict[str, torch.Tensor]]
]
"""(model, batch row indices, generator) -> (loss, named parts to show in the progress bar)."""


def drop_labels(
    labels: torch.Tensor, drop_prob: float, null_label: int, generator: torch.Generator
) -> torch.Tensor:
    """Classifier-free guidance: replace a random share of the labels by the null label."""
    drop = torch.rand(len(labels), device=labels.device, generator=generator) < drop_prob
    return labels.masked_fill(drop, null_label)


def train_loop(
    model: torch.nn.Module,
    accelerator: Accelerator,
    spec: TrainingSpec,
    *,
    n_rows: int,
    seed: int,
    loss_fn: LossFn,
    checkpoint_dir: Path | None,
    resume: bool,
    save: Callable[[Path], Any],
    on_checkpoint: Callable[[int], None],
    progress: bool,
    fingerprint: str | None = None,
    dp: DPPlan | None = None,
    units: np.ndarray | None = None,
    per_example_loss: bool = False,
) -> float | None:
    """The training both synthesizers share: AdamW with a warmup-cosine learning rate and an
    EMA of the weights, `spec.steps` steps of batches drawn from `n_rows` rows, resumed from
    and checkpointed to `checkpoint_dir` (`on_checkpoint(step)` runs before each save), each
    checkpoint recording `fingerprint` (see `should_resume`).

    With a `dp` plan, each step is DP-SGD (`synth.dp.sgd`): Poisson-sampled people (`units`,
    one code per row; None: each row is a person), one record each, clipped per-example
    gradients and Gaussian noise, in one process. `per_example_loss`: under DP, `loss_fn`
    returns one loss per sampled row, the noise multiplicity drawn inside it (ghost
    clipping); otherwise the step averages that many passes' per-example gradients. The EMA
    averages the noised weights: post-processing, free in privacy.

    Leaves the EMA weights in `model`, in eval mode, and returns the mean loss of the last
    100 steps (None when a resume had no steps left).
    """
    if dp is not None and launched():
        raise ConfigError(
            "DP training runs in one process: run it without accelerate launch (the "
            "accountant assumes one Poisson-sampled batch per step)"
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, spec.warmup_steps, spec.steps)
    ema = EMAModel(model.parameters(), decay=spec.ema_decay, use_ema_warmup=True, power=0.75)
    start = load_checkpoint(checkpoint_dir, model, optimizer, lr_schedule, ema) if resume else 0
    # DDP around the model when launched on N processes; the raw ones are checkpointed.
    ddp_model, ddp_optimizer = accelerator.prepare(model, optimizer)
    device, rank = accelerator.device, accelerator.process_index
    if rank:  # losses may draw from the global generator too
        torch.manual_seed(rank_seed(seed, rank))
    generator = torch.Generator(device=device).manual_seed(rank_seed(seed + start, rank))
    batch = local_batch(spec.batch_size, n_rows, accelerator.num_processes)
    private = None
    if dp is not None:
        private = DPTrainer(
            model, optimizer, dp, units, n_rows, rank_seed(seed + start, rank), per_example_loss
        )
    losses: list[torch.Tensor] = []  # kept on the device: no host sync per step
    bar = progress_bar(
        range(start, spec.steps),
        desc="train",
        initial=start,
        total=spec.steps,
        unit="step",
        disable=not progress or not accelerator.is_local_main_process,
        dynamic_ncols=True,
    )
    for step in bar:
        if private is not None:
            loss = private.step(lambda net, idx: loss_fn(net, idx, generator)[0], device)
            parts = {}
        else:
            idx = torch.randint(0, n_rows, (batch,), device=device, generator=generator)
            loss, parts = loss_fn(ddp_model, idx, generator)
            ddp_optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(ddp_model.parameters(), 1.0)
            ddp_optimizer.step()
        lr_schedule.step()
        ema.step(model.parameters())
        losses.append(loss.detach())
        if step % 25 == 0 and not bar.disable:
            bar.set_postfix(
                loss=f"{float(torch.stack(losses[-50:]).mean()):.4f}",
                **{name: f"{float(part.detach()):.3f}" for name, part in parts.items()},
            )
        done = step + 1
        if checkpoint_dir is not None and (done % spec.checkpoint_every == 0 or done == spec.steps):
            on_checkpoint(done)
            if accelerator.is_main_process:
                save_checkpoint(
                    checkpoint_dir, save, model, optimizer, lr_schedule, ema, done, fingerprint
                )
            accelerator.wait_for_everyone()
    bar.close()
    if private is not None:
        private.close()
    ema.copy_to(model.parameters())  # sample with the EMA weights
    model.eval()
    return float(np.mean([float(v) for v in losses[-100:]])) if losses else None
