"""Gaussian + multinomial diffusion: forward process, posterior, sampling, loss, solvers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from scipy import stats

from synth.tabular.denoiser import TabularDenoiser
from synth.tabular.diffusion import GaussianMultinomialDiffusion, make_solver

pytestmark = pytest.mark.usefixtures("torch_single_thread")

NUM_CLASSES = [2, 3, 5]
T = 1000


def make_scheduler(prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2"):
    return DDPMScheduler(
        num_train_timesteps=T,
        beta_schedule=beta_schedule,
        clip_sample=False,
        prediction_type=prediction_type,
    )


@pytest.fixture
def diffusion() -> GaussianMultinomialDiffusion:
    return GaussianMultinomialDiffusion(4, NUM_CLASSES, make_scheduler())


def random_codes(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.stack([torch.randint(0, k, (n,), generator=gen) for k in NUM_CLASSES], dim=1)


def random_probs(n: int, gen: torch.Generator, d: GaussianMultinomialDiffusion) -> torch.Tensor:
    p = torch.rand((n, len(NUM_CLASSES), max(NUM_CLASSES)), generator=gen) * d.mask
    return p / p.sum(-1, keepdim=True)


def transition(a: float, k: int) -> np.ndarray:
    """Q[i, j] = q(next = j | prev = i) for uniform noise with keep-probability a."""
    return a * np.eye(k) + (1 - a) / k


def test_layout(diffusion):
    assert diffusion.n_cat == 3
    assert diffusion.mask.sum().item() == sum(NUM_CLASSES)
    assert diffusion.mask.tolist()[0] == [True, True, False, False, False]
    codes = torch.tensor([[1, 2, 4], [0, 0, 0]])
    flat = diffusion.flatten(diffusion.one_hot(codes))
    assert flat.shape == (2, 10)
    assert flat[0].nonzero().flatten().tolist() == [1, 2 + 2, 2 + 3 + 4]
    # log_probs undoes flatten: pads are -inf and each feature normalises on its own
    logp = diffusion.log_probs(torch.randn(2, 10))
    assert torch.isinf(logp[~diffusion.mask.expand(2, -1, -1)]).all()
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(2, 3))


def test_q_probs_cat_rows_sum_to_one_and_pads_are_zero(diffusion):
    gen = torch.Generator().manual_seed(0)
    n = 256
    x0 = diffusion.one_hot(random_codes(n, gen))
    t = torch.randint(0, T, (n,), generator=gen)
    probs = diffusion.q_probs_cat(x0, diffusion._abar(t))
    assert probs.shape == (n, 3, 5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(n, 3))
    assert (probs[:, ~diffusion.mask] == 0).all()
    assert (probs >= 0).all()
    # the limits: clean data at abar = 1, uniform over each feature's own K at abar = 0
    torch.testing.assert_close(diffusion.q_probs_cat(x0, torch.ones(n, 1, 1)), x0)
    uniform = diffusion.q_probs_cat(x0, torch.zeros(n, 1, 1))
    torch.testing.assert_close(uniform[0, 0, :2], torch.full((2,), 1 / 2))
    torch.testing.assert_close(uniform[0, 2], torch.full((5,), 1 / 5))


def test_q_sample_cat_keeps_x0_at_t0(diffusion):
    gen = torch.Generator().manual_seed(1)
    n = 20_000
    x0 = random_codes(n, gen)
    xt = diffusion.q_sample_cat(x0, torch.zeros(n, dtype=torch.long), gen)
    assert (xt == x0).float().mean() > 0.99


def test_q_sample_cat_is_uniform_at_t_max(diffusion):
    gen = torch.Generator().manual_seed(2)
    n = 20_000
    x0 = torch.zeros((n, 3), dtype=torch.long)  # all mass on category 0
    xt = diffusion.q_sample_cat(x0, torch.full((n,), T - 1), gen)
    for f, k in enumerate(NUM_CLASSES):
        counts = np.bincount(xt[:, f].numpy(), minlength=max(NUM_CLASSES))
        assert counts[k:].sum() == 0  # pads never drawn
        assert stats.chisquare(counts[:k]).pvalue > 1e-3, (f, counts)
        assert abs(counts[0] / n - 1 / k) < 0.02


def test_q_sample_cat_follows_the_schedule(diffusion):
    """Mid-way, P(x_t = x_0) = abar_t + (1 - abar_t) / K."""
    gen = torch.Generator().manual_seed(3)
    n = 20_000
    t = 500
    x0 = random_codes(n, gen)
    xt = diffusion.q_sample_cat(x0, torch.full((n,), t), gen)
    abar = float(diffusion.alphas_cumprod[t])
    for f, k in enumerate(NUM_CLASSES):
        expected = abar + (1 - abar) / k
        assert abs((xt[:, f] == x0[:, f]).float().mean().item() - expected) < 0.02


def test_q_posterior_cat_sums_to_one(diffusion):
    gen = torch.Generator().manual_seed(4)
    n = 512
    t = torch.randint(1, T, (n,), generator=gen)
    s = (torch.rand(n, generator=gen) * t).long() - 1  # -1 <= s < t
    x_t = random_codes(n, gen)
    for x0 in (diffusion.one_hot(random_codes(n, gen)), random_probs(n, gen, diffusion)):
        post = diffusion.q_posterior_cat(x_t, x0, t, s)
        torch.testing.assert_close(post.sum(-1), torch.ones(n, 3))
        assert (post[:, ~diffusion.mask] == 0).all()
        assert (post >= 0).all()


def test_q_posterior_cat_at_t1_concentrates_on_x0(diffusion):
    gen = torch.Generator().manual_seed(5)
    n = 1000
    x0 = random_codes(n, gen)
    ones = torch.ones(n, dtype=torch.long)
    x_t = diffusion.q_sample_cat(x0, ones, gen)  # a real x_1: equal to x_0 almost always
    assert (x_t == x0).float().mean() > 0.999
    post = diffusion.q_posterior_cat(x_t, diffusion.one_hot(x0), ones, ones - 1)
    on_x0 = post.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    assert on_x0[x_t == x0].min() > 0.99
    # and to -1 (the clean data) it is exactly x0, whatever x_t is
    other = random_codes(n, gen)
    exact = diffusion.q_posterior_cat(other, diffusion.one_hot(x0), ones - 1, ones - 2)
    torch.testing.assert_close(exact, diffusion.one_hot(x0))


@pytest.mark.parametrize(("t", "s"), [(10, 9), (500, 499), (700, 300), (999, 0)])
def test_q_posterior_cat_is_bayes_rule(diffusion, t, s):
    """Compare with q(x_s | x_t, x_0) ∝ q(x_t | x_s) q(x_s | x_0) from explicit matrices."""
    abar = diffusion.alphas_cumprod.numpy()
    gen = torch.Generator().manual_seed(t)
    x0 = random_probs(1, gen, diffusion)
    x_t = random_codes(1, gen)
    post = diffusion.q_posterior_cat(x_t, x0, torch.tensor([t]), torch.tensor([s]))[0]
    for f, k in enumerate(NUM_CLASSES):
        p0 = x0[0, f, :k].double().numpy()
        prior_s = p0 @ transition(abar[s], k)  # q(x_s | x_0)
        like = transition(abar[t] / abar[s], k)[:, x_t[0, f]]  # q(x_t | x_s), over x_s
        expected = prior_s * like / (prior_s * like).sum()
        np.testing.assert_allclose(post[f, :k].numpy(), expected, rtol=1e-4, atol=1e-6)
        # the Markov chain composes: q(x_t | x_0) = q(x_s | x_0) Q_{t|s}
        np.testing.assert_allclose(
            prior_s @ transition(abar[t] / abar[s], k), p0 @ transition(abar[t], k), atol=1e-9
        )


def test_sample_categories_matches_probabilities(diffusion):
    gen = torch.Generator().manual_seed(6)
    n = 20_000
    target = torch.tensor(
        [
            [0.8, 0.2, 0.0, 0.0, 0.0],
            [0.1, 0.6, 0.3, 0.0, 0.0],
            [0.05, 0.15, 0.0, 0.5, 0.3],  # a valid category with probability 0
        ]
    )
    codes = diffusion.sample_categories(target.expand(n, -1, -1), gen)
    assert codes.shape == (n, 3)
    for f, k in enumerate(NUM_CLASSES):
        freq = np.bincount(codes[:, f].numpy(), minlength=5) / n
        assert freq[k:].sum() == 0
        np.testing.assert_allclose(freq, target[f].numpy(), atol=0.015)
    assert (codes[:, 2] != 2).all()


def test_sample_categories_ignores_pad_mass(diffusion):
    """Even if junk probability sits in the pads, only a feature's own categories come out."""
    gen = torch.Generator().manual_seed(7)
    junk = torch.full((5000, 3, 5), 0.2)
    codes = diffusion.sample_categories(junk, gen)
    for f, k in enumerate(NUM_CLASSES):
        assert codes[:, f].max() < k


