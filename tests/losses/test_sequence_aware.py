"""SA-K: reductions to L_simple, τ's closed form, Theorem 2, the forward chain, one batched call."""

import numpy as np
import pytest
import torch

from errprop.denoisers import Denoiser, eps_from_denoised
from errprop.errors import ErrpropError
from errprop.losses.sequence_aware import SequenceAwareLoss, tau, window_mean
from errprop.losses.simple import SimpleLoss
from errprop.nets.mlp import MLP
from errprop.noise import Noise
from errprop.process import VEProcess, VPProcess
from errprop.samplers import ddpm_step


class Counting(torch.nn.Module):
    def __init__(self, denoiser):
        super().__init__()
        self.d, self.batches = denoiser, []

    def forward(self, x, sigma):
        self.batches.append(x.shape[0])
        return self.d(x, sigma)


class RowExact(torch.nn.Module):
    """An elementwise denoiser: each row's output is bit-identical whatever batch it sits in."""

    def forward(self, x, sigma):
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return 0.8 * x - 0.1 * x * x + 0.05 * s


def _den(p):
    torch.manual_seed(0)
    return Denoiser(MLP(3, width=32, depth=1), "eps", p)


def test_lambda_zero_and_k1_equal_l_simple_exactly():
    p = VPProcess()
    x0 = torch.randn(16, 3)
    for d in (RowExact(), _den(p)):
        simple = SimpleLoss(p, sigma_sampling="antithetic")(d, x0, Noise.from_seed(3, 16))["loss"]
        k1 = SequenceAwareLoss(p, K=1, tau="none")(d, x0, Noise.from_seed(3, 16))
        assert torch.equal(k1["loss_simple"], simple) and torch.equal(k1["loss_sa"], simple)
        lam0 = SequenceAwareLoss(p, K=3, lam=0.0)(d, x0, Noise.from_seed(3, 16))
        if isinstance(d, RowExact):  # the loss's own arithmetic is exact
            assert torch.equal(lam0["loss"], simple)
        else:  # the anchor sits in one K·B batch: only the network's BLAS blocking differs
            torch.testing.assert_close(lam0["loss"], simple, rtol=1e-6, atol=0)


@pytest.mark.parametrize("kind", ["x0", "v", "edm"])
def test_any_parameterization_is_trained_on_its_implied_eps(kind):
    """ε̂ = (x̂ − D)/σ whatever the network predicts: K = 1 is L_simple with eps weighting."""
    p = VPProcess()
    x0 = torch.randn(16, 3)
    torch.manual_seed(1)
    d = Denoiser(MLP(3, width=32, depth=1), kind, p)
    simple = SimpleLoss(p, weighting="eps", sigma_sampling="antithetic")(d, x0, Noise.from_seed(5, 16))
    k1 = SequenceAwareLoss(p, K=1, lam=0.0)(d, x0, Noise.from_seed(5, 16))
    assert torch.equal(k1["loss"], simple["loss"])


def _tau_reference(betas: np.ndarray) -> np.ndarray:
    """SA's Theorem 1 in its own 1-based notation (numpy, float64); returns τ_1..τ_T."""
    T = len(betas)
    beta = np.concatenate([[np.nan], betas])  # beta[i] = β_i, i = 1..T
    alpha = 1 - beta
    abar = np.concatenate([[1.0], np.cumprod(alpha[1:])])  # abar[i] = ᾱ_i, ᾱ_0 = 1
    out = np.zeros(T + 1)
    for i in range(2, T + 1):
        gamma1 = np.sqrt(abar[i - 1]) * beta[i] / (1 - abar[i])
        out[i] = (np.sqrt(abar[i - 1]) * (1 - abar[1]) / (np.sqrt(alpha[1]) * (1 - abar[i - 1]))
                  * gamma1 * np.sqrt(1 - abar[i]) / np.sqrt(abar[i]))
    return out[1:]


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_tau_matches_the_closed_form_and_methods_spot_values(schedule):
    p = VPProcess(schedule=schedule)
    t = tau(p)  # index t ↔ paper step t + 1
    np.testing.assert_allclose(t.numpy(), _tau_reference(p.betas.numpy()), rtol=1e-12, atol=0)
    assert t[0] == 0
    if schedule == "linear":  # docs/methods.md#tau-weights, T = 1000, quoted to 2 significant digits
        for step, ref in ((2, 8.1e-3), (10, 4.0e-4), (100, 6.1e-6), (1000, 1.3e-8)):
            assert t[step - 1].item() == pytest.approx(ref, abs=0.05 * 10 ** np.floor(np.log10(ref)))
        for step, ratio, half_digit in ((10, 1.20, 0.005), (100, 1.02, 0.005), (300, 1.006, 0.0005)):
            assert (t[step - 2] / t[step - 1]).item() == pytest.approx(ratio, abs=half_digit)


