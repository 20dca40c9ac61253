"""Resumable training checkpoints in safetensors + JSON (never pickle), shared by synthesizers.

A checkpoint directory holds the inference files (written by the synthesizer's `save`, with
the EMA weights) and `training_state/` (raw weights, EMA shadow, optimizer, LR schedule, step).
It is written next to the target and swapped in, so a crash leaves the previous one intact.

`training_state/state.json` also records a fingerprint of what the training saw (its data and
every setting that shapes it): a fit resumes only from a checkpoint with the same fingerprint.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from synth.atomic import atomic_write_text
from synth.config import TrainingSpec
from synth.errors import InputDataError

STATE_DIR = "training_state"
STATE_FILE = "synthesizer.json"
# 2: rare-value protection (the encoder's k, bounds and grouped counts); 3: many-level columns
# as two frequency-ranked codes (the encoder's split bases) and text IDs' patterns
FORMAT_VERSION = 3
# The files `save_checkpoint` writes into `training_state/`: all a stale checkpoint loses.
STATE_FILES = ("state.json", "model.safetensors", "ema.safetensors", "optimizer.safetensors")
# Training settings a resume may change: where it runs, how often it saves, whether it resumes,
# and how many steps it goes on to (a longer run continues a shorter one).
RESUMABLE_SETTINGS = {"resume", "checkpoint_every", "device", "steps"}


def training_settings(training: TrainingSpec) -> dict[str, Any]:
    """The training settings that shape the weights, for a fingerprint."""
    return training.model_dump(mode="json", exclude=RESUMABLE_SETTINGS)


def write_state(directory: Path, kind: str, state: dict[str, Any]) -> None:
    """The synthesizer's JSON next to its diffusers folders: kind, format and learned state."""
    payload = {"format_version": FORMAT_VERSION, "kind": kind, **state}
    atomic_write_text(Path(directory) / STATE_FILE, json.dumps(payload, indent=1))


