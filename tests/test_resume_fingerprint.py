"""A checkpoint is resumed only when it was made for the same training data and settings.

Issue 10, "Resume reuses a stale model": `wine.csv` into `--out X`, then `wine_shift.csv`
(alcohol + 100) into the same `--out X`, resumed the old model and kept it. Now the checkpoint
records a fingerprint, a mismatch trains from scratch and says why in one line.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine

from jobs.paths import JobPaths
from jobs.registry import MODALITIES
from synth.checkpoint import FORMAT_VERSION, STATE_DIR, discard_training_state, resume_check
from synth.config import ImageModelSpec, ModelSpec, TrainingSpec, build_spec
from synth.data.schema import infer_schema
from synth.hashing import file_sha256
from synth.tabular.synthesizer import TabularDiffusionSynthesizer

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SMALL = ModelSpec(hidden_dims=[32, 32])
STEPS = 20
STALE = "was made for other training data or settings"


def tiny(**kw) -> TrainingSpec:
    return TrainingSpec(**{"steps": STEPS, "batch_size": 64, "device": "cpu", **kw})


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    df = load_wine(as_frame=True).frame
    df["target"] = df["target"].map({0: "class_0", 1: "class_1", 2: "class_2"})
    return df


def _state(ckpt: Path) -> dict:
    return json.loads((ckpt / STATE_DIR / "state.json").read_text())


# ---- the library, without the job layer ------------------------------------------------------
def test_same_data_and_settings_resume_other_settings_start_fresh(
    wine, tmp_path, loss_calls, caplog
):
    schema = infer_schema(wine, target="target")
    ckpt = tmp_path / "model"

    def fit(training: TrainingSpec, model: ModelSpec = SMALL, data: pd.DataFrame = wine):
        loss_calls.clear()
        synth = TabularDiffusionSynthesizer(schema, model, training, seed=1, device="cpu")
        return synth.fit(data, checkpoint_dir=ckpt, progress=False)

    first = fit(tiny())
    assert len(loss_calls) == STEPS
    assert _state(ckpt)["fingerprint"] == first.fingerprint_

    # the same data and settings (and only a longer run, or another save interval): resumed
    with caplog.at_level(logging.WARNING):
        fit(tiny(steps=STEPS + 5, checkpoint_every=7))
    assert len(loss_calls) == 5
    assert STALE not in caplog.text

    # another learning rate, then other hidden layers: trained from scratch, said once
    for training, model in [(tiny(lr=1e-3), SMALL), (tiny(lr=1e-3), ModelSpec(hidden_dims=[48]))]:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            refit = fit(training, model)
        assert len(loss_calls) == STEPS
        assert _state(ckpt)["step"] == STEPS
        assert _state(ckpt)["fingerprint"] == refit.fingerprint_
        lines = [r.getMessage() for r in caplog.records if STALE in r.getMessage()]
        assert len(lines) == 1 and lines[0].endswith("training from scratch"), caplog.text

    # other training rows, same settings: from scratch as well
    fit(tiny(lr=1e-3), ModelSpec(hidden_dims=[48]), wine.iloc[:-10])
    assert len(loss_calls) == STEPS


def test_a_caller_fingerprint_decides_and_a_checkpoint_without_one_is_stale(
    wine, tmp_path, loss_calls
):
    schema = infer_schema(wine, target="target")
    ckpt = tmp_path / "model"

    def fit(fingerprint: str | None):
        loss_calls.clear()
        synth = TabularDiffusionSynthesizer(schema, SMALL, tiny(), seed=1, device="cpu")
        synth.fit(wine, checkpoint_dir=ckpt, progress=False, fingerprint=fingerprint)

    fit("job-a")
    assert _state(ckpt)["fingerprint"] == "job-a"
    assert resume_check(ckpt, "job-a") == (STEPS, None)
    fit("job-a")
    assert loss_calls == []  # resumed at its last step: nothing left to train
    fit("job-b")
    assert len(loss_calls) == STEPS
    # a checkpoint from before fingerprints is never resumed
    state = _state(ckpt)
    del state["fingerprint"]
    (ckpt / STATE_DIR / "state.json").write_text(json.dumps(state))
    step, why = resume_check(ckpt, "job-b")
    assert step is None and "fingerprint none" in why


def test_images_resume_only_for_the_same_images(tmp_path):
    from synth.images.io import ImageSet
    from synth.images.synthesizer import ImageDiffusionSynthesizer

    rng = np.random.default_rng(0)
    x = rng.random((32, 1, 8, 8), dtype=np.float32)
    y = np.repeat([0, 1], 16)
    ckpt = tmp_path / "model"

    def fit(images: np.ndarray, steps: int) -> ImageDiffusionSynthesizer:
        training = TrainingSpec(steps=steps, batch_size=16, warmup_steps=1, device="cpu")
        synth = ImageDiffusionSynthesizer(ImageModelSpec(block_out_channels=[8, 16]), training)
        return synth.fit(ImageSet(images, y, []), checkpoint_dir=ckpt, progress=False)

    first = fit(x, 2)
    assert resume_check(ckpt, first.fingerprint_) == (2, None)
    second = fit(x, 4)  # the same images: resumed, two more steps
    assert second.fingerprint_ == first.fingerprint_
    assert _state(ckpt)["ema"]["optimization_step"] == 4
    other = fit(np.flip(x, axis=-1).copy(), 4)  # other images: from scratch
    assert other.fingerprint_ != first.fingerprint_
    # a resume would have had no step left, and so saved nothing: this one trained all four
    assert _state(ckpt)["fingerprint"] == other.fingerprint_ and _state(ckpt)["step"] == 4
    assert resume_check(ckpt, first.fingerprint_)[0] is None


def test_discarding_a_stale_state_touches_only_the_checkpoint_files(tmp_path):
    ts = tmp_path / "model" / STATE_DIR
    ts.mkdir(parents=True)
    for name in ("state.json", "model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        (ts / name).write_text("x")
    (ts / "notes.txt").write_text("mine")
    (tmp_path / "model" / "important.bin").write_text("mine")
    discard_training_state(tmp_path / "model")
    assert sorted(p.name for p in ts.iterdir()) == ["notes.txt"]
    assert (tmp_path / "model" / "important.bin").read_text() == "mine"


# ---- the job steps: wine, then wine with alcohol + 100, into the same --out -------------------
def _train(csv: Path, out: Path, **overrides) -> tuple[str, JobPaths]:
    spec = build_spec(
        {
            "source": {"path": str(csv), "target": "target"},
            "model": {"hidden_dims": [32, 32]},
            "training": {"steps": STEPS, "batch_size": 64, "device": "cpu"},
            "export": {"out": str(out)},
        },
        overrides,
    )
    steps, paths = MODALITIES["table"], JobPaths(out)
    source = steps.load(spec, paths)
    split_path = steps.split(spec, paths, source)
    return steps.train(spec, paths, source, split_path, progress=False), paths


def test_new_data_into_the_same_out_trains_a_new_model(wine, tmp_path, loss_calls, caplog):
    wine_csv, shift_csv = tmp_path / "wine.csv", tmp_path / "wine_shift.csv"
    wine.to_csv(wine_csv, index=False)
    wine.assign(alcohol=wine["alcohol"] + 100).to_csv(shift_csv, index=False)
    out = tmp_path / "X"

    old_hash, paths = _train(wine_csv, out)
    assert len(loss_calls) == STEPS
    old_fingerprint = _state(paths.model)["fingerprint"]
    old_model = file_sha256(paths.model / "synthesizer.json")

    loss_calls.clear()
    with caplog.at_level(logging.WARNING):
        new_hash, paths = _train(shift_csv, out)
    assert len(loss_calls) == STEPS  # trained from scratch, not resumed
    # The model differs: its encoder learned the new bounds and quantiles (the denoiser alone
    # may not: a shift is invisible after the quantile map), and so does the lineage's hash.
    assert file_sha256(paths.model / "synthesizer.json") != old_model
    assert new_hash != old_hash
    assert _state(paths.model)["fingerprint"] != old_fingerprint
    lines = [r.getMessage() for r in caplog.records if STALE in r.getMessage()]
    assert len(lines) == 1, caplog.text
    # one line naming the folder and two fingerprints, never a value
    assert re.fullmatch(
        rf"the checkpoint in model/ {STALE} \(fingerprint [0-9a-f]{{12}}… != [0-9a-f]{{12}}…\): "
        "training from scratch",
        lines[0],
    ), lines[0]
    synthetic = TabularDiffusionSynthesizer.load(paths.model, device="cpu").sample(200, seed=0)
    assert synthetic["alcohol"].between(100, 120).all()  # the new data's range, 111..115

    # the same data again resumes (nothing left to train); another setting starts over
    loss_calls.clear()
    assert _train(shift_csv, out)[0] == new_hash
    assert loss_calls == []
    _train(shift_csv, out, **{"training.lr": 1e-3})
    assert len(loss_calls) == STEPS


def test_the_flow_says_it_once(wine, tmp_path, loss_calls, monkeypatch):
    """The train task logs the resume, or the one line why not (and the library stays quiet)."""
    from flows import synthesize

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    flow_log = logging.getLogger("flow-test")
    flow_log.setLevel(logging.INFO)
    for logger in (flow_log, logging.getLogger("synth.training")):
        monkeypatch.setattr(logger, "handlers", [Collect()])
    monkeypatch.setattr(synthesize, "get_run_logger", lambda: flow_log)
    wine_csv, shift_csv = tmp_path / "wine.csv", tmp_path / "wine_shift.csv"
    wine.to_csv(wine_csv, index=False)
    wine.assign(alcohol=wine["alcohol"] + 100).to_csv(shift_csv, index=False)
    out = tmp_path / "X"
    _train(wine_csv, out)

    def task(csv: Path) -> None:
        spec = build_spec(
            {
                "source": {"path": str(csv), "target": "target"},
                "model": {"hidden_dims": [32, 32]},
                "training": {"steps": STEPS, "batch_size": 64, "device": "cpu"},
                "export": {"out": str(out)},
            }
        )
        steps, paths = MODALITIES["table"], JobPaths(out)
        source = steps.load(spec, paths)
        split_path = steps.split(spec, paths, source)
        lines.clear()
        loss_calls.clear()
        synthesize.train_task.fn(spec, paths, source, split_path, False)

    task(wine_csv)
    assert f"resuming training from the checkpoint at step {STEPS}" in lines and not loss_calls
    task(shift_csv)
    said = [line for line in lines if STALE in line or "resuming" in line]
    assert len(said) == 1 and STALE in said[0], lines
    assert len(loss_calls) == STEPS


def test_a_checkpoint_of_an_older_format_trains_from_scratch(wine, tmp_path, loss_calls, caplog):
    """After an upgrade that changes the model format, the same job into the same `--out`
    retrains (its old files may not load) instead of failing on them."""
    wine_csv = tmp_path / "wine.csv"
    wine.to_csv(wine_csv, index=False)
    out = tmp_path / "X"
    _, paths = _train(wine_csv, out)
    state_file = paths.model / STATE_DIR / "state.json"
    state = json.loads(state_file.read_text())
    del state["format_version"]  # as a checkpoint written before format 3 was
    state_file.write_text(json.dumps(state))
    assert resume_check(paths.model, state["fingerprint"])[0] is None

    loss_calls.clear()
    with caplog.at_level(logging.WARNING):
        _train(wine_csv, out)
    assert len(loss_calls) == STEPS  # trained again, not resumed
    assert "made by an older version of synth (model format before 3" in caplog.text
    assert _state(paths.model)["format_version"] == FORMAT_VERSION
    loss_calls.clear()
    _train(wine_csv, out)  # and the fresh checkpoint resumes as any other
    assert loss_calls == []
