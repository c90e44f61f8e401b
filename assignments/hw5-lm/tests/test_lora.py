"""LoRA: starts as the base layer, adds (alpha / rank) B A x, merges exactly, trains only A and B."""

import pytest
import submission
import torch
import torch.nn.functional as F
from torch import nn

SEED = 0
IN, OUT, RANK, ALPHA = 12, 6, 2, 8


def base_layer():
    torch.manual_seed(SEED)
    return nn.Linear(IN, OUT)


def adapters(generator):
    return torch.randn(RANK, IN, generator=generator), torch.randn(OUT, RANK, generator=generator)


def weights(base, A, B):
    return {"base.weight": base.weight.detach(), "base.bias": base.bias.detach(), "A": A, "B": B}


def test_starts_equal_to_the_base_layer(device):
    base = base_layer().to(device)
    x = torch.randn(5, IN, generator=torch.Generator().manual_seed(SEED)).to(device)
    expected = base(x).detach()
    lora = submission.LoRALinear(base, RANK, ALPHA)
    torch.testing.assert_close(lora(x).detach().cpu(), expected.cpu())


@pytest.mark.points(2)
def test_forward_adds_the_scaled_low_rank_update(device):
    g = torch.Generator().manual_seed(SEED)
    base = base_layer()
    A, B = adapters(g)
    x = torch.randn(4, 3, IN, generator=g)
    expected = (x @ base.weight.T + base.bias + (ALPHA / RANK) * x @ A.T @ B.T).detach()
    lora = submission.LoRALinear(base, RANK, ALPHA)
    lora.load_state_dict(weights(base, A, B))
    torch.testing.assert_close(lora.to(device)(x.to(device)).detach().cpu(), expected)


@pytest.mark.points(2)
def test_merged_layer_equals_the_adapted_layer(device):
    g = torch.Generator().manual_seed(SEED)
    base = base_layer()
    A, B = adapters(g)
    lora = submission.LoRALinear(base, RANK, ALPHA)
    lora.load_state_dict(weights(base, A, B))
    lora = lora.to(device)
    merged = lora.merged()
    # A plain linear layer: its weight and bias, nothing else (a returned module is a mirror, so
    # isinstance(merged, nn.Linear) does not hold across the boundary: docs/security.md).
    shapes = {name: tuple(p.shape) for name, p in merged.named_parameters()}
    assert shapes == {"weight": (OUT, IN), "bias": (OUT,)}
    x = torch.randn(7, IN, generator=g).to(device)
    out = merged(x.clone()).detach()  # copies: x is used twice
    torch.testing.assert_close(out.cpu(), lora(x.clone()).detach().cpu())


def test_only_A_and_B_require_gradients():
    lora = submission.LoRALinear(base_layer(), RANK, ALPHA)
    assert sorted(name for name, p in lora.named_parameters() if p.requires_grad) == ["A", "B"]


@pytest.mark.points(2)
def test_training_with_adam_changes_only_the_adapter(device):
    g = torch.Generator().manual_seed(SEED)
    base = base_layer().to(device)
    frozen = {name: value.detach().clone() for name, value in base.state_dict().items()}
    # A target that differs from the base layer by a rank-2 update: LoRA of rank 2 can fit it.
    U, V = torch.randn(OUT, RANK, generator=g), torch.randn(RANK, IN, generator=g)
    x = torch.randn(64, IN, generator=g).to(device)
    y = (base(x) + x @ (U @ V).T.to(device)).detach()
    lora = submission.LoRALinear(base, RANK, ALPHA)
    optimizer = torch.optim.Adam(lora.parameters(), lr=0.1)  # everything: the frozen ones get no grad
    with torch.no_grad():
        first = F.mse_loss(lora(x), y).item()
    for _ in range(40):
        optimizer.zero_grad()
        loss = F.mse_loss(lora(x), y)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05 * first, f"loss {loss.item():.4f} from {first:.4f}"
    for name, value in lora.base.state_dict().items():
        torch.testing.assert_close(value.cpu(), frozen[name].cpu(), msg=f"base.{name} changed")
