"""TabularDiffusionSynthesizer end to end, with tiny training budgets on real tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import load_wine

from synth.config import ModelSpec, TrainingSpec
from synth.data.schema import TableSchema, infer_schema
from synth.errors import InputDataError, NotFittedError
from synth.tabular.denoiser import TabularDenoiser
from synth.tabular.synthesizer import TabularDiffusionSynthesizer

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SMALL = ModelSpec(hidden_dims=[64, 64])


def tiny(steps: int, **kw) -> TrainingSpec:
    return TrainingSpec(steps=steps, batch_size=256, **kw)


# ---- data -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    df = load_wine(as_frame=True).frame
    df["target"] = df["target"].map({0: "class_0", 1: "class_1", 2: "class_2"})
    return df


@pytest.fixture(scope="module")
def wine_schema(wine) -> TableSchema:
    return infer_schema(wine, target="target")


@pytest.fixture(scope="module")
def churn_train(churn_split) -> pd.DataFrame:
    """Churn train split with 10% of total_charges missing (the real table has 0.16%)."""
    df = churn_split[0].copy()
    rng = np.random.default_rng(0)
    df.loc[rng.random(len(df)) < 0.10, "total_charges"] = np.nan
    return df


@pytest.fixture(scope="module")
def churn_schema(churn_train) -> TableSchema:
    return infer_schema(churn_train, target="churn")


# ---- fitted models, shared by the module ----------------------------------------------------
@pytest.fixture(scope="module")
def wine_synth(torch_single_thread, wine, wine_schema) -> TabularDiffusionSynthesizer:
    synth = TabularDiffusionSynthesizer(wine_schema, SMALL, tiny(300), seed=0, device="cpu")
    return synth.fit(wine, progress=False)


@pytest.fixture(scope="module")
def churn_synth(torch_single_thread, churn_train, churn_schema) -> TabularDiffusionSynthesizer:
    synth = TabularDiffusionSynthesizer(churn_schema, SMALL, tiny(400), seed=0, device="cpu")
    return synth.fit(churn_train, progress=False)


@pytest.fixture(scope="module")
def churn_sample(churn_synth) -> pd.DataFrame:
    return churn_synth.sample(2000)


# ---- construction -----------------------------------------------------------------------
def test_constructor_only_stores_parameters(wine_schema):
    model, training = ModelSpec(hidden_dims=[8]), tiny(5)
    synth = TabularDiffusionSynthesizer(wine_schema, model, training, seed=3, device="cpu")
    assert not [k for k in vars(synth) if k.endswith("_")]
    assert synth.schema is wine_schema and synth.model is model and synth.training is training
    assert (synth.seed, synth.device) == (3, "cpu")
    default = TabularDiffusionSynthesizer(wine_schema)
    assert default.model == ModelSpec() and default.training == TrainingSpec()
    assert not [k for k in vars(default) if k.endswith("_")]


def test_unfitted_synthesizer_refuses(wine_schema, tmp_path):
    synth = TabularDiffusionSynthesizer(wine_schema, SMALL, tiny(5), device="cpu")
    with pytest.raises(NotFittedError, match="fit"):
        synth.sample(10)
    with pytest.raises(NotFittedError):
        list(synth.sample_shards(10))
    with pytest.raises(NotFittedError):
        synth.save(tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_fit_needs_two_rows(wine, wine_schema):
    synth = TabularDiffusionSynthesizer(wine_schema, SMALL, tiny(5), device="cpu")
    with pytest.raises(InputDataError, match="2 rows"):
        synth.fit(wine.head(1), progress=False)


def test_fit_sets_learned_attributes(wine_synth):
    assert wine_synth.steps_trained_ == 300
    assert np.isfinite(wine_synth.final_loss_)
    assert wine_synth.encoder_.conditional
    assert sum(wine_synth.label_counts_) == 178
    assert wine_synth.label_counts_ == [59, 71, 48]


# ---- samples look like the table ------------------------------------------------------------
def test_wine_sample_matches_the_schema(wine_synth, wine_schema, wine):
    out = wine_synth.sample(400)
    assert list(out.columns) == wine_schema.names
    assert len(out) == 400
    assert set(out["target"]) <= {"class_0", "class_1", "class_2"}
    assert out["target"].nunique() == 3
    for spec in wine_schema.of_kind("numeric"):
        col = out[spec.name].astype(float)
        assert col.notna().all(), spec.name
        # inside the k-th smallest and largest training values: no one's extreme leaves
        k = wine_synth.encoder_.min_rows
        ordered = np.sort(wine[spec.name].to_numpy(float))
        assert col.between(ordered[k - 1], ordered[-k]).all(), spec.name
        if spec.integer:
            assert (col == np.round(col)).all(), spec.name
    assert {s.name for s in wine_schema.columns if s.integer} == {"magnesium", "proline"}


def test_churn_sample_matches_the_schema(churn_sample, churn_schema, churn_train):
    out = churn_sample
    assert list(out.columns) == churn_schema.names
    for spec in churn_schema.of_kind("categorical"):
        seen = set(out[spec.name])
        assert seen <= set(churn_train[spec.name]), spec.name
        assert len(seen) >= 2, spec.name
    tenure = out["tenure"].astype(float)
    assert tenure.between(0, 72).all() and (tenure == np.round(tenure)).all()
    for name in ("monthly_charges", "total_charges"):
        ordered = np.sort(churn_train[name].dropna().to_numpy(float))
        assert out[name].dropna().between(ordered[4], ordered[-5]).all(), name  # k = 5
    assert out["monthly_charges"].notna().all()


def test_churn_ids_are_regenerated(churn_sample):
    ids = churn_sample["rownames"]
    assert ids.is_unique
    assert ids.tolist() == list(range(1, len(churn_sample) + 1))


def test_churn_missing_values_are_modelled(churn_train, churn_sample):
    real_share = churn_train["total_charges"].isna().mean()
    assert 0.09 < real_share < 0.11
    share = churn_sample["total_charges"].isna().mean()
    assert 0.02 < share < 0.25
    # missingness sits in total_charges only, like in the training table
    assert churn_sample.drop(columns="total_charges").notna().all().all()


def test_id_strategy_drop(churn_synth, churn_schema):
    out = churn_synth.sample(50, id_strategy="drop")
    assert list(out.columns) == [n for n in churn_schema.names if n != "rownames"]
    kept = churn_synth.sample(50)
    pd.testing.assert_frame_equal(out, kept.drop(columns="rownames"))


def test_string_ids_and_constants_are_filled_in(torch_single_thread, wine):
    df = wine.assign(
        sample_id=[f"W{i:04d}" for i in range(len(wine))], lab="Genoa", batch_no=1
    ).iloc[:, ::-1]
    schema = infer_schema(df, target="target")
    assert schema.column("sample_id").kind == "id"
    assert schema.column("lab").kind == "constant"
    synth = TabularDiffusionSynthesizer(schema, SMALL, tiny(10), device="cpu")
    out = synth.fit(df, progress=False).sample(30)
    assert list(out.columns) == list(df.columns)
    # regenerated in the format of the real ones (issue 11): "W0" and three digits
    assert out["sample_id"].is_unique and out["sample_id"].str.fullmatch(r"W0\d{3}").all()
    assert (out["lab"] == "Genoa").all() and (out["batch_no"] == 1).all()


# ---- conditions, seeds, shards, guidance ------------------------------------------------
def test_conditions_give_exact_label_counts(churn_synth):
    out = churn_synth.sample(conditions={"Yes": 37, "No": 63})
    assert len(out) == 100
    assert out["churn"].value_counts().to_dict() == {"No": 63, "Yes": 37}


def test_unknown_condition_label(churn_synth):
    with pytest.raises(InputDataError, match="'Maybe'"):
        churn_synth.sample(conditions={"Yes": 3, "Maybe": 2})


def test_conditions_need_a_conditional_model(torch_single_thread, wine, wine_schema):
    spec = ModelSpec(hidden_dims=[16], conditional=False)
    synth = TabularDiffusionSynthesizer(wine_schema, spec, tiny(5), device="cpu")
    synth.fit(wine, progress=False)
    assert synth.denoiser_.label_embedding is None
    assert set(synth.sample(20)["target"]) <= {"class_0", "class_1", "class_2"}
    with pytest.raises(InputDataError, match="conditions"):
        synth.sample(conditions={"class_0": 5})


def test_zero_rows_is_an_error(churn_synth):
    with pytest.raises(InputDataError, match="at least one row"):
        churn_synth.sample(0)


def test_same_seed_same_sample(churn_synth):
    a = churn_synth.sample(300, seed=11)
    b = churn_synth.sample(300, seed=11)
    pd.testing.assert_frame_equal(a, b)
    c = churn_synth.sample(300, seed=12)
    assert not a.drop(columns="rownames").equals(c.drop(columns="rownames"))
    assert not np.allclose(a["monthly_charges"], c["monthly_charges"])
    # the default seed is the synthesizer's
    pd.testing.assert_frame_equal(churn_synth.sample(50), churn_synth.sample(50, seed=0))


def test_sample_shards(churn_synth):
    shards = list(churn_synth.sample_shards(350, shard_rows=100, seed=5))
    assert [len(s) for s in shards] == [100, 100, 100, 50]
    assert [s.start for s in shards] == [0, 100, 200, 300]
    whole = pd.concat([s.data for s in shards], ignore_index=True)
    assert whole["rownames"].tolist() == list(range(1, 351))
    assert [s.data["rownames"].iloc[0] for s in shards] == [1, 101, 201, 301]
    # sample() is the concatenation of the same shards
    pd.testing.assert_frame_equal(churn_synth.sample(350, shard_rows=100, seed=5), whole)


def test_conditions_across_shards(churn_synth):
    shards = list(churn_synth.sample_shards(conditions={"Yes": 130, "No": 120}, shard_rows=100))
    assert [len(s) for s in shards] == [100, 100, 50]
    labels = pd.concat([s.data for s in shards])["churn"].value_counts().to_dict()
    assert labels == {"Yes": 130, "No": 120}


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm"])
def test_other_schedulers_sample(churn_synth, churn_schema, scheduler):
    out = churn_synth.sample(100, scheduler=scheduler, num_inference_steps=8)
    assert list(out.columns) == churn_schema.names
    assert out["tenure"].between(0, 72).all()


def test_guidance_scale(churn_synth):
    cond = {"Yes": 60, "No": 40}
    guided = churn_synth.sample(conditions=cond, guidance_scale=2.0, seed=3)
    plain = churn_synth.sample(conditions=cond, guidance_scale=1.0, seed=3)
    assert guided["churn"].value_counts().to_dict() == {"Yes": 60, "No": 40}
    assert guided["tenure"].between(0, 72).all()
    assert not np.allclose(guided["monthly_charges"], plain["monthly_charges"])
    # guidance is applied per row against the label's own prediction: labels stay aligned
    pd.testing.assert_series_equal(guided["churn"], plain["churn"])


# ---- persistence --------------------------------------------------------------------------
def test_save_layout_has_no_pickles(churn_synth, tmp_path):
    directory = churn_synth.save(tmp_path / "model")
    for rel in (
        "denoiser/config.json",
        "denoiser/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        "synthesizer.json",
    ):
        assert (directory / rel).is_file(), rel
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in {".pkl", ".pickle", ".bin", ".pt", ".pth"}]
    assert not list(directory.rglob("*.tmp"))
    state = json.loads((directory / "synthesizer.json").read_text())
    assert state["format_version"] == 3
    assert state["steps_trained"] == 400
    assert TableSchema.model_validate(state["schema"]) == churn_synth.schema


def test_load_samples_identically(churn_synth, tmp_path):
    churn_synth.save(tmp_path / "model")
    loaded = TabularDiffusionSynthesizer.load(tmp_path / "model", device="cpu")
    assert loaded.model == churn_synth.model and loaded.training == churn_synth.training
    assert loaded.label_counts_ == churn_synth.label_counts_
    for kw in ({"seed": 21}, {"conditions": {"Yes": 10, "No": 20}, "guidance_scale": 1.5}):
        pd.testing.assert_frame_equal(
            loaded.sample(200 if "seed" in kw else None, **kw),
            churn_synth.sample(200 if "seed" in kw else None, **kw),
        )


def test_a_model_saved_before_the_cross_entropy_loss_samples_as_it_was_trained(
    churn_synth, tmp_path
):
    """Its JSON has no `categorical_loss`: it was trained with the posterior KL, so its reverse
    steps must be the KL's product form, not the cross-entropy's mixture."""
    assert churn_synth.model.categorical_loss == "cross_entropy"
    churn_synth.save(tmp_path / "m")
    path = tmp_path / "m" / "synthesizer.json"
    state = json.loads(path.read_text())
    del state["model"]["categorical_loss"]
    path.write_text(json.dumps(state))
    old = TabularDiffusionSynthesizer.load(tmp_path / "m", device="cpu")
    assert old.model.categorical_loss == "kl"
    as_kl = old.sample(300, seed=5)
    old.model = churn_synth.model  # the same weights, sampled as a cross-entropy model
    assert not as_kl.equals(old.sample(300, seed=5))


def test_denoiser_loads_standalone(churn_synth, tmp_path):
    churn_synth.save(tmp_path / "model")
    model = TabularDenoiser.from_pretrained(tmp_path / "model" / "denoiser").eval()
    enc = churn_synth.encoder_
    assert model.config.n_num == enc.n_num == 3
    assert list(model.config.num_classes) == enc.num_classes
    assert model.config.num_labels == 2
    assert list(model.config.hidden_dims) == [64, 64]
    x = torch.randn(16, enc.n_num + sum(enc.num_classes))
    t = torch.randint(0, 1000, (16,))
    labels = torch.randint(0, 3, (16,))
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, labels), churn_synth.denoiser_(x, t, labels))


def test_load_refuses_other_directories(tmp_path, churn_synth):
    with pytest.raises(InputDataError, match="synthesizer.json"):
        TabularDiffusionSynthesizer.load(tmp_path)
    churn_synth.save(tmp_path / "m")
    state = json.loads((tmp_path / "m" / "synthesizer.json").read_text())
    state["format_version"] = 99
    (tmp_path / "m" / "synthesizer.json").write_text(json.dumps(state))
    with pytest.raises(InputDataError, match="99"):
        TabularDiffusionSynthesizer.load(tmp_path / "m")


# ---- resumable training ---------------------------------------------------------------------
def _optimizer_steps(ckpt: Path) -> set[float]:
    tensors = load_file(ckpt / "training_state" / "optimizer.safetensors")
    steps = {float(v) for k, v in tensors.items() if k.endswith(".step")}
    assert steps, "AdamW state holds a step per parameter"
    return steps


@pytest.mark.slow
def test_resume_from_checkpoint(torch_single_thread, wine, wine_schema, tmp_path, loss_calls):
    ckpt = tmp_path / "run" / "model"
    calls = loss_calls
    first = TabularDiffusionSynthesizer(
        wine_schema, SMALL, tiny(40, checkpoint_every=20), seed=1, device="cpu"
    ).fit(wine, checkpoint_dir=ckpt, progress=False)
    assert len(calls) == 40
    state = json.loads((ckpt / "training_state" / "state.json").read_text())
    assert state["step"] == 40
    assert state["ema"]["optimization_step"] == 40
    assert _optimizer_steps(ckpt) == {40.0}
    assert json.loads((ckpt / "synthesizer.json").read_text())["steps_trained"] == 40
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["model"]  # no temp dirs left
    # the checkpoint is a loadable synthesizer holding the final (EMA) weights
    loaded = TabularDiffusionSynthesizer.load(ckpt, device="cpu")
    pd.testing.assert_frame_equal(loaded.sample(50, seed=2), first.sample(50, seed=2))

    calls.clear()
    second = TabularDiffusionSynthesizer(
        wine_schema, SMALL, tiny(80, checkpoint_every=20), seed=1, device="cpu"
    ).fit(wine, checkpoint_dir=ckpt, progress=False)
    assert len(calls) == 40  # only the remaining steps ran
    state = json.loads((ckpt / "training_state" / "state.json").read_text())
    assert state["step"] == 80
    assert state["ema"]["optimization_step"] == 80
    assert _optimizer_steps(ckpt) == {80.0}  # the restored AdamW state kept counting
    assert second.steps_trained_ == 80
    assert json.loads((ckpt / "synthesizer.json").read_text())["training"]["steps"] == 80


@pytest.mark.slow
def test_resume_false_starts_over(torch_single_thread, wine, wine_schema, tmp_path, loss_calls):
    ckpt = tmp_path / "model"
    TabularDiffusionSynthesizer(
        wine_schema, SMALL, tiny(30, checkpoint_every=100), device="cpu"
    ).fit(wine, checkpoint_dir=ckpt, progress=False)
    # checkpoint_every does not divide steps: the last step is still saved
    assert json.loads((ckpt / "training_state" / "state.json").read_text())["step"] == 30
    calls = loss_calls
    calls.clear()  # count the second fit only
    TabularDiffusionSynthesizer(wine_schema, SMALL, tiny(35, resume=False), device="cpu").fit(
        wine, checkpoint_dir=ckpt, progress=False
    )
    assert len(calls) == 35
    assert _optimizer_steps(ckpt) == {35.0}


# ---- quality ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_wine_quality_smoke(wine_synth, wine):
    """Marginals alone are easy (the quantile transform decodes noise to the real marginal), so
    also check what random output cannot fake: correlations and per-class means."""
    num = [c for c in wine.columns if c != "target"]
    std = wine[num].std()
    syn = wine_synth.sample(1000, seed=1)

    z = ((syn[num].astype(float).mean() - wine[num].mean()) / std).abs()
    assert (z < 1.5).mean() >= 0.8
    assert z.max() < 0.3

    rng = np.random.default_rng(0)
    shuffled = wine.apply(lambda c: rng.permutation(c.to_numpy()))  # right marginals, no joint
    real_corr = wine[num].corr(method="spearman").to_numpy()
    upper = np.triu_indices(len(num), 1)

    def corr_error(df):
        return np.abs(df[num].astype(float).corr(method="spearman").to_numpy() - real_corr)[
            upper
        ].mean()

    def class_mean_error(df):
        means = df.groupby("target")[num].mean()
        real = wine.groupby("target")[num].mean()
        return ((means - real).abs() / std).to_numpy().mean()

    assert corr_error(shuffled) > 0.25 and class_mean_error(shuffled) > 0.4  # the bar is real
    assert corr_error(syn) < 0.15
    assert class_mean_error(syn) < 0.2

    # conditioning steers the rows: class_0 wines have far more proline than class_2
    by_class = wine_synth.sample(conditions={"class_0": 200, "class_2": 200}, seed=4)
    proline = by_class.groupby("target")["proline"].mean()
    real_proline = wine.groupby("target")["proline"].mean()
    assert proline["class_0"] - proline["class_2"] > 0.6 * (
        real_proline["class_0"] - real_proline["class_2"]
    )
