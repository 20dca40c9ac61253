"""`synth train`: load -> split -> train without Prefect, in one process or N through accelerate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from accelerate.utils import DistributedType
from typer.testing import CliRunner

from jobs.paths import JobPaths
from jobs.registry import MODALITIES
from synth.config import load_spec
from synth.tabular.synthesizer import TabularDiffusionSynthesizer
from synth.training import local_batch, make_accelerator, rank_seed
from synth_cli.main import app

table_steps = MODALITIES["table"]

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture
def job(tmp_path, churn) -> Path:
    """A tiny churn job spec (CPU, small MLP, 20 steps)."""
    data = tmp_path / "churn.csv"
    churn.to_csv(data, index=False)
    spec = {
        "name": "train-command",
        "source": {"path": str(data), "target": "churn"},
        "model": {"hidden_dims": [32, 32]},
        "training": {"steps": 20, "batch_size": 128, "device": "cpu", "checkpoint_every": 10},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _state_step(model: Path) -> int:
    return json.loads((model / "training_state" / "state.json").read_text())["step"]


def test_rank_helpers_keep_single_process_semantics():
    assert rank_seed(7, 0) == 7  # rank 0 trains exactly as a plain process did
    assert len({rank_seed(7 + s, r) for s in range(100) for r in range(4)}) == 400
    assert local_batch(1024, 4930, 1) == 1024
    assert local_batch(1024, 4930, 4) == 256  # N processes share one global batch
    assert local_batch(1024, 100, 3) == 34  # never more than the rows, never zero
    assert local_batch(1, 100, 8) == 1


def test_a_plain_process_gets_a_single_cpu_accelerator():
    accelerator = make_accelerator(torch.device("cpu"))
    assert accelerator.distributed_type == DistributedType.NO
    assert accelerator.device.type == "cpu"
    assert accelerator.num_processes == 1 and accelerator.is_main_process


def test_train_writes_a_loadable_model_and_run_resumes_from_it(
    job, tmp_path, torch_single_thread, loss_calls
):
    out = tmp_path / "out"
    result = runner.invoke(app, ["train", str(job), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "trained by 1 process(es)" in result.output
    assert (out / ".work" / "schema.json").is_file() and (out / ".work" / "split.json").is_file()
    assert _state_step(out / "model") == 20
    assert not (out / "synthetic").exists()  # train only: nothing sampled or exported
    model = TabularDiffusionSynthesizer.load(out / "model", device="cpu")
    assert model.steps_trained_ == 20
    rows = model.sample(64, seed=1)
    assert len(rows) == 64 and "churn" in rows.columns

    # `synth run --out` on the same spec trains through pipeline.train: nothing left to train.
    loss_calls.clear()  # count from here
    spec = load_spec(job, {"export.out": str(out)})
    paths = JobPaths(out)
    source = table_steps.load(spec, paths)
    table_steps.train(spec, paths, source, table_steps.split(spec, paths, source), progress=False)
    assert loss_calls == []
    again = TabularDiffusionSynthesizer.load(out / "model", device="cpu")
    pd.testing.assert_frame_equal(again.sample(64, seed=1), rows)

    # A larger budget continues from the checkpoint rather than starting over.
    result = runner.invoke(
        app, ["train", str(job), "--out", str(out), "--set", "training.steps=30", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert len(loss_calls) == 10 and _state_step(out / "model") == 30


def test_train_refuses_a_bad_spec(job, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["train", str(job), "--out", str(out), "--set", "training.stepz=5"])
    assert result.exit_code == 2, result.output
    assert "stepz" in result.output
    assert not out.exists()


def test_two_process_cpu_launch_trains_one_model(job, tmp_path):
    """`accelerate launch` on 2 CPU processes (gloo): one DDP model, written once, that samples.

    On a machine without GPUs the multi-process launcher is `--multi_gpu` with a CPU device:
    `--cpu --num_processes 2` starts a single process unless an MPI hostfile is given.
    """
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        f"--main_process_port={29500 + os.getpid() % 1000}",
        "-m",
        "synth_cli",
        "train",
        str(job),
        "--out",
        str(out),
        "--no-progress",
    ]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("model:") == 1, done.stdout  # only the main process reports
    assert "trained by 2 process(es)" in done.stdout
    assert _state_step(out / "model") == 20
    assert sorted(p.name for p in out.iterdir()) == [".lock", ".synth-output", ".work", "model"]
    model = TabularDiffusionSynthesizer.load(out / "model", device="cpu")
    assert model.steps_trained_ == 20
    rows = model.sample(100, seed=0)
    assert len(rows) == 100 and rows.notna().any().all()
