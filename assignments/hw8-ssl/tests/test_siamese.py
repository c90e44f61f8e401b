"""SimSiam's loss and stop-gradient through the tests' own siamese network, and BYOL's EMA update."""

import pytest
import submission
import torch
import torch.nn.functional as F
from torch import nn

SEED = 0


def reference_simsiam(p1, p2, z1, z2):
    def d(p, z):
        return -F.cosine_similarity(p, z.detach(), dim=-1).mean()

    return 0.5 * d(p1, z2) + 0.5 * d(p2, z1)


def tensors(*shapes, seed=SEED):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g, dtype=torch.float64) for shape in shapes]


def test_negative_cosine_value(device):
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64, device=device)
    z = torch.tensor([[2.0, 0.0], [-1.0, 0.0]], dtype=torch.float64, device=device)
    # cosines 1 and -1/sqrt(2): the loss is -(1 - 0.7071...) / 2.
    expected = -(1 - 2**-0.5) / 2
    assert abs(float(submission.negative_cosine(p, z)) - expected) < 1e-12


def test_simsiam_loss_value(device):
    p1, p2, z1, z2 = tensors(*[(5, 7)] * 4)
    expected = reference_simsiam(p1, p2, z1, z2)
    loss = submission.simsiam_loss(*(t.to(device) for t in (p1, p2, z1, z2)))
    torch.testing.assert_close(loss.cpu(), expected)


@pytest.mark.points(2)
def test_no_gradient_reaches_the_targets(device):
    p1, p2, z1, z2 = (t.to(device).requires_grad_() for t in tensors(*[(4, 6)] * 4, seed=SEED + 1))
    leaves = [t.detach().cpu().clone().requires_grad_() for t in (p1, p2)]
    reference_simsiam(*leaves, z1.detach().cpu(), z2.detach().cpu()).backward()
    submission.simsiam_loss(p1, p2, z1, z2).backward()
    for z in (z1, z2):
        assert z.grad is None or torch.all(z.grad == 0), "a gradient flowed into z: no stop-gradient"
    torch.testing.assert_close(p1.grad.cpu(), leaves[0].grad)
    torch.testing.assert_close(p2.grad.cpu(), leaves[1].grad)


@pytest.mark.points(2)
def test_stop_gradient_in_a_siamese_step(device):
    torch.manual_seed(SEED)
    encoder = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4)).double().to(device)
    predictor = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4)).double().to(device)
    x = tensors((10, 6), seed=SEED + 2)[0].to(device)
    x1, x2 = x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)  # two "augmentations"
    params = [*encoder.parameters(), *predictor.parameters()]

    def gradients(loss_fn):
        z1, z2 = encoder(x1), encoder(x2)
        grads = torch.autograd.grad(loss_fn(predictor(z1), predictor(z2), z1, z2), params)
        return [g.cpu() for g in grads]

    expected = gradients(reference_simsiam)
    # The encoder gets gradients only through the predictor's branch; with z detached they differ.
    for got, want in zip(gradients(submission.simsiam_loss), expected, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.points(2)
def test_ema_update_moves_the_target_towards_the_online_network(device):
    torch.manual_seed(SEED)
    online, target = nn.Linear(5, 3).to(device), nn.Linear(5, 3).to(device)
    before = [p.detach().clone() for p in target.parameters()]
    online_before = [p.detach().clone() for p in online.parameters()]
    expected = [0.9 * t + 0.1 * o for t, o in zip(before, online_before, strict=True)]
    assert submission.ema_update(list(target.parameters()), list(online.parameters()), 0.9) is None
    for p, want in zip(target.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach().cpu(), want.cpu())
    for p, want in zip(online.parameters(), online_before, strict=True):
        torch.testing.assert_close(p.detach().cpu(), want.cpu(), msg="the online network changed")
    assert all(p.requires_grad and p.grad is None for p in target.parameters())
