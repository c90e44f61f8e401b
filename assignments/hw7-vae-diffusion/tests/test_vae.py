"""The VAE: reparameterisation with the seeded noise, the KL and the negative ELBO, and training a VAE."""

import math

import pytest
import submission
import torch
import torch.nn.functional as F

SEED = 0


def randn(*shape, generator):
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def reference_negative_elbo(x_logits, x, mu, logvar):
    reconstruction = F.binary_cross_entropy_with_logits(x_logits, x, reduction="none").sum(dim=1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)
    return (reconstruction + kl).mean()


@pytest.mark.points(2)
def test_reparameterize_uses_the_seeded_noise(device):
    g = torch.Generator().manual_seed(SEED)
    mu, logvar = randn(5, 3, generator=g), randn(5, 3, generator=g)
    torch.manual_seed(123)
    expected = mu + torch.exp(logvar / 2) * torch.randn_like(mu)
    torch.manual_seed(123)  # the same draws on the student's side
    z = submission.reparameterize(mu.to(device), logvar.to(device))
    torch.testing.assert_close(z.cpu(), expected)


def test_reparameterize_passes_gradients_to_mu_and_logvar(device):
    g = torch.Generator().manual_seed(SEED)
    mu, logvar = randn(4, 2, generator=g), randn(4, 2, generator=g)
    torch.manual_seed(5)
    eps = torch.randn_like(mu)
    expected = 0.5 * torch.exp(logvar / 2) * eps  # dz/dlogvar, before the call
    mu, logvar = mu.to(device).requires_grad_(), logvar.to(device).requires_grad_()
    torch.manual_seed(5)  # the same draws on the student's side
    submission.reparameterize(mu, logvar).sum().backward()
    torch.testing.assert_close(mu.grad.cpu(), torch.ones(4, 2, dtype=torch.float64))
    torch.testing.assert_close(logvar.grad.cpu(), expected)


def test_gaussian_kl_by_hand(device):
    mu = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64, device=device)
    logvar = torch.tensor([[0.0, 0.0], [0.0, math.log(4.0)]], dtype=torch.float64, device=device)
    # Second example: 0.5 * (1 + 1 - 1 - 0) + 0.5 * (4 + 4 - 1 - log 4).
    expected = torch.tensor([0.0, 0.5 + 0.5 * (7 - math.log(4.0))], dtype=torch.float64)
    torch.testing.assert_close(submission.gaussian_kl(mu, logvar).cpu(), expected)


def test_gaussian_kl_matches_torch_distributions(device):
    g = torch.Generator().manual_seed(SEED)
    mu, logvar = randn(6, 4, generator=g), randn(6, 4, generator=g)
    q = torch.distributions.Normal(mu, torch.exp(logvar / 2))
    expected = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(submission.gaussian_kl(mu.to(device), logvar.to(device)).cpu(), expected)


@pytest.mark.points(2)
def test_negative_elbo_matches_the_formula(device):
    g = torch.Generator().manual_seed(SEED)
    x = (torch.rand(8, 12, generator=g) < 0.5).double()
    x_logits, mu, logvar = randn(8, 12, generator=g), randn(8, 3, generator=g), randn(8, 3, generator=g)
    expected = reference_negative_elbo(x_logits, x, mu, logvar)
    loss = submission.negative_elbo(*(t.to(device) for t in (x_logits, x, mu, logvar)))
    torch.testing.assert_close(loss.cpu(), expected)


def test_vae_forward_with_the_seeded_noise(device):
    torch.manual_seed(SEED)
    vae = submission.VAE(10, 16, 3).to(device)
    w = {name: value.detach().cpu() for name, value in vae.state_dict().items()}
    x = torch.rand(4, 10, generator=torch.Generator().manual_seed(SEED))
    hidden = F.relu(x @ w["encoder.0.weight"].T + w["encoder.0.bias"])
    mu, logvar = hidden @ w["mu.weight"].T + w["mu.bias"], hidden @ w["logvar.weight"].T + w["logvar.bias"]
    torch.manual_seed(7)
    z = mu + torch.exp(logvar / 2) * torch.randn_like(mu)
    h = F.relu(z @ w["decoder.0.weight"].T + w["decoder.0.bias"])
    expected = h @ w["decoder.2.weight"].T + w["decoder.2.bias"]
    torch.manual_seed(7)
    x_logits, got_mu, got_logvar = vae(x.to(device))
    torch.testing.assert_close(got_mu.detach().cpu(), mu)
    torch.testing.assert_close(got_logvar.detach().cpu(), logvar)
    torch.testing.assert_close(x_logits.detach().cpu(), expected)


def binary_data():
    """Four random 16-pixel binary prototypes, each pixel flipped with probability 5%."""
    g = torch.Generator().manual_seed(SEED)
    prototypes = (torch.rand(4, 16, generator=g) < 0.5).float()
    which = torch.randint(0, 4, (256,), generator=g)
    flips = (torch.rand(256, 16, generator=g) < 0.05).float()
    return (prototypes[which] - flips).abs()


@pytest.mark.points(2)
def test_training_with_the_negative_elbo_fits_the_data(device):
    x = binary_data().to(device)
    torch.manual_seed(SEED)
    vae = submission.VAE(16, 32, 2).to(device)

    def true_negative_elbo():  # measured here, with the formula of the tests
        torch.manual_seed(SEED + 1)
        with torch.no_grad():
            x_logits, mu, logvar = vae(x)
        return reference_negative_elbo(x_logits.cpu(), x.cpu(), mu.cpu(), logvar.cpu()).item()

    first = true_negative_elbo()
    optimizer = torch.optim.Adam(vae.parameters(), lr=0.01)
    for _ in range(100):
        optimizer.zero_grad()
        x_logits, mu, logvar = vae(x)
        loss = submission.negative_elbo(x_logits, x, mu, logvar)
        loss.backward()
        optimizer.step()
    # About 11.5 nats untrained; the reference solution reaches 5.5 (the data's entropy is about 4.6).
    last = true_negative_elbo()
    assert last < 7.0, f"negative ELBO {last:.2f} (from {first:.2f}) is not below 7.0"
