"""One training code path for one process or N, on CPU or GPUs, through Hugging Face accelerate.

`accelerate launch --num_processes N -m synth.cli train job.yaml` starts N copies of the same
fit. Each builds its `Accelerator` here, holds the whole (small) training set, and draws its
own share of every global batch from a generator seeded by its rank; DDP averages the
gradients, so N processes take the same optimiser steps on the same global batch size as one.
Rank 0 keeps the single-process seeds, so a plain `python` run trains exactly as it always did.
Only the main process writes files.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import get_int_from_env

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