def test_tau_is_the_gap_of_errprops_own_ddpm_chain():
    """Theorem 1: an ε-error δ_i at steps i = 2..T moves x_1 of the DDPM chain by −Σ τ_i δ_i."""
    T = 20
    p = VPProcess(T=T, beta_end=0.3)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    delta = torch.randn(T, 4, 3, generator=g, dtype=torch.float64)

    def model(x, sigma):  # ε̂ = ε(x̂) + δ_t: the oracle's noise at this state plus an error
        return x0 - sigma * delta[int(p.t(torch.tensor(sigma)).round())]

    def oracle(x, sigma):
        return x0

    chains = []
    for d in (model, oracle):
        noise = Noise.from_seed(1, 4)
        x = x0 + p.sigma_max * noise.randn(3, dtype=torch.float64)
        for i in range(T - 1, 0, -1):
            x, _ = ddpm_step(d, x, float(p.sigmas[i]), float(p.sigmas[i - 1]), noise)
        chains.append(x)
    gap = p.alphas_cumprod[0].sqrt() * (chains[0] - chains[1])  # x_1 in x_t space
    expected = -(tau(p)[:, None, None] * delta).sum(0)
    torch.testing.assert_close(gap, expected, rtol=1e-9, atol=1e-12)


def theorem2_terms(err: torch.Tensor, weights: torch.Tensor, K: int) -> dict[str, torch.Tensor]:
    """The three losses of SA's Theorem 2 for given per-step errors, averaged exactly over t
    (docs/methods.md#theorem-2; L_sa checked against :func:`_theorem2_brute_force`).

    Args:
        err: (T, B, ...) errors ``ε_θ(x_t, t) − ε_t`` at errprop's t = 0..T−1 (paper steps 1..T);
            sample b of every step is one joint draw (x0 and its chain), as in L_θ.
        weights: (T,) τ (see :func:`tau`; τ[0] = 0).
        K: the window length.

    Returns:
        ``l_tau_simple`` = mean over paper t = 2..T of E[τ_t² ‖e_t‖²];
        ``l_sa`` = mean over the T + K paper windows {t..t+K−1}, t = 1−K..T, of
        E‖(1/K) Σ_s τ_s e_s‖² (τ = 0 outside 2..T);
        ``l_theta`` = E‖Σ_t τ_t e_t‖². Theorem 2: (T−1)/(T+K) l_tau_simple ≥ l_sa ≥ l_theta/(T+K)².
    """
    T, B = err.shape[:2]
    we = weights.to(err.dtype).reshape(T, *([1] * (err.ndim - 1))) * err
    l_tau_simple = we[1:].flatten(2).pow(2).sum(-1).mean()
    l_theta = we.sum(0).flatten(1).pow(2).sum(-1).mean()
    padded = torch.cat([we.new_zeros(K, *we.shape[1:]), we, we.new_zeros(K, *we.shape[1:])])
    # window p (p = 0..T+K−1) covers padded rows p..p+K−1, i.e. paper steps p+1−K .. p
    stacked = torch.stack([padded[j:j + T + K] for j in range(K)])  # (K, T+K, B, ...)
    ones = torch.ones(K, (T + K) * B, dtype=err.dtype, device=err.device)
    sums = window_mean(stacked.reshape(K, (T + K) * B, *err.shape[2:]), ones)
    l_sa = sums.flatten(1).pow(2).sum(-1).mean()
    return {"l_tau_simple": l_tau_simple, "l_sa": l_sa, "l_theta": l_theta}


def _theorem2_brute_force(err: np.ndarray, w: np.ndarray, K: int) -> float:
    """L_sa of the paper, literally: t ∈ {1−K..T}, window s = t..t+K−1, τ_s = 0 outside 2..T."""
    T = err.shape[0]
    vals = []
    for t in range(1 - K, T + 1):
        acc = np.zeros(err.shape[1:])
        for s in range(t, t + K):
            if 2 <= s <= T:
                acc += w[s - 1] * err[s - 1]
        vals.append((acc / K) ** 2)
    return float(np.mean([v.reshape(v.shape[0], -1).sum(1).mean() for v in vals]))


