"""Discounted returns and GAE over rollouts that hold several episodes."""

import pytest
import submission
import torch

SEED = 0


def rollout(steps=12, seed=SEED):
    """Rewards, critic values and episode ends (three episodes, the last one cut off by the rollout)."""
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(steps, generator=g, dtype=torch.float64)
    values = torch.randn(steps, generator=g, dtype=torch.float64)
    dones = torch.zeros(steps, dtype=torch.float64)
    dones[[3, 8]] = 1.0
    return rewards, values, dones


def episodes(dones):
    """(start, end) of each episode in the rollout, end excluded."""
    bounds, start = [], 0
    for t, done in enumerate(dones.tolist()):
        if done or t == len(dones) - 1:
            bounds.append((start, t + 1))
            start = t + 1
    return bounds


def test_discounted_returns_by_hand(device):
    rewards = torch.tensor([1.0, 0.0, 2.0], device=device)
    dones = torch.tensor([0.0, 0.0, 1.0], device=device)
    returns = submission.discounted_returns(rewards, dones, 0.5)
    torch.testing.assert_close(returns.cpu(), torch.tensor([1.5, 1.0, 2.0]))


@pytest.mark.points(2)
def test_discounted_returns_stop_at_episode_ends(device):
    rewards = torch.ones(5, device=device)
    dones = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0], device=device)
    # Two episodes: [1 + 0.9, 1] and [1 + 0.9 + 0.81, 1 + 0.9, 1].
    expected = torch.tensor([1.9, 1.0, 2.71, 1.9, 1.0])
    torch.testing.assert_close(submission.discounted_returns(rewards, dones, 0.9).cpu(), expected)


def test_discounted_returns_match_sums_of_discounted_rewards(device):
    rewards, _, dones = rollout()
    expected = torch.zeros_like(rewards)
    for start, end in episodes(dones):
        for t in range(start, end):
            expected[t] = sum(0.95 ** (k - t) * rewards[k] for k in range(t, end))
    returns = submission.discounted_returns(rewards.to(device), dones.to(device), 0.95)
    torch.testing.assert_close(returns.cpu(), expected)


def reference_gae(rewards, values, dones, next_value, gamma, lam):
    """GAE as a sum: A_t = sum over l of (gamma lam)^l delta_{t+l}, inside t's episode."""
    steps = len(rewards)
    next_values = torch.cat([values[1:], torch.tensor([next_value], dtype=values.dtype)])
    deltas = rewards + gamma * next_values * (1 - dones) - values
    advantages = torch.zeros_like(rewards)
    for start, end in episodes(dones):
        for t in range(start, end):
            advantages[t] = sum((gamma * lam) ** (k - t) * deltas[k] for k in range(t, end))
    assert len(advantages) == steps
    return advantages


@pytest.mark.points(2)
def test_gae_matches_the_sum_of_discounted_td_errors(device):
    rewards, values, dones = rollout()
    expected = reference_gae(rewards, values, dones, 0.7, 0.99, 0.9)
    got = submission.gae(rewards.to(device), values.to(device), dones.to(device), 0.7, 0.99, 0.9)
    torch.testing.assert_close(got.cpu(), expected)


def test_gae_with_lambda_0_is_the_td_error(device):
    rewards, values, dones = rollout(seed=SEED + 1)
    next_values = torch.cat([values[1:], torch.tensor([-0.3], dtype=values.dtype)])
    expected = rewards + 0.9 * next_values * (1 - dones) - values
    got = submission.gae(rewards.to(device), values.to(device), dones.to(device), -0.3, 0.9, 0.0)
    torch.testing.assert_close(got.cpu(), expected)


def test_gae_with_lambda_1_is_the_return_minus_the_value(device):
    rewards, values, dones = rollout(seed=SEED + 2)
    dones[-1] = 1.0  # the rollout ends with its episode: nothing to bootstrap
    expected = torch.zeros_like(rewards)
    for start, end in episodes(dones):
        for t in range(start, end):
            expected[t] = sum(0.9 ** (k - t) * rewards[k] for k in range(t, end)) - values[t]
    got = submission.gae(rewards.to(device), values.to(device), dones.to(device), 5.0, 0.9, 1.0)
    torch.testing.assert_close(got.cpu(), expected)