def _oracle(d: GaussianMultinomialDiffusion, x_num0: torch.Tensor, x_cat0: torch.Tensor):
    """A perfect denoiser for a fixed batch: the true v (or noise) and confident x_0 logits."""

    def model(inp: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        x_t = inp[:, : d.n_num]
        abar = d.alphas_cumprod[t].float().unsqueeze(-1)
        eps = (x_t - abar.sqrt() * x_num0) / (1 - abar).sqrt()
        if d.noise_scheduler.config.prediction_type == "v_prediction":
            num = abar.sqrt() * eps - (1 - abar).sqrt() * x_num0
        else:
            num = eps
        logits = 30.0 * d.flatten(d.one_hot(x_cat0))
        return torch.cat([num, logits], dim=1)

    return model


@pytest.mark.parametrize("categorical_loss", ["cross_entropy", "kl"])
@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_p_losses_is_near_zero_for_a_perfect_denoiser(prediction_type, categorical_loss):
    d = GaussianMultinomialDiffusion(
        4, NUM_CLASSES, make_scheduler(prediction_type), categorical_loss
    )
    gen = torch.Generator().manual_seed(8)
    n = 512
    x_num, x_cat = torch.randn((n, 4), generator=gen), random_codes(n, gen)
    torch.manual_seed(0)
    loss_num, loss_cat = d.p_losses(_oracle(d, x_num, x_cat), x_num, x_cat)
    assert loss_num.item() < 1e-6
    assert 0 <= loss_cat.item() < 1e-4
    # an uninformed denoiser scores clearly worse
    blind = lambda inp, t: torch.zeros(inp.shape[0], 4 + sum(NUM_CLASSES))  # noqa: E731
    torch.manual_seed(0)
    blind_num, blind_cat = d.p_losses(blind, x_num, x_cat)
    assert blind_num.item() > 0.5
    # per-step KLs are small for most t; the blind model is still far worse than the oracle
    assert blind_cat.item() > 1e-4 and blind_cat.item() > 50 * loss_cat.item()


def test_cross_entropy_on_the_flat_layout_is_the_padded_one(diffusion):
    """The training loss's segment log-sum-exp equals -log p(x_0) from `log_probs`."""
    gen = torch.Generator().manual_seed(12)
    logits = 5 * torch.randn((64, sum(NUM_CLASSES)), generator=gen)
    codes = random_codes(64, gen)
    padded = -(diffusion.one_hot(codes) * diffusion.log_probs(logits).masked_fill(
        ~diffusion.mask, 0.0
    )).sum(-1).mean(-1)  # fmt: skip
    torch.testing.assert_close(diffusion.cross_entropy(logits, codes), padded)


def test_p_losses_gradients_flow():
    d = GaussianMultinomialDiffusion(4, NUM_CLASSES, make_scheduler())
    model = TabularDenoiser(4, NUM_CLASSES, num_labels=3, hidden_dims=[32, 32])
    gen = torch.Generator().manual_seed(9)
    n = 128
    x_num, x_cat = torch.randn((n, 4), generator=gen), random_codes(n, gen)
    labels = torch.randint(0, 4, (n,), generator=gen)  # 3 = the "no label" token
    loss_num, loss_cat = d.p_losses(model, x_num, x_cat, labels=labels)
    for loss in (loss_num, loss_cat):
        assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
    (loss_num + loss_cat).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert model.input_proj.weight.grad.abs().sum() > 0
    assert model.output.weight.grad.abs().sum() > 0
    assert model.label_embedding.weight.grad.abs().sum() > 0


def test_p_losses_without_categoricals():
    d = GaussianMultinomialDiffusion(3, [], make_scheduler())
    model = TabularDenoiser(3, [], hidden_dims=[16])
    x_num = torch.randn(64, 3)
    loss_num, loss_cat = d.p_losses(model, x_num, torch.zeros((64, 0), dtype=torch.long))
    assert torch.isfinite(loss_num) and loss_num.item() > 0
    assert loss_cat.item() == 0
    loss_num.backward()
    assert model.output.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
@pytest.mark.parametrize("schedule", ["squaredcos_cap_v2", "linear"])
@pytest.mark.parametrize(
    ("name", "cls"),
    [("ddim", DDIMScheduler), ("dpmsolver", DPMSolverMultistepScheduler), ("ddpm", DDPMScheduler)],
)
def test_make_solver_shares_the_training_schedule(name, cls, schedule, prediction_type):
    noise = make_scheduler(prediction_type, schedule)
    solver = make_solver(name, noise)
    assert type(solver) is cls
    torch.testing.assert_close(solver.betas, noise.betas)
    torch.testing.assert_close(solver.alphas_cumprod, noise.alphas_cumprod)
    assert solver.config.prediction_type == prediction_type
    assert solver.config.num_train_timesteps == T
    solver.set_timesteps(10)
    assert int(solver.timesteps[0]) == T - 1  # trailing spacing starts from pure noise
    assert len(solver.timesteps) == 10


@pytest.mark.parametrize(("t", "s"), [(999, 899), (500, 400), (100, 0), (50, -1)])
def test_the_posterior_given_p_x0_is_the_exact_reverse_mixture(diffusion, t, s):
    """With `mixture`, the posterior is sum_k p(x_0 = k | x_t) q(x_s | x_t, x_0 = k),
    from explicit transition matrices; p(x_0 | x_t) itself, fed as is, does not."""
    abar = np.append(diffusion.alphas_cumprod.numpy(), 1.0)  # abar[-1]: the clean data
    gen = torch.Generator().manual_seed(t)
    p0, x_t = random_probs(1, gen, diffusion), random_codes(1, gen)
    tt, ss = torch.tensor([t]), torch.tensor([s])
    mixed = diffusion.q_posterior_cat(x_t, p0, tt, ss, mixture=True)[0]
    naive = diffusion.q_posterior_cat(x_t, p0, tt, ss)[0]
    for f, k in enumerate(NUM_CLASSES):
        expected = np.zeros(k)
        like = transition(abar[t] / abar[s], k)[:, x_t[0, f]]  # q(x_t | x_s), over x_s
        for x0 in range(k):
            prior_s = transition(abar[s], k)[x0]  # q(x_s | x_0 = x0)
            expected += float(p0[0, f, x0]) * prior_s * like / (prior_s * like).sum()
        np.testing.assert_allclose(mixed[f, :k].numpy(), expected, rtol=1e-4, atol=1e-6)
        if 0.1 < abar[t] < 0.9:  # between data and pure noise the two differ
            assert np.abs(naive[f, :k].numpy() - expected).max() > 1e-3


def _joint_oracle(joint: np.ndarray):
    """The exact denoiser of two categorical columns drawn from `joint` [K0, K1]: per column,
    p(x_0 | x_t) = the marginal of p(x_0 pair) * prod_f q(x_t^f | x_0^f), as logits."""
    k0, k1 = joint.shape
    table = torch.tensor(joint, dtype=torch.float64)
    d = GaussianMultinomialDiffusion(0, [k0, k1], make_scheduler())

    def model(inp: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = d.alphas_cumprod[t].reshape(-1, 1)
        lik0 = abar * inp[:, :k0].double() + (1 - abar) / k0  # q(x_t^0 | x_0^0 = i)
        lik1 = abar * inp[:, k0:].double() + (1 - abar) / k1
        post = table * lik0[:, :, None] * lik1[:, None, :]
        post = post / post.sum((1, 2), keepdim=True)
        return torch.cat([post.sum(2), post.sum(1)], dim=1).clamp(min=1e-30).log().float()

    return d, model


def test_an_exact_denoiser_samples_the_joint_of_two_rare_flags():
    """Two flags held together by 6% of rows, each alone by 2%: a denoiser that knows each
    column's p(x_0 | x_t) samples the pair's joint back, not each flag on its own."""
    joint = np.array([[0.90, 0.02], [0.02, 0.06]])
    d, oracle = _joint_oracle(joint)
    n = 40_000
    _, codes = d.sample(
        oracle, n, make_solver("ddpm", d.noise_scheduler), 100, "cpu",
        torch.Generator().manual_seed(11),
    )  # fmt: skip
    drawn = np.zeros((2, 2))
    np.add.at(drawn, (codes[:, 0].numpy(), codes[:, 1].numpy()), 1 / n)
    np.testing.assert_allclose(drawn, joint, atol=0.01)


def test_make_solver_unknown_name():
    with pytest.raises(ValueError, match="euler"):
        make_solver("euler", make_scheduler())


@pytest.mark.parametrize("solver", ["ddim", "dpmsolver", "ddpm"])
@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_sample_reaches_what_a_perfect_denoiser_predicts(solver, prediction_type):
    d = GaussianMultinomialDiffusion(4, NUM_CLASSES, make_scheduler(prediction_type))
    n = 300
    x_num0 = torch.tensor([[-1.0, 0.0, 0.5, 2.0]]).expand(n, -1)
    x_cat0 = torch.tensor([[1, 2, 3]]).expand(n, -1)
    gen = torch.Generator().manual_seed(10)
    x_num, x_cat = d.sample(
        _oracle(d, x_num0, x_cat0), n, make_solver(solver, d.noise_scheduler), 10, "cpu", gen
    )
    assert x_num.shape == (n, 4) and x_cat.shape == (n, 3)
    torch.testing.assert_close(x_num, x_num0, atol=2e-2, rtol=0)
    assert (x_cat == x_cat0).all()


def test_sample_is_seeded(diffusion):
    model = TabularDenoiser(4, NUM_CLASSES, hidden_dims=[16]).eval()
    solver = make_solver("ddpm", diffusion.noise_scheduler)

    def run(seed):
        return diffusion.sample(model, 64, solver, 5, "cpu", torch.Generator().manual_seed(seed))

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_a_shared_timestep_is_embedded_once_with_the_same_output():

    torch.manual_seed(0)
    net = TabularDenoiser(n_num=3, num_classes=[4, 2], num_labels=2).eval()
    x, labels = torch.randn(64, 9), torch.randint(0, 3, (64,))
    shared = torch.full((64,), 417)
    with torch.no_grad():
        batch = net(x, shared, labels)
        one_by_one = torch.cat(
            [net(x[i : i + 1], shared[:1], labels[i : i + 1]) for i in range(64)]
        )
        mixed = net(x, torch.arange(64) * 15, labels)  # training: a timestep per row
        rowwise = torch.cat(
            [net(x[i : i + 1], torch.tensor([i * 15]), labels[i : i + 1]) for i in range(64)]
        )
    assert torch.allclose(batch, one_by_one, atol=1e-5)
    assert torch.allclose(mixed, rowwise, atol=1e-5)
    assert not torch.allclose(batch, mixed, atol=1e-3)  # the timestep matters
