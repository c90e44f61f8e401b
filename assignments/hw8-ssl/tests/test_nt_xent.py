"""SimCLR's NT-Xent: by hand, against a row-by-row reference, its invariances and its gradients."""

import math

import pytest
import submission
import torch
import torch.nn.functional as F

SEED = 0


def views(n=6, dim=8, seed=SEED):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64), torch.randn(
        n, dim, generator=g, dtype=torch.float64
    )


def reference_nt_xent(z1, z2, temperature):
    """Written row by row: -log(exp(s_i,pos) / sum over k != i of exp(s_i,k)), averaged over 2N rows."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    losses = []
    for i in range(2 * n):
        others = [k for k in range(2 * n) if k != i]
        scores = torch.stack([z[i] @ z[k] for k in others]) / temperature
        positive = (z[i] @ z[(i + n) % (2 * n)]) / temperature
        losses.append(torch.logsumexp(scores, dim=0) - positive)
    return torch.stack(losses).mean()


def test_identical_orthogonal_views_by_hand(device):
    z = torch.eye(2, dtype=torch.float64, device=device)
    # Each row's candidates: its positive (similarity 1) and two orthogonal ones (0), at temperature 1.
    loss = submission.nt_xent_loss(z, z.clone(), temperature=1.0)
    assert math.isclose(float(loss), math.log(1 + 2 / math.e), rel_tol=1e-9)


@pytest.mark.points(2)
def test_matches_the_row_by_row_formula(device):
    z1, z2 = views()
    expected = reference_nt_xent(z1, z2, 0.2)
    loss = submission.nt_xent_loss(z1.to(device), z2.to(device), temperature=0.2)
    torch.testing.assert_close(loss.cpu(), expected)


def test_ignores_the_scale_of_the_embeddings(device):
    z1, z2 = views(seed=SEED + 1)
    expected = reference_nt_xent(z1, z2, 0.5)
    loss = submission.nt_xent_loss((3 * z1).to(device), (0.25 * z2).to(device))  # default temperature 0.5
    torch.testing.assert_close(loss.cpu(), expected)


def test_is_symmetric_in_the_two_views(device):
    z1, z2 = (z.to(device) for z in views(seed=SEED + 2))
    forward = submission.nt_xent_loss(z1.clone(), z2.clone(), 0.3)  # copies: the views are used twice
    backward = submission.nt_xent_loss(z2.clone(), z1.clone(), 0.3)
    torch.testing.assert_close(forward.cpu(), backward.cpu())


def test_gradients_match_the_formula(device):
    z1, z2 = views(4, 5)
    leaves = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    reference_nt_xent(*leaves, 0.1).backward()
    z1, z2 = z1.to(device).requires_grad_(), z2.to(device).requires_grad_()
    submission.nt_xent_loss(z1, z2, 0.1).backward()
    torch.testing.assert_close(z1.grad.cpu(), leaves[0].grad)
    torch.testing.assert_close(z2.grad.cpu(), leaves[1].grad)