@pytest.mark.parametrize("K", [2, 3, 4])
def test_theorem_2_on_a_random_network_along_forward_chains(K):
    """(T−1)/(T+K) L^τ_simple ≥ L_sa ≥ L_θ/(T+K)², exact averages over t on B joint chains."""
    T, B = 30, 256
    p = VPProcess(T=T, beta_end=0.3)
    chain = SequenceAwareLoss(p, K=T, window_noise="chain", direction="up")
    x0 = torch.randn(B, 3, generator=torch.Generator().manual_seed(K))
    s, _ = chain.window(torch.zeros(B, dtype=torch.long))  # the whole chain, t = 0..T−1
    noise = Noise.from_seed(K, B)
    xs, eps = chain.forward_samples(x0, s, noise.randn(3), noise)
    sig = p.sigmas[s].float().reshape(-1)
    with torch.no_grad():
        flat = xs.reshape(T * B, 3)
        err = eps_from_denoised(flat, _den(p)(flat, sig), sig).reshape(T, B, 3) - eps
    err = err.double()
    terms = theorem2_terms(err, tau(p), K)
    assert terms["l_sa"].item() == pytest.approx(_theorem2_brute_force(err.numpy(), tau(p).numpy(), K),
                                                 rel=1e-10)
    upper = (T - 1) / (T + K) * terms["l_tau_simple"]
    lower = terms["l_theta"] / (T + K) ** 2
    assert upper >= terms["l_sa"] >= lower
    assert terms["l_sa"] < 0.99 * upper and terms["l_sa"] > 1.01 * lower  # neither bound is trivial


def test_theorem_2_on_random_correlated_errors():
    T, K, B = 25, 3, 128
    g = torch.Generator().manual_seed(0)
    w = tau(VPProcess(T=T, beta_end=0.3))
    shared = torch.randn(1, B, 4, generator=g, dtype=torch.float64)
    for rho in (0.0, 0.5, 0.99):  # from independent steps to almost identical errors
        err = rho * shared + (1 - rho**2) ** 0.5 * torch.randn(T, B, 4, generator=g, dtype=torch.float64)
        terms = theorem2_terms(err, w, K)
        assert (T - 1) / (T + K) * terms["l_tau_simple"] >= terms["l_sa"] >= terms["l_theta"] / (T + K) ** 2


@pytest.mark.parametrize("direction", ["up", "down"])
def test_chain_window_is_a_forward_trajectory(direction):
    p = VPProcess(T=100)
    loss = SequenceAwareLoss(p, K=3, window_noise="chain", direction=direction, t_sampling="uniform")
    B, d = 20000, 2
    x0 = torch.full((B, d), 0.5)
    t = torch.full((B,), 41)
    s, valid = loss.window(t)
    assert valid.all()
    xs, eps = loss.forward_samples(x0, s, torch.randn(B, d), Noise.from_seed(0, B))
    abar = p.alphas_cumprod[s[:, 0]].float()
    x_t = abar.sqrt()[:, None, None] * xs  # back to x_t = √ᾱ_t x̂_t
    for j in range(3):  # marginal q(x_s | x0) = N(√ᾱ_s x0, (1 − ᾱ_s) I), ε_s its noise
        assert x_t[j].mean().item() == pytest.approx(0.5 * abar[j].sqrt().item(), abs=0.02)
        assert x_t[j].std().item() == pytest.approx((1 - abar[j]).sqrt().item(), rel=0.02)
        torch.testing.assert_close(eps[j], (x_t[j] - abar[j].sqrt() * x0) / (1 - abar[j]).sqrt())
    order = s[:, 0].argsort()  # steps in increasing t
    for lo, hi in zip(order[:-1].tolist(), order[1:].tolist()):  # q(x_{s+1} | x_s) = N(√α x_s, β)
        beta = p.betas[s[hi, 0]].item()
        inc = x_t[hi] - (1 - beta) ** 0.5 * x_t[lo]
        assert abs(inc.mean().item()) < 4 * (beta / (B * d)) ** 0.5
        assert inc.var().item() == pytest.approx(beta, rel=0.03)
        assert abs(torch.corrcoef(torch.stack([inc[:, 0], x_t[lo][:, 0]]))[0, 1].item()) < 0.03


def test_k_evaluations_are_one_batched_call_and_window_masks():
    p = VPProcess(T=50)
    for K, noise_kind in ((4, "independent"), (3, "chain")):
        d = Counting(_den(p))
        out = SequenceAwareLoss(p, K=K, window_noise=noise_kind)(d, torch.randn(8, 3), Noise.from_seed(0, 8))
        assert d.batches == [K * 8] and torch.isfinite(out["loss"])
    s, valid = SequenceAwareLoss(p, K=3).window(torch.tensor([0, 1, 49]))
    assert s[:, 2].tolist() == [49, 48, 47]
    assert valid[:, 0].tolist() == [True, False, False] and valid[:, 2].all()
    s_up, valid_up = SequenceAwareLoss(p, K=3, direction="up").window(torch.tensor([48]))
    assert valid_up[:, 0].tolist() == [True, True, False]