def read_state(directory: Path, kind: str) -> dict[str, Any]:
    """Read a synthesizer's JSON, refusing other kinds and other format versions."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise InputDataError(f"{str(directory)!r} holds no synthesizer (no {STATE_FILE})")
    state = json.loads(path.read_text())
    if state.get("kind") != kind or state.get("format_version") != FORMAT_VERSION:
        raise InputDataError(
            f"{str(directory)!r} holds a {state.get('kind')!r} synthesizer of format "
            f"{state.get('format_version')!r}; this needs {kind!r} format {FORMAT_VERSION}"
        )
    return state


def recover_checkpoint(directory: Path) -> None:
    """A kill between `save_checkpoint`'s two renames leaves the last checkpoint under its
    `.ckpt-old` name and none under `directory`: move it back."""
    directory = Path(directory)
    old = directory.parent / f".{directory.name}.ckpt-old"
    if old.is_dir() and not directory.exists():
        old.rename(directory)


def has_checkpoint(directory: Path | None) -> bool:
    if directory is None:
        return False
    recover_checkpoint(Path(directory))
    return (Path(directory) / STATE_DIR / "state.json").is_file()


def checkpoint_step(directory: Path | None) -> int | None:
    """The training step of the checkpoint in `directory`, or None when there is none."""
    if not has_checkpoint(directory):
        return None
    return int(json.loads((Path(directory) / STATE_DIR / "state.json").read_text())["step"])


def checkpoint_fingerprint(directory: Path | None) -> str | None:
    """The fingerprint the checkpoint in `directory` was made for (None: no checkpoint, or one
    from before fingerprints)."""
    if not has_checkpoint(directory):
        return None
    try:  # another process of a launched fit may just have discarded it
        state = json.loads((Path(directory) / STATE_DIR / "state.json").read_text())
    except FileNotFoundError:
        return None
    return state.get("fingerprint")


def checkpoint_format(directory: Path | None) -> int | None:
    """The model format the checkpoint in `directory` was written in (None: none recorded,
    a checkpoint from before format 3)."""
    try:
        state = json.loads((Path(directory) / STATE_DIR / "state.json").read_text())
    except (FileNotFoundError, TypeError):
        return None
    return state.get("format_version")


def resume_check(directory: Path | None, fingerprint: str) -> tuple[int | None, str | None]:
    """Whether a fit with `fingerprint` may resume from `directory`: (step, None) to resume,
    (None, why not) for a checkpoint made for other data or settings, (None, None) for none."""
    if not has_checkpoint(directory):
        return None, None
    stored = checkpoint_fingerprint(directory)
    made_by = checkpoint_format(directory)
    if stored == fingerprint and made_by == FORMAT_VERSION:
        return checkpoint_step(directory), None
    if not has_checkpoint(directory):  # discarded meanwhile by another process: none
        return None, None
    if made_by != FORMAT_VERSION:  # its files may no longer load: never resumed
        return None, (
            f"the checkpoint in {Path(directory).name}/ was made by an older version of synth "
            f"(model format {made_by or 'before 3'}, this one writes {FORMAT_VERSION}): "
            "training from scratch"
        )
    return None, (
        f"the checkpoint in {Path(directory).name}/ was made for other training data or settings "
        f"(fingerprint {(stored or 'none')[:12]}… != {fingerprint[:12]}…): training from scratch"
    )


def discard_training_state(directory: Path) -> None:
    """Forget a stale checkpoint's training state: only the files `save_checkpoint` writes
    (state.json first, so a kill midway leaves no checkpoint), and `training_state/` if empty."""
    ts = Path(directory) / STATE_DIR
    for name in STATE_FILES:
        (ts / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        ts.rmdir()


def save_checkpoint(
    directory: Path,
    save_inference: Callable[[Path], Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_schedule: Any,
    ema: Any,
    step: int,
    fingerprint: str | None = None,
) -> None:
    directory = Path(directory)
    tmp = directory.parent / f".{directory.name}.ckpt-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(mode=0o700)  # it becomes the model folder: the owner's alone from the start
    tmp.chmod(0o700)  # whatever the umask
    ts = tmp / STATE_DIR
    ts.mkdir()
    save_file(_cpu(model.state_dict()), ts / "model.safetensors")
    save_file(
        {str(i): p.detach().cpu().contiguous() for i, p in enumerate(ema.shadow_params)},
        ts / "ema.safetensors",
    )
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    save_file(opt_tensors, ts / "optimizer.safetensors")
    state = {
        "step": step,
        "optimizer": opt_meta,
        "lr_schedule": lr_schedule.state_dict(),
        "ema": {"decay": ema.decay, "optimization_step": ema.optimization_step},
        "fingerprint": fingerprint,
        "format_version": FORMAT_VERSION,
    }
    (ts / "state.json").write_text(json.dumps(state))
    # The inference files carry the EMA weights; training goes on with the raw ones.
    backup = {k: v.clone() for k, v in model.state_dict().items()}
    ema.copy_to(model.parameters())
    save_inference(tmp)
    model.load_state_dict(backup)
    old = directory.parent / f".{directory.name}.ckpt-old"
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: Path, model: torch.nn.Module, optimizer, lr_schedule, ema) -> int:
    """Restore training state in place; returns the step to continue from."""
    ts = Path(directory) / STATE_DIR
    meta = json.loads((ts / "state.json").read_text())
    device = next(model.parameters()).device
    model.load_state_dict(load_file(ts / "model.safetensors", device=str(device)))
    shadow = load_file(ts / "ema.safetensors")
    ema.shadow_params = [shadow[str(i)].to(p.device) for i, p in enumerate(model.parameters())]
    ema.optimization_step = meta["ema"]["optimization_step"]
    optimizer.load_state_dict(
        _unflatten_optimizer(load_file(ts / "optimizer.safetensors"), meta["optimizer"])
    )
    lr_schedule.load_state_dict(meta["lr_schedule"])
    return int(meta["step"])


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        meta["state"][str(pid)] = []
        for name, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
                meta["state"][str(pid)].append(name)
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state = {
        int(pid): {n: tensors[f"{pid}.{n}"] for n in names} for pid, names in meta["state"].items()
    }
    return {"state": state, "param_groups": meta["param_groups"]}
