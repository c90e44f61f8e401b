"""DDPM: the linear schedule, q(x_t | x_0), and the noise-prediction loss with the seeded draws."""

import pytest
import submission
import torch
import torch.nn.functional as F

SEED = 0
STEPS = 1000


def schedule():
    """alpha_bar written out here, as a running product."""
    betas = torch.linspace(1e-4, 0.02, STEPS, dtype=torch.float64)
    alpha_bar, running = torch.empty(STEPS, dtype=torch.float64), 1.0
    for t in range(STEPS):
        running = running * (1 - betas[t])
        alpha_bar[t] = running
    return betas, alpha_bar


def test_linear_schedule_and_alpha_bars():
    betas, alpha_bar = schedule()
    got_betas = submission.linear_betas(STEPS)
    torch.testing.assert_close(got_betas.double(), betas, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(submission.alpha_bars(betas), alpha_bar)


@pytest.mark.points(2)
def test_q_sample_matches_the_formula(device):
    _, alpha_bar = schedule()
    g = torch.Generator().manual_seed(SEED)
    x0 = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 999])
    a = alpha_bar[t].view(4, 1, 1, 1)
    expected = a.sqrt() * x0 + (1 - a).sqrt() * noise
    got = submission.q_sample(x0.to(device), t.to(device), noise.to(device), alpha_bar.to(device))
    torch.testing.assert_close(got.cpu(), expected)


def test_loss_is_zero_for_a_denoiser_that_knows_the_noise(device):
    _, alpha_bar = schedule()
    x0 = torch.randn(16, 5, generator=torch.Generator().manual_seed(SEED), dtype=torch.float64).to(device)
    ab = alpha_bar.to(device)

    def oracle(x_t, t):  # inverts x_t = sqrt(ab) x0 + sqrt(1 - ab) noise with the true x0
        a = ab[t].view(-1, 1)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    loss = submission.ddpm_loss(oracle, x0, ab)
    assert abs(float(loss)) < 1e-12


@pytest.mark.points(2)
def test_loss_with_the_seeded_steps_and_noise(device):
    _, alpha_bar = schedule()
    x0 = torch.randn(32, 2, 4, 4, generator=torch.Generator().manual_seed(SEED), dtype=torch.float64)
    seen = []

    def model(x_t, t):  # a stand-in denoiser that records what it was given
        seen.append(torch.as_tensor(t).cpu())
        return 0.5 * x_t

    torch.manual_seed(11)
    t = torch.randint(0, STEPS, (32,))
    noise = torch.randn_like(x0)
    a = alpha_bar[t].view(32, 1, 1, 1)
    expected = F.mse_loss(0.5 * (a.sqrt() * x0 + (1 - a).sqrt() * noise), noise)
    torch.manual_seed(11)  # the same draws on the student's side: steps first, then the noise
    loss = submission.ddpm_loss(model, x0.to(device), alpha_bar.to(device))
    assert len(seen) == 1 and torch.equal(seen[0], t), "the steps differ from torch.randint(0, T, (B,))"
    torch.testing.assert_close(loss.cpu(), expected)