def test_images_on_a_cpu_take_k_calls_of_b_with_the_same_loss():
    """Images on a CPU: the window's K·B points go through the denoiser as K calls of B (faster
    there, B2); with a denoiser whose rows do not depend on their batch, the loss is the one of a
    single K·B call (the same data flattened to vectors) bit for bit."""
    p = VPProcess(T=50)
    x0 = torch.randn(8, 1, 4, 4)
    for noise_kind in ("independent", "chain"):
        loss = SequenceAwareLoss(p, K=3, window_noise=noise_kind)
        images, vectors = Counting(RowExact()), Counting(RowExact())
        out_i = loss(images, x0, Noise.from_seed(1, 8))
        out_v = loss(vectors, x0.flatten(1), Noise.from_seed(1, 8))
        assert images.batches == [8, 8, 8] and vectors.batches == [24]
        for key in ("loss", "loss_simple", "loss_sa"):
            assert torch.equal(out_i[key], out_v[key]), key


def test_sa_term_by_hand_and_gradient_through_every_evaluation():
    """L_sa = mean_b ‖(1/K) Σ_j valid·(ε̂_j − ε_j)‖², and each of the K inputs gets gradient."""
    p = VPProcess(T=50)
    loss = SequenceAwareLoss(p, K=3, lam=1.0)
    den = _den(p)
    inputs = []

    def recording(x, sigma):
        x = x.detach().requires_grad_(True)
        inputs.append((x, sigma))
        return den(x, sigma)

    x0 = torch.randn(6, 3)
    out = loss(recording, x0, Noise.from_seed(2, 6))
    noise = Noise.from_seed(2, 6)
    t = p.t(loss._base.sample_sigma(noise)).round().long()
    n0 = noise.randn(3)
    eps = torch.stack([n0, noise.randn(3), noise.randn(3)])
    s, valid = loss.window(t)
    sig = p.sigmas[s].float()
    x = x0 + sig[..., None] * eps
    with torch.no_grad():
        eps_hat = torch.stack([eps_from_denoised(x[j], den(x[j], sig[j]), sig[j]) for j in range(3)])
    ref = ((valid[..., None] * (eps_hat - eps)).sum(0) / 3).pow(2).sum(1).mean()
    torch.testing.assert_close(out["loss_sa"], ref, rtol=1e-5, atol=1e-7)
    out["loss"].backward()
    grad = inputs[0][0].grad.reshape(3, 6, 3)
    assert all(grad[j][valid[j]].abs().sum() > 0 for j in range(3))


def test_tau_modes_weight_the_window():
    p = VPProcess(T=50)
    s = torch.tensor([[10], [9]])
    valid = torch.ones_like(s, dtype=torch.bool)
    w_paper = SequenceAwareLoss(p, K=2, tau="paper").weights(s, valid)
    w_rel = SequenceAwareLoss(p, K=2, tau="relative").weights(s, valid)
    torch.testing.assert_close(w_paper[:, 0].double(), tau(p)[[10, 9]], rtol=1e-6, atol=0)
    torch.testing.assert_close(w_rel[:, 0], w_paper[:, 0] / w_paper[0, 0])
    assert SequenceAwareLoss(p, K=2).weights(s, valid).eq(1).all()


@pytest.mark.parametrize("field,value,message", [
    ("K", 0, "loss.sa.K must be an integer ≥ 1, got 0"), ("K", 2.0, "loss.sa.K"),
    ("lam", -1.0, "loss.sa.lam must be ≥ 0, got -1.0"), ("tau", "x", "loss.sa.tau"),
    ("window_noise", "shared", "loss.sa.window_noise"), ("direction", "left", "loss.sa.direction"),
    ("t_sampling", "lognormal", "loss.sa.t_sampling"), ("simple_on", "all", "loss.sa.simple_on")])
def test_bad_values_name_the_field(field, value, message):
    with pytest.raises(ErrpropError, match=message):
        SequenceAwareLoss(VPProcess(), **{field: value})


def test_needs_a_discrete_vp_process():
    with pytest.raises(ErrpropError, match="discrete VP"):
        SequenceAwareLoss(VEProcess())
