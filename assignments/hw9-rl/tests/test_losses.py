"""The REINFORCE and actor-critic losses: values, and where their gradients go."""

import pytest
import submission
import torch
import torch.nn.functional as F

SEED = 0


def batch(steps=10, seed=SEED):
    g = torch.Generator().manual_seed(seed)
    log_probs = -torch.rand(steps, generator=g, dtype=torch.float64) * 2
    values, returns = (
        torch.randn(steps, generator=g, dtype=torch.float64),
        torch.randn(steps, generator=g, dtype=torch.float64),
    )
    entropy = torch.rand(steps, generator=g, dtype=torch.float64)
    return log_probs, values, returns, entropy


@pytest.mark.points(2)
def test_policy_gradient_loss_value_and_gradients(device):
    log_probs, advantages, _, _ = batch()
    expected = -(log_probs * advantages).mean()
    expected_grad = -advantages / 10  # d loss / d log_probs, before the call
    log_probs = log_probs.to(device).requires_grad_()
    advantages = advantages.to(device).requires_grad_()
    loss = submission.policy_gradient_loss(log_probs, advantages)
    torch.testing.assert_close(loss.detach().cpu(), expected)
    loss.backward()
    torch.testing.assert_close(log_probs.grad.cpu(), expected_grad)
    assert advantages.grad is None or torch.all(advantages.grad == 0), "a gradient reached the advantages"


def reference_actor_critic(log_probs, values, returns, entropy, value_coef, entropy_coef):
    advantages = (returns - values).detach()
    policy = -(log_probs * advantages).mean()
    return policy + value_coef * F.mse_loss(values, returns) - entropy_coef * entropy.mean()


def test_actor_critic_loss_value(device):
    tensors = batch(seed=SEED + 1)
    expected = reference_actor_critic(*tensors, 0.5, 0.01)
    loss = submission.actor_critic_loss(*(t.to(device) for t in tensors))  # the default coefficients
    torch.testing.assert_close(loss.cpu(), expected)


@pytest.mark.points(2)
def test_actor_critic_gradients(device):
    tensors = batch(seed=SEED + 2)
    leaves = [t.clone().requires_grad_() for t in tensors]
    reference_actor_critic(*leaves, 0.25, 0.1).backward()
    inputs = [t.to(device).requires_grad_() for t in tensors]
    submission.actor_critic_loss(*inputs, value_coef=0.25, entropy_coef=0.1).backward()
    # The values get only the critic's gradient: the advantage is a constant for the policy term.
    for name, got, want in zip(["log_probs", "values", "returns", "entropy"], inputs, leaves, strict=True):
        want_grad = torch.zeros_like(want) if want.grad is None else want.grad
        got_grad = torch.zeros_like(want) if got.grad is None else got.grad.cpu()
        torch.testing.assert_close(got_grad, want_grad, msg=f"gradient of {name}")
